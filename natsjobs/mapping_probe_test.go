package natsjobs_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// A research probe for issue 15 (brief H4): what other mappings of natsjobs
// onto JetStream could reach. Each candidate is emulated with raw jetstream
// calls doing the server operations per job that the mapping would do (no
// retries, no dependencies, no cancels: the happy path of a no-op job),
// and measured against the raw probes of bench_test.go in the same
// benchmark: each sub-benchmark runs the raw probe for b.N jobs on a
// server of its own, then the candidate for b.N jobs on another, and
// reports both rates and their ratio ("x-raw"), so that a ratio compares
// figures taken seconds apart on a shared machine, not minutes.
//
// Run (in natsjobs), several times, alternating with nothing else:
//
//	go test -run '^$' -bench Mapping -benchtime 20000x -count 1 .
//
// Candidates (mapCfg says what each does per job):
//
//   - today: what natsjobs does now. Submit: the job message (async
//     publish, Nats-Msg-Id <id>#1#<nonce>, the nonce in a header) and the
//     claim's KV create in <ns>_jobs at once, both awaited. Worker: Fetch;
//     the claim and the outcome read at once (batched multi_last direct
//     gets); the no-op; the outcome's KV create; the dependents marker read
//     (batched); Ack. One KV watcher of the outcomes per client.
//   - claimmsg: the claim is the message. Each job's message goes to a
//     subject of its own, <ns>.job.<key>, on a WorkQueue stream with
//     MaxMsgsPerSubject 1, Discard New and DiscardNewPerSubject, so the
//     server refuses a second message for an ID while one is pending
//     (TestMappingPerIDSubject). Worker: Fetch, the outcome read (batched),
//     the outcome's create, Ack.
//   - claimexp: as claimmsg, but uniqueness by an expected last sequence
//     instead of the per-subject limit: the message goes to
//     <ns>.job.<key>.run with Nats-Expected-Last-Subject-Sequence 0 for
//     the subject <ns>.job.<key>.* (nats-server 2.11+), so a retry can be
//     published while the current attempt is pending (expecting that
//     attempt's sequence), and a job held back by dependencies can wait as
//     a message on <ns>.job.<key>.held that no consumer reads.
//   - claimmsg-pipe: claimmsg with the outcome's create sent as an async
//     publish (Nats-Expected-Last-Subject-Sequence 0 on the bucket's
//     subject, which is what KV Create sends) and the ack sent when its
//     PubAck comes (one goroutine takes the PubAcks in order): the
//     worker's slot is free once the create is sent.
//   - claimmsg-pipe-msgs: claimmsg-pipe with Messages() (100 goroutines on
//     one iterator) instead of the Fetch loop.
//   - claimmsg-noread-pipe-msgs: claimmsg-pipe-msgs without the outcome
//     read before the run: publish, consume, create, ack; the floor of
//     any mapping that records outcomes in a KV bucket.
//   - ...-nodedup: without Nats-Msg-Id on the job message (the per-ID
//     subject refuses a second pending message anyway), to see what the
//     stream's duplicate window costs.
//   - ...-repub: the client learns of outcomes from a core subscription
//     to <ns>.done.>, where the results bucket's stream republishes each
//     stored outcome (RePublish), instead of a KV watcher (an ordered
//     consumer per client). A real client would need to resume from the
//     last revision it saw (the republished message carries
//     Nats-Sequence) after a reconnection, as the feed does.
//   - claimlog-...: as claimexp, on a stream with Limits retention and
//     MaxAge (the retention) instead of WorkQueue: a job's message stays
//     after its ack, and is its claim for the retention (a resubmission
//     expecting sequence 0 for <ns>.job.<key>.* is refused as long as it
//     is kept), and an ack only moves the consumer's state (no delete in
//     the stream).
//   - claimlog-full, claimexp-full: claimlog and claimexp with what
//     natsjobs's promises still need per job: the outcome read before the
//     run (a queued job's cancel), the dependents marker read after the
//     create's PubAck (then the ack); Messages(), no dedup ID (the
//     expected sequence refuses a second submission, and a publish
//     repeated after a lost PubAck, which its nonce can tell apart).
//     claimlog-full-fetch: with the Fetch loop.
//   - journal: one Limits stream per queue holds, per ID, the job's
//     message (<key>.run, as claimlog), its outcome (<key>.done) and its
//     dependents marker (<key>.dep): the outcome is published expecting
//     the job message's sequence as the last for <key>.*, so one
//     conditional write says "no outcome yet, no newer attempt, no
//     dependents marker yet"; if it is refused, the worker reads what
//     came (a marker: release the dependents; an outcome: another's).
//     A linker writes the marker, then reads the outcome: one stream
//     orders both, so one of them sees the other, and the marker read
//     after every create goes. Emulated on a KV bucket's stream (the keys
//     <key>.run, <key>.done) so the batched reader and the KV watcher
//     (filtered on *.done) apply; the workers' consumer is filtered on
//     *.run. journal-fetch: with the Fetch loop.
//   - claimmsg-noread-ff-msgs-nodedup: the outcome's create published
//     with no reply subject (the server stores it and sends no PubAck) and
//     the job acked at once. Not a mapping (the ack does not wait for the
//     outcome to be stored, so a job could end with no outcome): a ceiling
//     for writing outcomes in batches (the fast batch publish of
//     nats-server 2.14+, AllowBatchPublish, acknowledges every N messages
//     with flow messages; nats.go v1.55.0 has no client API for it).
//
// "natsjobs" is the real client and worker (as in bench_test.go), to see
// how close "today" emulates it.
//
// Results, 2026-12-06, the 2-core machine of issue 15 (shared, load 1.5 to
// 4), nats-server 2.15.2: medians of the per-run ratios of 10 runs of the
// command above (three series; a candidate in two series has both), each
// ±0.1 at least (per-run ratios spread by up to 2x):
//
//	candidate                       BurnDown   SubmitWait
//	natsjobs (real)                 0.26-0.28  0.47-0.50
//	today                           0.29-0.31  0.48-0.49
//	claimmsg / claimexp             0.44/0.41  0.70/0.68
//	claimmsg-pipe(-msgs)            0.54       0.77-0.78
//	claimmsg-noread-pipe-msgs       0.54       0.80
//	  -nodedup / -repub             0.59/0.59  0.92/0.88
//	claimmsg-noread-ff-msgs-nodedup 0.61       0.97
//	claimlog-pipe(-msgs)            0.50/0.54-0.57  0.79/0.76-0.80
//	claimlog-noread-pipe-msgs-nodedup 0.63-0.64 0.87-0.90
//	claimlog-full (-fetch)          0.54 (0.52) 0.70-0.72 (0.75)
//	claimexp-full                   0.48       0.68
//	journal (-fetch)                0.47 (0.43) 0.59 (0.74)
//
// So "today" reproduces natsjobs (the gap is the server work of the
// protocol, not the client's code); no candidate that records an outcome
// per job reaches 0.8x of the raw BurnDown probe, which records none (the
// floor, publish + consume + create + ack, is about 0.6x, and writing the
// outcomes with no PubAck at all, the most batching could save, no
// better); SubmitWait reaches 0.8x only without the reads natsjobs's
// promises need (about 0.7x to 0.8x with them). Putting everything in one
// stream (journal) saves a read but serialises on the stream and measured
// worse. What the candidates would weaken, and how to keep each promise:
// the report of brief H4 (and docs/jobs.md once a mapping is chosen).

