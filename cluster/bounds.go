// bounds.go owns what a message may be beyond its size: an emit body's two fields,
// read strictly; an event name; data that every common JSON reader (browsers'
// JSON.parse and structured clone, Python's json, Go's encoding/json into any) can
// take; and the encoding every mailbox shares. Both faces build messages through
// newMessage (poll.go), which calls checkEvent and checkData, so there is one copy of
// each rule; the cluster keeps cluster/bounds.go, this file byte for byte (a test
// there checks).

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepthCeiling is the most -max-depth may be. A poll answer wraps the data in 3
// more levels and Python's json gives up near 1,000 (its recursion limit); Node's
// client near 3,300, Chromium's structured clone a few thousand.
const maxDepthCeiling = 500

// checkData refuses data that some reader could not read back: invalid UTF-8, arrays
// and objects nested deeper than maxDepth, numbers beyond float64 (Go's decoder fails
// on 1e400), and escapes of lone UTF-16 surrogates (Python cannot encode them, Go
// turns them into U+FFFD). data is already one valid JSON value.
func checkData(data []byte, maxDepth int) error {
	if !utf8.Valid(data) {
		return errors.New("data is not valid UTF-8")
	}
	depth := 0
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			end, err := stringEnd(data, i+1)
			if err != nil {
				return err
			}
			i = end
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return fmt.Errorf("data is nested deeper than %d levels (-max-depth)", maxDepth)
			}
		case c == ']' || c == '}':
			depth--
		case c == '-' || '0' <= c && c <= '9':
			end := numberEnd(data, i)
			if _, err := strconv.ParseFloat(string(data[i:end]), 64); err != nil {
				return fmt.Errorf("data holds the number %.40s, beyond what a float64 holds", data[i:end])
			}
			i = end - 1
		}
	}
	return nil
}

// numberEnd is the index just past the number that starts at data[i].
func numberEnd(data []byte, i int) int {
	for i < len(data) && (data[i] == '-' || data[i] == '+' || data[i] == '.' || data[i] == 'e' || data[i] == 'E' || '0' <= data[i] && data[i] <= '9') {
		i++
	}
	return i
}

// stringEnd is the index of the quote that closes the string whose contents start at
// data[i]; a \u escape of a surrogate must be a high one followed by a low one.
func stringEnd(data []byte, i int) (int, error) {
	for ; i < len(data) && data[i] != '"'; i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if data[i] != 'u' {
			continue
		}
		r := hex4(data[i+1:])
		switch {
		case 0xdc00 <= r && r <= 0xdfff:
			return 0, errors.New(`data holds a lone low surrogate escape (\udc00-\udfff)`)
		case 0xd800 <= r && r <= 0xdbff:
			if i+10 >= len(data) || data[i+5] != '\\' || data[i+6] != 'u' || hex4(data[i+7:]) < 0xdc00 || hex4(data[i+7:]) > 0xdfff {
				return 0, errors.New(`data holds a lone high surrogate escape (\ud800-\udbff)`)
			}
			i += 10
		default:
			i += 4
		}
	}
	return i, nil
}

// hex4 reads the 4 hex digits of a \u escape, which valid JSON guarantees are there.
func hex4(b []byte) rune {
	r, _ := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(r)
}

// reserved are the events only the server sends, so no client can fake them.
var reserved = map[string]bool{"online": true}

// emitFields reads the object key by key: encoding/json alone would match keys
// case-insensitively and let a repeated key win silently.
func emitFields(body []byte) (event string, data json.RawMessage, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", nil, errors.New(`malformed JSON body: it must be one object, {"event":"E","data":D}`)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", nil, fmt.Errorf("malformed JSON body: %w", err)
		}
		key := tok.(string) // inside an object, a key is always a string
		switch {
		case key != "event" && key != "data":
			return "", nil, fmt.Errorf(`malformed JSON body: unknown field %q; only "event" and "data"`, key)
		case seen[key]:
			return "", nil, fmt.Errorf("malformed JSON body: %q appears twice", key)
		case key == "event" && dec.Decode(&event) != nil:
			return "", nil, errors.New(`malformed JSON body: "event" must be a string`)
		case key == "data":
			if err := dec.Decode(&data); err != nil {
				return "", nil, fmt.Errorf("malformed JSON body: %w", err)
			}
		}
		seen[key] = true
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return "", nil, fmt.Errorf("malformed JSON body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", nil, errors.New("malformed JSON body: trailing data after the object")
	}
	return event, data, nil
}

// encode writes the shared part of a message, `"event":"E","data":D`, once.
func encode(event string, data json.RawMessage) []byte {
	e, _ := json.Marshal(event) // a string always marshals
	b := make([]byte, 0, len(e)+len(data)+17)
	b = append(b, `"event":`...)
	b = append(b, e...)
	b = append(b, `,"data":`...)
	return append(b, data...)
}

// checkEvent accepts 1-64 characters of A-Za-z0-9_.:- that the server does not use itself.
func checkEvent(e string) error {
	if len(e) < 1 || len(e) > 64 {
		return fmt.Errorf("event must be 1 to 64 characters, got %d", len(e))
	}
	for _, c := range e {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("_.:-", c)) {
			return fmt.Errorf("event %q has %q: use only A-Za-z0-9_.:-", e, c)
		}
	}
	if reserved[e] {
		return fmt.Errorf("event %q is reserved: only the server sends it", e)
	}
	return nil
}
