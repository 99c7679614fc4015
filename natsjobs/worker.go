package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/qpool/qpool"
)

// consumerName is the durable pull consumer of a queue's stream, shared
// by every worker of the queue.
const consumerName = "workers"

// fetchWait bounds one pull request: how long Shutdown may wait for the
// fetch loop to notice it.
const fetchWait = 300 * time.Millisecond

// phaseTimeout bounds the server work of one delivery before the handler
// runs, and again after it (each operation is bounded by opTimeout too).
// Releasing the dependents of a failed job of a long chain is the longest.
const phaseTimeout = 2 * time.Minute

// retryDelay is how long a job waits after a worker could not write its
// outcome (the server was unreachable) before it is delivered again.
const retryDelay = time.Second

// Worker takes jobs from its queue's durable consumer and runs those whose
// names its registry knows on a local [qpool.Pool], at most
// [WithConcurrency] at once. Delivery is at least once: a job may run more
// than once (its worker died, or lost touch with the server for longer
// than AckWait, or shut down while it ran), but only the first outcome
// recorded counts. Make handlers idempotent. Stop it with Shutdown.
type Worker struct {
	s    *store
	cfg  config
	reg  *Registry
	cons jetstream.Consumer
	pool *qpool.Pool

	slots     chan struct{} // one token per running or fetched job
	stopFetch chan struct{}
	fetchDone chan struct{}
	stopHB    chan struct{}
	hbDone    chan struct{}
	cf        *feed          // the cancels bucket
	outcomes  *batchGetter   // batched reads of the results bucket; nil: one get each (lastget.go)
	claims    *batchGetter   // batched reads of the jobs bucket (see stray); nil: one get each
	inflight  sync.WaitGroup // handle calls under way
	shutOnce  sync.Once
	// back ends (cause ErrClosed) when Shutdown hands messages back: it
	// ends the waits of a message that is no longer a run (see
	// reannounceIfStale), as a run's context ends those of a run.
	back     context.Context
	stopBack context.CancelCauseFunc

	mu          sync.Mutex
	handingBack bool                       // guarded by mu: set by handBack; no run begins after it (see begin)
	running     map[*run]struct{}          // guarded by mu
	finishing   map[jetstream.Msg]struct{} // guarded by mu: messages whose outcome is being recorded and released (see keepAlive)
	ents        map[string]*entangled      // guarded by mu: the handlers' entanglements (entangle.go)
	entsClosed  bool                       // guarded by mu: Shutdown closed them
	canceled    map[string]cancelMark      // guarded by mu: cancel markers seen lately

	stats workerStats
}

// cancelMark is a cancel marker as a worker remembers it: when it came,
// and the nonce of the submission it cancels ("" from a Cancel of a job
// without one, or of an older version: it cancels any submission of the
// ID). The nonce keeps a cancel from reaching a later submission of the
// ID, made once the cancelled one's records expired (found by an attack:
// TestAttackResubmitAfterCancelExpired, a worker that had seen the cancel
// dropped the new submission's message for a minute, and its future never
// resolved).
type cancelMark struct {
	at    time.Time
	nonce string
}

// cancels reports whether a cancel marked nonce cancels a run of the
// submission with nonce.
func (c cancelMark) cancels(nonce string) bool {
	return c.nonce == "" || nonce == "" || c.nonce == nonce
}

// run is one job being run by this worker.
type run struct {
	id         string
	nonce      string // its submission's, if it has one
	msg        jetstream.Msg
	cancel     context.CancelCauseFunc // set before the run is visible in running
	canceled   bool                    // guarded by Worker.mu: a cancel marker came
	handedBack bool                    // guarded by Worker.mu: Shutdown nak'ed the message
}

type workerStats struct {
	ran, succeeded, failed, retried, dropped, unhandled, redelivered atomic.Int64
}

