package qpool

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"strconv"
	"strings"
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
// A group's job costs somewhat more than a job given to [Submit]: one
// allocation of the same size (plus a 64th of one for generated IDs), no
// lock, and about 1.1 to 1.4 times the CPU time for a job that does
// nothing, by how loaded the machine is (docs/pool.md "Groups" has the
// measurements and the commands).
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

	// The jobs given, without a lock: see the protocol at submit. The
	// jobs pending are those recorded minus those finished, two counters
	// on lines of their own, as the pool counts accepted and finished
	// jobs: one counter written by both sides would move between their
	// cores twice per job.
	_ [64]byte
	// seq counts the jobs given to the group (its low bits: a job's index
	// is the count its Add returned, minus one) and holds seqClosed once
	// Wait has closed the group; jobs counted after that are refused.
	seq    atomic.Uint64
	ids    atomic.Pointer[idBlock]           // the newest block of generated IDs
	calls  chunked[atomic.Pointer[gcall[T]]] // the recorded jobs, by index
	closed atomic.Int64                      // jobs recorded when Wait closed the group
	mu     sync.Mutex                        // Wait and ranges: guards taken, L of idle and ready
	taken  int64                             // how many completed jobs ranges have taken
	next   []*gcall[T]                       // completed jobs to yield next, oldest first
	idle   sync.Cond                         // nothing pending
	ready  sync.Cond                         // a job completed

	// Written by whoever resolves a job (complete), without a lock.
	_ [64]byte
	// done is the list of completed jobs and their count, in one word so
	// that a completion costs one atomic operation on a shared line: the
	// count in the high 32 bits, and the index plus one of the newest
	// job in the low ones (0: none). Each job links to the one completed
	// before it (gcall.prev), which is how ranges find them (see take).
	done   atomic.Uint64
	failed atomic.Pointer[gcall[T]] // the first job to end with an error
	_      [64]byte
}

// finished returns how many recorded jobs have completed.
func (g *Group[T]) finished() int64 { return int64(g.done.Load() >> 32) }

// seqClosed is the bit of Group.seq that Wait sets to close the group.
const seqClosed = 1 << 63

// recorded returns how many jobs the group has recorded: every job counted
// by seq before Wait closed it, none after.
func (g *Group[T]) recorded() int64 {
	v := g.seq.Load()
	if v&seqClosed != 0 {
		return g.closed.Load() // stored before the bit: see Wait
	}
	return min(int64(v), maxGroupJobs) // jobs past it are refused
}

// pending returns how many recorded jobs have not completed. It reads
// finished first, so that a job recorded and completed between the two
// reads counts as pending, never the other way round.
func (g *Group[T]) pending() int64 {
	f := g.finished()
	return g.recorded() - f
}

// gcall is a group's job: the pool's call, so that the future and
// Pool.Result see an ordinary job, with the group's bookkeeping in the same
// allocation (128 bytes for a T of up to 8 bytes, as Submit's call: the
// group's lists are kept outside it). The job's runner is the gcall
// itself (its methods are call[T]'s), which is how the group finds it when
// the pool tells it of a resolution (Group.resolved).
type gcall[T any] struct {
	call[T]
	index int32 // place in submission order (a group holds fewer than 2^31 jobs)
	prev  int32 // the index plus one of the job completed before it, 0 if none: see Group.done
}

