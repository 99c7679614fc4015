package natsledger

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeScalar checks the fast path against encoding/json: whenever it
// claims a value, json.Unmarshal must succeed with the same value.
func FuzzDecodeScalar(f *testing.F) {
	for _, s := range []string{`0`, `-0`, `12`, `1.5e3`, `-1E-2`, `01`, `1.`, `.5`, `+1`, `1e400`,
		`"a"`, `"é"`, `"a\"b"`, `"\u00e9"`, "\"\xff\"", "\"\x01\"", `null`, `true`, `false`, `nul`, `[1]`, `{}`, ``, `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeScalar(data)
		if !ok {
			return
		}
		var want any
		require.NoError(t, json.Unmarshal(data, &want), "fast path accepted %q", data)
		require.Equal(t, want, got, "%q", data)
	})
}

func TestDecodeScalarRejects(t *testing.T) {
	for _, s := range []string{`01`, `1.`, `.5`, `+1`, `1e`, `-`, `1e400`, `"a\"b"`, "\"\xff\"", `nul`, `[1]`, `"`} {
		_, ok := decodeScalar([]byte(s))
		require.False(t, ok, "%q", s)
	}
}
