package qpool

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"sync/atomic"
)

// ErrGroupClosed is returned for a job given to a [Group] after its Wait
// returned, and is the cause of the group's context once Wait has returned
// (unless the context ended earlier).
var ErrGroupClosed = errors.New("qpool: group closed")

// groupSeq numbers the groups of the process, so that the IDs two groups
// generate never collide, whatever pools they share.
var groupSeq atomic.Uint64

// GroupOption configures a [Group].
type GroupOption interface {
	applyGroup(*groupConfig)
}

type groupConfig struct {
	cancelOnError bool
	firstError    bool
}

type cancelOnErrorOption struct{}

// WithCancelOnError cancels the group's context as soon as one of its jobs
// fails: running jobs see their context end with the failure as its cause
// ([context.Cause]), jobs still queued or waiting for dependencies never
// run and resolve with an error that wraps the cause, and jobs given to the
// group afterwards resolve the same way without reaching the pool. With it,
// [WithFirstError] keeps Wait's error to the failure that started it.
func WithCancelOnError() GroupOption { return cancelOnErrorOption{} }

func (cancelOnErrorOption) applyGroup(c *groupConfig) { c.cancelOnError = true }
func (cancelOnErrorOption) String() string            { return "WithCancelOnError()" }

type firstErrorOption struct{}

// WithFirstError makes [Group.Wait] return only the first error a job of
// the group ended with (the first to be resolved), instead of every
// failure joined.
func WithFirstError() GroupOption { return firstErrorOption{} }

func (firstErrorOption) applyGroup(c *groupConfig) { c.firstError = true }
func (firstErrorOption) String() string            { return "WithFirstError()" }

// GroupResult is one job's outcome, as [Group.Results] yields it.
type GroupResult[T any] struct {
	ID    string // the job's ID, generated or given
	Index int    // the job's place in submission order, from 0
	Value T      // what the job returned (the zero value if it never ran)
	Err   error  // the job's error, as its future reports it
}