// mapCfg is what a candidate mapping does per job.
type mapCfg struct {
	claimKV     bool   // today: a claim created in <ns>_jobs, sent with the message
	perID       string // "": one run subject; "limit": <ns>.job.<key> with the per-subject limit; "expect": <ns>.job.<key>.run with an expected last sequence; "log": as expect on a Limits stream; "journal": as log, the outcome in the same stream
	readClaim   bool   // the worker reads the claim (the nonce check), with the outcome
	readOutcome bool   // the worker reads the outcome before the run
	readMarker  bool   // the worker reads the dependents marker after the create
	pipelined   bool   // the create as an async publish, the ack on its PubAck
	messages    bool   // Messages() instead of the Fetch loop
	noDedup     bool   // no Nats-Msg-Id on the job message
	repub       bool   // the outcomes reach the client by the bucket's RePublish to a core subject, not a watcher
	fireForget  bool   // the create published without a reply (no PubAck), the ack sent at once: a ceiling for batched outcome writes
}

var mappingCandidates = []struct {
	name string
	cfg  mapCfg
}{
	{"today", mapCfg{claimKV: true, readClaim: true, readOutcome: true, readMarker: true}},
	{"claimmsg", mapCfg{perID: "limit", readOutcome: true}},
	{"claimexp", mapCfg{perID: "expect", readOutcome: true}},
	{"claimmsg-pipe", mapCfg{perID: "limit", readOutcome: true, pipelined: true}},
	{"claimmsg-pipe-msgs", mapCfg{perID: "limit", readOutcome: true, pipelined: true, messages: true}},
	{"claimmsg-noread-pipe-msgs", mapCfg{perID: "limit", pipelined: true, messages: true}},
	{"claimmsg-noread-pipe-msgs-nodedup", mapCfg{perID: "limit", pipelined: true, messages: true, noDedup: true}},
	{"claimmsg-noread-pipe-msgs-repub", mapCfg{perID: "limit", pipelined: true, messages: true, repub: true}},
	{"claimmsg-pipe-msgs-repub", mapCfg{perID: "limit", readOutcome: true, pipelined: true, messages: true, repub: true}},
	{"claimmsg-noread-ff-msgs-nodedup", mapCfg{perID: "limit", fireForget: true, messages: true, noDedup: true}},
	{"claimlog-pipe", mapCfg{perID: "log", readOutcome: true, pipelined: true}},
	{"claimlog-pipe-msgs", mapCfg{perID: "log", readOutcome: true, pipelined: true, messages: true}},
	{"claimlog-noread-pipe-msgs-nodedup", mapCfg{perID: "log", pipelined: true, messages: true, noDedup: true}},
	// The claimlog mapping with what natsjobs's promises still need (the
	// outcome read, for cancels; the dependents marker read after the
	// create), without the dedup ID (the expected sequence does its work).
	{"claimlog-full", mapCfg{perID: "log", readOutcome: true, readMarker: true, pipelined: true, messages: true, noDedup: true}},
	{"claimlog-full-fetch", mapCfg{perID: "log", readOutcome: true, readMarker: true, pipelined: true, noDedup: true}},
	{"claimexp-full", mapCfg{perID: "expect", readOutcome: true, readMarker: true, pipelined: true, messages: true, noDedup: true}},
	{"journal", mapCfg{perID: "journal", readOutcome: true, pipelined: true, messages: true, noDedup: true}},
	{"journal-fetch", mapCfg{perID: "journal", readOutcome: true, pipelined: true, noDedup: true}},
}

