package natsledger

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Subject layout: "qpool.<id token>.<key token>". Tokens use alphabets
// without '.', '*', '>' or white space, so that no ID or key can become a
// wildcard or an extra subject level.
const (
	subjectRoot = "qpool"
	// emptyToken stands for the empty key; '=' is not in the base64url
	// alphabet, so no other key encodes to it.
	emptyToken = "="
	// hashedPrefix starts the token of a key too long for a subject; the
	// full key travels in the keyHeader header.
	hashedPrefix = "=h"
	// maxKeyToken is the longest key token written as is. The whole
	// subject must fit in the server's control line (4 KB by default).
	maxKeyToken = 1024
	// maxIDToken is the longest ID token written as is; stream names
	// must stay short enough for a directory name.
	maxIDToken = 64
)

// Message headers the ledger writes.
const (
	opHeader  = "Qpool-Op"  // "del" for a deletion
	keyHeader = "Qpool-Key" // base64url of a hashed key
	opDelete  = "del"
)

var (
	keyEncoding = base64.RawURLEncoding
	// idEncoding is lower-case base32 without padding: stream names made
	// from it differ in more than letter case, so they are safe as
	// directory names on case-insensitive file systems.
	idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
)

// idToken encodes an entanglement ID for subjects and stream names.
func idToken(id string) string {
	t := idEncoding.EncodeToString([]byte(id))
	if len(t) > maxIDToken || id == "" {
		sum := sha256.Sum256([]byte(id))
		return "h" + hex.EncodeToString(sum[:20])
	}
	return "e" + t
}

// StreamName returns the name of the JetStream stream that holds the
// entanglement id: lower-case letters, digits and '_', at most 48
// characters, so it is a safe directory name on any file system. Long IDs
// are hashed (SHA-256).
func StreamName(id string) string { return "qpool_" + idToken(id) }

// Subject returns the subject a change of key in entanglement id is
// published on. Keys are base64url-encoded (empty: "="), so any key,
// binary included, round-trips; a key whose token would pass 1 KB is
// hashed (SHA-256, "=h" prefix) and carried whole in a header.
func Subject(id, key string) string {
	return subjectPrefix(id) + "." + keyToken(key)
}

func subjectPrefix(id string) string { return subjectRoot + "." + idToken(id) }

// keyToken encodes key into one subject token.
func keyToken(key string) string {
	if key == "" {
		return emptyToken
	}
	t := keyEncoding.EncodeToString([]byte(key))
	if len(t) > maxKeyToken {
		sum := sha256.Sum256([]byte(key))
		return hashedPrefix + hex.EncodeToString(sum[:])
	}
	return t
}

// hashed reports whether token stands for a key carried in a header.
func hashed(token string) bool { return strings.HasPrefix(token, hashedPrefix) }

// decodeKey recovers the key of a message from its subject token and, for
// a hashed key, its header. It reports false for a token the ledger did
// not write.
func decodeKey(token, header string) (string, bool) {
	switch {
	case token == emptyToken:
		return "", true
	case hashed(token):
		b, err := keyEncoding.DecodeString(header)
		if err != nil || keyToken(string(b)) != token {
			return "", false
		}
		return string(b), true
	}
	b, err := keyEncoding.DecodeString(token)
	return string(b), err == nil
}
