package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/qpool/qpool"
)

// Client submits jobs, cancels them and waits for their outcomes. It
// resolves all its futures through one watcher of the results bucket,
// whatever their number. It is safe for concurrent use. Close it when done.
type Client struct {
	s   *store
	cfg config
	f   *feed // the one watcher of the results bucket

	mu      sync.Mutex
	closed  bool
	waiters map[string][]*waiter // guarded by mu
}

// closedRecord is what Close hands the waiters it drops.
var closedRecord = &resultRecord{}

// waiter is a future (or a Result call) waiting for a job's outcome.
type waiter struct {
	deliver func(*resultRecord)

	// A submission's waiter is held (held set) until its claim is decided:
	// an outcome delivered meanwhile is kept in early, and handed on only
	// if the claim is this submission's. Otherwise a duplicate submission
	// whose client's watcher delivered the existing job's outcome while the
	// claim create was on its way (a watcher that lags, or a job that
	// finished meanwhile) resolved with that outcome instead of
	// ErrDuplicateJob (found by an attack on the public API:
	// TestResubmissionThroughAnotherClientIsDuplicate).
	mu    sync.Mutex
	held  bool
	early *resultRecord
}

// offer hands r to the waiter, or keeps it while the waiter is held.
func (w *waiter) offer(r *resultRecord) {
	w.mu.Lock()
	if w.held {
		if w.early == nil {
			w.early = r
		}
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.deliver(r)
}

// release stops holding the waiter, and hands on what it kept: it reports
// whether there was something.
func (w *waiter) release() bool {
	w.mu.Lock()
	r := w.early
	w.held, w.early = false, nil
	w.mu.Unlock()
	if r != nil {
		w.deliver(r)
	}
	return r != nil
}

// NewClient opens the buckets (making them if no process has) and the
// stream of its queue, and starts the client's watcher. ctx bounds the
// setup only.
func NewClient(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	cfg := newConfig(opts)
	if !nameRE.MatchString(cfg.queue) {
		return nil, fmt.Errorf("%w: queue %q", ErrInvalidOption, cfg.queue)
	}
	s, err := openStore(ctx, js, cfg.common)
	if err != nil {
		return nil, err
	}
	if _, err := s.ensureStream(ctx, cfg.queue); err != nil {
		return nil, err
	}
	c := &Client{s: s, cfg: cfg, waiters: map[string][]*waiter{}}
	// The feed sees outcomes recorded from now on, which covers every
	// future: a future registers before its job can finish, and looks up
	// outcomes recorded earlier itself (Handle.Future, Result).
	c.f, err = startFeed(ctx, s.results, js.Conn(), c.onResult)
	if err != nil {
		return nil, fmt.Errorf("natsjobs: watch results: %w", err)
	}
	return c, nil
}

// onResult runs on the feed's goroutine for each outcome recorded.
func (c *Client) onResult(e jetstream.KeyValueEntry) {
	id, ok := unkey(e.Key())
	if !ok {
		return
	}
	r, err := decodeResult(e.Value())
	if err != nil {
		c.cfg.logger.Warn("natsjobs: bad result record", "id", id, "err", err)
		return
	}
	c.deliver(id, r)
}

// deliver hands r to the waiters of id, outside the lock.
func (c *Client) deliver(id string, r *resultRecord) {
	c.mu.Lock()
	ws := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	for _, w := range ws {
		w.offer(r)
	}
}

// await registers w for id's outcome.
func (c *Client) await(id string, w *waiter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.waiters[id] = append(c.waiters[id], w)
	return nil
}

// forget drops w from id's waiters.
func (c *Client) forget(id string, w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.waiters[id]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(c.waiters, id)
	} else {
		c.waiters[id] = ws
	}
}

// Close stops the watcher and resolves the futures still waiting with
// [ErrClosed]. Their jobs go on: another client can wait for them. Close
// is idempotent.
func (c *Client) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.f.Close()
	c.mu.Lock()
	all := c.waiters
	c.waiters = map[string][]*waiter{}
	c.mu.Unlock()
	for _, ws := range all {
		for _, w := range ws {
			w.deliver(closedRecord)
		}
	}
	return nil
}