func b64(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// emu is one candidate mapping on one server: a client side (its own
// connection, one watcher of the outcomes) and a worker side (another
// connection), as natsjobs has.
type emu struct {
	cfg mapCfg
	ns  string
	cjs jetstream.JetStream // the client's
	wjs jetstream.JetStream // the workers'

	jobs     jetstream.KeyValue // claims (client side; today only)
	results  jetstream.KeyValue // outcomes (worker side)
	outcomes *natsjobs.BatchGetter
	claims   *natsjobs.BatchGetter
	markers  *natsjobs.BatchGetter

	// The one watcher: waiters by ID, and a count of the outcomes seen
	// (target closes all when it is reached).
	mu      sync.Mutex
	waiters map[string]chan struct{}
	seen    atomic.Int64
	target  int64
	all     chan struct{}

	stops []func() // what Cleanup stops, last first
}

func (e *emu) subject(id string) string {
	switch e.cfg.perID {
	case "journal":
		return "$KV." + e.ns + "_jq." + b64(id) + ".run"
	case "limit":
		return e.ns + ".job." + b64(id)
	case "expect", "log":
		return e.ns + ".job." + b64(id) + ".run"
	}
	return e.ns + ".run"
}

// stream is the queue's stream.
func (e *emu) stream() string {
	if e.cfg.perID == "journal" {
		return "KV_" + e.ns + "_jq"
	}
	return e.ns + "_q"
}

// idSubjects is the wildcard of job id's subjects (claimexp, claimlog,
// journal).
func (e *emu) idSubjects(id string) string {
	if e.cfg.perID == "journal" {
		return "$KV." + e.ns + "_jq." + b64(id) + ".*"
	}
	return e.ns + ".job." + b64(id) + ".*"
}

// outcomeSubject is where job id's outcome goes.
func (e *emu) outcomeSubject(id string) string {
	if e.cfg.perID == "journal" {
		return "$KV." + e.ns + "_jq." + b64(id) + ".done"
	}
	return "$KV." + e.ns + "_results." + b64(id)
}

func (e *emu) filter() string {
	if e.cfg.perID == "journal" {
		return "$KV." + e.ns + "_jq.*.run"
	}
	if e.cfg.perID != "" {
		return e.ns + ".job.>"
	}
	return e.ns + ".run"
}

// newEmu makes the streams, buckets and the watcher of candidate cfg on a
// fresh server; the workers start with startWorkers. target is the number
// of outcomes after which all is closed.
func newEmu(b *testing.B, cfg mapCfg, target int) *emu {
	b.Helper()
	ts := startServer(b)
	ctx := wctx(b, time.Minute)
	e := &emu{cfg: cfg, ns: namespace(), cjs: ts.connect(b), wjs: ts.connect(b),
		waiters: map[string]chan struct{}{}, target: int64(target), all: make(chan struct{})}
	b.Cleanup(func() {
		for i := len(e.stops) - 1; i >= 0; i-- {
			e.stops[i]()
		}
	})
	if cfg.perID == "journal" {
		e.newJournal(b, ctx)
		return e
	}
	sc := jetstream.StreamConfig{Name: e.ns + "_q", Subjects: []string{e.filter()},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}
	switch cfg.perID {
	case "limit":
		sc.MaxMsgsPerSubject, sc.Discard, sc.DiscardNewPerSubject = 1, jetstream.DiscardNew, true
	case "log":
		sc.Retention, sc.MaxAge = jetstream.LimitsPolicy, 24*time.Hour
	case "":
		// As natsjobs's stream: schedules allowed, a subject for them.
		sc.Subjects = append(sc.Subjects, e.ns+".sched.*")
		sc.AllowMsgSchedules = true
	}
	_, err := e.cjs.CreateStream(ctx, sc)
	require.NoError(b, err)
	bucket := func(js jetstream.JetStream, name string) jetstream.KeyValue {
		kc := jetstream.KeyValueConfig{Bucket: e.ns + "_" + name, TTL: 24 * time.Hour, Storage: jetstream.FileStorage}
		if name == "results" && cfg.repub {
			kc.RePublish = &jetstream.RePublish{Source: "$KV." + kc.Bucket + ".>", Destination: e.ns + ".done.>"}
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
		require.NoError(b, err)
		return kv
	}
	e.results = bucket(e.wjs, "results")
	if cfg.claimKV {
		e.jobs = bucket(e.cjs, "jobs")
	}
	getter := func(kv jetstream.KeyValue) *natsjobs.BatchGetter {
		g, err := natsjobs.NewBatchGetter(ctx, e.wjs, kv)
		require.NoError(b, err)
		require.NotNil(b, g)
		e.stops = append(e.stops, g.Close)
		return g
	}
	if cfg.readOutcome {
		e.outcomes = getter(e.results)
	}
	if cfg.readClaim {
		wjobs, err := e.wjs.KeyValue(ctx, e.ns+"_jobs")
		require.NoError(b, err)
		e.claims = getter(wjobs)
	}
	if cfg.readMarker {
		e.markers = getter(bucket(e.wjs, "deps"))
	}
	if cfg.repub {
		prefix := e.ns + ".done." // the ">" of the source: the key
		sub, err := e.cjs.Conn().Subscribe(e.ns+".done.>", func(m *nats.Msg) {
			e.resolve(m.Subject[len(prefix):])
		})
		require.NoError(b, err)
		require.NoError(b, e.cjs.Conn().Flush())
		e.stops = append(e.stops, func() { _ = sub.Unsubscribe() })
		return e
	}
	// The one watcher, on the client's connection.
	ckv, err := e.cjs.KeyValue(ctx, e.ns+"_results")
	require.NoError(b, err)
	w, err := ckv.WatchAll(ctx, jetstream.UpdatesOnly())
	require.NoError(b, err)
	done := make(chan struct{})
	go func() { // owner: e; ends when Cleanup stops w
		defer close(done)
		for en := range w.Updates() {
			if en != nil {
				e.resolve(en.Key())
			}
		}
	}()
	e.stops = append(e.stops, func() { _ = w.Stop(); <-done })
	return e
}

// newJournal makes the journal candidate's stream (a KV bucket's, see
// mappingCandidates) and its watcher of outcomes.
func (e *emu) newJournal(b *testing.B, ctx context.Context) {
	b.Helper()
	kv, err := e.wjs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: e.ns + "_jq",
		History: 8, TTL: 24 * time.Hour, Storage: jetstream.FileStorage})
	require.NoError(b, err)
	if e.cfg.readOutcome {
		g, err := natsjobs.NewBatchGetter(ctx, e.wjs, kv)
		require.NoError(b, err)
		require.NotNil(b, g)
		e.stops = append(e.stops, g.Close)
		e.outcomes = g
	}
	ckv, err := e.cjs.KeyValue(ctx, e.ns+"_jq")
	require.NoError(b, err)
	w, err := ckv.Watch(ctx, "*.done", jetstream.UpdatesOnly())
	require.NoError(b, err)
	done := make(chan struct{})
	go func() { // owner: e; ends when Cleanup stops w
		defer close(done)
		for en := range w.Updates() {
			if en != nil {
				e.resolve(en.Key()[:len(en.Key())-len(".done")])
			}
		}
	}()
	e.stops = append(e.stops, func() { _ = w.Stop(); <-done })
}

