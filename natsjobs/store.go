package natsjobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
)

// Headers of a job message. The payload is the message's data.
const (
	hdrID        = "Qp-Id"
	hdrName      = "Qp-Name"
	hdrAttempt   = "Qp-Attempt"    // this attempt, from 1
	hdrAttempts  = "Qp-Attempts"   // the most attempts
	hdrTimeout   = "Qp-Timeout"    // per attempt, nanoseconds
	hdrBackoff   = "Qp-Backoff"    // base backoff, nanoseconds
	hdrNotBefore = "Qp-Not-Before" // unix nanoseconds; early deliveries are nak'ed until then
	hdrClaim     = "Qp-Claim"      // the claim's nonce, on every message of a job submitted with one (Client.submit)
)

// headroom is what a message's headers and a record's other fields may
// take beside the payload, within the server's max_payload.
const headroom = 8 << 10

// opTimeout bounds each server operation (unless the caller's context
// ends sooner), as jetstream's default does for a context without a
// deadline: a request lost when the server went away fails after it and
// is retried, rather than holding its caller until a longer deadline.
const opTimeout = 5 * time.Second

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// store is what a client and a worker share: the KV buckets and the names
// of the streams, and the protocol that records outcomes and releases
// dependents. It is safe for concurrent use.
type store struct {
	js        jetstream.JetStream
	ns        string
	retention time.Duration // WithRetention: the TTL of the buckets this process makes (kvBucket.ttl is an opened one's)
	maxData   int
	// replicas is what the streams and buckets are made with; replicasSet
	// says the option was given, so that existing ones must have as many.
	replicas    int
	replicasSet bool

	// The buckets. Their Get reads what the server acknowledged last, on
	// a cluster too (see kvBucket).
	jobs    *kvBucket    // claims: one record per job ID, created at submit
	results *kvBucket    // outcomes: created once per job ID
	deps    *kvBucket    // dependents: key enc(dependency).enc(dependent)
	cancels *kvBucket    // cancel markers, for running jobs
	markers *batchGetter // set by a worker: batched reads of the dependents markers (lastget.go); nil: one get each

	mu      sync.Mutex
	streams map[string]bool // queues whose stream is known to exist
}

// common holds the options a client and a worker share.
type common struct {
	ns          string
	codec       qpool.Codec
	retention   time.Duration
	replicas    int  // WithReplicas, if replicasSet
	replicasSet bool // WithReplicas was given: existing streams and buckets must match
}

