package natsledger

import (
	"errors"
	"strings"
)

// errReply reports a message whose reply subject is not a JetStream
// acknowledgement subject.
var errReply = errors.New("natsledger: not a JetStream message")

// replyMeta is what the ledger needs from a JetStream message's reply
// subject.
type replyMeta struct {
	seq     uint64 // stream sequence
	nanos   int64  // server timestamp
	pending uint64 // messages still to deliver after this one
	cseq    uint64 // the consumer's delivery sequence: 1, 2, … with no gaps
}

// parseReply reads the stream sequence, timestamp, pending count and
// consumer sequence from
// a reply subject, without the allocation of jetstream.Msg.Metadata: a
// history read parses every message. Both forms are accepted:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>…]
func parseReply(reply string) (replyMeta, error) {
	rest, ok := strings.CutPrefix(reply, "$JS.ACK.")
	if !ok {
		return replyMeta{}, errReply
	}
	skip := 3 // stream, consumer, delivered
	switch n := strings.Count(rest, ".") + 1; {
	case n == 7:
	case n >= 9:
		skip = 5 // domain and account hash first
	default:
		return replyMeta{}, errReply
	}
	for range skip {
		_, rest, _ = strings.Cut(rest, ".")
	}
	var f [4]string // sseq, cseq, tm, pending
	for i := range f {
		f[i], rest, _ = strings.Cut(rest, ".")
	}
	seq, okSeq := parseNum(f[0])
	cseq, okCseq := parseNum(f[1])
	tm, okTm := parseNum(f[2])
	pending, okPending := parseNum(f[3])
	if !okSeq || !okCseq || !okTm || !okPending {
		return replyMeta{}, errReply
	}
	return replyMeta{seq: seq, nanos: int64(tm), pending: pending, cseq: cseq}, nil
}

// parseNum parses a non-empty decimal number.
func parseNum(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