// Group runs a batch of jobs on a [Pool] and collects their results: the
// pool's jobs, with IDs generated when none is given, a context shared by
// the batch, results in submission order, and errors joined or first.
//
//	g := qpool.NewGroup[int](ctx, pool, qpool.WithCancelOnError())
//	for _, u := range urls {
//		g.Go(func(ctx context.Context) (int, error) { return fetch(ctx, u) })
//	}
//	sizes, err := g.Wait()
//
// Every job is an ordinary job of the pool: its options, retries, timeout,
// Stats and [Pool.Result] work as for [Submit], and it may depend, or be
// depended on, by ID ([WithDependencies]). A job's context is the group's
// (its values; it ends when the group's does), and also ends as a job's
// context does: at its timeout, when its future is cancelled, when the pool
// shuts down, and once the job has ended. Values the group's context lacks
// are looked up in the pool's ([WithContext]).
//
// # IDs
//
// [Group.Go] generates the job's ID: "g<group>#<index>", where <group>
// numbers the groups of the process from 1 and <index> is the job's place
// in submission order (both decimal), e.g. "g3#0". Generated IDs are
// unique in the process, so they are valid for Pool.Result, for
// WithDependencies and in logs. [Group.Submit] takes the caller's ID and
// refuses one of the generated form with [ErrInvalidJob], so no two jobs
// of groups collide. A job submitted straight to the pool under such an ID
// is not checked: while both are unresolved the later of the two fails
// with [ErrDuplicateJob] (neither replaces the other); once one has ended,
// its ID may be taken again and Pool.Result finds the newer job.
//
// # End
//
// [Group.Wait] waits for every job given to the group before it returned,
// including jobs given while it waits (by the jobs themselves, say), and
// then closes the group: jobs given later resolve with [ErrGroupClosed]
// without running, and the group's context ends. Wait must not be called
// from a job of the group, which would wait for itself. Call Wait even when
// ranging over [Group.Results]: it releases the group's context.
//
// Bad input never panics: a nil fn, a closed pool, a nil pool, a nil or
// zero Group and a job given after Wait resolve the job's future with an
// error (which Wait reports too, for jobs given before it returned).
//
// A group keeps every job's result until the group is dropped (Wait
// returns them all): use one group per batch. No goroutine runs for a
// group but the pool's workers, and, once, one that fails the queued jobs
// when the parent context ends (waited for by Wait). All methods are safe
// for concurrent use.
//
// A group's job costs more than a job given to [Submit]: one allocation,
// as Submit's, but a larger one, and about 1.3 to 1.45 times the CPU time
// for a job that does nothing (docs/pool.md has the measurements).
type Group[T any] struct {
	// Read by every job; written once, or rarely.
	pool      *Pool
	cfg       groupConfig
	ctx       context.Context
	cancel    context.CancelCauseFunc
	prefix    string    // of generated IDs: "g<n>#"
	jobCfg    jobConfig // the pool's job defaults, with the group's context and hook
	stopWatch func() bool
	// stopping is set when the group's context is cancelled by a failure
	// or by the parent: see stop for the protocol with submitters.
	stopping atomic.Bool
	stopped  atomic.Bool  // a pass of stop over the jobs has finished
	waiters  atomic.Int64 // goroutines in Wait: complete wakes them when none is pending
	rangers  atomic.Int64 // goroutines in take: complete wakes them on each result

	// watching holds the goroutine that context.AfterFunc starts when the
	// parent context ends; stopWatch unregisters it (see finish).
	watching sync.WaitGroup
	once     sync.Once // finish

	// Written by submitters, under mu. Jobs pending are recorded minus
	// finished, two counters on lines of their own, as the pool counts
	// accepted and finished jobs: one counter written by both sides
	// would move between their cores twice per job. recorded is raised
	// under mu, so Wait's check under mu closes the group exactly when
	// nothing is pending.
	_        [64]byte
	mu       sync.Mutex
	recorded atomic.Int64
	calls    []*gcall[T] // every recorded job, in submission order: append only
	next     int         // the next job's index
	ids      string      // generated IDs idBase to idBase+idChunk-1, one after another
	idBase   int
	idEnd    [idChunk]uint32 // where each of those IDs ends in ids
	closed   bool            // Wait has closed the group
	results  []*gcall[T]     // completed jobs taken off doneList, oldest first
	idle     sync.Cond       // nothing pending; L is &mu
	ready    sync.Cond       // a job completed; L is &mu

	// Written by whoever resolves a job (complete), without a lock.
	_        [64]byte
	finished atomic.Int64
	// doneList holds completed jobs that no range has taken yet, newest
	// first: complete pushes (each job once), take swaps the whole list
	// out under mu.
	doneList atomic.Pointer[gcall[T]]
	failed   atomic.Pointer[gcall[T]] // the first job to end with an error
	_        [64]byte
}

// pending returns how many recorded jobs have not completed. It reads
// finished first, so that a job recorded and completed between the two
// reads counts as pending, never the other way round.
func (g *Group[T]) pending() int64 {
	f := g.finished.Load()
	return g.recorded.Load() - f
}

// gcall is a group's job: the pool's call, so that the future and
// Pool.Result see an ordinary job, with the group's bookkeeping in the same
// allocation (144 bytes for a small T). The job's runner is the gcall
// itself (its methods are call[T]'s), which is how the group finds it when
// the pool tells it of a resolution (Group.resolved).
type gcall[T any] struct {
	call[T]
	index int32         // place in submission order (a group holds fewer than 2^31 jobs)
	flags atomic.Uint32 // the gcall flags below
	next  *gcall[T]     // in g.doneList
}

// gcall flags, set with Or and read with Load.
const (
	gStarted   uint32 = 1 << iota // handed to the pool: stop may resolve it
	gCompleted                    // counted by complete, exactly once
	gByGroup                      // stop is failing it: its completion stops nothing
)

