//go:build race

package qpool_test

// longChain is the length of the chain TestFailedChainResolvesIteratively
// fails. The race detector makes a job about ten times as costly, so the
// chain is shorter with it: still fifty times deeper than a recursion
// through the chain could go in the test's 1 MB stack.
const longChain = 20_000

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = true
