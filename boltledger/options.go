package boltledger

import (
	"fmt"
	"time"

	"github.com/qpool/qpool"
)

// Option configures [Open].
type Option interface {
	apply(*config)
}

type config struct {
	codec       qpool.Codec
	lockTimeout time.Duration
	readOnly    bool
	maxSize     int
	maxBatch    int
}

// defaultLockTimeout bounds the wait for a file another process holds.
const defaultLockTimeout = time.Second

// defaultMaxBatch caps the changes of one group commit, which bounds the
// size of one transaction's dirty pages.
const defaultMaxBatch = 4096

func newConfig(opts []Option) config {
	c := config{codec: qpool.JSONCodec{}, lockTimeout: defaultLockTimeout, maxBatch: defaultMaxBatch}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

type codecOption struct{ c qpool.Codec }

// WithCodec encodes values with c instead of [qpool.JSONCodec]. A nil c
// keeps the default. Every process that opens the file must use the same
// codec.
func WithCodec(c qpool.Codec) Option { return codecOption{c} }

func (o codecOption) apply(c *config) {
	if o.c != nil {
		c.codec = o.c
	}
}
func (o codecOption) String() string { return fmt.Sprintf("WithCodec(%T)", o.c) }

type lockTimeoutOption time.Duration

// WithLockTimeout sets how long [Open] waits for a file another process
// holds before it fails with [ErrLocked]; the default is one second. A
// duration ≤ 0 keeps the default: Open never waits forever.
func WithLockTimeout(d time.Duration) Option { return lockTimeoutOption(d) }

func (o lockTimeoutOption) apply(c *config) {
	if o > 0 {
		c.lockTimeout = time.Duration(o)
	}
}
func (o lockTimeoutOption) String() string {
	return fmt.Sprintf("WithLockTimeout(%v)", time.Duration(o))
}

type readOnlyOption struct{}

// WithReadOnly opens the file for reading only, with a shared lock, so that
// several processes may read it at once while none writes. Appends,
// Compact and Drop fail with [ErrReadOnly].
func WithReadOnly() Option { return readOnlyOption{} }

func (readOnlyOption) apply(c *config) { c.readOnly = true }
func (readOnlyOption) String() string  { return "WithReadOnly()" }

type maxSizeOption int

// WithMaxSize caps the file at n bytes: a write that would grow it further
// fails with [ErrFull] and records nothing, as a full disk would. n ≤ 0
// means no cap (the default).
func WithMaxSize(n int) Option { return maxSizeOption(n) }

func (o maxSizeOption) apply(c *config) { c.maxSize = max(int(o), 0) }
func (o maxSizeOption) String() string  { return fmt.Sprintf("WithMaxSize(%d)", int(o)) }

type maxBatchOption int

// WithMaxBatch caps how many changes one group commit (one transaction and
// one fsync) holds; the default is 4096. n ≤ 0 keeps the default.
func WithMaxBatch(n int) Option { return maxBatchOption(n) }

func (o maxBatchOption) apply(c *config) {
	if o > 0 {
		c.maxBatch = int(o)
	}
}
func (o maxBatchOption) String() string { return fmt.Sprintf("WithMaxBatch(%d)", int(o)) }
