// wire.go holds what a node writes and reads on the wire exactly as the single
// server does (the root's poll.go, which this module cannot import, since that is
// package main): the emit decoder around bounds.go's rules, the streamed answer and
// the error shape. Keep the two in step; bounds.go itself is an identical copy.

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
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

// startAnswer marks the answer that starts now no-store (a cached poll answer would
// be a lost or repeated message) and gives it timeout to be written, counted from
// now: the time a poll spent parked, or a body spent arriving (up to the server's
// ReadTimeout, as long as this), must not eat into it, or a 408 could never leave.
// Calling it again moves the deadline.
func startAnswer(w http.ResponseWriter, timeout time.Duration) {
	w.Header().Set("Cache-Control", "no-store")
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
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