// A group's flags for its jobs, kept in the job's own flags (job.flags:
// the pool's flags take the low bits, TestGroupCallSize checks that they
// stay below these), so that a group's job is no larger than Submit's. Set
// with Or, read with Load; gByGroup is also cleared, with And.
const (
	gStarted   uint32 = 1 << (29 + iota) // handed to the pool: stop may resolve it
	gCompleted                           // counted by complete, exactly once
	gByGroup                             // stop is failing it: its completion stops nothing
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
//
// Recording takes no lock. The job's index comes from seq.Add, and the job
// is stored in its slot (see chunked) before it is handed to the pool, so
// it is there before it can complete. The invariants, and who may break them:
//
//   - A job is recorded (Wait returns it, and counts it pending until it
//     completes) exactly when its Add found seqClosed unset; otherwise it
//     is refused with ErrGroupClosed and never completes. Wait sets the
//     bit with a CompareAndSwap from the count it found all finished, so
//     no job is counted between its check and the close. A recorded job
//     must reach complete exactly once, whatever happens to it (every
//     path below ends in the pool's hook or in complete).
//   - Every recorded job is in its slot before it counts as finished:
//     Wait and a range, which read slots once finished equals recorded,
//     find every one. A slot is written once, by the job's submitter.
//   - stop and a submitter: the submitter stores the job in its slot, then
//     marks it started (handed to the pool), then reads stopping; stop
//     sets stopping, then reads the slots. One of the two sees the other
//     (sequentially consistent atomics): stop finds the job started, or
//     the submitter finds stopping set and fails the job itself. A slot
//     stop finds empty belongs to a submitter that will see stopping.
func (g *Group[T]) submit(id string, generate bool, fn func(context.Context) (T, error), opts []JobOption) *Future[T] {
	c := &gcall[T]{}
	c.fn = fn
	c.fut.j = &c.job
	if !g.valid() {
		c.resolveHere(id, nil, errNilGroup)
		return &c.fut
	}
	v := g.seq.Add(1)
	i := int(v&^seqClosed) - 1
	if generate {
		id = g.id(i)
	}
	c.index = int32(min(i, maxGroupJobs))
	switch {
	case v&seqClosed != 0:
		c.resolveHere(id, g.pool, jobError(id, ErrGroupClosed)) // not recorded
		return &c.fut
	case i >= maxGroupJobs:
		c.resolveHere(id, g.pool, jobError(id, fmt.Errorf("%w: a group holds at most %d jobs", ErrInvalidJob, maxGroupJobs))) // not recorded
		return &c.fut
	}
	g.calls.slot(i).Store(c) // before it is handed to the pool, or completes
	switch {
	case g.pool == nil:
		c.resolveHere(id, nil, jobError(id, fmt.Errorf("%w: nil pool", ErrInvalidJob)))
	case !g.pool.valid(): // a zero Pool: startWith would resolve it without the hook
		c.resolveHere(id, g.pool, jobError(id, ErrInvalidPool))
	case !generate && isGeneratedID(id):
		c.resolveHere(id, g.pool, jobError(id, fmt.Errorf("%w: the form of a group's generated IDs", ErrInvalidJob)))
	case g.ctx.Err() != nil: // stopping, or about to be (see stop)
		c.resolveHere(id, g.pool, jobError(id, context.Cause(g.ctx)))
	default:
		// From here the pool resolves the job, refused (reject) or
		// accepted (settle), and calls the hook, which completes it.
		// The submitter must not complete it itself, even when it finds
		// it done: a worker may have resolved it and not yet counted it
		// in Stats, which Wait's caller may read next
		// (TestGroupWaitThenStats).
		g.pool.startWith(&c.job, c, id, fn == nil, &g.jobCfg, opts)
		c.flags.Or(gStarted)
		if !c.isDone() && g.stopping.Load() { // stop may not have seen it started
			g.fail(c)
		}
		return &c.fut
	}
	g.complete(c)
	return &c.fut
}

// chunked is a list of slots (atomics) indexed from 0 that grows without
// moving and without a lock for its readers and writers: chunk k holds
// chunk0<<k slots, from index chunk0*(2^k-1) on, maxGroupJobs in all.
type chunked[S any] struct {
	dir  [chunks]atomic.Pointer[[]S]
	grow sync.Mutex // makes a chunk
}

const (
	chunk0       = 64
	chunks       = 25
	maxGroupJobs = chunk0 * (1<<chunks - 1) // just under 2^31
)

// chunkOf returns the chunk that holds index i and i's place in it.
func chunkOf(i int) (k, off int) {
	k = bits.Len(uint(i/chunk0+1)) - 1
	return k, i - chunk0*(1<<k-1)
}

// slot returns slot i, making its chunk if needed, or nil from
// maxGroupJobs on. A chunk is made once, under grow, and published with an
// atomic store, which readers load.
func (l *chunked[S]) slot(i int) *S {
	if i < 0 || i >= maxGroupJobs {
		return nil
	}
	k, off := chunkOf(i)
	ch := l.dir[k].Load()
	if ch == nil {
		l.grow.Lock()
		if ch = l.dir[k].Load(); ch == nil {
			s := make([]S, chunk0<<k)
			ch = &s
			l.dir[k].Store(ch)
		}
		l.grow.Unlock()
	}
	return &(*ch)[off]
}

// peek returns slot i, or nil if its chunk has not been made.
func (l *chunked[S]) peek(i int) *S {
	if i < 0 || i >= maxGroupJobs {
		return nil
	}
	k, off := chunkOf(i)
	if ch := l.dir[k].Load(); ch != nil {
		return &(*ch)[off]
	}
	return nil
}

// each calls f with the first n slots, in index order, skipping chunks not
// made.
func (l *chunked[S]) each(n int, f func(*S)) {
	for k := 0; n > 0 && k < chunks; k++ {
		m := min(n, chunk0<<k)
		n -= m
		if ch := l.dir[k].Load(); ch != nil {
			for i := range (*ch)[:m] {
				f(&(*ch)[i])
			}
		}
	}
}

// idChunk is how many generated IDs are made at once: one string holds
// them all, so that a generated ID costs a fraction of an allocation.
const idChunk = 64

// idBlock holds the generated IDs base to base+idChunk-1, one after
// another in ids; end[k] is where the ID of base+k ends.
type idBlock struct {
	base int
	ids  string
	end  [idChunk]uint16
}

// id returns the generated ID of the job at index i, without a lock. The
// newest block serves most indexes, since they are handed out in order;
// a submitter whose index is past it makes the next block and publishes
// it (two that race both make one, and the later store wins: either block
// serves its maker, and the newest is kept), and one whose index is
// before it, having been delayed, makes its ID alone. Blocks are never
// changed once published.
func (g *Group[T]) id(i int) string {
	b := g.ids.Load()
	switch {
	case b == nil || i >= b.base+idChunk:
		nb := g.idBlock(i - i%idChunk)
		for b == nil || b.base < nb.base { // only forward
			if g.ids.CompareAndSwap(b, nb) {
				break
			}
			b = g.ids.Load()
		}
		b = nb
	case i < b.base:
		return g.prefix + strconv.Itoa(i)
	}
	k := i - b.base
	start := uint16(0)
	if k > 0 {
		start = b.end[k-1]
	}
	return b.ids[start:b.end[k]]
}

// idBlock makes the generated IDs base to base+idChunk-1.
func (g *Group[T]) idBlock(base int) *idBlock {
	nb := &idBlock{base: base}
	var b strings.Builder // its String does not copy: one allocation
	b.Grow(idChunk * (len(g.prefix) + len(strconv.Itoa(base+idChunk))))
	var digits [24]byte
	n := strconv.AppendInt(digits[:0], int64(base), 10)
	for k := range idChunk {
		if k > 0 {
			n = incDecimal(n)
		}
		b.WriteString(g.prefix)
		b.Write(n)
		nb.end[k] = uint16(b.Len()) // 64 IDs of at most 32 bytes each
	}
	nb.ids = b.String()
	return nb
}

// incDecimal adds one to the decimal number in n, in place: the next ID
// of a block costs a few byte compares rather than a conversion. n must
// have room for one more digit.
func incDecimal(n []byte) []byte {
	for i := len(n) - 1; i >= 0; i-- {
		if n[i] < '9' {
			n[i]++
			return n
		}
		n[i] = '0'
	}
	n = append(n, '0') // all nines: one followed by zeros
	n[0] = '1'
	return n
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
// its waiters are woken, outside every lock of the pool; reject calls it
// too, for a job the pool refuses, after counting it.
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
	// Push c on the list of completed jobs and count it, in one step:
	// c.prev is written before the CompareAndSwap publishes c, and never
	// after (c is pushed once), so whoever loads done and walks the list
	// reads links that are final. Rangers and waiters count themselves
	// under mu before they look, and the broadcast takes mu, so one of
	// the two sees the other. Waiters are only woken by the completion
	// that leaves nothing pending (the one whose count reaches recorded;
	// a job recorded meanwhile is woken for by its own completion), so
	// that a Wait does not cost every job a lock.
	var f int64
	for {
		d := g.done.Load()
		c.prev = int32(uint32(d))
		if g.done.CompareAndSwap(d, (d>>32+1)<<32|uint64(c.index+1)) {
			f = int64(d>>32 + 1)
			break
		}
	}
	r := g.rangers.Load() > 0
	if w := g.waiters.Load() > 0; r || w {
		none := w && g.recorded() == f
		if r || none {
			g.mu.Lock()
			if r {
				g.ready.Broadcast()
			}
			if none {
				g.idle.Broadcast()
			}
			g.mu.Unlock()
		}
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
	g.calls.each(int(g.recorded()), func(s *atomic.Pointer[gcall[T]]) { // see submit
		if c := s.Load(); c != nil && c.flags.Load()&gStarted != 0 {
			g.fail(c)
		}
	})
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
	g.waiters.Add(1) // before looking: see complete
	for {
		v := g.seq.Load()
		if v&seqClosed != 0 {
			break // closed by another Wait
		}
		// Close when every job counted in v has finished, and none was
		// counted since (the CompareAndSwap): see submit. closed is
		// stored before the bit, for recorded; only a Wait stores it,
		// under mu, so this one is the last before the bit is set.
		if n := min(int64(v), maxGroupJobs); g.finished() == n {
			g.closed.Store(n)
			if g.seq.CompareAndSwap(v, v|seqClosed) {
				break
			}
			continue
		}
		g.idle.Wait()
	}
	g.waiters.Add(-1)
	g.mu.Unlock()
	g.once.Do(g.finish)

	values := make([]T, min(g.closed.Load(), maxGroupJobs))
	var errs []error
	g.calls.each(len(values), func(s *atomic.Pointer[gcall[T]]) {
		if c := s.Load(); c != nil { // every recorded job is: see submit
			values[c.index] = c.value
			if c.err != nil {
				errs = append(errs, c.err)
			}
		}
	})
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
		if len(g.next) > 0 {
			c := g.next[0]
			g.next[0] = nil
			g.next = g.next[1:]
			return c
		}
		// Take the jobs completed since the last take: the newest n of
		// the list, walked from its head, oldest first in g.next.
		d := g.done.Load()
		if n := int64(d>>32) - g.taken; n > 0 {
			g.next = slices.Grow(g.next[:0], int(n))[:n]
			for k, i := n-1, int32(uint32(d)); k >= 0; k-- {
				c := g.calls.peek(int(i - 1)).Load() // stored before it completed
				g.next[k], i = c, c.prev
			}
			g.taken += n
			continue
		}
		if g.pending() == 0 {
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
