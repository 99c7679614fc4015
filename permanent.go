package qpool

import "errors"

// PermanentError marks a job's error as one that another attempt cannot
// fix (a 404, a payload that does not decode): a job whose attempt returns
// it, wrapped at any depth, is not retried, whatever [WithRetry] and
// [WithRetryIf] say. The future's error keeps the wrapper, so
// errors.As finds it and errors.Is sees through it to the cause.
type PermanentError struct {
	// Err is the error the job returned.
	Err error
}

// Permanent wraps err so that the job returning it is not retried. It
// returns nil for a nil err, so that `return Permanent(err)` is safe
// after any call.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Error returns the wrapped error's message: marking an error permanent
// does not change what it says.
func (e *PermanentError) Error() string {
	if e == nil || e.Err == nil {
		return "qpool: permanent error"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error (nil for a nil *PermanentError, which
// a job may return as a typed nil error: errors.Is walks through it).
func (e *PermanentError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// IsPermanent reports whether err, or an error it wraps, is a
// [*PermanentError].
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// retryable reports whether a job whose attempt failed with err (not a
// panic) may run again: not when err is permanent, and not when the job's
// WithRetryIf predicate says no. A predicate that panics stops the retries
// and its panic becomes the job's error, as a job's own panic does.
func (c *jobConfig) retryable(id string, err error) (ok bool, perr error) {
	if IsPermanent(err) {
		return false, nil
	}
	if c.retryIf == nil {
		return true, nil
	}
	defer func() {
		if r := recover(); r != nil {
			ok, perr = false, newPanicError(id, r)
		}
	}()
	return c.retryIf(err), nil
}