// WorkerStats counts what a worker did since it started.
type WorkerStats struct {
	// Ran counts the handler calls.
	Ran int64
	// Succeeded and Failed count the outcomes this worker recorded.
	Succeeded, Failed int64
	// Retried counts failed attempts handed to a later attempt.
	Retried int64
	// Dropped counts deliveries of jobs that had an outcome already (a
	// duplicate delivery, a cancelled job), and the messages of duplicate
	// submissions that reached the worker before their client deleted them
	// (see Handle.Submit): acknowledged without running.
	Dropped int64
	// Unhandled counts deliveries of jobs whose name the registry did not
	// know, put back for another worker.
	Unhandled int64
	// Redelivered counts deliveries that were not a message's first (the
	// server's count, which does not say why). Some follow a delivery that
	// ran the job and ended without an acknowledgement: its worker died,
	// lost the server for longer than AckWait, or shut down while it ran
	// (the job may run again). Others follow a delivery that a worker put
	// back on purpose without running the job: an attempt that came before
	// its time (a scheduled message fires up to a second early, a short
	// backoff is published at once), an outcome lookup or write that failed
	// (the server was unreachable), a job handed back by Shutdown before it
	// began. So Redelivered is an upper bound on the jobs run again, not a
	// count of them.
	Redelivered int64
}

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{
		Ran: w.stats.ran.Load(), Succeeded: w.stats.succeeded.Load(), Failed: w.stats.failed.Load(),
		Retried: w.stats.retried.Load(), Dropped: w.stats.dropped.Load(), Unhandled: w.stats.unhandled.Load(),
		Redelivered: w.stats.redelivered.Load(),
	}
}

// NewWorker opens the buckets and its queue's stream and durable consumer
// (making them if no process has) and starts taking jobs. ctx bounds the
// setup only; stop the worker with [Worker.Shutdown].
func NewWorker(ctx context.Context, js jetstream.JetStream, reg *Registry, opts ...Option) (*Worker, error) {
	cfg := newConfig(opts)
	if reg == nil {
		return nil, fmt.Errorf("%w: nil registry", ErrInvalidOption)
	}
	if !nameRE.MatchString(cfg.queue) {
		return nil, fmt.Errorf("%w: queue %q", ErrInvalidOption, cfg.queue)
	}
	if cfg.name == "" {
		host, _ := os.Hostname()
		cfg.name = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), nuid.Next()[:8])
	}
	s, err := openStore(ctx, js, cfg.common)
	if err != nil {
		return nil, err
	}
	st, err := s.ensureStream(ctx, cfg.queue)
	if err != nil {
		return nil, err
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerName,
		FilterSubject: s.runSubject(cfg.queue),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.ackWait,
		MaxAckPending: cfg.maxAckPending,
		MaxDeliver:    -1, // counted by the worker: see WithMaxDeliveries
	})
	if err != nil {
		return nil, fmt.Errorf("natsjobs: consumer of queue %q: %w", cfg.queue, err)
	}
	w := &Worker{
		s: s, cfg: cfg, reg: reg, cons: cons,
		pool:      qpool.NewPool(qpool.WithWorkers(cfg.concurrency), qpool.WithQueueSize(cfg.concurrency)),
		slots:     make(chan struct{}, cfg.concurrency),
		stopFetch: make(chan struct{}), fetchDone: make(chan struct{}),
		stopHB: make(chan struct{}), hbDone: make(chan struct{}),
		running: map[*run]struct{}{}, canceled: map[string]cancelMark{}, finishing: map[jetstream.Msg]struct{}{},
		ents: map[string]*entangled{},
	}
	w.back, w.stopBack = context.WithCancelCause(context.Background())
	closeReads := func() {
		w.outcomes.close()
		w.claims.close()
		s.markers.close()
	}
	if w.outcomes, err = newBatchGetter(ctx, js, s.results); err == nil {
		if w.claims, err = newBatchGetter(ctx, js, s.jobs); err == nil {
			s.markers, err = newBatchGetter(ctx, js, s.deps)
		}
	}
	if err != nil {
		closeReads()
		_ = w.pool.Close()
		return nil, fmt.Errorf("natsjobs: batched reads: %w", err)
	}
	if w.cf, err = startFeed(ctx, s.cancels, js.Conn(), w.onCancel); err != nil {
		closeReads()
		_ = w.pool.Close()
		return nil, fmt.Errorf("natsjobs: watch cancels: %w", err)
	}
	// Owner of the two: the worker. They end in Shutdown, which waits for
	// each.
	go w.fetchLoop()
	go w.heartbeats()
	return w, nil
}

// Name returns the worker's name, as the records of its jobs give it.
func (w *Worker) Name() string { return w.cfg.name }