// typedWaiter resolves a promise of Out from an outcome record.
func typedWaiter[Out any](codec qpool.Codec, resolve func(Out, error) bool) *waiter {
	return &waiter{deliver: func(r *resultRecord) {
		var v Out
		if r == closedRecord {
			resolve(v, ErrClosed)
			return
		}
		if !r.OK {
			resolve(v, r.err())
			return
		}
		if err := codec.Unmarshal(r.Value, &v); err != nil {
			resolve(v, fmt.Errorf("natsjobs: decode result of %q: %w", r.ID, err))
			return
		}
		resolve(v, nil)
	}}
}

// Submit submits a job of h's name under id with input in, to c's queue,
// and returns its future, which resolves (in this process) when any worker
// records the job's outcome. The ID is the job's uniqueness key across all
// processes: if a job with the ID exists (its claim is within the
// retention), the future fails with [ErrDuplicateJob] and the existing job
// is left alone. (A job without dependencies sends its claim and its
// message at once, so a duplicate submission stores a message too: its
// client deletes it once the claim is refused, and a worker that gets it
// first finds the claim of the existing job and drops it without running
// it (Worker.Stats counts it as Dropped). Workers older than this protocol
// would run it: upgrade workers before clients.)
//
// The options are the pool's: [qpool.WithRetry], [qpool.WithTimeout] and
// [qpool.WithDependencies] work as in a pool, across processes: a
// dependency may be submitted from another process, before or after this
// job, and the job runs once every dependency has succeeded (it waits for
// a dependency not yet submitted, up to the retention). [qpool.WithRetryIf]
// and [qpool.WithEntanglement] cannot cross processes and fail the future
// with [ErrLocalOption]: give WithRetryIf to [Register].
//
// Submit returns once the job is stored on the server, or fails the
// future with the error that kept it from being stored: [ErrInvalidJob],
// [ErrPayloadTooLarge], [ErrClosed], or the server's or ctx's error, so a
// server that is down fails the submission within ctx. Cancel on the
// returned future does nothing: use [Client.Cancel].
func (h Handle[In, Out]) Submit(ctx context.Context, c *Client, id string, in In, opts ...qpool.JobOption) *qpool.Future[Out] {
	return h.SubmitAt(ctx, c, id, in, time.Time{}, opts...)
}

// SubmitAt is [Handle.Submit] for a job that must not start before at (a
// zero or past at starts it at once). The job waits in the stream as a
// scheduled message (nats-server 2.12+), holding no worker and no slot of
// the consumer's MaxAckPending; schedules have a precision of a second,
// and a worker that gets the job early puts it back for the remaining
// moment, so it never starts before at (by the workers' clocks). With
// dependencies, it starts at at or once they have succeeded, whichever is
// later. Cancel it like any job.
func (h Handle[In, Out]) SubmitAt(ctx context.Context, c *Client, id string, in In, at time.Time, opts ...qpool.JobOption) *qpool.Future[Out] {
	f, resolve := qpool.NewPromise[Out](id)
	var zero Out
	if c == nil {
		resolve(zero, fmt.Errorf("%w: nil client", ErrInvalidJob))
		return f
	}
	payload, err := c.cfg.codec.Marshal(in)
	if err != nil {
		resolve(zero, fmt.Errorf("%w: encode payload: %w", ErrInvalidJob, err))
		return f
	}
	w := typedWaiter(c.cfg.codec, resolve)
	if err := c.submit(ctx, h.name, id, payload, qpool.SpecOf(opts...), at, w); err != nil {
		resolve(zero, err)
	}
	return f
}

// Future returns a future for the job with id, submitted by any process,
// before or after this call: it resolves when the job's outcome is
// recorded, or at once if it is. ctx bounds only the lookup of an outcome
// recorded already; a failed lookup resolves the future with its error.
func (h Handle[In, Out]) Future(ctx context.Context, c *Client, id string) *qpool.Future[Out] {
	f, resolve := qpool.NewPromise[Out](id)
	var zero Out
	if c == nil {
		resolve(zero, fmt.Errorf("%w: nil client", ErrInvalidJob))
		return f
	}
	w := typedWaiter(c.cfg.codec, resolve)
	if err := c.await(id, w); err != nil {
		resolve(zero, err)
		return f
	}
	// Registered before the lookup: an outcome recorded after the lookup
	// reaches the watcher, one recorded before it is found here.
	r, err := c.s.getResult(ctx, id)
	switch {
	case err == nil:
		c.forget(id, w)
		w.deliver(r)
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		c.forget(id, w)
		resolve(zero, err)
	}
	return f
}