// resolve hands the outcome of the job whose key is k to its waiter.
func (e *emu) resolve(k string) {
	id, _ := base64.RawURLEncoding.DecodeString(k)
	e.mu.Lock()
	ch := e.waiters[string(id)]
	delete(e.waiters, string(id))
	e.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	if e.seen.Add(1) == e.target {
		close(e.all)
	}
}

// claimRecord and outcomeRecord are about the size of natsjobs's records.
type claimRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Queue     string    `json:"queue"`
	Attempts  int       `json:"attempts"`
	Submitted time.Time `json:"submitted"`
	Nonce     string    `json:"nonce,omitempty"`
}

type outcomeRecord struct {
	ID       string    `json:"id"`
	OK       bool      `json:"ok"`
	Value    []byte    `json:"value,omitempty"`
	Attempts int       `json:"attempts"`
	Worker   string    `json:"worker,omitempty"`
	Finished time.Time `json:"finished"`
}

// submit stores job id (payload n) as the candidate does.
func (e *emu) submit(ctx context.Context, id string, n int) error {
	m := nats.NewMsg(e.subject(id))
	m.Data = fmt.Append(nil, n)
	m.Header.Set("Qp-Id", id)
	m.Header.Set("Qp-Name", "noop")
	m.Header.Set("Qp-Attempt", "1")
	m.Header.Set("Qp-Attempts", "1")
	switch e.cfg.perID {
	case "limit":
		var opts []jetstream.PublishOpt
		if !e.cfg.noDedup {
			opts = append(opts, jetstream.WithMsgID(id+"#1"))
		}
		_, err := e.cjs.PublishMsg(ctx, m, opts...)
		return err
	case "expect", "log", "journal":
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequenceForSubject(0, e.idSubjects(id))}
		if !e.cfg.noDedup {
			opts = append(opts, jetstream.WithMsgID(id+"#1"))
		}
		_, err := e.cjs.PublishMsg(ctx, m, opts...)
		return err
	}
	// today: the message and the claim at once.
	nonce := nuid.Next()
	m.Header.Set("Qp-Claim", nonce)
	f, err := e.cjs.PublishMsgAsync(m, jetstream.WithMsgID(id+"#1#"+nonce))
	if err != nil {
		return err
	}
	c, _ := json.Marshal(claimRecord{ID: id, Name: "noop", Queue: "default", Attempts: 1, Submitted: time.Now(), Nonce: nonce})
	_, cerr := e.jobs.Create(ctx, b64(id), c)
	select {
	case <-f.Ok():
	case err = <-f.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	return errors.Join(cerr, err)
}