func openStore(ctx context.Context, js jetstream.JetStream, c common) (*store, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	if !nameRE.MatchString(c.ns) {
		return nil, fmt.Errorf("%w: namespace %q", ErrInvalidOption, c.ns)
	}
	if c.replicasSet && (c.replicas < 1 || c.replicas > MaxReplicas) {
		return nil, fmt.Errorf("%w: %d replicas (1 to %d)", ErrInvalidOption, c.replicas, MaxReplicas)
	}
	if c.retention < minRetention {
		// The server refuses a shorter MaxAge with a raw API error
		// (TestReview7RetentionBelowTheServersMinimum).
		return nil, fmt.Errorf("%w: retention %v (at least %v)", ErrInvalidOption, c.retention, minRetention)
	}
	nc := js.Conn()
	if !serverAtLeast(nc.ConnectedServerVersion(), 2, 12) {
		return nil, fmt.Errorf("%w: server %q has no message schedules (needs 2.12 or later)", ErrUnsupported, nc.ConnectedServerVersion())
	}
	s := &store{js: js, ns: c.ns, retention: c.retention, replicas: max(c.replicas, 1), replicasSet: c.replicasSet, streams: map[string]bool{}}
	s.maxData = int(nc.MaxPayload()) - headroom
	var err error
	for _, b := range []struct {
		kv   **kvBucket
		name string
		ttl  time.Duration
	}{
		{&s.jobs, "jobs", s.retention},
		{&s.results, "results", outcomeTTL(s.retention)},
		{&s.deps, "deps", s.retention},
		{&s.cancels, "cancels", s.retention},
	} {
		if *b.kv, err = s.bucket(ctx, c.ns+"_"+b.name, b.ttl); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// outcomeMargin is how much longer than a claim an outcome is kept.
//
// Invariant (an outcome outlives the claim of its submission): a claim is
// created before its outcome, and a server removes an expired record only
// at its next age check, which comes at least 250 ms after the one before
// (nats-server's filestore), on each stream's own timer: so with one TTL
// for both, a claim was seen on the server after its outcome had gone, for
// about 250 ms. In that window a submission was refused as a duplicate
// whose outcome Result could not reach, and a Cancel found the claim and
// recorded a second outcome for a job that had one
// (TestAttack7ResultAfterRefusalAtClaimsEnd,
// TestAttack7CancelAfterTheHoldersOutcomeExpired). The margin covers the
// removal's delay several times over. Buckets made by an earlier version
// keep the TTL they were made with.
const outcomeMargin = 2 * time.Second

// outcomeTTL is the results bucket's TTL for a retention: the retention
// plus outcomeMargin, saturated at the longest time.Duration, which a
// process may give WithRetention to keep IDs unique for good (an overflow
// made the TTL negative, and the server refused the bucket:
// TestReview7LongestRetention).
func outcomeTTL(retention time.Duration) time.Duration {
	if retention > math.MaxInt64-outcomeMargin {
		return math.MaxInt64
	}
	return retention + outcomeMargin
}

// bucket opens a bucket, creating it with ttl if no process has.
func (s *store) bucket(ctx context.Context, name string, ttl time.Duration) (*kvBucket, error) {
	kv, err := findOrMake(ctx,
		func(ctx context.Context) (jetstream.KeyValue, error) { return s.js.KeyValue(ctx, name) },
		func(ctx context.Context) (jetstream.KeyValue, error) {
			return s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, TTL: ttl, Storage: jetstream.FileStorage, Replicas: s.replicas})
		},
		func(err error) bool { return errors.Is(err, jetstream.ErrBucketNotFound) })
	if err != nil {
		return nil, fmt.Errorf("natsjobs: bucket %s: %w", name, replicasRefused(err))
	}
	// Its stream, looked up as findOrMake does (a racing make may leave it
	// "not found" for a moment on a cluster).
	find := func(ctx context.Context) (jetstream.Stream, error) { return s.js.Stream(ctx, "KV_"+name) }
	st, err := findOrMake(ctx, find, find, func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) })
	if err != nil {
		return nil, fmt.Errorf("natsjobs: bucket %s: %w", name, err)
	}
	if err := s.checkReplicas("bucket "+name, st.CachedInfo().Config.Replicas); err != nil {
		return nil, err
	}
	return newKVBucket(s.js, kv, st), nil
}

// checkReplicas fails with ErrConfigMismatch if WithReplicas was given and
// what exists has other replicas (CreateStream and CreateKeyValue bind to
// an existing one whatever its configuration).
func (s *store) checkReplicas(what string, have int) error {
	if s.replicasSet && max(have, 1) != s.replicas {
		return fmt.Errorf("%w: %s has %d replicas, WithReplicas(%d)", ErrConfigMismatch, what, max(have, 1), s.replicas)
	}
	return nil
}

func serverAtLeast(v string, major, minor int) bool {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

func (s *store) streamName(queue string) string { return s.ns + "_q_" + queue }
func (s *store) runSubject(queue string) string { return s.ns + ".q." + queue + ".run" }
func (s *store) schedSubject(queue, id string) string {
	return s.ns + ".q." + queue + ".sched." + key(id)
}

// ensureStream creates the queue's work-queue stream unless this process
// knows it exists. Clients and workers create the same configuration.
func (s *store) ensureStream(ctx context.Context, queue string) (jetstream.Stream, error) {
	name := s.streamName(queue)
	st, err := findOrMake(ctx,
		func(ctx context.Context) (jetstream.Stream, error) { return s.js.Stream(ctx, name) },
		func(ctx context.Context) (jetstream.Stream, error) {
			return s.js.CreateStream(ctx, jetstream.StreamConfig{
				Name:              name,
				Subjects:          []string{s.runSubject(queue), s.ns + ".q." + queue + ".sched.*"},
				Retention:         jetstream.WorkQueuePolicy,
				Storage:           jetstream.FileStorage,
				AllowMsgSchedules: true,
				Replicas:          s.replicas,
			})
		},
		func(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) })
	if err != nil {
		return nil, fmt.Errorf("natsjobs: stream for queue %q: %w", queue, replicasRefused(err))
	}
	if err := s.checkReplicas("stream "+s.streamName(queue), st.CachedInfo().Config.Replicas); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.streams[queue] = true
	s.mu.Unlock()
	return st, nil
}

