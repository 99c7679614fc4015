package natsledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/qpool/qpool"
)

// unsettled keeps the ledger's appends whose outcome is unknown, so that
// none of them can be stored after a later append of the ledger.
//
// Why: an append that failed with an [*UnconfirmedError] may still be in
// flight (a publish the server forwarded to a leader that died, say, and
// that the new leader commits late). If the ledger then appends again and
// the zombie is stored after that, an older value overwrites a newer one
// of the same key although both appends returned in order; a guarded one
// cannot overwrite a newer value of its own key (its expected sequence
// has moved on, and the server refuses it), but it would still come after
// a later change of another key in the history.
//
// The fence: before publishing anything new, an append settles every
// unsettled one first, oldest first, by publishing it again under its
// message ID and waiting for JetStream's answer (Retry's path). Once
// JetStream has answered for a message ID, the change is stored (by this
// attempt or an earlier one), or refused for good, and any later copy is
// a duplicate within the stream's duplicate window, which the server
// drops (a guarded copy is refused anyway). So the new append's sequence
// follows every copy of every earlier unconfirmed append. If an earlier
// append still cannot be settled, the new one is not published and fails
// too, with an [*UnconfirmedError] of its own.
//
// Invariant: while an append's outcome is unknown, its entry is in list;
// it leaves the list only when JetStream has answered for its message ID
// (stored, or refused for good, as after Close). Who may break it: an
// append path that publishes without calling settle first, or a removal
// on a timeout.
type unsettled struct {
	n    atomic.Int32 // len(list), read without mu on the append path
	mu   sync.Mutex   // guards the fields below, and the done flag of every settlement
	list []*UnconfirmedError
	busy chan struct{} // non-nil while an append settles an entry; closed when it is done
}

// settlement is what every UnconfirmedError of one message ID shares: the
// change as recorded, once it is settled, so that a Retry of any of them
// returns it and publishes nothing.
type settlement struct {
	recorded atomic.Pointer[qpool.StateChange]
	done     bool // settled (stored or refused for good); guarded by unsettled.mu
}

// add records u, an append whose outcome is unknown, unless it has been
// settled meanwhile (a Retry that failed while another append settled the
// same change) or is listed already (a Retry that failed again: u then
// shares the listed one's settlement).
func (s *unsettled) add(u *UnconfirmedError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.s == nil {
		u.s = new(settlement)
	}
	if u.s.done {
		return
	}
	for _, v := range s.list {
		if v.MsgID == u.MsgID {
			u.s = v.s
			return
		}
	}
	s.list = append(s.list, u)
	s.n.Store(int32(len(s.list)))
}

// settled marks the change of message ID id settled, with c as recorded
// when known, and takes it off the list.
func (s *unsettled) settled(id string, c *qpool.StateChange) {
	if s.n.Load() == 0 {
		return
	}
	s.mu.Lock()
	s.list = slices.DeleteFunc(s.list, func(u *UnconfirmedError) bool {
		if u.MsgID != id {
			return false
		}
		u.s.done = true
		if c != nil {
			u.s.recorded.Store(c)
		}
		return true
	})
	s.n.Store(int32(len(s.list)))
	s.mu.Unlock()
}

// settle settles every unsettled append but the one with message ID skip
// (a Retry in progress, which settles itself), oldest first. It returns
// nil once none is left, or an error if one is still unconfirmed. One
// append settles at a time; the others wait for it, and then settle what
// is left themselves, each within its own timeout.
func (l *Ledger) settle(ctx context.Context, skip string) error {
	s := &l.unsettled
	if s.n.Load() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	for {
		s.mu.Lock()
		i := slices.IndexFunc(s.list, func(u *UnconfirmedError) bool { return u.MsgID != skip })
		if i < 0 {
			s.mu.Unlock()
			return nil
		}
		if busy := s.busy; busy != nil {
			s.mu.Unlock()
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return fmt.Errorf("waiting to settle an earlier append: %w", context.Cause(ctx))
			}
		}
		u := s.list[i]
		s.busy = make(chan struct{})
		s.mu.Unlock()

		c, err := l.record(ctx, u.MsgID, u.Mutation, false)
		var again *UnconfirmedError
		// Acknowledged (Stored: only the replica is behind) settles it too:
		// a late copy is then a duplicate.
		still := errors.As(err, &again) && !again.Stored

		s.mu.Lock()
		close(s.busy)
		s.busy = nil
		if !still { // stored, or refused for good (the ledger closed, say)
			u.s.done = true
			if err == nil {
				u.s.recorded.Store(&c) // so that a Retry stores nothing more
			}
			s.list = slices.DeleteFunc(s.list, func(v *UnconfirmedError) bool { return v == u })
			s.n.Store(int32(len(s.list)))
		}
		s.mu.Unlock()
		if still {
			return fmt.Errorf("an earlier append to %q (message ID %s) is still unconfirmed: %w", u.Mutation.Key, u.MsgID, err)
		}
	}
}