func (c *Client) submit(ctx context.Context, name, id string, payload []byte, spec qpool.JobSpec, at time.Time, w *waiter) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty id", ErrInvalidJob)
	case name == "":
		return fmt.Errorf("%w: empty job name", ErrInvalidJob)
	case spec.RetryIf != nil:
		return fmt.Errorf("%w: WithRetryIf (give it to Register)", ErrLocalOption)
	case spec.Entanglement != nil:
		return fmt.Errorf("%w: WithEntanglement", ErrLocalOption)
	}
	limit := c.s.maxData
	if len(spec.Dependencies) > 0 {
		limit = limit / 4 * 3 // kept in the JSON claim, base64-encoded, until released
	}
	if len(payload) > limit {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrPayloadTooLarge, len(payload), limit)
	}
	deps := make([]string, 0, len(spec.Dependencies))
	seen := map[string]bool{}
	for _, d := range spec.Dependencies {
		if d == id || d == "" {
			return fmt.Errorf("%w: job %q depends on %q", ErrInvalidJob, id, d)
		}
		if !seen[d] {
			seen[d] = true
			deps = append(deps, d)
		}
	}
	j := &jobRecord{ID: id, Name: name, Queue: c.cfg.queue, Deps: deps, Attempts: spec.Attempts,
		Timeout: spec.Timeout, Backoff: spec.Backoff, Submitted: time.Now(), NotBefore: at}
	if len(deps) > 0 {
		j.Payload = payload // a releaser publishes it later
	}
	// A job to run now sends its claim and its message at once, one round
	// trip instead of two in sequence; the message carries the claim's
	// nonce, and a worker drops a message whose job's claim has another
	// (that of an earlier submission: see Worker.stray). Its message ID
	// carries the nonce too, so that a duplicate's message is never taken
	// for the real one's by the stream's deduplication. A job with
	// dependencies or a time waits in the stream or the claim: claim first.
	// Every submission has a nonce, in its claim and its messages, though
	// only a job sent with its claim needs it against duplicates: a
	// worker that drops a message for an outcome recorded by another
	// submission tells by it that the claim expired before that outcome
	// (store.reannounce); a cancel marker names the submission it cancels
	// (cancelMark); and the message IDs of a later submission of the ID
	// differ from this one's, so the stream's duplicate window cannot
	// swallow them (found by an attack: a job with a dependency submitted
	// again after its records expired was never published, its release
	// deduplicated against the first's: TestAttackResubmitAfterExpiryWithDependencies).
	together := len(deps) == 0 && at.IsZero()
	j.Nonce = nuid.Next()
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	w.held = true // until the claim is decided: see waiter
	if err := c.await(id, w); err != nil {
		return err
	}
	var sent jetstream.PubAckFuture // the message, sent with the claim
	if together && c.s.haveStream(ctx, j.Queue) == nil {
		m, opts := c.s.jobMsg(j, payload, 1, at, msgIDOf(j, 1))
		// Nil if it could not be sent now (too many pending, say): then it
		// is published after the claim, below, as a delayed job is.
		sent, _ = c.s.js.PublishMsgAsync(m, opts...)
		if sent != nil && c.cfg.claimDelay > 0 {
			time.Sleep(c.cfg.claimDelay) // tests only
		}
	}
	// The claim: one create per ID, whoever submits it.
	rev, err := c.s.jobs.Create(ctx, key(id), b)
	var perr error
	var ack *jetstream.PubAck
	if sent != nil {
		ack, perr = awaitPubAck(ctx, sent)
	}
	if err != nil {
		c.forget(id, w)
		if errors.Is(err, jetstream.ErrKeyExists) {
			if ack != nil && !ack.Duplicate { // a duplicate ack names another message
				c.retract(ack)
			}
			return fmt.Errorf("%w: %q", ErrDuplicateJob, id) // what w kept is the existing job's
		}
		if sent != nil && (perr == nil || ambiguous(perr)) {
			// The message may be stored without its claim, and a worker
			// runs such a message (Worker.stray).
			return fmt.Errorf("natsjobs: submit %q: outcome unknown, the job may have been stored (Handle.Future waits for it): %w", id, err)
		}
		return fmt.Errorf("natsjobs: submit %q: %w", id, err)
	}
	w.release() // the claim is this submission's: so is any outcome
	switch {
	case sent != nil:
		err = perr
	case len(deps) == 0:
		err = c.delayed(ctx, j, rev, payload, at)
	default:
		err = c.link(ctx, j, rev)
	}
	if err != nil {
		c.forget(id, w)
		if ambiguous(err) {
			// The server may have stored the message and lost only its
			// reply: removing the claim could let a resubmission under the
			// same ID be deduplicated against it and wait for ever.
			return fmt.Errorf("natsjobs: submit %q: outcome unknown, the job may have been stored (Handle.Future waits for it): %w", id, err)
		}
		c.unclaim(id, rev)
		return fmt.Errorf("natsjobs: submit %q: %w", id, err)
	}
	return nil
}