// submitWait submits job id and waits for its outcome through the watcher.
func (e *emu) submitWait(ctx context.Context, id string, n int) error {
	ch := make(chan struct{})
	e.mu.Lock()
	e.waiters[id] = ch
	e.mu.Unlock()
	if err := e.submit(ctx, id, n); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pending is an outcome create sent and its message, waiting for the
// create's PubAck before the ack (pipelined).
type pending struct {
	f jetstream.PubAckFuture
	m jetstream.Msg
}

// startWorkers starts the worker side with slots concurrent jobs; Cleanup
// stops it.
func (e *emu) startWorkers(b *testing.B, slots int) {
	b.Helper()
	ctx := wctx(b, time.Minute)
	cons, err := e.wjs.CreateOrUpdateConsumer(ctx, e.stream(), jetstream.ConsumerConfig{Durable: "workers",
		FilterSubject: e.filter(), AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxAckPending: 1000, MaxDeliver: -1})
	require.NoError(b, err)
	var acks chan pending
	var ackerDone chan struct{}
	var markerReads sync.WaitGroup
	if e.cfg.pipelined {
		acks = make(chan pending, 1024)
		ackerDone = make(chan struct{})
		go func() { // owner: e; ends when the workers have stopped and acks is closed
			defer close(ackerDone)
			for p := range acks {
				select {
				case <-p.f.Ok():
					if e.markers == nil {
						_ = p.m.Ack()
						continue
					}
					// The dependents marker read must follow the create:
					// on a goroutine of its own, not to hold the others.
					markerReads.Add(1)
					go func() {
						defer markerReads.Done()
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						if _, _, err := e.markers.Get(ctx, b64(p.m.Headers().Get("Qp-Id"))); err != nil {
							_ = p.m.NakWithDelay(time.Second)
							return
						}
						_ = p.m.Ack()
					}()
				case err := <-p.f.Err():
					if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) {
						_ = p.m.Ack() // another execution recorded first
					} else {
						_ = p.m.NakWithDelay(time.Second)
					}
				}
			}
		}()
	}
	handle := func(m jetstream.Msg) { e.handle(m, acks) }
	var wg sync.WaitGroup
	var stop func()
	if e.cfg.messages {
		it, err := cons.Messages(jetstream.PullMaxMessages(slots))
		require.NoError(b, err)
		for range slots {
			wg.Add(1)
			go func() { // owner: e; ends when stop stops it
				defer wg.Done()
				for {
					m, err := it.Next()
					if err != nil {
						return
					}
					handle(m)
				}
			}()
		}
		stop = it.Stop
	} else {
		// As natsjobs's fetch loop: fetch as many as there are free slots,
		// run each on a goroutine of its own that frees its slot.
		quit := make(chan struct{})
		sem := make(chan struct{}, slots)
		wg.Add(1)
		go func() { // owner: e; ends when stop closes quit
			defer wg.Done()
			for {
				select {
				case sem <- struct{}{}:
				case <-quit:
					return
				}
				n := 1
			more:
				for n < slots {
					select {
					case sem <- struct{}{}:
						n++
					default:
						break more
					}
				}
				batch, err := cons.Fetch(n, jetstream.FetchMaxWait(300*time.Millisecond))
				if err == nil {
					for m := range batch.Messages() {
						n--
						wg.Add(1)
						go func() {
							defer wg.Done()
							defer func() { <-sem }()
							handle(m)
						}()
					}
				}
				for range n {
					<-sem
				}
				select {
				case <-quit:
					return
				default:
				}
			}
		}()
		stop = func() { close(quit) }
	}
	e.stops = append(e.stops, func() {
		stop()
		wg.Wait()
		if acks != nil {
			close(acks)
			<-ackerDone
			markerReads.Wait()
		}
	})
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// handle is one delivery, as the candidate's worker would take it.
func (e *emu) handle(m jetstream.Msg, acks chan<- pending) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := m.Headers().Get("Qp-Id")
	k := b64(id)
	var claimDone chan error
	if e.claims != nil {
		claimDone = make(chan error, 1)
		go func() {
			v, ok, err := e.claims.Get(ctx, k)
			if err == nil && ok {
				var c claimRecord
				if json.Unmarshal(v, &c) == nil && c.Nonce != m.Headers().Get("Qp-Claim") {
					err = errors.New("stray")
				}
			}
			claimDone <- err
		}()
	}
	if e.outcomes != nil {
		okey := k
		if e.cfg.perID == "journal" {
			okey = k + ".done"
		}
		if _, ok, err := e.outcomes.Get(ctx, okey); err != nil || ok {
			_ = m.Ack() // finished already (never, here)
			return
		}
	}
	if claimDone != nil {
		if err := <-claimDone; err != nil {
			_ = m.Ack()
			return
		}
	}
	out := m.Data() // the no-op
	r, _ := json.Marshal(outcomeRecord{ID: id, OK: true, Value: out, Attempts: 1, Worker: "w", Finished: time.Now()})
	if e.cfg.fireForget {
		om := nats.NewMsg(e.outcomeSubject(id))
		om.Data = r
		om.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if err := e.wjs.Conn().PublishMsg(om); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
		return
	}
	if acks != nil {
		om := nats.NewMsg(e.outcomeSubject(id))
		om.Data = r
		expect := jetstream.WithExpectLastSequencePerSubject(0)
		if e.cfg.perID == "journal" {
			md, err := m.Metadata()
			if err != nil {
				_ = m.NakWithDelay(time.Second)
				return
			}
			// Nothing under the ID since this message: no outcome, no
			// newer attempt, no dependents marker (else the slow path).
			expect = jetstream.WithExpectLastSequenceForSubject(md.Sequence.Stream, e.idSubjects(id))
		}
		f, err := e.wjs.PublishMsgAsync(om, expect)
		if err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		acks <- pending{f, m}
		return
	}
	if _, err := e.results.Create(ctx, k, r); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		_ = m.NakWithDelay(time.Second)
		return
	}
	if e.markers != nil {
		if _, _, err := e.markers.Get(ctx, k); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
	}
	_ = m.Ack()
}