// NewGroup returns a group that runs its jobs on p, with a context derived
// from ctx (a nil ctx counts as [context.Background]). When ctx ends the
// group's context ends with it, and the group fails the jobs it has not
// started, as [WithCancelOnError] does for a failure. A nil p makes a group
// whose every job fails with [ErrInvalidJob].
func NewGroup[T any](ctx context.Context, p *Pool, opts ...GroupOption) *Group[T] {
	if ctx == nil {
		ctx = context.Background()
	}
	g := &Group[T]{pool: p}
	for _, o := range opts {
		if o != nil {
			o.applyGroup(&g.cfg)
		}
	}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	if p.valid() {
		g.jobCfg = p.jobDefaults
		g.jobCfg.group, g.jobCfg.onResolve = g.ctx, g
	}
	g.idle.L, g.ready.L = &g.mu, &g.mu
	g.prefix = "g" + strconv.FormatUint(groupSeq.Add(1), 10) + "#"
	if ctx.Done() != nil {
		// Owner: the group. Runs once when ctx ends; Wait unregisters it,
		// or waits for it if it has started (see finish).
		g.watching.Add(1)
		g.stopWatch = context.AfterFunc(ctx, func() {
			defer g.watching.Done()
			g.stop(context.Cause(ctx))
		})
	}
	return g
}

// Context returns the group's context: it ends when the parent given to
// NewGroup ends, at the first failure with [WithCancelOnError] (the
// failure is its cause), and when Wait returns.
func (g *Group[T]) Context() context.Context {
	if !g.valid() {
		return context.Background()
	}
	return g.ctx
}

// Go runs fn as a job of the group under a generated ID (see [Group]) and
// returns its future. It takes the job options of [Submit], and blocks as
// Submit does while the pool's queue is full.
func (g *Group[T]) Go(fn func(ctx context.Context) (T, error), opts ...JobOption) *Future[T] {
	return g.submit("", true, fn, opts)
}

// Submit runs fn as a job of the group under id and returns its future:
// [Group.Go] with the caller's ID. An empty id, a duplicate one and one of
// the generated form fail the job with [ErrInvalidJob] or
// [ErrDuplicateJob].
func (g *Group[T]) Submit(id string, fn func(ctx context.Context) (T, error), opts ...JobOption) *Future[T] {
	return g.submit(id, false, fn, opts)
}

var errNilGroup = fmt.Errorf("%w: nil group, or one not made by NewGroup", ErrInvalidJob)

func (g *Group[T]) valid() bool { return g != nil && g.ctx != nil }

// submit records a job in the group and hands it to the pool.
func (g *Group[T]) submit(id string, generate bool, fn func(context.Context) (T, error), opts []JobOption) *Future[T] {
	c := &gcall[T]{}
	c.fn = fn
	c.fut.j = &c.job
	if !g.valid() {
		c.resolveHere(id, nil, errNilGroup)
		return &c.fut
	}
	g.mu.Lock()
	i := g.next
	g.next++
	if generate {
		id = g.id(i)
	}
	closed := g.closed
	if !closed {
		g.calls = append(g.calls, c)
		g.recorded.Add(1)
	}
	g.mu.Unlock()
	c.index = int32(i)
	switch {
	case closed:
		c.resolveHere(id, g.pool, jobError(id, ErrGroupClosed)) // not recorded
		return &c.fut
	case g.pool == nil:
		c.resolveHere(id, nil, jobError(id, fmt.Errorf("%w: nil pool", ErrInvalidJob)))
	case !generate && isGeneratedID(id):
		c.resolveHere(id, g.pool, jobError(id, fmt.Errorf("%w: the form of a group's generated IDs", ErrInvalidJob)))
	case g.ctx.Err() != nil: // stopping, or about to be (see stop)
		c.resolveHere(id, g.pool, jobError(id, context.Cause(g.ctx)))
	default:
		g.pool.startWith(&c.job, c, id, fn == nil, &g.jobCfg, opts)
		c.flags.Or(gStarted)
		if !c.isDone() {
			if g.stopping.Load() { // stop may not have seen it started
				g.fail(c)
			}
			return &c.fut
		}
		// Refused by the pool (it resolved the job without telling the
		// group: see reject), or already finished: complete counts once.
	}
	g.complete(c)
	return &c.fut
}

// idChunk is how many generated IDs are made at once: one string holds
// them all, so that a generated ID costs a fraction of an allocation.
const idChunk = 64

// id returns the generated ID of the job at index i. g.mu must be held:
// indexes are handed out in order under it, so the chunk only moves
// forward.
func (g *Group[T]) id(i int) string {
	if i >= g.idBase+idChunk || g.ids == "" {
		g.idBase = i
		b := make([]byte, 0, idChunk*(len(g.prefix)+len(strconv.Itoa(i+idChunk))))
		for k := range idChunk {
			b = append(b, g.prefix...)
			b = strconv.AppendInt(b, int64(i+k), 10)
			g.idEnd[k] = uint32(len(b))
		}
		g.ids = string(b)
	}
	k := i - g.idBase
	start := uint32(0)
	if k > 0 {
		start = g.idEnd[k-1]
	}
	return g.ids[start:g.idEnd[k]]
}