// retract removes from its stream the message of a submission whose
// claim was refused (a duplicate), so that no worker gets it. A worker
// that gets it anyway drops it for its nonce while the existing claim is
// there (Worker.stray); retracting it also covers a message delivered
// after that claim expired, which would otherwise run once no claim and no
// outcome stopped it (found by an attack:
// TestAttackDuplicateDeliveredAfterClaimExpiry, a refused duplicate's
// payload ran and its value became the first submission's outcome). Best
// effort, with a context of its own; a message already taken by a worker
// is deleted too, and its acknowledgement then finds nothing. Its client
// needs the permission of $JS.API.STREAM.MSG.DELETE.<stream>; without it
// the delete times out and the worker's checks are all that is left.
func (c *Client) retract(ack *jetstream.PubAck) {
	// Short: a delete takes a moment, and a connection without the
	// permission to delete gets no answer at all, which would hold every
	// refused submission this long.
	ctx, cancel := context.WithTimeout(context.Background(), retractWait)
	defer cancel()
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NoErase bool   `json:"no_erase"`
	}{ack.Sequence, true})
	if err != nil {
		return
	}
	_, _ = c.s.js.Conn().RequestWithContext(ctx, apiPrefix(c.s.js)+"STREAM.MSG.DELETE."+ack.Stream, req)
}

// awaitAck waits for the server's acknowledgement of an asynchronous
// publish, at most until ctx ends or opTimeout passes (then the publish
// may have been stored: ambiguous says so).
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	_, err := awaitPubAck(ctx, f)
	return err
}

// awaitPubAck is awaitAck that returns the acknowledgement.
func awaitPubAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	t := time.NewTimer(opTimeout)
	defer t.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-t.C:
		return nil, fmt.Errorf("natsjobs: publish: %w", context.DeadlineExceeded)
	}
}

// ambiguous reports whether a failed request may have been carried out:
// its reply did not come in time.
func ambiguous(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrDisconnected) // an asynchronous publish's acknowledgement lost in a reconnection
}

// link records j as a dependent of each of its dependencies, then starts
// it if they have all succeeded, or fails it if one failed (see
// store.release for why a dependency that finishes meanwhile is not
// missed).
func (c *Client) link(ctx context.Context, j *jobRecord, rev uint64) error {
	for _, d := range j.Deps {
		// The marker, then the link: see store.dependents.
		if _, err := c.s.deps.Put(ctx, key(d), nil); err != nil {
			return err
		}
		if _, err := c.s.deps.Put(ctx, key(d)+"."+key(j.ID), nil); err != nil {
			return err
		}
	}
	for {
		fr, had, err := c.s.tryStart(ctx, j.ID)
		if had != nil {
			// An outcome recorded before this submission: its claim
			// expired before the outcome did, or a Cancel came first.
			if ok, err := c.adoptKept(ctx, j, rev, had); ok || err != nil {
				return err
			}
			continue // expired meanwhile: this submission is a new job
		}
		if err != nil || fr == nil {
			return err
		}
		return c.s.release(ctx, fr)
	}
}

