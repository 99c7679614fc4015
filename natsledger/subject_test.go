package natsledger_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// awkwardKeys are keys that break a naive key-to-subject mapping.
var awkwardKeys = map[string]string{
	"empty":      "",
	"dots":       "a.b..c.",
	"star":       "*",
	"gt":         ">",
	"wildcards":  "a.*.>",
	"spaces":     " two words \t\n",
	"non-ASCII":  "clé-ключ-鍵-🔑",
	"binary":     "\x00\xff\xfe.\x01*",
	"uppercase":  "Key",
	"lowercase":  "key",
	"long-10KB":  strings.Repeat("k.*>", 2560),
	"long-other": strings.Repeat("k.*>", 2559) + "x",
}

func TestSubjectTokens(t *testing.T) {
	token := regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)
	seen := map[string]string{}
	for name, key := range awkwardKeys {
		subj := natsledger.Subject("id", key)
		parts := strings.Split(subj, ".")
		require.Len(t, parts, 3, "%s: %q", name, subj)
		require.Regexp(t, token, parts[2], name)
		require.Less(t, len(subj), 2048, name)
		require.NotContains(t, seen, subj, "%s and %s share a subject", name, seen[subj])
		seen[subj] = name
	}
}

func TestStreamNames(t *testing.T) {
	safe := regexp.MustCompile(`^[a-z0-9_]{1,48}$`)
	ids := []string{"", "A", "a", "pipeline", "Pipeline", "a/b\\c", "../..", "x.y*z>", "空", strings.Repeat("long", 100), strings.Repeat("long", 100) + "!"}
	names := map[string]string{}
	for _, id := range ids {
		n := natsledger.StreamName(id)
		require.Regexp(t, safe, n, "id %q", id)
		lower := strings.ToLower(n)
		require.NotContains(t, names, lower, "ids %q and %q collide on a case-insensitive file system", id, names[lower])
		names[lower] = id
	}
}

// TestKeysRoundTrip stores every awkward key through a server and reads it
// back from the writer, from its history and from another connection.
func TestKeysRoundTrip(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id)
	for name, key := range awkwardKeys {
		_, err := l.Append(ctx, qpool.Mutation{Key: key, Value: name})
		require.NoError(t, err, name)
		v, _, ok := l.Get(key)
		require.True(t, ok, name)
		require.Equal(t, name, v, name)
	}
	want, _ := l.Snapshot()
	require.Len(t, want, len(awkwardKeys))

	other := open(t, connect(t, ts.url()), id, natsledger.WithCacheSize(1))
	got, _ := other.Snapshot()
	require.Equal(t, want, got)
	history, err := other.Read(ctx, 0, 0) // from the stream: the cache holds one change
	require.NoError(t, err)
	require.Len(t, history, len(awkwardKeys))
	for _, c := range history {
		require.Equal(t, awkwardKeys[c.Value.(string)], c.Key)
	}
}
