//go:build !windows && !plan9 && !solaris && !aix && !android

package boltledger_test

import (
	"os"
	"syscall"
)

// tryLock takes and drops an exclusive flock on f without waiting. A lock
// that a leaked descriptor of this process holds conflicts with it, as one
// of another process would: flock locks belong to open file descriptions.
func tryLock(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return err
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