// fetchLoop pulls as many jobs as the worker has free slots, and hands
// each to the pool as it arrives.
func (w *Worker) fetchLoop() {
	defer close(w.fetchDone)
	for {
		select {
		case w.slots <- struct{}{}:
		case <-w.stopFetch:
			return
		}
		n := 1
	more:
		for n < cap(w.slots) {
			select {
			case w.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := w.cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			w.freeSlots(n)
			select {
			case <-w.stopFetch:
				return
			case <-time.After(100 * time.Millisecond): // server unreachable: try again
			}
			continue
		}
		for m := range batch.Messages() {
			n--
			w.dispatch(m)
		}
		w.freeSlots(n)
		select {
		case <-w.stopFetch:
			return
		default:
		}
	}
}

func (w *Worker) freeSlots(n int) {
	for range n {
		<-w.slots
	}
}

// dispatch runs m on the pool. Only the fetch loop calls it, and Shutdown
// waits for the loop to end before it waits for the jobs: a job dispatched
// late is handed back by begin if Shutdown is handing back by then.
func (w *Worker) dispatch(m jetstream.Msg) {
	w.inflight.Add(1)
	err := w.pool.Go(func() {
		defer func() { <-w.slots }()
		defer w.inflight.Done()
		w.handle(m)
	})
	if err != nil { // cannot happen: the pool closes after the fetch loop ends
		_ = m.Nak()
		w.inflight.Done()
		<-w.slots
	}
}

// heartbeats tells the server, every third of AckWait, that the running
// jobs are alive, so a long job stays with its worker while it lives.
func (w *Worker) heartbeats() {
	defer close(w.hbDone)
	t := time.NewTicker(max(w.cfg.ackWait/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-w.stopHB:
			return
		case <-t.C:
		}
		w.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(w.running)+len(w.finishing))
		for r := range w.running {
			if !r.handedBack {
				msgs = append(msgs, r.msg)
			}
		}
		for m := range w.finishing {
			msgs = append(msgs, m)
		}
		w.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// keepAlive has the heartbeats cover m until the returned function is
// called. A run leaves the running set when its function returns, but
// its message stays unacknowledged while the outcome is recorded and the
// dependents released, which for a long failed chain takes much longer
// than AckWait: without heartbeats the server would give the message to
// another worker, which would walk the chain again, and again after each
// AckWait (TestLongReleaseKeepsItsMessage). Invariant: every message this
// worker holds unacknowledged is in running (not handed back) or in
// finishing, except for the moments between the two and around the
// short operations before a run begins.
func (w *Worker) keepAlive(m jetstream.Msg) (done func()) {
	w.mu.Lock()
	w.finishing[m] = struct{}{}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.finishing, m)
		w.mu.Unlock()
	}
}

// cancelMemory is how long a cancel marker is remembered for a job that
// was not running here when it came: it only needs to cover the moment
// between a worker's look for an outcome and its registration of the job.
const cancelMemory = time.Minute

// onCancel runs on the cancel feed's goroutine for each cancel marker: it
// cancels the context of the job's runs here, and remembers the marker
// for a run about to start (see begin).
func (w *Worker) onCancel(e jetstream.KeyValueEntry) {
	id, ok := unkey(e.Key())
	if !ok {
		return
	}
	now := time.Now()
	mark := cancelMark{at: now, nonce: string(e.Value())}
	var cancels []context.CancelCauseFunc
	w.mu.Lock()
	for k, c := range w.canceled {
		if now.Sub(c.at) > cancelMemory {
			delete(w.canceled, k)
		}
	}
	w.canceled[id] = mark
	for r := range w.running {
		if r.id == id && mark.cancels(r.nonce) {
			r.canceled = true
			cancels = append(cancels, r.cancel)
		}
	}
	w.mu.Unlock()
	for _, c := range cancels {
		c(context.Canceled)
	}
}

// begin registers a run of job id, unless a cancel marker for it came
// (then it returns nil, false) or Shutdown is handing back (nil, true).
//
// Invariant (a cancelled running job learns of it): Client.Cancel records
// the outcome, then writes the marker. The worker registers the run here,
// then looks for an outcome. If it finds none, the outcome (and so the
// marker) came after the registration, so the watcher finds the run; and
// if the watcher handled the marker before, the canceled map has it.
//
// Invariant (no job begins once Shutdown hands back): handBack sets
// handingBack and takes the runs registered, under mu; begin looks at the
// flag and registers under mu. So a run registered first is handed back
// by handBack, and one that comes later sees the flag and goes back
// itself; none runs past Shutdown's deadline. Only handBack sets the flag.
func (w *Worker) begin(id, nonce string, m jetstream.Msg, cancel context.CancelCauseFunc) (r *run, handBack bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.handingBack {
		return nil, true
	}
	if c, ok := w.canceled[id]; ok && c.cancels(nonce) {
		return nil, false
	}
	r = &run{id: id, nonce: nonce, msg: m, cancel: cancel}
	w.running[r] = struct{}{}
	return r, false
}

// end unregisters r and reports whether it was handed back or cancelled:
// then its outcome is not this worker's to record.
func (w *Worker) end(r *run) (handedBack, canceled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, r)
	return r.handedBack, r.canceled
}

