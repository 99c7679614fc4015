package natsjobs

import "context"

// WithBeforeBegin makes a worker call f with a job's ID in each delivery
// just before the run registers (begin): tests use it to hold a job that
// the local pool has taken but not yet begun.
func WithBeforeBegin(f func(id string)) Option { return func(c *config) { c.beforeBegin = f } }

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
