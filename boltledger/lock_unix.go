//go:build !windows && !plan9 && !solaris && !aix && !android

package boltledger

import (
	"errors"
	"os"
	"syscall"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// lockRetry is how often lockFile tries again, as bbolt does.
const lockRetry = 50 * time.Millisecond

// lockFile takes the advisory lock bbolt takes (exclusive for writing,
// shared for reading) on f's open file description, trying until timeout
// passes and then failing with bbolt's ErrTimeout, as bbolt does. bbolt's
// own flock on the same descriptor then succeeds at once: a lock belongs
// to the open file description, which already holds it.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH | syscall.LOCK_NB
	if exclusive {
		how = syscall.LOCK_EX | syscall.LOCK_NB
	}
	start := time.Now()
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Since(start) > timeout-lockRetry {
			return bolterrors.ErrTimeout
		}
		time.Sleep(lockRetry)
	}
}

// unlockFile drops f's lock explicitly. Closing the descriptor alone
// would not do when bbolt has mapped the file: the mapping keeps the open
// file description, and with it the lock, alive.
func unlockFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // nothing to do if it fails: the descriptor is closed next
}
