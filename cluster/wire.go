// wire.go holds what a node writes and reads on the wire exactly as the single
// server does (the root's poll.go and hub.go, which this module cannot import, since
// that is package main): the strict emit decoder, the one encoding of a message, the
// streamed answer and the error shape. Keep the two in step.

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// writeBatch streams {"messages":[{"seq":S,<body>},...]} to w. Each body was encoded
// once for every mailbox and is written as it is; only the seq is per client, so an
// answer copies nothing, whatever its size (at most cfg.maxBatch, see tailState.take).
func writeBatch(w io.Writer, b batch) error {
	var seq [40]byte // `,{"seq":` and a uint64 fit
	if _, err := io.WriteString(w, `{"messages":[`); err != nil {
		return err
	}
	for i, m := range b.msgs {
		prefix := seq[:0]
		if i > 0 {
			prefix = append(prefix, ',')
		}
		prefix = append(prefix, `{"seq":`...)
		prefix = strconv.AppendUint(prefix, b.first+uint64(i), 10)
		prefix = append(prefix, ',')
		if _, err := w.Write(prefix); err != nil {
			return err // the reader is gone or too slow; its next poll gets these again
		}
		if _, err := w.Write(m); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "}"); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "]}\n")
	return err
}

// reserved are the events only the server sends, so no client can fake them.
var reserved = map[string]bool{"online": true}

// decodeEmit reads {"event":"E","data":D} strictly: one JSON object whose keys are
// exactly "event" and "data", each at most once (data may be left out), a valid event
// name, and data every reader can take (checkData, bounds.go). It returns the message
// encoded once, as the stream keeps it. A body over the limit or cut by the read
// timeout returns the reader's error, which emit maps to 413 or 408.
func decodeEmit(r io.Reader, maxDepth int) ([]byte, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	event, data, err := emitFields(body)
	if err != nil {
		return nil, err
	}
	return newMessage(event, data, maxDepth)
}

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

// newMessage checks an event name and the data (bounds.go), and encodes the message
// once, as the stream keeps it; data left out is null.
func newMessage(event string, data json.RawMessage, maxDepth int) ([]byte, error) {
	if err := checkEvent(event); err != nil {
		return nil, err
	}
	if err := checkData(data, maxDepth); err != nil {
		return nil, err
	}
	if data == nil {
		data = json.RawMessage("null")
	}
	return encode(event, data), nil
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

// startAnswer marks the answer that starts now no-store (a cached poll answer would
// be a lost or repeated message) and gives it timeout to be written, counted from
// now: the time a poll spent parked, or a body spent arriving (up to the server's
// ReadTimeout, as long as this), must not eat into it, or a 408 could never leave.
// Calling it again moves the deadline.
func startAnswer(w http.ResponseWriter, timeout time.Duration) {
	w.Header().Set("Cache-Control", "no-store")
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
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

// fail writes the API's error shape, {"error":"why"}.
func fail(w http.ResponseWriter, status int, why string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{why})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // only plain structs of strings reach here
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