func (s *store) haveStream(ctx context.Context, queue string) error {
	s.mu.Lock()
	ok := s.streams[queue]
	s.mu.Unlock()
	if ok {
		return nil
	}
	_, err := s.ensureStream(ctx, queue)
	return err
}

// key is a job ID as a KV key: base64url, whose alphabet KV keys accept,
// so that any ID works.
func key(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func unkey(k string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(k)
	return string(b), err == nil
}

// jobRecord is a job's claim in the jobs bucket: created once per ID at
// submission, which is what makes IDs unique across processes.
type jobRecord struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Queue     string        `json:"queue"`
	Deps      []string      `json:"deps,omitempty"`
	Payload   []byte        `json:"payload,omitempty"` // kept only while dependencies hold the job back
	Attempts  int           `json:"attempts"`
	Timeout   time.Duration `json:"timeout,omitempty"`
	Backoff   time.Duration `json:"backoff,omitempty"`
	Submitted time.Time     `json:"submitted"`
	NotBefore time.Time     `json:"not_before,omitzero"` // a delayed job: Handle.SubmitAt
	// Nonce is set for a job with no dependencies (Client.submit): its
	// messages carry it, a worker drops a first attempt whose job's claim
	// has another nonce, and its outcome records it (resultRecord).
	Nonce string `json:"nonce,omitempty"`
	// Resolved is set by the submitting client of a job with dependencies
	// that found, at link time, the outcome of an earlier job of the ID
	// kept (Client.link): the submission resolved with it, and the job
	// never starts (tryStart).
	Resolved bool `json:"resolved,omitempty"`
	// Unhandled is set by a worker that received the job but has no
	// handler for Name: the job waits for a worker that has one.
	Unhandled *unhandled `json:"unhandled,omitempty"`
}

type unhandled struct {
	Worker string    `json:"worker"`
	Since  time.Time `json:"since"`
}

// resultRecord is a job's outcome in the results bucket. It is created,
// never changed: the first outcome recorded is the job's (store.reannounce
// may write it again, unchanged).
type resultRecord struct {
	ID       string     `json:"id"`
	OK       bool       `json:"ok"`
	Value    []byte     `json:"value,omitempty"` // the codec's encoding of the result
	Error    *errRecord `json:"error,omitempty"`
	Attempts int        `json:"attempts"`
	Worker   string     `json:"worker,omitempty"`
	Finished time.Time  `json:"finished"`
	// Nonce is the claim nonce of the submission whose message or Cancel
	// recorded the outcome, if it had one: a worker that finds the
	// outcome of another submission than the claim's knows that the
	// claim expired before it (see store.reannounce).
	Nonce string `json:"nonce,omitempty"`
}

type errRecord struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	// For kind dependency: the failed dependency, the job that failed
	// first, and that job's error kind.
	Dependency string `json:"dependency,omitempty"`
	Origin     string `json:"origin,omitempty"`
	OriginKind string `json:"origin_kind,omitempty"`
}

// err rebuilds the error a future resolves with.
func (r *resultRecord) err() error {
	if r.OK || r.Error == nil {
		return nil
	}
	e := r.Error
	switch e.Kind {
	case kindDependency:
		cause := &RemoteError{ID: e.Origin, Message: e.Message, Kind: e.OriginKind, Attempts: 0}
		return &qpool.DependencyError{ID: r.ID, Dependency: e.Dependency, Origin: e.Origin, Cause: kindErr(cause)}
	default:
		return kindErr(&RemoteError{ID: r.ID, Message: e.Message, Kind: e.Kind, Attempts: r.Attempts})
	}
}

func kindErr(re *RemoteError) error {
	if re.Kind == kindPermanent || re.Kind == kindDecode || re.Kind == kindTooLarge {
		return qpool.Permanent(re)
	}
	return re
}

// failure makes the error record of a job that failed with err.
func failure(err error, panicked bool) *errRecord {
	kind := kindError
	switch {
	case panicked:
		kind = kindPanic
	case errors.Is(err, ErrTooManyDeliveries):
		kind = kindDeliveries
	case errors.Is(err, ErrPayloadTooLarge):
		kind = kindTooLarge
	case qpool.IsPermanent(err):
		kind = kindPermanent
	case errors.Is(err, context.DeadlineExceeded):
		kind = kindDeadline
	case errors.Is(err, context.Canceled):
		kind = kindCanceled
	}
	return &errRecord{Kind: kind, Message: err.Error()}
}