// isGeneratedID reports whether id has the form of a generated ID:
// "g", digits, "#", digits.
func isGeneratedID(id string) bool {
	if len(id) < 4 || id[0] != 'g' {
		return false
	}
	hash := -1
	for i := 1; i < len(id); i++ {
		switch c := id[i]; {
		case c == '#' && hash < 0 && i > 1:
			hash = i
		case c < '0' || c > '9':
			return false
		}
	}
	return hash > 0 && hash < len(id)-1
}

// resolveHere resolves a job that never reaches the pool, as the pool's
// reject does, so that its future works like any other.
func (c *gcall[T]) resolveHere(id string, p *Pool, err error) {
	c.id, c.r = id, c
	c.cfg = &noPool
	if p != nil {
		c.cfg = &p.jobDefaults
	}
	c.resolved.Add(1)
	c.tryResolve(err)
	c.wake()
	if p.valid() && p.obs != nil {
		p.observeRefused(&c.job, err)
	}
}

// resolved is the pool's resolution hook for the group's jobs (jobConfig's
// onResolve): settle calls it once for every resolution of an accepted job,
// on the resolving goroutine, after the job's context has ended and before
// its waiters are woken, outside every lock of the pool. A job the pool
// refuses (reject) is resolved without it, inside Submit: submit looks for
// that.
func (g *Group[T]) resolved(j *job) {
	if c, ok := j.r.(*gcall[T]); ok {
		g.complete(c)
	}
}

// complete records that c has been resolved: it notes the first failure
// (and stops the group, with WithCancelOnError), hands c to Results and
// wakes Wait when nothing is pending. It runs once per job, on whatever
// goroutine resolved it, under no lock.
func (g *Group[T]) complete(c *gcall[T]) {
	if c.flags.Or(gCompleted)&gCompleted != 0 {
		return
	}
	// Stopping happens before c stops counting as pending, so that Wait
	// cannot return before the jobs it fails have been counted.
	if c.err != nil && g.failed.CompareAndSwap(nil, c) && g.cfg.cancelOnError {
		g.stop(c.err)
	} else if c.flags.Load()&gByGroup == 0 && !g.stopped.Load() && g.ctx.Err() != nil {
		// The group's context has ended (its parent, say) and no pass
		// over the jobs has finished: the watcher may not have run yet,
		// or be on its way. Make one here, on the goroutine that
		// resolved c, often a worker about to take another job, so that
		// a queued job does not slip past. A job the pass itself fails
		// is marked byGroup and does not start another.
		g.stop(context.Cause(g.ctx))
	}
	for {
		h := g.doneList.Load()
		c.next = h
		if g.doneList.CompareAndSwap(h, c) {
			break
		}
	}
	// Pushed before it counts as finished: a range that sees nothing
	// pending then finds every completed job on the list. Rangers and
	// waiters count themselves under mu before they look, and the
	// broadcast takes mu, so one of the two sees the other.
	f := g.finished.Add(1)
	if r, w := g.rangers.Load() > 0, g.waiters.Load() > 0; r || w {
		none := g.recorded.Load() == f
		g.mu.Lock()
		g.ready.Broadcast()
		if none {
			g.idle.Broadcast()
		}
		g.mu.Unlock()
	}
}

// stop cancels the group's context with cause and fails every job the
// group handed to the pool that has not started. stopping is set before
// the list of jobs is read, and a submitter marks its job started before
// it reads stopping: a job either is seen started here or its submitter
// sees stopping and fails it itself. Passes may overlap (the parent's
// watcher, a worker that finds the context ended, a failure): failing a
// job is idempotent, since the pool resolves a job once.
func (g *Group[T]) stop(cause error) {
	g.cancel(cause)
	g.stopping.Store(true)
	g.mu.Lock()
	calls := g.calls // append only: the jobs up to len are fixed
	g.mu.Unlock()
	for _, c := range calls {
		if c.flags.Load()&gStarted != 0 {
			g.fail(c)
		}
	}
	g.stopped.Store(true)
}