// handle takes one delivery of a job to its end: an outcome recorded (and
// its dependents released) then the message acknowledged, a retry
// published then the message acknowledged, or the message given back.
func (w *Worker) handle(m jetstream.Msg) {
	// Every server operation is bounded, so that no call can hold a slot
	// for ever (a KV listing whose consumer a server restart lost waits for
	// its heartbeats to notice); the message comes back if one fails.
	ctx, cancelOps := context.WithTimeout(context.Background(), phaseTimeout)
	defer cancelOps()
	j, attempt, err := jobFromHeaders(m.Headers(), w.cfg.queue)
	if err != nil {
		w.cfg.logger.Error("natsjobs: dropping malformed message", "err", err)
		_ = m.Term()
		return
	}
	if nb := notBeforeOf(m.Headers()); time.Until(nb) > 0 {
		// Early: a scheduled message fires up to a second early, and a
		// short backoff is published straight to the queue.
		_ = m.NakWithDelay(time.Until(nb))
		return
	}
	md, err := m.Metadata()
	if err == nil && md.NumDelivered > 1 {
		w.stats.redelivered.Add(1)
	}
	// The handler's context carries the worker, for Entanglement.
	runCtx, cancel := context.WithCancelCause(context.WithValue(context.Background(), workerCtxKey{}, w))
	defer cancel(nil)
	if w.cfg.beforeBegin != nil {
		w.cfg.beforeBegin(j.ID)
	}
	r, handBack := w.begin(j.ID, j.Nonce, m, cancel)
	if handBack {
		_ = m.Nak() // for immediate redelivery to another worker
		return
	}
	if r == nil {
		w.stats.dropped.Add(1)
		_ = m.Ack() // cancelled: the canceller recorded the outcome
		return
	}
	// A first attempt whose submission has a nonce (Client.submit) is
	// checked against the claim, read at the same time as the outcome;
	// later attempts were published by a worker that checked it.
	nonce := ""
	if attempt == 1 {
		nonce = j.Nonce
	}
	var claim *batchRead
	if nonce != "" && w.claims != nil {
		claim = w.claims.start(key(j.ID))
	}
	// Young: delivered first, or stored less than claimWait ago by the
	// server's clock (a first delivery handed back, or naked after an
	// error, must wait as well: TestDuplicateRedeliveredBeforeTheClaim).
	young := md == nil || md.NumDelivered <= 1 || time.Since(md.Timestamp) < claimWait
	if prev, err := w.outcome(ctx, j.ID); err == nil || !errors.Is(err, jetstream.ErrKeyNotFound) {
		w.end(r)
		if err != nil {
			_ = m.NakWithDelay(retryDelay)
			return
		}
		// Finished already: a duplicate delivery, a cancelled job, a
		// redelivery after the recorder died before it acknowledged, or
		// the message of a submission made after the job's claim expired
		// and before its outcome did. The recorder may not have released
		// the dependents: do it again. The last case's submission waits
		// for an outcome recorded before it: announce it again.
		w.stats.dropped.Add(1)
		defer w.keepAlive(m)()
		err := w.s.release(ctx, prev)
		if err == nil && nonce != "" && prev.Nonce != nonce {
			err = w.reannounceIfStale(ctx, m, claim, j.ID, nonce, young)
		}
		if errors.Is(err, errOutcomeGone) || errors.Is(err, ErrClosed) {
			// The job has no outcome now (its next delivery runs it), or
			// Shutdown is handing back: at once, to another worker.
			_ = m.Nak()
			return
		}
		w.ackAfter(m, err)
		return
	}
	if nonce != "" {
		stray, found, err := w.stray(ctx, runCtx, m, claim, j.ID, nonce, young)
		if err == nil && !stray && !found {
			// No claim, even after the wait: the claim expired (or this
			// submission's create failed). Look for an outcome once more:
			// one recorded during the wait means the job is done, and this
			// may be a refused duplicate's message (found by an attack:
			// TestAttackDuplicateDeliveredAfterClaimExpiry).
			if _, gerr := w.s.getResult(ctx, j.ID); gerr == nil {
				stray = true
			} else if !errors.Is(gerr, jetstream.ErrKeyNotFound) {
				err = gerr
			} else {
				// And a refused duplicate's message, taken before its
				// client retracted it, is gone from the stream by the
				// end of the wait (TestAttackExpiryGapHammer: one ran).
				stray, err = w.retracted(ctx, m)
			}
		}
		if err != nil || stray {
			if handedBack, canceled := w.end(r); handedBack || canceled {
				if canceled {
					_ = m.Ack() // the canceller recorded the outcome
				}
				return // handed back: Shutdown nak'ed it for another worker
			}
			if err != nil {
				_ = m.NakWithDelay(retryDelay)
				return
			}
			w.stats.dropped.Add(1)
			_ = m.Ack() // a duplicate submission's message: the job is another's
			return
		}
	}
	h := w.reg.lookup(j.Name)
	if h == nil {
		w.end(r)
		w.unhandled(ctx, m, j, attempt)
		return
	}
	if err == nil && md.NumDelivered > uint64(w.cfg.maxDeliveries) {
		w.end(r)
		fail := fmt.Errorf("%w: %d deliveries", ErrTooManyDeliveries, md.NumDelivered)
		w.record(ctx, m, &resultRecord{ID: j.ID, Error: failure(fail, false), Attempts: attempt})
		return
	}
	spec := h.spec
	if j.Timeout > 0 {
		spec.Timeout = j.Timeout
	}
	if j.Attempts > 1 || j.Backoff > 0 {
		spec.Attempts, spec.Backoff = j.Attempts, j.Backoff
	}
	attemptCtx := context.Context(runCtx)
	if spec.Timeout > 0 {
		var stop context.CancelFunc
		attemptCtx, stop = context.WithTimeout(runCtx, spec.Timeout)
		defer stop()
	}
	w.stats.ran.Add(1)
	returned := false
	defer func() {
		if returned {
			return
		}
		// The handler called runtime.Goexit, which nothing can stop: end
		// the run and record the failure on the way out, as a pool records
		// ErrGoexit, rather than leave the job running for ever.
		w.end(r)
		gctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
		defer cancel()
		w.record(gctx, m, &resultRecord{ID: j.ID, Error: failure(qpool.ErrGoexit, true), Attempts: attempt})
	}()
	out, decodeFailed, err, panicked := call(attemptCtx, h, w.cfg.codec, m.Data())
	returned = true
	cancelOps()
	ctx, cancelOps = context.WithTimeout(context.Background(), phaseTimeout) // for what follows the handler
	defer cancelOps()
	if handedBack, canceled := w.end(r); handedBack || canceled {
		if canceled {
			_ = m.Ack() // the canceller recorded the outcome
		}
		return // handed back: Shutdown nak'ed it for another worker
	}
	if err == nil && len(out) > w.s.maxData/4*3 {
		// The outcome record keeps the value base64-encoded in JSON: one
		// that cannot fit would fail to be written for ever.
		err = qpool.Permanent(fmt.Errorf("%w: result of %d bytes", ErrPayloadTooLarge, len(out)))
	}
	switch {
	case err == nil:
		w.record(ctx, m, &resultRecord{ID: j.ID, OK: true, Value: out, Attempts: attempt})
	case decodeFailed:
		w.record(ctx, m, &resultRecord{ID: j.ID, Error: &errRecord{Kind: kindDecode, Message: err.Error()}, Attempts: attempt})
	case panicked:
		w.record(ctx, m, &resultRecord{ID: j.ID, Error: failure(err, true), Attempts: attempt})
	default:
		retry := false
		if attempt < spec.Attempts {
			ok, perr := spec.Retryable(j.ID, err)
			if perr != nil {
				err, panicked = perr, true
			}
			retry = ok
		}
		if !retry {
			w.record(ctx, m, &resultRecord{ID: j.ID, Error: failure(err, panicked), Attempts: attempt})
			return
		}
		// The next attempt is a new message, published before this one is
		// acknowledged (a crash between the two runs the attempt twice,
		// at worst; the message ID makes the publish itself idempotent).
		// A long backoff is a scheduled message, which holds no slot of
		// MaxAckPending while it waits.
		notBefore := time.Now().Add(qpool.Backoff(spec.Backoff, attempt))
		if perr := w.s.publish(ctx, j, m.Data(), attempt+1, notBefore); perr != nil {
			_ = m.NakWithDelay(retryDelay)
			return
		}
		w.stats.retried.Add(1)
		_ = m.Ack()
	}
}

