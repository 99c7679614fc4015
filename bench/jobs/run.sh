#!/usr/bin/env bash
# natsjobs side by side with a raw JetStream probe, river on PostgreSQL and
# asynq on Redis (issue 15), in one run with interleaved rounds:
#
#   bench/jobs/run.sh                      100,000 jobs, 100 workers, 3 rounds
#   bench/jobs/run.sh -n 20000 -rounds 1   quicker
#   bench/jobs/run.sh -sync                nats-server syncs every write
#
# PostgreSQL 15 and Redis come from Debian's packages (installed here if
# missing and we are root); each runs from a temporary directory on a
# loopback port at its defaults, and stops when this script ends. A system
# whose server cannot be had is skipped with a message, not a failure.
set -euo pipefail
cd "$(dirname "$0")"

work="$(mktemp -d)"
pgbin=/usr/lib/postgresql/15/bin
pgport=55432
redisport=56379
args=()
pids=()

cleanup() {
	if [ -n "${pgrunning:-}" ]; then as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() { # package
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >/dev/null 2>&1; }
	fi
}

[ -x "$pgbin/postgres" ] || install postgresql-15 || true
if [ -x "$pgbin/postgres" ]; then
	mkdir -p "$work/pg"
	[ "$(id -u)" = 0 ] && chown -R postgres "$work"
	as_pg "$pgbin/initdb" -D "$work/pg" -A trust -U bench >/dev/null
	as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
		-o "-p $pgport -k $work -c listen_addresses=127.0.0.1" start >/dev/null
	pgrunning=1
	args+=(-pg "postgres://bench@127.0.0.1:$pgport/postgres")
	echo "# PostgreSQL: $("$pgbin/postgres" --version), defaults (fsync on, synchronous_commit on)"
else
	echo "# PostgreSQL 15 could not be installed: river is skipped"
fi

command -v redis-server >/dev/null || install redis-server || true
if command -v redis-server >/dev/null; then
	redis-server --port "$redisport" --bind 127.0.0.1 --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do
		redis-cli -p "$redisport" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	args+=(-redis "127.0.0.1:$redisport")
	echo "# Redis: $(redis-server --version | cut -d' ' -f3), defaults (no AOF, snapshots)"
else
	echo "# Redis could not be installed: asynq is skipped"
fi

echo "# nats-server 2.15.2 embedded, file store, $(if printf '%s\n' "$@" | grep -qx -- -sync; then echo 'sync every write'; else echo 'default sync (every 2 min)'; fi)"
echo "# $(nproc) cores; go run . ${args[*]} $*"
GOWORK=off go run . "${args[@]}" "$@"