// fail resolves a job that is queued or waiting for dependencies with the
// group's cancellation cause; a running or finished job is left alone (its
// context has ended with the group's).
func (g *Group[T]) fail(c *gcall[T]) {
	if s := c.state.Load(); s != stateWaiting && s != stateQueued {
		return
	}
	// byGroup tells complete, which the resolution runs on this goroutine,
	// not to start another pass. Cleared again if the job started
	// meanwhile: its own completion, on its worker, must be free to stop.
	c.flags.Or(gByGroup)
	if !g.pool.resolve(&c.job, jobError(c.id, context.Cause(g.ctx)), false, stateWaiting, stateQueued) {
		c.flags.And(^gByGroup)
	}
}

// Wait waits until every job given to the group has been resolved, closes
// the group (see [Group]) and returns the jobs' values in submission order
// (the zero value for a job that never ran) and their errors: every
// failure joined with [errors.Join] in submission order, or with
// [WithFirstError] the first. Each error is what the job's future reports.
// Wait may be called again, and concurrently: each call returns the same.
func (g *Group[T]) Wait() ([]T, error) {
	if !g.valid() {
		return nil, errNilGroup
	}
	g.mu.Lock()
	g.waiters.Add(1)
	for g.pending() > 0 {
		g.idle.Wait()
	}
	g.waiters.Add(-1)
	g.closed = true
	calls := g.calls
	g.mu.Unlock()
	g.once.Do(g.finish)

	values := make([]T, len(calls))
	var errs []error
	for i, c := range calls {
		values[i] = c.value
		if c.err != nil {
			errs = append(errs, c.err)
		}
	}
	if g.cfg.firstError {
		if c := g.failed.Load(); c != nil {
			return values, c.err
		}
		return values, nil
	}
	return values, errors.Join(errs...)
}

// finish ends the group's context once it is closed. The parent's watcher
// is unregistered, or waited for if it has started: it ends once it has
// failed the queued jobs, which Wait waited for.
func (g *Group[T]) finish() {
	if g.stopWatch != nil {
		if g.stopWatch() {
			g.watching.Done() // it will never run
		} else {
			g.watching.Wait()
		}
	}
	g.cancel(ErrGroupClosed)
}

// Results returns an iterator over the group's results in the order the
// jobs are resolved. Each result is yielded once, by whichever range takes
// it: ranges that run at the same time share the results. A range waits
// for jobs still pending and ends when every job given to the group so far
// has been resolved and yielded (jobs given while it runs, by the jobs
// themselves say, are included if given before it ends). Breaking out of a
// range leaves the results it has not taken to the next one. Results does
// not close the group; call Wait for that (its slice holds every result,
// whether a range took it or not).
func (g *Group[T]) Results() iter.Seq[GroupResult[T]] {
	return func(yield func(GroupResult[T]) bool) {
		if !g.valid() {
			return
		}
		for {
			c := g.take()
			if c == nil || !yield(c.outcome()) {
				return
			}
		}
	}
}

// take returns the next completed job no range has taken, waiting while
// jobs are pending, or nil when none is pending and none is left.
func (g *Group[T]) take() *gcall[T] {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rangers.Add(1) // before looking: see complete
	defer g.rangers.Add(-1)
	for {
		if len(g.results) > 0 {
			c := g.results[0]
			g.results[0] = nil
			g.results = g.results[1:]
			return c
		}
		if h := g.doneList.Swap(nil); h != nil {
			n := len(g.results)
			for c := h; c != nil; c = c.next {
				g.results = append(g.results, c)
			}
			for i, j := n, len(g.results)-1; i < j; i, j = i+1, j-1 { // oldest first
				g.results[i], g.results[j] = g.results[j], g.results[i]
			}
			continue
		}
		if g.pending() == 0 {
			if g.doneList.Load() != nil {
				continue // pushed before pending fell to zero
			}
			return nil
		}
		g.ready.Wait()
	}
}

// outcome is c's result as Results yields it. Only call it once c has
// completed: its value and error are final.
func (c *gcall[T]) outcome() GroupResult[T] {
	return GroupResult[T]{ID: c.id, Index: int(c.index), Value: c.value, Err: c.err}
}