// outcome reads job id's outcome (jetstream.ErrKeyNotFound if it has
// none), batched with the reads of the worker's other jobs.
func (w *Worker) outcome(ctx context.Context, id string) (*resultRecord, error) {
	if w.outcomes == nil {
		return w.s.getResult(ctx, id)
	}
	v, ok, err := w.outcomes.get(ctx, key(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return decodeResult(v)
}

// stray reports whether a message that carries the claim nonce nonce
// belongs to another submission of job id than the one that holds the
// claim, and whether a claim was found at all: a duplicate submission
// sends its message with its claim, whose create then fails
// (Client.submit). Such a message is dropped.
//
// Invariant (a duplicate submission never runs): the message of a
// submission whose claim create failed with ErrKeyExists carries a nonce
// that the existing claim does not have, and the claim is there when the
// worker reads it (it existed before). A claim that is not there is
// either this message's own, sent with it and not stored yet, or one the
// retention removed (a job that waited that long), or the claim of a
// submission whose create failed otherwise while its message was stored,
// which its submitter reports as "outcome unknown, the job may have been
// stored": in each case the message runs. The claim is never updated
// except by unhandled, which keeps the nonce.
//
// A message is stored on its own stream and its claim on the bucket's, so
// a duplicate's message can be delivered before the first submission's
// claim is stored (both sent at the same moment), its own create failing
// only later. So a first delivery that finds no claim waits for one, up to
// claimWait, reading again with a growing pause: the claim of the first
// submission shows up (the duplicate is dropped), or this message's own
// (it runs), or neither within claimWait (it runs, as above). A message
// redelivered within claimWait of its storing waits as well. Found by
// TestDuplicateDeliveredBeforeTheClaimNeverRuns: the duplicate ran, its
// outcome was recorded before the first submission's claim, and the
// first submission's future never resolved.
//
// The converse: a claim of another submission that is there when the
// worker reads it may expire before this message's own create reaches
// the server, which then accepts it. So a claim with another nonce that
// could expire before this message's create (see otherClaim) is not taken
// as proof of a duplicate.
func (w *Worker) stray(ctx, run context.Context, m jetstream.Msg, claim *batchRead, id, nonce string, young bool) (stray, found bool, err error) {
	var v []byte
	if claim != nil {
		b, ok, err := claim.wait(ctx)
		if err != nil {
			return false, false, err
		}
		v = b
		if !ok {
			v = nil
		}
	} else {
		b, err := w.claimOf(ctx, id)
		if err != nil {
			return false, false, err
		}
		v = b
	}
	if v == nil && young {
		// run ends when Shutdown hands the message back or the job is
		// cancelled: the wait stops with it, and the job is not run
		// (TestHandBackDuringClaimWait).
		deadline := time.Now().Add(claimWait)
		for pause := 100 * time.Microsecond; v == nil && time.Now().Before(deadline); pause = min(2*pause, 100*time.Millisecond) {
			if err := sleepUnless(ctx, run, pause); err != nil {
				return false, false, err
			}
			b, err := w.claimOf(ctx, id)
			if err != nil {
				return false, false, err
			}
			v = b
		}
	}
	if v == nil {
		return false, false, nil
	}
	if n, ok := claimNonce(v); !ok || n == nonce {
		return false, true, nil // its own, or not a claim this worker can read: run, rather than put back for ever
	}
	return w.otherClaim(ctx, run, m, id, nonce)
}

// otherClaim decides a message whose job's claim, as first read, is
// another submission's (nonce is the message's). It is a duplicate's
// message if that claim was there when the message's own claim create
// reached the server: then the create was refused.
//
// Invariant (an accepted submission is never dropped as a duplicate): a
// message is stored before its claim create is sent, and the create
// reaches the server within claimWait of the message (the assumption
// stray makes too). A claim whose retention lasts past that is still there
// for the create (the server removes a record at its expiry or later,
// never before): the message is a duplicate's. A claim that may expire
// sooner proves nothing, so the worker reads the claim again, with a
// growing pause, until it is the message's own (the create came after
// the old claim expired: not stray), or a claim that outlives the create,
// or the message is gone from its stream (a refused duplicate's client
// retracts it: stray), for up to claimWait and retractWait more. Then the
// message is a duplicate's, whatever claim is there or not: its create
// reached the server before then and was not accepted, since its claim
// never showed up (an accepted create's claim lives for the TTL, and the
// reads would have seen it). It was refused, and its client could not
// retract the message (no permission to delete, or it died), or it failed
// otherwise, and its client said the job may have been stored: its
// future then resolves with the ID's outcome, the other submission's.
// Leaving "no claim" to stray's caller instead ran a refused duplicate
// whose client could not retract it (TestReview6RefusedDuplicateInTheClaimsLastSecondsNeverRuns:
// its value became the first submission's outcome); before otherClaim,
// the worker dropped it at once. Found by TestAttackExpiryGapHammer: a submission made
// 0.2 s after an earlier claim's expiry, whose message a worker got while
// the server had not yet removed that claim, was dropped, and its future
// never resolved (TestSubmissionRacingTheOldClaimsExpiryResolves).
func (w *Worker) otherClaim(ctx, run context.Context, m jetstream.Msg, id, nonce string) (stray, found bool, err error) {
	md, err := m.Metadata()
	if err != nil {
		return true, true, nil // no stored time to compare: a duplicate's, as the claim says
	}
	createBy := md.Timestamp.Add(claimWait)
	deadline := time.Now().Add(claimWait + retractWait)
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		e, err := w.claimEntry(ctx, id)
		if err != nil {
			return false, false, err
		}
		if e == nil {
			// The old claim is gone, this message's own not (yet) there.
			if gone, err := w.retracted(ctx, m); err != nil || gone {
				return gone, true, err
			}
		} else {
			n, ok := claimNonce(e.Value())
			switch {
			case !ok || n == nonce:
				return false, true, nil // its own, or not a claim this worker can read (see stray)
			case w.s.jobs.ttl == 0 || e.Created().Add(w.s.jobs.ttl).After(createBy):
				// The bucket's TTL, not this worker's WithRetention: the
				// first process set it (TestReview6WorkerWithoutTheBucketsRetention:
				// a worker without the option dropped an accepted submission).
				return true, true, nil
			}
		}
		if time.Now().After(deadline) {
			return true, true, nil // refused (or failed): see above
		}
		if err := sleepUnless(ctx, run, pause); err != nil {
			return false, false, err
		}
	}
}

// sleepUnless pauses for d, or until ctx or run ends (then it returns the
// cause).
func sleepUnless(ctx, run context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-run.Done():
		return context.Cause(run)
	case <-t.C:
		return nil
	}
}