func (s *store) getResult(ctx context.Context, id string) (*resultRecord, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	e, err := s.results.Get(ctx, key(id))
	if err != nil {
		return nil, err
	}
	return decodeResult(e.Value())
}

// existingResult reads the outcome of job id after a create of one was
// refused because the key exists (record returned false). On a replicated
// bucket the leader refuses a create while an earlier create of the key is
// still in process (proposed, not yet applied), and a read at that moment
// finds nothing: so a missing key is read again, with a growing pause,
// until it shows up or opTimeout passes. Found by an attack test: a Cancel
// racing the worker's outcome on a 3-server cluster returned a raw
// "key not found" (TestCancelRacingTheOutcomeOnACluster).
func (s *store) existingResult(ctx context.Context, id string) (*resultRecord, error) {
	deadline := time.Now().Add(opTimeout)
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		r, err := s.getResult(ctx, id)
		if !errors.Is(err, jetstream.ErrKeyNotFound) || time.Now().After(deadline) {
			return r, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// errOutcomeGone says that an outcome reannounce was to write again had
// expired (or changed) before it was written.
var errOutcomeGone = errors.New("natsjobs: the outcome expired meanwhile")

// reannounce writes job id's outcome again, unchanged (a KV update at its
// revision: never a second, different outcome), so that every client's
// watcher delivers it once more, and its retention starts again.
//
// Why: a claim is written before its outcome, and lives for the retention
// while the outcome lives 2 s more (outcomeMargin), so the claim expires
// first. A submission of the ID in the gap
// is accepted, and its future waits for an outcome recorded before it
// registered, which no watcher would deliver again; a worker that drops
// a message because its job has an outcome reannounces it, and the
// submission resolves with it, as a duplicate's may. Found by
// TestResubmissionBetweenExpiriesResolves. The new life keeps the outcome
// past the new claim, so the gap does not open again at once. Only
// Worker.reannounceIfStale calls it, for a message whose submission holds
// the claim while the outcome is another's: so a redelivery or a
// duplicate submission writes nothing, and an ID's outcome is written once
// unless its claim expired before it.
//
// Invariant (only an outcome older than the claim is written again): the
// outcome is written only if the claim there now was stored after it, by
// the servers' clocks (each entry's stored time). A nonce that differs
// does not say so alone: an outcome recorded without one (by a worker or
// a Client.Cancel of the previous version, during a rolling upgrade) is
// the current submission's, stored after its claim, and was written again
// on each redelivery (found by a review:
// TestReview5OutcomeWithoutNonceNotRewritten); and once written again the
// outcome is newer than the claim, so a redelivery of the message writes
// nothing more. Not writing an outcome stored after the claim loses no
// waiter: the claim's submission registered its waiter before its claim
// create, so before that outcome, and its client's watcher delivered it.
// Clocks of two servers (two streams' leaders on a cluster) may differ by
// their skew: only an outcome stored within that skew before the claim
// could be taken for a newer one, that is one whose job ran about as long
// as the retention. No claim (expired, or its create failed): written, as
// the message's submission may wait. Only this function and
// Worker.reannounceIfStale decide it.
func (s *store) reannounce(ctx context.Context, id string) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	e, err := s.results.Get(ctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return errOutcomeGone
	}
	if err != nil {
		return err
	}
	switch c, err := s.jobs.Get(ctx, key(id)); {
	case err == nil && !c.Created().After(e.Created()):
		return nil // the claim's own outcome, or announced again already
	case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
		return err
	}
	_, err = s.results.Update(ctx, key(id), e.Value(), e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) { // 10071, or 10164 with replicas
		return errOutcomeGone
	}
	return err
}

func decodeResult(b []byte) (*resultRecord, error) {
	var r resultRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("natsjobs: bad result record: %w", err)
	}
	return &r, nil
}

func (s *store) getJob(ctx context.Context, id string) (*jobRecord, uint64, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	e, err := s.jobs.Get(ctx, key(id))
	if err != nil {
		return nil, 0, err
	}
	var r jobRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("natsjobs: bad job record: %w", err)
	}
	return &r, e.Revision(), nil
}

