package ledgertest

import (
	"errors"
	"fmt"
)

// maxProblems caps the problems one check reports: a broken ledger can get
// thousands of changes wrong, and the first few say what is wrong.
const maxProblems = 20

// problems collects every problem a check finds, as fstest does, so one
// run reports all of them rather than the first.
type problems struct {
	errs    []error
	dropped int
}

// addf records a problem.
func (p *problems) addf(format string, args ...any) {
	if len(p.errs) == maxProblems {
		p.dropped++
		return
	}
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// failed reports whether any problem was recorded: checks stop at a failed
// step whose results the next steps depend on.
func (p *problems) failed() bool { return len(p.errs) > 0 }

// err returns the problems joined, or nil.
func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, fmt.Errorf("and %d more problems", p.dropped))...)
	}
	return errors.Join(p.errs...)
}
