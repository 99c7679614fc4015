package natsledger

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
)

// Ledger is a qpool.Ledger kept in a JetStream stream, shared by every
// process that opens the same entanglement ID on the same NATS deployment.
// All methods are safe for concurrent use. The zero value is not usable;
// build one with [Open].
type Ledger struct {
	id     string
	stream string
	prefix string // subject prefix, without the trailing '.'
	cfg    config
	nc     *nats.Conn
	js     jetstream.JetStream
	st     jetstream.Stream

	mu        sync.Mutex // guards the replica: the fields below
	state     map[string]*slot
	applied   uint64   // stream sequence of the last applied message
	floor     uint64   // oldest readable sequence (ours, not the stream's)
	recent    []record // the cache of recent changes, in sequence order
	cacheFrom uint64   // every retained change from here on is in recent
	changed   chan struct{}
	waiters   waitHeap
	owns      map[string][]*own // appends waiting for their message, by message ID (a Retry may run beside another, or beside a settle)
	closed    bool

	// stallSeen is l.applied as an append that found the replica behind
	// last saw it, at stallSince; see stalled. Guarded by mu.
	stallSeen  uint64
	stallSince time.Time

	outbox outbox // combines concurrent unacknowledged publishes

	unsettled unsettled // appends whose outcome is unknown: see settle.go

	feedMu  sync.Mutex // guards msgs against Close racing a feed restart
	msgs    jetstream.MessagesContext
	stop    chan struct{}   // closed by Close: the feed must end
	life    context.Context // ends on Close, cutting the feed's requests short
	endLife context.CancelFunc
	done    chan struct{} // closed when the feed has ended

	reconnectsDone chan struct{} // closed when reconnects has ended
}

var _ qpool.CodecLedger = (*Ledger)(nil)

// slot is the replica's view of one key.
type slot struct {
	data    []byte // encoded value; nil after a deletion
	rev     uint64 // stream sequence of the key's last message
	oldest  uint64 // lowest stream sequence of the key still stored
	deleted bool
}

// record is one change as the cache keeps it, value still encoded.
type record struct {
	seq     uint64 // our sequence: stream sequence - 1
	nanos   int64
	key     string
	data    []byte
	deleted bool
}

// Open binds a ledger to the stream of entanglement id on nc, creating
// the stream if it does not exist, and returns once the local replica has
// replayed the stream's history, so that Snapshot and Bounds reflect it.
// The connection stays the caller's: close it after the ledger. Use
// nats.ReconnectBufSize(-1) on nc so that a publish made while the
// connection is down fails at once instead of being sent, maybe
// unexpectedly late, after a reconnect. An Open made while the server is
// down keeps asking until its timeout ([WithTimeout]), then fails with an
// error wrapping [ErrUnavailable] and context.DeadlineExceeded.
func Open(ctx context.Context, nc *nats.Conn, id string, opts ...Option) (*Ledger, error) {
	if nc == nil {
		return nil, fmt.Errorf("natsledger: open %q: nil connection: %w", id, ErrInvalidConfig)
	}
	cfg := newConfig(opts)
	if cfg.replicasSet && (cfg.replicas < 1 || cfg.replicas > MaxReplicas) {
		return nil, fmt.Errorf("natsledger: open %q: WithReplicas(%d): want 1 to %d: %w", id, cfg.replicas, MaxReplicas, ErrInvalidConfig)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(maxAttempt))
	if err != nil {
		return nil, fmt.Errorf("natsledger: open %q: %w", id, err)
	}
	l := &Ledger{
		id:     id,
		stream: StreamName(id),
		prefix: subjectPrefix(id),
		cfg:    cfg,
		nc:     nc,
		js:     js,
		state:  make(map[string]*slot),
		owns:   make(map[string][]*own),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),

		reconnectsDone: make(chan struct{}),
	}
	l.life, l.endLife = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	last, err := l.ensureStream(ctx)
	if err != nil {
		l.endLife()
		return nil, fmt.Errorf("natsledger: open %q: %w", id, err)
	}
	// Owner: the ledger. Both end when Close closes stop; waited in Close.
	go l.feed()
	go l.reconnects(nc.StatusChanged(nats.CONNECTED))
	if err := l.waitApplied(ctx, last); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("natsledger: open %q: replay: %w", id, err)
	}
	return l, nil
}

