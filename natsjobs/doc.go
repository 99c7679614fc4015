// Package natsjobs runs qpool's named jobs on a fleet of worker processes
// through NATS JetStream, with the futures, retries, timeouts and
// dependencies of the in-process pool, across processes and machines.
//
// Remote jobs cannot carry closures, so they are named: a worker process
// registers a typed handler under a name, and any process submits jobs of
// that name with a typed input and waits for the typed output through a
// [qpool.Future], which resolves in the submitting process (or in any
// other, with [Handle.Future] and [Client.Result]).
//
//	// Every process that runs jobs:
//	reg := natsjobs.NewRegistry()
//	resize := natsjobs.Register(reg, "image.resize", func(ctx context.Context, in ResizeArgs) (Thumb, error) {
//		return makeThumb(ctx, in)
//	})
//	w, err := natsjobs.NewWorker(ctx, js, reg, natsjobs.WithQueue("default"), natsjobs.WithConcurrency(64))
//	defer w.Shutdown(ctx)
//
//	// Any process that submits (a producer registers nothing: it may
//	// use natsjobs.Declare[ResizeArgs, Thumb]("image.resize") instead):
//	c, err := natsjobs.NewClient(ctx, js)
//	defer c.Close()
//	f := resize.Submit(ctx, c, "resize-42", ResizeArgs{ID: 42},
//		qpool.WithRetry(5, time.Second), qpool.WithTimeout(30*time.Second), qpool.WithDependencies("fetch-42"))
//	thumb, err := f.Wait(ctx)
//
// js is a [jetstream.JetStream] on a connection the caller owns and closes
// after the client and workers. Payloads and results go through a
// [qpool.Codec], JSON by default ([WithCodec]).
//
// # Guarantees
//
// Delivery is at least once. A job runs again when its worker dies (after
// [WithAckWait]), when the worker loses the server for longer than that,
// and when a worker shuts down while the job runs ([Worker.Shutdown] hands
// it back). Only the first outcome recorded for an ID counts: outcomes are
// created, never changed, in a KV bucket, so a second execution cannot
// record a second, different outcome, and every future of the job sees the
// same one. Handlers must therefore be idempotent: a duplicate execution
// is a second call with the same input whose result is discarded. See
// docs/jobs.md for what that means for side effects.
//
// A job ID is unique across processes for the retention ([WithRetention],
// a day by default): the submission claims it with a KV create, and a
// second submission of the ID fails with [ErrDuplicateJob] (the first job
// is left alone; [Handle.Future] waits for it). A claim expires before
// its job's outcome; a submission made in between resolves with the
// outcome that is kept, without running (unless its message reaches a
// worker only after that outcome expired: see docs/jobs.md).
//
// # Options
//
// Submissions take the pool's job options: [qpool.WithRetry],
// [qpool.WithTimeout] and [qpool.WithDependencies] mean what they mean in a
// pool. Errors marked with [qpool.Permanent] are not retried, and neither
// are panics, which fail the job. [qpool.WithRetryIf] is a function and
// cannot cross processes: give it to [Register], and every worker applies
// it to the jobs of that name; at submission it fails with
// [ErrLocalOption]. A dependency may be submitted by another process,
// before or after its dependent; a finishing job releases its dependents
// (no polling), and a failed one fails them with
// [qpool.ErrDependencyFailed] and a [*qpool.DependencyError].
//
// Errors cross the network as their messages ([RemoteError]), with their
// meaning kept where it matters: errors.Is finds context.Canceled for a
// cancelled job, context.DeadlineExceeded for a timeout, and
// [qpool.IsPermanent] holds for a permanent failure or a payload that did
// not decode.
//
// # Requirements
//
// nats-server 2.12 or later with JetStream: a long retry backoff is a
// scheduled message (ADR-51), which waits in the stream without holding a
// slot of the consumer's MaxAckPending. [NewWorker] and [NewClient] fail
// with [ErrUnsupported] on older servers. Tested with 2.15.2.
package natsjobs
