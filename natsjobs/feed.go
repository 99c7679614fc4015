package natsjobs

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// feed follows the puts to a KV bucket from the moment it starts, with no
// gap across reconnections, and hands each entry to fn on its own
// goroutine, in order. A client follows the results bucket with one (one
// watcher per process, whatever the number of futures), a worker the
// cancels bucket.
//
// Why not a plain KV watcher: its ordered consumer lives on the server, and
// after a server restart it notices the loss only through missed
// heartbeats, some twenty seconds later (TestServerRestart saw every future
// wait that long). The feed restarts its watcher as soon as the connection
// is back, from the revision after the last one it handed on, so nothing
// is missed and nothing is handed on twice.
type feed struct {
	kv   jetstream.KeyValue
	nc   *nats.Conn
	fn   func(jetstream.KeyValueEntry)
	stop context.CancelFunc
	done chan struct{}

	// Owned by run's goroutine once started.
	next uint64 // the revision to resume from
}

// startFeed begins at the bucket's next revision and starts the feed's
// goroutine, which Close ends and waits for.
func startFeed(ctx context.Context, kv jetstream.KeyValue, nc *nats.Conn, fn func(jetstream.KeyValueEntry)) (*feed, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	f := &feed{kv: kv, nc: nc, fn: fn, done: make(chan struct{}), next: 1}
	if s, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		f.next = s.StreamInfo().State.LastSeq + 1
	}
	fctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	w, err := f.watch(fctx)
	if err != nil {
		stop()
		return nil, err
	}
	// Owner: the feed. Ends when Close cancels fctx; Close waits for it.
	go f.run(fctx, w)
	return f, nil
}

func (f *feed) watch(ctx context.Context) (jetstream.KeyWatcher, error) {
	return f.kv.WatchAll(ctx, jetstream.IncludeHistory(), jetstream.ResumeFromRevision(f.next), jetstream.IgnoreDeletes())
}

func (f *feed) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(f.done)
	status := f.nc.StatusChanged(nats.CONNECTED)
	defer f.nc.RemoveStatusListener(status)
	for {
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.Updates()
		}
		select {
		case <-ctx.Done():
			if w != nil {
				_ = w.Stop()
			}
			return
		case e, ok := <-updates:
			if !ok { // the subscription ended under us: start again
				w = f.rewatch(ctx, nil)
				continue
			}
			if e == nil {
				continue // the end of what was stored when the watch began
			}
			if e.Revision() < f.next {
				continue
			}
			f.next = e.Revision() + 1
			if e.Operation() == jetstream.KeyValuePut {
				f.fn(e)
			}
		case <-status: // reconnected: the server may have lost the watcher's consumer
			w = f.rewatch(ctx, w)
		}
	}
}

// rewatch replaces w with a watcher from f.next, trying until it succeeds
// or ctx ends (then it returns nil).
func (f *feed) rewatch(ctx context.Context, w jetstream.KeyWatcher) jetstream.KeyWatcher {
	if w != nil {
		_ = w.Stop()
	}
	for {
		nw, err := f.watch(ctx)
		if err == nil {
			return nw
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the feed and waits for its goroutine.
func (f *feed) Close() {
	f.stop()
	<-f.done
}
