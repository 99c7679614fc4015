package natsjobs

// WithBeforeBegin makes a worker call f with a job's ID in each delivery
// just before the run registers (begin): tests use it to hold a job that
// the local pool has taken but not yet begun.
func WithBeforeBegin(f func(id string)) Option { return func(c *config) { c.beforeBegin = f } }
