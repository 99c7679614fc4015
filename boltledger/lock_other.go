//go:build windows || plan9 || solaris || aix || android

package boltledger

import (
	"os"
	"time"
)

// lockFile does nothing where bbolt locks with other calls than flock:
// checkFile then reads the file before bbolt locks it, and bbolt's own
// lock, taken after, still keeps other processes out.
func lockFile(*os.File, bool, time.Duration) error { return nil }

// unlockFile does nothing; see lockFile.
func unlockFile(*os.File) {}