// retractWait is how long a refused duplicate's client may take to
// retract its message (Client.retract's bound).
const retractWait = time.Second

// claimEntry reads job id's claim, and when the server stored it; nil if
// there is none.
func (w *Worker) claimEntry(ctx context.Context, id string) (jetstream.KeyValueEntry, error) {
	rctx, cancel := opCtx(ctx)
	defer cancel()
	e, err := w.s.jobs.Get(rctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	return e, err
}

// claimNonce is the nonce of a claim's record; ok is false if the record
// cannot be read.
func claimNonce(v []byte) (nonce string, ok bool) {
	var c struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return "", false
	}
	return c.Nonce, true
}

// reannounceIfStale announces job id's outcome again (store.reannounce)
// when the message dropped for it is that of a submission made after the
// job's claim expired: the outcome was recorded by another submission
// (the caller checked that its nonce is not the message's), and the claim
// is the message's (stray, with its wait for a claim not stored yet: the
// message is sent with it). A duplicate submission's message, whose claim
// was refused, writes nothing. It returns errOutcomeGone if the outcome
// expired meanwhile, and ErrClosed if Shutdown handed messages back
// during its waits for the claim (the message is no longer a run, so
// w.back ends them: before, Shutdown waited for them, up to 5 s past its
// context: TestShutdownDuringAGapMessagesClaimWait).
func (w *Worker) reannounceIfStale(ctx context.Context, m jetstream.Msg, claim *batchRead, id, nonce string, young bool) error {
	stray, _, err := w.stray(ctx, w.back, m, claim, id, nonce, young)
	if err != nil || stray {
		return err
	}
	return w.s.reannounce(ctx, id)
}

