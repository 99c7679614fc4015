package natsledger

import (
	"strconv"
	"unicode/utf8"
)

// decodeScalar decodes the JSON scalars most state values are (numbers,
// strings without escapes, true, false, null) as encoding/json decodes
// them into an any, without its reflection: a history read decodes every
// change. ok is false for anything else, which goes to the codec.
func decodeScalar(data []byte) (any, bool) {
	if len(data) == 0 {
		return nil, false
	}
	switch c := data[0]; {
	case c == '"':
		return plainString(data)
	case c == '-' || ('0' <= c && c <= '9'):
		if !jsonNumber(data) {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(data), 64)
		return f, err == nil
	}
	switch string(data) {
	case "null":
		return nil, true
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return nil, false
}

// plainString decodes a JSON string with no escapes and no control
// characters, in valid UTF-8.
func plainString(data []byte) (any, bool) {
	if len(data) < 2 || data[len(data)-1] != '"' {
		return nil, false
	}
	body := data[1 : len(data)-1]
	for _, b := range body {
		if b == '\\' || b == '"' || b < 0x20 {
			return nil, false
		}
	}
	if !utf8.Valid(body) {
		return nil, false
	}
	return string(body), true
}

// jsonNumber reports whether data is exactly a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(data []byte) bool {
	i, n := 0, len(data)
	digits := func() bool {
		start := i
		for i < n && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > start
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i < n && data[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < n && data[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < n && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == n
}