// ensureStream finds or creates the stream, sets the replica's starting
// point, and returns the stream sequence the replay must reach.
func (l *Ledger) ensureStream(ctx context.Context) (uint64, error) {
	st, err := l.findOrCreate(ctx)
	if err != nil {
		var apiErr *jetstream.APIError
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == 10074:
			// "replicas > 1 not supported in non-clustered mode":
			// WithReplicas(n > 1) on a server that is not in a cluster.
			err = fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return 0, err
	}
	info := st.CachedInfo()
	want := l.prefix + ".>"
	if len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != want {
		return 0, fmt.Errorf("stream %s has subjects %v, want [%s]: %w", l.stream, info.Config.Subjects, want, ErrInvalidConfig)
	}
	// Invariant: a ledger opened with WithReplicas(n) runs on a stream
	// with n replicas. Find-or-create binds to a stream whatever its
	// configuration (another process may make it, with other replicas,
	// between our lookup and our create), so the stream is checked as it
	// is, after either path, and nothing here changes it. Only a change
	// of the stream made after Open (the nats tool) can break this; it is
	// not checked again.
	if have := max(info.Config.Replicas, 1); l.cfg.replicasSet && have != l.cfg.replicas {
		return 0, fmt.Errorf("stream %s has %d replicas, WithReplicas(%d): %w", l.stream, have, l.cfg.replicas, ErrConfigMismatch)
	}
	l.st = st
	s := info.State
	start := s.LastSeq // nothing stored: the replay is done
	if s.Msgs > 0 {
		start = s.FirstSeq - 1
	}
	l.applied, l.floor, l.cacheFrom = start, start, start
	return s.LastSeq, nil
}

func (l *Ledger) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        l.stream,
		Description: fmt.Sprintf("qpool entanglement %q", l.id),
		Subjects:    []string{l.prefix + ".>"},
		Storage:     l.cfg.storage,
		Replicas:    l.cfg.replicas,
		Duplicates:  l.cfg.dupWindow,
		AllowDirect: true,
	}
}

// ID returns the entanglement ID the ledger was opened for.
func (l *Ledger) ID() string { return l.id }

// Stream returns the name of the JetStream stream behind the ledger.
func (l *Ledger) Stream() string { return l.stream }

// Codec implements qpool.CodecLedger.
func (l *Ledger) Codec() qpool.Codec { return l.cfg.codec }

// Close implements qpool.Ledger: it stops the replica feed and waits for
// it, wakes every Changed channel and releases the replica. The stream and
// its data stay on the server. Close is idempotent.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		<-l.reconnectsDone
		return nil
	}
	l.closed = true
	l.state, l.recent = nil, nil
	l.notify()
	for l.waiters.Len() > 0 {
		close(heap.Pop(&l.waiters).(waiter).ch)
	}
	for id, ws := range l.owns {
		for _, w := range ws {
			w.err = qpool.ErrClosed
			close(w.done)
		}
		delete(l.owns, id)
	}
	l.mu.Unlock()

	close(l.stop)
	l.endLife()
	l.feedMu.Lock()
	if l.msgs != nil {
		l.msgs.Stop()
	}
	l.feedMu.Unlock()
	<-l.done
	<-l.reconnectsDone
	return nil
}

// Drop implements qpool.Ledger: it closes the ledger and deletes the
// stream, for every process. Other processes' ledgers then fail their
// appends with [ErrUnavailable] until they expire or close too.
func (l *Ledger) Drop(ctx context.Context) error {
	_ = l.Close()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	err := l.js.DeleteStream(ctx, l.stream)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("natsledger: drop %q: %w", l.id, err)
	}
	return nil
}

// notify closes the Changed channel. The caller holds mu.
func (l *Ledger) notify() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

func (l *Ledger) logger() *slog.Logger { return l.cfg.logger }

// Shared reports true: other processes append to the same stream, so
// changes appear in this ledger that no local Append made. (For a
// qpool.SharedLedger interface the root package may use to deliver those
// changes to callbacks; see docs/distributed.md.)
func (l *Ledger) Shared() bool { return true }
