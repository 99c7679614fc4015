package qpool

import "time"

// JobSpec is what a list of [JobOption] sets, for code that runs jobs
// somewhere other than a [Pool] (natsjobs runs them on remote workers) and
// must honour the same options. The zero value of a field means the option
// was not given or was given its default.
type JobSpec struct {
	// Timeout bounds each attempt ([WithTimeout]); zero means none.
	Timeout time.Duration
	// Attempts is the most attempts in all ([WithRetry]); at least 1.
	Attempts int
	// Backoff is the sleep before the second attempt, doubled after each
	// further one, with jitter ([WithRetry], [Backoff]).
	Backoff time.Duration
	// RetryIf narrows which errors are retried ([WithRetryIf]); nil
	// retries every error but a permanent one.
	RetryIf func(error) bool
	// Dependencies are the IDs the job waits for ([WithDependencies]).
	Dependencies []string
	// Entanglement is the entanglement the job joins ([WithEntanglement]).
	Entanglement *Entanglement
}

// SpecOf applies opts, in order, to the defaults of a pool's job (one
// attempt, no timeout, no dependencies) and returns what they set. Nil
// options are skipped, as Submit skips them.
func SpecOf(opts ...JobOption) JobSpec {
	c := jobConfig{attempts: 1}
	for _, o := range opts {
		if o != nil {
			o.applyJob(&c)
		}
	}
	return JobSpec{
		Timeout:      c.timeout,
		Attempts:     max(c.attempts, 1),
		Backoff:      c.backoff,
		RetryIf:      c.retryIf,
		Dependencies: append([]string(nil), c.deps...),
		Entanglement: c.entanglement,
	}
}

// Retryable reports whether an attempt that failed with err may run again
// under s: not when err is a [*PermanentError], and not when RetryIf says
// no. It does not look at the attempt count. A RetryIf that panics stops
// the retries: Retryable then returns false and the panic as a
// [*PanicError] for job id.
func (s JobSpec) Retryable(id string, err error) (bool, error) {
	c := jobConfig{retryIf: s.RetryIf}
	return c.retryable(id, err)
}

// Backoff returns the sleep before attempt+1 (attempt counts from 1) for a
// job with the given base backoff: base doubled per attempt, plus up to
// half of that at random, exactly as a pool's worker sleeps.
func Backoff(base time.Duration, attempt int) time.Duration { return backoff(base, attempt) }
