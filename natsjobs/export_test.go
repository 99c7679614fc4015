package natsjobs

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WithBeforeBegin makes a worker call f with a job's ID in each delivery
// just before the run registers (begin): tests use it to hold a job that
// the local pool has taken but not yet begun.
func WithBeforeBegin(f func(id string)) Option { return func(c *config) { c.beforeBegin = f } }

// WithClaimDelay makes a client pause for d between sending a job's
// message and creating its claim, when it sends both at once: tests use it
// to have a message delivered before its claim is stored.
func WithClaimDelay(d time.Duration) Option { return func(c *config) { c.claimDelay = d } }

// ReadThroughLeader makes c read its buckets as it does when they have
// replicas, through the streams' leaders (kvBucket), or not: tests measure
// what that costs on one server and run the leader's path there.
func ReadThroughLeader(c *Client, on bool) {
	for _, b := range []*kvBucket{c.s.jobs, c.s.results, c.s.deps, c.s.cancels} {
		b.viaLeader = on
	}
}

// Dependents lists the jobs linked to id as their dependency, as a
// finisher does.
func Dependents(ctx context.Context, c *Client, id string) ([]string, error) {
	return c.s.dependents(ctx, id)
}

// BatchGetter exposes a worker's batched KV reads (lastget.go) to tests.
type BatchGetter struct{ g *batchGetter }

// NewBatchGetter returns the batched reader of kv; nil if kv cannot be
// read in batches.
func NewBatchGetter(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*BatchGetter, error) {
	g, err := newBatchGetter(ctx, js, kv)
	if g == nil {
		return nil, err
	}
	return &BatchGetter{g}, err
}

// Get reads key: its value and whether it exists.
func (b *BatchGetter) Get(ctx context.Context, key string) ([]byte, bool, error) {
	return b.g.get(ctx, key)
}

// Close closes the reader.
func (b *BatchGetter) Close() { b.g.close() }

// OutcomeMargin is how much longer than a claim an outcome is kept
// (outcomeMargin): the attack hammers check outcomes against it.
const OutcomeMargin = outcomeMargin