// mapRates runs raw (the raw probe) and then cand, each for n jobs, and
// reports both rates and cand's ratio to raw.
func mapRates(b *testing.B, raw, cand func() float64) {
	r := raw()
	c := cand()
	b.ReportMetric(c, "jobs/s")
	b.ReportMetric(r, "raw-jobs/s")
	b.ReportMetric(c/r, "x-raw")
}

// rawBurnDown is BenchmarkBurnDown's raw probe (publish n jobs to a
// work-queue stream from benchGoroutines goroutines, then as many consume
// and ack them) on a server of its own (left idle until Cleanup: stopping
// it would leave its connections reconnecting in the background).
func rawBurnDown(b *testing.B, n int) float64 {
	ts, js := benchServer(b)
	ctx := wctx(b, 10*time.Minute)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "raw", Subjects: []string{"raw.run"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	require.NoError(b, err)
	start := time.Now()
	parallelN(n, benchGoroutines, func(i int) {
		m := nats.NewMsg("raw.run")
		m.Data = fmt.Append(nil, i)
		m.Header.Set("Qp-Id", strconv.Itoa(i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			b.Error(err)
		}
	})
	cons, err := ts.connect(b).CreateOrUpdateConsumer(ctx, "raw", jetstream.ConsumerConfig{Durable: "workers",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	require.NoError(b, err)
	it, err := cons.Messages(jetstream.PullMaxMessages(benchGoroutines))
	require.NoError(b, err)
	var done atomic.Int64
	all := make(chan struct{})
	var wg sync.WaitGroup
	for range benchGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				_ = m.Ack()
				if done.Add(1) == int64(n) {
					close(all)
				}
			}
		}()
	}
	select {
	case <-all:
	case <-ctx.Done():
		b.Fatal("watchdog: raw burn-down did not finish")
	}
	d := time.Since(start)
	it.Stop()
	wg.Wait()
	return float64(n) / d.Seconds()
}

// rawSubmitWait is BenchmarkSubmitWait's raw probe (newRawProbe) for n
// jobs on a server of its own (its consumers and watcher stopped when it
// returns, the server left idle until Cleanup).
func rawSubmitWait(b *testing.B, n int) float64 {
	ts := startServer(b)
	p := newRawProbe(b, ts, benchGoroutines)
	defer p.stop()
	ctx := wctx(b, 10*time.Minute)
	start := time.Now()
	parallelN(n, benchGoroutines, func(i int) {
		if err := p.submitWait(ctx, strconv.Itoa(i)); err != nil {
			b.Error(err)
		}
	})
	return float64(n) / time.Since(start).Seconds()
}

// natsjobsBurnDown and natsjobsSubmitWait are BenchmarkBurnDown's and
// BenchmarkSubmitWait's natsjobs halves.
func natsjobsBurnDown(b *testing.B, n int) float64 {
	ts, js := benchServer(b)
	ns := natsjobs.WithNamespace(namespace())
	reg, noop := noopRegistry()
	c := newClient(b, js, ns)
	ctx := wctx(b, 10*time.Minute)
	start := time.Now()
	futs := make([]*qpool.Future[int], n)
	parallelN(n, benchGoroutines, func(i int) { futs[i] = noop.Submit(ctx, c, strconv.Itoa(i), i) })
	newWorker(b, ts.connect(b), reg, ns, natsjobs.WithConcurrency(benchGoroutines))
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func natsjobsSubmitWait(b *testing.B, n int) float64 {
	ts, js := benchServer(b)
	ns := natsjobs.WithNamespace(namespace())
	reg, noop := noopRegistry()
	newWorker(b, ts.connect(b), reg, ns, natsjobs.WithConcurrency(benchGoroutines))
	c := newClient(b, js, ns)
	ctx := wctx(b, 10*time.Minute)
	start := time.Now()
	parallelN(n, benchGoroutines, func(i int) {
		if _, err := noop.Submit(ctx, c, strconv.Itoa(i), i).Wait(ctx); err != nil {
			b.Error(err)
		}
	})
	return float64(n) / time.Since(start).Seconds()
}

func BenchmarkMappingBurnDown(b *testing.B) {
	b.Run("natsjobs", func(b *testing.B) {
		mapRates(b, func() float64 { return rawBurnDown(b, b.N) }, func() float64 { return natsjobsBurnDown(b, b.N) })
	})
	for _, c := range mappingCandidates {
		b.Run(c.name, func(b *testing.B) {
			mapRates(b, func() float64 { return rawBurnDown(b, b.N) }, func() float64 {
				e := newEmu(b, c.cfg, b.N)
				ctx := wctx(b, 10*time.Minute)
				start := time.Now()
				parallelN(b.N, benchGoroutines, func(i int) {
					if err := e.submit(ctx, strconv.Itoa(i), i); err != nil {
						b.Error(err)
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "submit/s")
				e.startWorkers(b, benchGoroutines)
				select {
				case <-e.all:
				case <-ctx.Done():
					b.Fatalf("watchdog: %d of %d outcomes", e.seen.Load(), b.N)
				}
				return float64(b.N) / time.Since(start).Seconds()
			})
		})
	}
}

func BenchmarkMappingSubmitWait(b *testing.B) {
	b.Run("natsjobs", func(b *testing.B) {
		mapRates(b, func() float64 { return rawSubmitWait(b, b.N) }, func() float64 { return natsjobsSubmitWait(b, b.N) })
	})
	for _, c := range mappingCandidates {
		b.Run(c.name, func(b *testing.B) {
			mapRates(b, func() float64 { return rawSubmitWait(b, b.N) }, func() float64 {
				e := newEmu(b, c.cfg, b.N)
				e.startWorkers(b, benchGoroutines)
				ctx := wctx(b, 10*time.Minute)
				start := time.Now()
				parallelN(b.N, benchGoroutines, func(i int) {
					if err := e.submitWait(ctx, strconv.Itoa(i), i); err != nil {
						b.Error(err)
					}
				})
				return float64(b.N) / time.Since(start).Seconds()
			})
		})
	}
}

// TestMappingPerIDSubject checks what the claimmsg and claimexp
// candidates rely on, on this server: a WorkQueue stream with
// MaxMsgsPerSubject 1, Discard New and DiscardNewPerSubject refuses a
// second message on a subject while one is pending (a duplicate
// submission, but also a retry published before the current attempt is
// acked); once the pending one is acked the subject takes a message again,
// so uniqueness beyond a job's life needs its outcome. An expected last
// sequence for the subject <id>.* refuses a second submission too, lets a
// retry expecting the current attempt's sequence in, and covers a held
// message on a sibling subject. On a stream with Limits retention
// (claimlog) an ack leaves the message, so the ID stays refused.
func TestMappingPerIDSubject(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ctx := wctx(t, 30*time.Second)

	publish := func(subj string, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
		m := nats.NewMsg(subj)
		m.Data = []byte("x")
		return js.PublishMsg(ctx, m, opts...)
	}
	ackOne := func(stream, filter string) {
		t.Helper()
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "w" + nuid.Next(),
			FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err)
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			require.NoError(t, m.DoubleAck(ctx))
			n++
		}
		require.NoError(t, batch.Error())
		require.Equal(t, 1, n)
		require.NoError(t, js.DeleteConsumer(ctx, stream, cons.CachedInfo().Name))
	}

	t.Run("limit", func(t *testing.T) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "lim", Subjects: []string{"lim.job.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
			MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true})
		require.NoError(t, err)
		_, err = publish("lim.job.a")
		require.NoError(t, err)
		_, err = publish("lim.job.a") // a duplicate submission, or a retry before the ack
		require.ErrorContains(t, err, "maximum messages per subject exceeded")
		_, err = publish("lim.job.b") // another ID
		require.NoError(t, err)
		ackOne("lim", "lim.job.a")
		_, err = publish("lim.job.a") // after the ack: taken again
		require.NoError(t, err)
	})

	t.Run("expect", func(t *testing.T) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "exp", Subjects: []string{"exp.job.>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
		require.NoError(t, err)
		fresh := jetstream.WithExpectLastSequenceForSubject(0, "exp.job.a.*")
		pa, err := publish("exp.job.a.run", fresh)
		require.NoError(t, err)
		_, err = publish("exp.job.a.run", fresh) // a duplicate submission
		require.True(t, isWrongLastSeq(err), "%v", err)
		// A retry, expecting the pending attempt, goes in.
		pr, err := publish("exp.job.a.run", jetstream.WithExpectLastSequenceForSubject(pa.Sequence, "exp.job.a.*"))
		require.NoError(t, err)
		ackOne("exp", "exp.job.a.run") // the first attempt
		_, err = publish("exp.job.a.run", fresh)
		require.True(t, isWrongLastSeq(err), "the retry is pending: %v", err)
		ackOne("exp", "exp.job.a.run") // the retry
		_, err = publish("exp.job.a.run", fresh)
		require.NoError(t, err, "after the last ack the ID is taken again: uniqueness beyond needs the outcome")
		// A held job (waiting for dependencies) on a sibling subject blocks
		// a submission of its ID too.
		_, err = publish("exp.job.h.held", jetstream.WithExpectLastSequenceForSubject(0, "exp.job.h.*"))
		require.NoError(t, err)
		_, err = publish("exp.job.h.run", jetstream.WithExpectLastSequenceForSubject(0, "exp.job.h.*"))
		require.True(t, isWrongLastSeq(err), "%v", err)
		_ = pr
	})

	t.Run("log", func(t *testing.T) {
		st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "log", Subjects: []string{"log.job.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: time.Hour, Storage: jetstream.FileStorage})
		require.NoError(t, err)
		fresh := jetstream.WithExpectLastSequenceForSubject(0, "log.job.a.*")
		pa, err := publish("log.job.a.run", fresh)
		require.NoError(t, err)
		_, err = publish("log.job.a.run", fresh)
		require.True(t, isWrongLastSeq(err), "%v", err)
		ackOne("log", "log.job.a.run")
		_, err = publish("log.job.a.run", fresh)
		require.True(t, isWrongLastSeq(err), "acked, still the claim: %v", err)
		_, err = publish("log.job.a.run", jetstream.WithExpectLastSequenceForSubject(pa.Sequence, "log.job.a.*"))
		require.NoError(t, err, "a retry expecting the last attempt")
		info, err := st.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(2), info.State.Msgs, "the ack removed nothing")
	})

	t.Run("journal", func(t *testing.T) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "jnl", Subjects: []string{"jnl.job.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: time.Hour, Storage: jetstream.FileStorage})
		require.NoError(t, err)
		ids := func(id string) string { return "jnl.job." + id + ".*" }
		// No marker: the outcome expecting the job's message goes in, and
		// a second outcome (another execution, a cancel) is refused.
		pa, err := publish("jnl.job.a.run", jetstream.WithExpectLastSequenceForSubject(0, ids("a")))
		require.NoError(t, err)
		_, err = publish("jnl.job.a.done", jetstream.WithExpectLastSequenceForSubject(pa.Sequence, ids("a")))
		require.NoError(t, err)
		_, err = publish("jnl.job.a.done", jetstream.WithExpectLastSequenceForSubject(pa.Sequence, ids("a")))
		require.True(t, isWrongLastSeq(err), "a second outcome: %v", err)
		// A dependents marker written before the outcome makes the fast
		// path refuse: the finisher learns of the dependents.
		pb, err := publish("jnl.job.b.run", jetstream.WithExpectLastSequenceForSubject(0, ids("b")))
		require.NoError(t, err)
		_, err = publish("jnl.job.b.dep")
		require.NoError(t, err)
		_, err = publish("jnl.job.b.done", jetstream.WithExpectLastSequenceForSubject(pb.Sequence, ids("b")))
		require.True(t, isWrongLastSeq(err), "a marker came first: %v", err)
	})
}
