package natsledger

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  replyMeta
		ok    bool
	}{
		{"$JS.ACK.S.C.1.42.7.1700000000000000001.3", replyMeta{42, 1700000000000000001, 3, 7}, true},
		{"$JS.ACK._.HASH.S.C.1.42.7.1700000000000000001.3.tok", replyMeta{42, 1700000000000000001, 3, 7}, true},
		{"$JS.ACK.dom.HASH.S.C.1.42.7.99.0", replyMeta{42, 99, 0, 7}, true},
		{"$JS.ACK.S.C.1.x.7.1.3", replyMeta{}, false},
		{"$JS.ACK.S.C.1.42.x.1.3", replyMeta{}, false},
		{"$JS.ACK.S.C.1.42", replyMeta{}, false},
		{"_INBOX.abc", replyMeta{}, false},
		{"$JS.ACK.a.b.c.d.e.f.g.h", replyMeta{}, false}, // 8 tokens
	} {
		got, err := parseReply(tc.reply)
		if !tc.ok {
			require.ErrorIs(t, err, errReply, tc.reply)
			continue
		}
		require.NoError(t, err, tc.reply)
		require.Equal(t, tc.want, got, tc.reply)
	}
}
