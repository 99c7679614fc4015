// Package natsledger keeps an entanglement's state and history in NATS
// JetStream, so that pools in many processes, on many machines, share one
// entanglement: one state, one history, one total order.
//
// # Basics
//
// [Open] binds a [Ledger] to one JetStream stream per entanglement ID and
// returns it once the local replica has replayed the stream; pass it to
// qpool.OpenEntanglement with qpool.WithLedger:
//
//	nc, _ := nats.Connect(url, nats.ReconnectBufSize(-1))
//	l, err := natsledger.Open(ctx, nc, "pipeline")
//	e, err := qpool.OpenEntanglement(ctx, "pipeline", nil, time.Hour, qpool.WithLedger(l))
//
// Every change is one message. Its stream sequence minus one is the
// change's Sequence, so sequences start at 0 and have no gaps as long as
// nothing else publishes to the stream. The subject carries the
// entanglement ID and the key, both encoded so that any string round-trips
// (see [Subject]). Values are encoded with a qpool.Codec, JSON by default:
// GetState returns what the codec decodes, and qpool.GetStateAs converts it
// into the caller's type.
//
// # Consistency
//
// Each Ledger keeps a replica of the state, fed in stream order by a
// consumer that the ledger recreates, after the last message it applied,
// whenever the consumer fails: after a reconnect, after two missed idle
// heartbeats (the server holding it died), after a skipped message, or
// when an append finds the replica stalled behind a change JetStream
// acknowledged. Get, Snapshot and Bounds read the replica; they are
// eventually consistent with other processes and read-your-own-writes for
// this one: Append returns nil only after the replica has applied the
// change it published, and fails (with an [*UnconfirmedError] whose
// Stored is true) if the replica has not within the timeout, even though
// the change is stored. A guarded Append (Entanglement.Update) is checked by the
// server with the expected-last-subject-sequence header, so read-modify-
// write is atomic across processes; on a conflict the replica first catches
// up with the key, so the retry reads the newer value.
//
// # Goroutines
//
// Open starts two goroutines, the replica feed and a watcher that
// restarts it when the connection reconnects; Close and Drop end both and
// wait for them. Read may create a short-lived ordered consumer for history
// older than the replica's cache; it is deleted before Read returns. The
// connection belongs to the caller, who closes it after the ledger.
//
// # Caveats
//
// An Append that fails on a timeout may still have been stored: the
// server may have stored it and the acknowledgement been lost. Append
// retries with the same message ID inside its timeout, so a retry is stored
// once; after the timeout the outcome is unknown until the replica shows
// it, and the error is an [*UnconfirmedError]: its Retry publishes the
// change again under the same message ID, so that it is stored once
// (within the stream's duplicate window), where calling UpdateState again
// could store it twice. The next Append of the ledger settles it first
// in the same way, so that such a change is never stored after a later
// one. Durability is the stream's: see docs/distributed.md.
//
// Reads that reach the stream (history older than the replica's cache)
// fail with [ErrUnavailable] while the server is unreachable: use
// qpool's Entanglement.History, which reports the error, rather than
// GetStateHistory, which returns nil then. Entanglement.Watch retries such
// reads until the server answers.
package natsledger