// delayed publishes the first attempt of job j, which has no dependencies
// and was not sent with its claim (a delayed job, or one whose message
// could not be sent at once). A delayed job looks for an outcome kept from
// an earlier job of the ID first: its message would reach a worker only at
// its time, maybe after that outcome expired, and then run, where a
// submission in the gap resolves with the kept outcome (found by an
// attack: TestAttack6GapSubmitAtBeyondKeptOutcome, the job ran, also after
// a Cancel that had returned nil). One read more per delayed submission.
func (c *Client) delayed(ctx context.Context, j *jobRecord, rev uint64, payload []byte, at time.Time) error {
	if !at.IsZero() {
		had, err := c.s.getResult(ctx, j.ID)
		switch {
		case err == nil:
			if ok, err := c.adoptKept(ctx, j, rev, had); ok || err != nil {
				return err
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
	}
	return c.s.publish(ctx, j, payload, 1, at)
}

// adoptKept resolves the submission of job j (claim revision rev) with had,
// the outcome kept from an earlier job of the ID, and reports true; or
// false if had expired meanwhile (the submission is then a new job). No
// message is sent: it announces the outcome again, as a worker does for a
// message (store.reannounce), which also starts its retention again, and
// marks the claim resolved: the claim expires about when the outcome does
// (2 s before it, outcomeMargin, in buckets made by this version; with
// one TTL, in buckets made by an earlier one, the server's removal of
// expired records lags by up to a stream's age check, so either may go
// first), and a dependency finishing after the outcome expired would find
// it and start the job, whose future had resolved with the kept outcome
// (found by an attack: TestAttackGapDependentRunsAfterResolving). The
// claim stays, so the ID stays taken for the retention.
func (c *Client) adoptKept(ctx context.Context, j *jobRecord, rev uint64, had *resultRecord) (bool, error) {
	err := c.s.reannounce(ctx, j.ID)
	if errors.Is(err, errOutcomeGone) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := c.resolved(ctx, j, rev); err != nil {
		return false, err
	}
	c.deliver(j.ID, had)
	return true, nil
}

// resolved marks job j's claim (at revision rev) resolved: see
// jobRecord.Resolved. Only the submitter writes it, right after the
// claim; a claim changed meanwhile (its revision moved) is left as it is,
// since nothing else updates a held job's claim.
func (c *Client) resolved(ctx context.Context, j *jobRecord, rev uint64) error {
	r := *j
	r.Resolved = true
	b, err := json.Marshal(&r)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	if _, err := c.s.jobs.Update(ctx, key(j.ID), b, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return err
	}
	return nil
}

// unclaim removes the claim of a submission that failed after it was made
// (with an error that says the publish was not carried out), so that the
// ID can be submitted again. It is best effort, with a context
// of its own (the caller's may have ended): if the server is unreachable
// the claim stays, and submitting the ID again reports ErrDuplicateJob
// until the retention drops it; [Client.Status] shows such a job as
// pending with no message. The revision check keeps it from removing a
// claim it does not own.
func (c *Client) unclaim(id string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.s.jobs.Delete(ctx, key(id), jetstream.LastRevision(rev))
}

// Record is a job's outcome as the results bucket keeps it: the dead-letter
// record of a job that failed after its last attempt as much as the
// result of one that succeeded.
type Record struct {
	// ID is the job's ID.
	ID string
	// Err is the job's error, nil if it succeeded (see [RemoteError]).
	Err error
	// Value is the result, encoded with the codec; nil on failure.
	Value []byte
	// Attempts is how many attempts ran.
	Attempts int
	// Worker names the worker that recorded the outcome (empty for a
	// cancel or a failed dependency).
	Worker string
	// Finished is when the outcome was recorded.
	Finished time.Time
}

func toRecord(r *resultRecord) *Record {
	return &Record{ID: r.ID, Err: r.err(), Value: r.Value, Attempts: r.Attempts, Worker: r.Worker, Finished: r.Finished}
}

// Result waits until the outcome of job id is recorded, by any process,
// or ctx ends, and returns it. It waits for a job not yet submitted too.
func (c *Client) Result(ctx context.Context, id string) (*Record, error) {
	if c == nil {
		return nil, ErrInvalidJob
	}
	ch := make(chan *resultRecord, 1)
	w := &waiter{deliver: func(r *resultRecord) { ch <- r }}
	if err := c.await(id, w); err != nil {
		return nil, err
	}
	r, err := c.s.getResult(ctx, id)
	if err == nil {
		c.forget(id, w)
		return toRecord(r), nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		c.forget(id, w)
		return nil, err
	}
	select {
	case r := <-ch:
		if r == closedRecord {
			return nil, ErrClosed
		}
		return toRecord(r), nil
	case <-ctx.Done():
		c.forget(id, w)
		return nil, context.Cause(ctx)
	}
}

// Status is what the server knows of a job now.
type Status struct {
	// ID, Name and Queue are the job's.
	ID, Name, Queue string
	// Dependencies are the IDs the job waits for.
	Dependencies []string
	// Submitted is when the job was claimed.
	Submitted time.Time
	// Result is the outcome, nil while the job has none.
	Result *Record
	// Unhandled is set once a worker received the job and had no handler
	// for its name (the job then waits for a worker that registers it). It
	// is not cleared when such a worker runs the job later: Result tells
	// whether the job has finished.
	Unhandled bool
	// UnhandledBy and UnhandledSince say which worker found no handler,
	// first, and when.
	UnhandledBy    string
	UnhandledSince time.Time
}

// Status returns what the server knows of job id, without waiting, or
// [ErrUnknownJob].
func (c *Client) Status(ctx context.Context, id string) (*Status, error) {
	if c == nil {
		return nil, ErrInvalidJob
	}
	st := &Status{ID: id}
	found := false
	j, _, err := c.s.getJob(ctx, id)
	switch {
	case err == nil:
		found = true
		st.Name, st.Queue, st.Dependencies, st.Submitted = j.Name, j.Queue, j.Deps, j.Submitted
		if j.Unhandled != nil {
			st.Unhandled, st.UnhandledBy, st.UnhandledSince = true, j.Unhandled.Worker, j.Unhandled.Since
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, err
	}
	r, err := c.s.getResult(ctx, id)
	switch {
	case err == nil:
		found = true
		st.Result = toRecord(r)
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: %q", ErrUnknownJob, id)
	}
	return st, nil
}

// Cancel cancels job id from any process. A job that has not started never
// runs; a running one has its context cancelled on whichever worker runs
// it. Either way its outcome is recorded at once as cancelled (futures
// fail with [context.Canceled]), and what a running job's function returns
// afterwards is discarded. Jobs that depend on it fail with
// [qpool.ErrDependencyFailed]. Cancel of a finished job does nothing and
// returns nil; of an ID nobody submitted, [ErrUnknownJob].
func (c *Client) Cancel(ctx context.Context, id string) error {
	if c == nil {
		return ErrInvalidJob
	}
	j, _, err := c.s.getJob(ctx, id)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		_, err := c.s.getResult(ctx, id)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		return fmt.Errorf("%w: %q", ErrUnknownJob, id)
	}
	// The claim's nonce: the job's message, when it comes, finds an
	// outcome of its own submission (see resultRecord.Nonce).
	r := &resultRecord{ID: id, Error: &errRecord{Kind: kindCanceled, Message: "cancelled by Client.Cancel"}, Nonce: j.Nonce}
	created, err := c.s.record(ctx, r)
	if err != nil {
		return err
	}
	if !created {
		// Finished already, or cancelled by an earlier Cancel that may
		// have failed before it released the dependents: release what
		// is recorded (release is idempotent).
		cur, err := c.s.existingResult(ctx, id)
		if err != nil {
			return err
		}
		return c.s.release(ctx, cur)
	}
	// The outcome first, then the marker: a worker that registers the job
	// as running before it looks for an outcome either finds this one or
	// is running the job when the marker reaches it (see Worker.begin).
	// The marker names the submission it cancels (see cancelMark).
	_, putErr := c.s.cancels.Put(ctx, key(id), []byte(j.Nonce))
	return errors.Join(putErr, c.s.release(ctx, r))
}