// retracted reports whether m was deleted from its stream, as the client
// of a refused duplicate does (Client.retract). A work-queue stream keeps
// a message until it is acknowledged, so one this worker holds is there
// unless it was deleted. Asked only of a message that found no claim even
// after the wait, which its client's retraction has had that long to
// reach.
func (w *Worker) retracted(ctx context.Context, m jetstream.Msg) (bool, error) {
	md, err := m.Metadata()
	if err != nil {
		return false, nil
	}
	req, err := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{md.Sequence.Stream})
	if err != nil {
		return false, err
	}
	rctx, cancel := opCtx(ctx)
	defer cancel()
	reply, err := w.s.js.Conn().RequestWithContext(rctx, apiPrefix(w.s.js)+"STREAM.MSG.GET."+md.Stream, req)
	if err != nil {
		return false, err
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return false, fmt.Errorf("natsjobs: get message %d of %s: %w", md.Sequence.Stream, md.Stream, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return true, nil
		}
		return false, resp.Error
	}
	return false, nil
}

// claimWait bounds how long a message's first delivery waits for a claim
// it does not find (see stray): longer than a claim create takes while the
// server answers, short enough that a message whose submitter's create
// failed is not held up for long.
const claimWait = 2 * time.Second

// claimOf reads job id's claim: nil if there is none.
func (w *Worker) claimOf(ctx context.Context, id string) ([]byte, error) {
	e, err := w.claimEntry(ctx, id)
	if e == nil || err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// call runs the handler, recovering a panic into an error.
func call(ctx context.Context, h *handler, codec qpool.Codec, payload []byte) (out []byte, decodeFailed bool, err error, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			out, decodeFailed, err, panicked = nil, false, fmt.Errorf("panic: %v", p), true
		}
	}()
	out, decodeFailed, err = h.run(ctx, codec, payload)
	return out, decodeFailed, err, false
}