// record creates id's outcome unless it has one and reports whether this
// call created it. The create is what makes outcomes unique: a second
// execution of the job, a cancel racing the job's end and two releasers
// of a failed dependency all try, one wins.
func (s *store) record(ctx context.Context, r *resultRecord) (bool, error) {
	r.Finished = time.Now()
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	if _, err := s.results.Create(ctx, key(r.ID), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// release acts on the dependents of a finished job: if it failed, every
// dependent, and theirs in turn, fails with a dependency error; if it
// succeeded, every dependent whose dependencies have all succeeded is
// published. It walks a stack of its own, not the goroutine's, so a chain
// of any length is fine.
//
// Invariant (no dependent is left waiting): a submitter writes its
// dependents key before it reads the dependency's outcome, and a finisher
// writes the outcome before it lists the dependents keys; both are
// acknowledged writes on the server, so one of the two sees the other, and
// whichever does publishes the job. Both may: the publish carries the
// message ID jobID#1, so the stream keeps one within its duplicate window,
// and a worker that gets a job with an outcome drops it.
func (s *store) release(ctx context.Context, done *resultRecord) error {
	stack := []*resultRecord{done}
	// seen keeps a failure from walking a cycle for ever: dependencies may
	// name jobs submitted later, so nothing stops a cycle being submitted.
	seen := map[string]bool{done.ID: true}
	for len(stack) > 0 {
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dependents, err := s.dependents(ctx, r.ID)
		if err != nil {
			return err
		}
		for _, d := range dependents {
			if !r.OK {
				fr := dependencyFailure(d, r)
				if _, err := s.record(ctx, fr); err != nil {
					return err
				}
				// Walk on from the outcome recorded, whoever recorded it: a
				// releaser that failed half-way (its message comes back) is
				// finished by the next one, which finds the first part done.
				cur, err := s.existingResult(ctx, d)
				if err != nil {
					return err
				}
				if !cur.OK && !seen[d] {
					seen[d] = true
					stack = append(stack, cur)
				}
				continue
			}
			fr, _, err := s.tryStart(ctx, d)
			if err != nil {
				return err
			}
			if fr != nil && !seen[d] {
				seen[d] = true
				stack = append(stack, fr)
			}
		}
	}
	return nil
}

// dependencyFailure is the outcome of job id, whose dependency failed as
// dep says.
func dependencyFailure(id string, dep *resultRecord) *resultRecord {
	e := &errRecord{Kind: kindDependency, Dependency: dep.ID, Origin: dep.ID, Message: "", OriginKind: kindError}
	if dep.Error != nil {
		e.Message, e.OriginKind = dep.Error.Message, dep.Error.Kind
		if dep.Error.Kind == kindDependency { // do not nest: keep the origin
			e.Origin, e.OriginKind = dep.Error.Origin, dep.Error.OriginKind
		}
	}
	return &resultRecord{ID: id, Error: e}
}

// dependents lists the jobs linked to id as their dependency.
//
// A listing is costlier than a get (a stream info request with a subject
// filter, see kvBucket.keys), and most jobs have no dependents: so a linker first writes the marker
// key enc(id) (no dot) and then its link, and this looks for the marker
// with a plain get before it lists. Invariant (the marker hides no link
// that matters): a finisher writes the outcome, then gets the marker. If
// the marker is missing, every linker wrote it, so also its link, after
// that get, and so after the outcome: its own read of the outcome, which
// follows its link, finds it and it starts (or fails) the job itself. If
// the marker is there the listing runs, as without the marker. Only
// Client.link writes markers and links; the retention removes them.
func (s *store) dependents(ctx context.Context, id string) ([]string, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	if s.markers != nil {
		if _, ok, err := s.markers.get(ctx, key(id)); err != nil || !ok {
			return nil, err
		}
	} else if _, err := s.deps.Get(ctx, key(id)); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	keys, err := s.deps.keys(ctx, key(id)+".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if _, dk, ok := strings.Cut(k, "."); ok {
			if d, ok := unkey(dk); ok {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// tryStart publishes job id if every dependency has succeeded, records its
// failure if one failed (and returns that outcome, for the caller to
// release its dependents), and does nothing while one is pending or when
// the job has an outcome already (cancelled while it waited).
// It returns, as had, the outcome the job has already, if it has one.
func (s *store) tryStart(ctx context.Context, id string) (failed, had *resultRecord, err error) {
	if r, err := s.getResult(ctx, id); err == nil {
		return nil, r, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, err
	}
	j, _, err := s.getJob(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, nil // expired: nothing to start
	}
	if err != nil {
		return nil, nil, err
	}
	if j.Resolved {
		return nil, nil, nil // resolved with an earlier job's outcome: see Client.link
	}
	for _, d := range j.Deps {
		dr, err := s.getResult(ctx, d)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil, nil // pending: its finisher releases the job
		}
		if err != nil {
			return nil, nil, err
		}
		if !dr.OK {
			if _, err := s.record(ctx, dependencyFailure(id, dr)); err != nil {
				return nil, nil, err
			}
			fr, err := s.existingResult(ctx, id) // whoever recorded it: see release
			return fr, nil, err
		}
	}
	return nil, nil, s.publish(ctx, j, j.Payload, 1, j.NotBefore)
}

// publish sends attempt of job j to its queue. An attempt that must not
// start before notBefore more than a second from now goes as a scheduled
// message (nats-server 2.12+), which the server holds until then: it
// holds no slot of the consumer's MaxAckPending meanwhile. Schedules have
// a precision of a second, and a worker that gets an attempt before
// notBefore naks it with the (then short) remaining delay.
func (s *store) publish(ctx context.Context, j *jobRecord, payload []byte, attempt int, notBefore time.Time) error {
	return s.publishAs(ctx, j, payload, attempt, notBefore, msgIDOf(j, attempt))
}

// msgIDOf is the message ID of attempt of job j.
func msgIDOf(j *jobRecord, attempt int) string {
	msgID := j.ID + "#" + strconv.Itoa(attempt)
	if j.Nonce != "" {
		msgID += "#" + j.Nonce // see Client.submit
	}
	return msgID
}

func (s *store) publishAs(ctx context.Context, j *jobRecord, payload []byte, attempt int, notBefore time.Time, msgID string) error {
	if err := s.haveStream(ctx, j.Queue); err != nil {
		return err
	}
	m, opts := s.jobMsg(j, payload, attempt, notBefore, msgID)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	_, err := s.js.PublishMsg(ctx, m, opts...)
	return err
}

// jobMsg makes the message of attempt of job j (see publish).
func (s *store) jobMsg(j *jobRecord, payload []byte, attempt int, notBefore time.Time, msgID string) (*nats.Msg, []jetstream.PublishOpt) {
	m := nats.NewMsg(s.runSubject(j.Queue))
	m.Data = payload
	m.Header.Set(hdrID, j.ID)
	m.Header.Set(hdrName, j.Name)
	m.Header.Set(hdrAttempt, strconv.Itoa(attempt))
	m.Header.Set(hdrAttempts, strconv.Itoa(j.Attempts))
	if j.Timeout > 0 {
		m.Header.Set(hdrTimeout, strconv.FormatInt(int64(j.Timeout), 10))
	}
	if j.Backoff > 0 {
		m.Header.Set(hdrBackoff, strconv.FormatInt(int64(j.Backoff), 10))
	}
	if j.Nonce != "" {
		m.Header.Set(hdrClaim, j.Nonce)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(msgID)}
	if !notBefore.IsZero() {
		m.Header.Set(hdrNotBefore, strconv.FormatInt(notBefore.UnixNano(), 10))
		if time.Until(notBefore) > time.Second {
			m.Subject = s.schedSubject(j.Queue, msgID)
			opts = append(opts, jetstream.WithScheduleAt(notBefore), jetstream.WithScheduleTarget(s.runSubject(j.Queue)))
		}
	}
	return m, opts
}

// jobFromHeaders rebuilds the job record a message carries (without its
// dependencies, which are behind it) and the attempt number.
func jobFromHeaders(h nats.Header, queue string) (*jobRecord, int, error) {
	j := &jobRecord{ID: h.Get(hdrID), Name: h.Get(hdrName), Queue: queue, Nonce: h.Get(hdrClaim)}
	attempt, err := strconv.Atoi(h.Get(hdrAttempt))
	if err != nil || j.ID == "" || attempt < 1 {
		return nil, 0, fmt.Errorf("natsjobs: malformed job message (id %q, attempt %q)", j.ID, h.Get(hdrAttempt))
	}
	j.Attempts, _ = strconv.Atoi(h.Get(hdrAttempts))
	j.Attempts = max(j.Attempts, 1)
	if v := h.Get(hdrTimeout); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		j.Timeout = time.Duration(n)
	}
	if v := h.Get(hdrBackoff); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		j.Backoff = time.Duration(n)
	}
	return j, attempt, nil
}

func notBeforeOf(h nats.Header) time.Time {
	v := h.Get(hdrNotBefore)
	if v == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, n)
}
