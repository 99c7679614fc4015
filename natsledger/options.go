package natsledger

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
)

// Option configures [Open].
type Option interface{ apply(*config) }

type config struct {
	timeout  time.Duration
	codec    qpool.Codec
	storage  jetstream.StorageType
	replicas int
	// replicasSet: WithReplicas was given, so an existing stream must
	// have replicas replicas (see ensureStream).
	replicasSet bool
	dupWindow   time.Duration
	cacheSize   int
	logger      *slog.Logger
}

func newConfig(opts []Option) config {
	c := config{
		timeout:   5 * time.Second,
		codec:     qpool.JSONCodec{},
		storage:   jetstream.FileStorage,
		replicas:  1,
		dupWindow: 2 * time.Minute,
		cacheSize: 4096,
		logger:    slog.Default(),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTimeout bounds each operation on the server: an Append, including its
// retries and the wait for the replica, and each message of a history
// read. The entanglement calls the ledger without a deadline, so this is
// how long UpdateState can take when the server is unreachable. The
// default is 5 seconds; d ≤ 0 keeps it.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithCodec encodes values with codec instead of qpool.JSONCodec. Every
// process sharing an entanglement must use the same codec.
func WithCodec(codec qpool.Codec) Option {
	return optionFunc(func(c *config) {
		if codec != nil {
			c.codec = codec
		}
	})
}

// WithStorage chooses the stream's storage when Open creates it:
// jetstream.FileStorage (the default) or jetstream.MemoryStorage.
func WithStorage(s jetstream.StorageType) Option {
	return optionFunc(func(c *config) { c.storage = s })
}

// MaxReplicas is the most replicas [WithReplicas] accepts: a JetStream
// stream has at most five.
const MaxReplicas = 5

// WithReplicas sets how many servers of a cluster hold the stream when
// Open creates it, from 1 to [MaxReplicas] (1 by default; 3 survives the
// loss of one server). Without WithReplicas, Open uses a stream that
// exists with whatever replicas it has. Given, n must match the stream
// that exists, or Open fails with [ErrConfigMismatch] naming both counts
// and changes nothing (change the replicas of an existing stream with the
// nats tool). A value outside 1..MaxReplicas fails Open with
// [ErrInvalidConfig] before anything is made on the server, and so does a
// value above 1 for a new stream on a server that is not in a cluster.
// Processes that open a new ID together race to create its stream: the
// losers wait for the winner's (within Open's timeout) and use it, or
// fail with ErrConfigMismatch if their WithReplicas differs.
func WithReplicas(n int) Option {
	return optionFunc(func(c *config) { c.replicas, c.replicasSet = n, true })
}

// WithDuplicateWindow sets how long the stream remembers message IDs when
// Open creates it (2 minutes by default): a retried publish within the
// window is stored once.
func WithDuplicateWindow(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.dupWindow = d
		}
	})
}

// WithCacheSize sets how many recent changes the replica keeps in memory
// (4096 by default), so that watches and reads of recent history need no
// round trip. Older history is read from the stream.
func WithCacheSize(n int) Option {
	return optionFunc(func(c *config) { c.cacheSize = max(n, 1) })
}

// WithLogger sets where the replica feed reports errors it recovers from
// (slog.Default() otherwise).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}
