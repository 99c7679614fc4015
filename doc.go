// Package qpool is an embeddable, in-process job pool with entanglements:
// named state shared by related jobs, behind an append-only, sequenced
// ledger.
//
// # Jobs
//
// A [Pool] runs functions on a bounded set of workers. [Submit] (typed,
// context-aware) and [Pool.Schedule] (the context-free form) take a job ID
// and return a [Future]; [Pool.Go] runs a bare function with no ID and no
// future. Job options add a per-attempt timeout ([WithTimeout]), retries with
// exponential backoff and jitter ([WithRetry]) and dependencies on other jobs
// by ID ([WithDependencies]); all of them ride on one job path.
//
//	p := qpool.NewPool(qpool.WithWorkers(8))
//	defer p.Close()
//	f := qpool.Submit(p, "thumb-42", makeThumbnail,
//		qpool.WithTimeout(5*time.Second), qpool.WithRetry(3, 100*time.Millisecond))
//	img, err := f.Wait(ctx)
//
// A [Group] runs a batch of jobs on a pool without inventing IDs, and
// collects them: results in submission order, errors joined or first, a
// context cancelled on the first failure ([WithCancelOnError]), and an
// iterator over results as they complete.
//
// Bad input never panics: it resolves the future with an error wrapping one
// of the sentinels in errors.go ([ErrInvalidJob], [ErrDuplicateJob],
// [ErrPoolClosed], ...). A panicking job resolves with a [*PanicError].
//
// # Entanglements
//
// An [Entanglement] is a key/value state shared by related jobs. Every
// change is recorded in a [Ledger] as a [StateChange] with a gap-free
// sequence, so a job that starts late still sees every change, in order:
// [Entanglement.GetStateHistory] replays it, [Entanglement.Watch] replays
// then follows it, and [Entanglement.Await] waits for a key. Callbacks
// ([Entanglement.OnStateChange], [WithOnChange]) run once per change, in
// order, never under a lock. With a TTL, a timer releases the state once the
// entanglement has been idle that long.
//
//	e := qpool.NewEntanglement("pipeline", jobs, time.Hour)
//	defer e.Close()
//	_ = e.UpdateState("raw", data)
//	for change := range e.Watch(ctx, 0) { ... }
//
// The in-memory [MemoryLedger] is the default; other ledgers plug in with
// [WithLedger] and [OpenEntanglement] and are checked by the ledgertest
// package.
//
// # Observability
//
// [WithObserver] registers hooks for each job's lifecycle (submitted,
// started, retried, finished with an [Outcome]), called outside every lock
// and at no cost to a pool without one; [WithParent] carries a context's
// values (a trace span) from the submitter into the job.
// [WithEntanglementObserver] does the same for an entanglement's changes,
// expiry and close. [Pool.Jobs], [Pool.Job], [Pool.Cancel] and
// [Stats].OldestQueued show what a pool holds now, without stopping it.
// No goroutine is started for any of them.
//
// # Goroutines
//
// Every goroutine has an owner and an end:
//
//	goroutine / timer     started by                     ends when                          waited in
//	workers               a submission with none idle    idle reaper, Resize, Close         Pool.Close
//	                      (or a worker, Resize: a task
//	                      queued with none idle)
//	idle reaper           a worker starting (a timer)    no worker and no retained result   Pool.Close
//	                                                     left, or Close stops it
//	dependent hand-off    a dependency finishing while   the job finds room, or abort       Pool.Close
//	                      the queue is full
//	context watcher       NewPool with WithContext       the context ends (runs once)       Pool.Close
//	group watcher         NewGroup with a cancellable    the context ends (runs once)       Group.Wait
//	                      context
//	shutdown wake-up      Shutdown's ctx ending while    it has woken Shutdown's wait       Pool.Shutdown
//	                      Shutdown waits
//	job timeout           an attempt with WithTimeout    the attempt ends                   the worker
//	watch feed            Entanglement.Watch             ctx ends, Close, expiry            Entanglement.Close
//	reaper                a TTL > 0 (a timer, no loop)   fires, or Close stops it           Entanglement.Close*
//	follower              opening on a SharedLedger      Close, expiry                      Entanglement.Close*
//
// (*) Close waits for it, callbacks included, unless Close is called from
// a callback (OnExpire; a remote change's callbacks), which may be this
// goroutine's: it then ends when that callback returns.
//
// An idle pool holds no goroutines once [WithIdleTimeout] has passed twice.
//
// # Caveats
//
// Stored values are not copied: a map stored with UpdateState and changed
// afterwards changes what GetState and the history return, unless the
// entanglement copies values with [WithValueCopy]. Durability depends on the
// ledger: the default keeps everything in memory. A job that submits into
// its own saturated pool blocks in Submit until there is room, or fails
// with ErrPoolClosed once Close begins. A job that waits for a job queued
// behind it holds its worker while it waits: if every worker waits like
// that, the queued job never runs and Close, which waits for every
// accepted job, waits for ever, unless the waits use the job's context
// and end by Shutdown's deadline (see "Waiting inside a job" in
// docs/pool.md).
package qpool
