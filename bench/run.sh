#!/usr/bin/env bash
# Reproduces docs/performance.md and docs/performance.svg with one command.
#
#   bench/run.sh            quick: 3 interleaved rounds, -benchtime=300ms
#                           (5 rounds took 4.5 minutes on 2 shared cores)
#   bench/run.sh --full     10 rounds, -benchtime=1s
#   bench/run.sh --rounds N [--benchtime D] [--run REGEXP]
#
# Each (workload, implementation) case runs in its own process; raw results
# go to bench/results/raw/ (not committed).
set -euo pipefail
cd "$(dirname "$0")"

rounds=3
benchtime=300ms
filter=
while [ $# -gt 0 ]; do
	case "$1" in
	--full) rounds=10; benchtime=1s ;;
	--rounds) rounds="$2"; shift ;;
	--benchtime) benchtime="$2"; shift ;;
	--run) filter="$2"; shift ;;
	*) echo "usage: $0 [--full] [--rounds N] [--benchtime D] [--run REGEXP]" >&2; exit 2 ;;
	esac
	shift
done

mkdir -p results/raw
# The library revision the binary is built from ("-dirty": uncommitted
# changes to the library's .go files).
revision="$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C .. diff --quiet HEAD -- ':(glob)*.go' 2>/dev/null; then
	revision="$revision-dirty"
fi
go test -c -o results/raw/bench.test .
go build -o results/raw/harness ./cmd/harness
go build -o results/raw/report ./cmd/report
cmdline="bench/run.sh --rounds $rounds --benchtime $benchtime${filter:+ --run '$filter'}"
results/raw/harness -bin results/raw/bench.test -rounds "$rounds" -benchtime "$benchtime" \
	-run "$filter" -out results/raw/results.jsonl -meta results/raw/meta.json -command "$cmdline" -revision "$revision"
results/raw/report -results results/raw/results.jsonl -meta results/raw/meta.json \
	-doc ../docs/performance.md -svg ../docs/performance.svg
echo "wrote docs/performance.md and docs/performance.svg"

# Issue 16: the cost per job of an observer and of the otel module, as
# ratios to a pool with no observer in the same run (the otel module's
# benchmark; the bench module itself does not depend on OpenTelemetry).
# The observed Go and Schedule rows are in docs/performance.md above.
echo "== otel: cost per job against no observer (otel/bench_test.go)"
(cd ../otel && go test -run '^$' -bench BenchmarkObserverCost -benchtime 200000x -count 3 .)

# Issue 15's job queues side by side (natsjobs, raw JetStream, river on
# PostgreSQL, asynq on Redis): bench/jobs/run.sh, or here with
# QPOOL_BENCH_JOBS=1 (it takes a few minutes and starts the two servers).
if [ "${QPOOL_BENCH_JOBS:-}" = 1 ]; then
	jobs/run.sh
fi