// record writes the outcome r (unless the job has one), releases the
// job's dependents and acknowledges m; if the server could not be reached
// m comes back later and the next delivery tries again.
func (w *Worker) record(ctx context.Context, m jetstream.Msg, r *resultRecord) {
	defer w.keepAlive(m)()
	r.Worker = w.cfg.name
	r.Nonce = m.Headers().Get(hdrClaim) // the submission's: see resultRecord
	created, err := w.s.record(ctx, r)
	if err == nil {
		if created {
			if r.OK {
				w.stats.succeeded.Add(1)
			} else {
				w.stats.failed.Add(1)
			}
		} else {
			w.stats.dropped.Add(1) // another execution recorded first
		}
		cur := r // what this call created, or else the outcome recorded first
		if !created {
			cur, err = w.s.existingResult(ctx, r.ID)
		}
		if err == nil {
			err = w.s.release(ctx, cur)
		}
	}
	w.ackAfter(m, err)
}

func (w *Worker) ackAfter(m jetstream.Msg, err error) {
	if err != nil {
		w.cfg.logger.Warn("natsjobs: recording an outcome failed; the job comes back", "err", err)
		_ = m.NakWithDelay(retryDelay)
		return
	}
	_ = m.Ack()
}

// unhandled puts a job whose name this worker does not know back for
// another worker: as a new message delayed by WithUnhandledDelay (not a
// nak, whose delay would hold a slot of MaxAckPending and count as a
// delivery), and notes on the job's claim that it waits for a handler.
func (w *Worker) unhandled(ctx context.Context, m jetstream.Msg, j *jobRecord, attempt int) {
	w.stats.unhandled.Add(1)
	if rec, rev, err := w.s.getJob(ctx, j.ID); err == nil && rec.Unhandled == nil {
		rec.Unhandled = &unhandled{Worker: w.cfg.name, Since: time.Now()}
		if b, err := json.Marshal(rec); err == nil {
			_, _ = w.s.jobs.Update(ctx, key(j.ID), b, rev) // a lost race leaves another note: fine
		}
	}
	msgID := j.ID + "#" + fmt.Sprint(attempt) + "#u" + nuid.Next()
	if err := w.s.publishAs(ctx, j, m.Data(), attempt, time.Now().Add(w.cfg.unhandledDelay), msgID); err != nil {
		_ = m.NakWithDelay(w.cfg.unhandledDelay)
		return
	}
	_ = m.Ack()
}

// Shutdown stops taking jobs and lets the running ones finish until ctx
// ends. Then it hands the rest back: their contexts are cancelled, their
// messages are negatively acknowledged for immediate redelivery to another
// worker, and whatever their functions return is discarded; a job the
// worker had taken but not yet begun then goes back without being run.
// It waits for those functions to return (a function that ignores its
// context keeps it waiting), closes the entanglements its handlers opened
// ([WithEntanglements]), stops the worker's goroutines and returns ctx's
// error if ctx ended first. Nothing is lost: every job not finished here
// is delivered again. Shutdown is idempotent.
func (w *Worker) Shutdown(ctx context.Context) error {
	if w == nil {
		return nil
	}
	var err error
	w.shutOnce.Do(func() {
		close(w.stopFetch)
		<-w.fetchDone
		idle := make(chan struct{})
		// Owner: Shutdown. Ends when the last handle call returns, which
		// the hand-back below makes prompt; waited below.
		go func() { w.inflight.Wait(); close(idle) }()
		select {
		case <-idle:
		case <-ctx.Done():
			err = context.Cause(ctx)
			w.handBack()
			<-idle
		}
		close(w.stopHB)
		<-w.hbDone
		w.outcomes.close() // every handle call has returned: nothing reads now
		w.claims.close()
		w.s.markers.close()
		w.closeEntanglements()
		w.cf.Close()
		_ = w.pool.Close()
		w.stopBack(nil)
	})
	return err
}

// handBack gives the running jobs back to the server, and makes the jobs
// the pool has taken but not begun go back as they begin (see begin).
func (w *Worker) handBack() {
	w.mu.Lock()
	w.handingBack = true
	w.stopBack(ErrClosed)
	var back []*run
	for r := range w.running {
		if !r.canceled {
			r.handedBack = true
			back = append(back, r)
		}
	}
	w.mu.Unlock()
	for _, r := range back {
		r.cancel(ErrClosed)
		_ = r.msg.Nak()
	}
}
