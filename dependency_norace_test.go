//go:build !race

package qpool_test

// longChain is the length of the chain TestFailedChainResolvesIteratively
// fails (see dependency_race_test.go for the race detector's).
const longChain = 100_000

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
