// poll.go is the JSON face of the hub: it checks each request, turns it into one hub
// call, and writes the hub's answer as JSON. It holds no client state of its own.

package main

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// api is the HTTP face of one hub.
type api struct {
	hub        *hub
	maxMessage int64 // bytes of request body an emit may carry
}

// retryAfter is what a 503 asks clients to wait, in whole seconds, before they come
// back (RFC 9110, section 10.2.3). Clients add jitter, so a restart is not a herd.
const retryAfter = "2"

// routes maps the contract's paths to handlers. Go's method patterns ("POST /emit")
// would answer a wrong method with a plain-text 405, but every API error here is JSON,
// so each path gets one handler and a.only checks the method.
func routes(h *hub, maxMessage int64, files fs.FS) http.Handler {
	a := &api{hub: h, maxMessage: maxMessage}
	mux := http.NewServeMux()
	mux.Handle("/connect", a.only(a.connect, "POST"))
	mux.Handle("/poll", a.only(a.poll, "GET"))
	mux.Handle("/emit", a.only(a.emit, "POST"))
	mux.Handle("/disconnect", a.only(a.disconnect, "POST"))
	mux.Handle("/socket.io/", newEIO(h, maxMessage)) // the same hub on socket.io's wire (eio.go)
	mux.Handle("/", a.only(a.page(files), "GET", "HEAD"))
	return mux
}

// page serves the embedded chat page. A missing file gets the API's JSON 404, since
// FileServer's own 404 drops the no-store header.
func (a *api) page(files fs.FS) http.HandlerFunc {
	serveFile := http.FileServerFS(files)
	return func(w http.ResponseWriter, r *http.Request) {
		a.start(w)
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if _, err := fs.Stat(files, cmp.Or(name, ".")); err != nil {
			fail(w, http.StatusNotFound, "no such page: "+r.URL.Path)
			return
		}
		// The files are small, and a range past a file's end would get FileServer's
		// text/plain 416: every file is sent whole.
		r.Header.Del("Range")
		serveFile.ServeHTTP(w, r)
	}
}

// only answers 405 with an Allow header to any other method than methods, and
// otherwise calls next. Each handler starts its own answer (a.start) when the answer
// starts: the poll only once it stops waiting, so that a parked poll holds neither
// a header nor a write-deadline timer, only what net/http gives every request.
func (a *api) only(next http.HandlerFunc, methods ...string) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			a.start(w)
			w.Header().Set("Allow", allow)
			fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
			return
		}
		next(w, r)
	})
}

// start starts an answer of the API: see startAnswer.
func (a *api) start(w http.ResponseWriter) { startAnswer(w, a.hub.cfg.writeTimeout) }

// connect gives the browser a fresh id and a mailbox holding the online count, and
// tells it the poll timeout, so that it can give up on a poll that hangs well past it
// (a connection that silently stopped carrying bytes).
func (a *api) connect(w http.ResponseWriter, r *http.Request) {
	a.start(w)
	id := newID()
	if err := a.hub.connect(id, clientAddr(r)); err != nil {
		failHub(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID            string `json:"id"`
		PollTimeoutMs int64  `json:"pollTimeoutMs"`
	}{id, a.hub.cfg.pollTimeout.Milliseconds()})
}

// newID is a fresh, unguessable id: a client's, or a socket.io session's or socket's.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return weak bytes)
	return hex.EncodeToString(b[:])
}

// poll is the long poll: it acknowledges everything up to `after` and waits for what
// comes next. The browser calls it again as soon as it has an answer.
func (a *api) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" {
		a.start(w)
		fail(w, http.StatusBadRequest, "id is missing: POST /connect gives you one")
		return
	}
	after, err := strconv.ParseUint(q.Get("after"), 10, 64)
	if err != nil {
		a.start(w)
		fail(w, http.StatusBadRequest, fmt.Sprintf("after=%q is not a non-negative integer: send the highest seq you have, 0 at first", q.Get("after")))
		return
	}
	b := a.hub.poll(r.Context(), id, after)
	a.start(w)
	if b.err != nil {
		failHub(w, b.err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeBatch(w, b)
}

// writeBatch streams {"messages":[{"seq":S,<body>},...]} to w. Each body was encoded
// once for every mailbox and is written as it is; only the seq is per client, so an
// answer copies nothing, whatever its size (at most cfg.maxBatch, see state.take).
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
		if _, err := w.Write(m.body); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "}"); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "]}\n")
	return err
}

// emit checks one message and hands it to the hub, answering once every mailbox has it.
func (a *api) emit(w http.ResponseWriter, r *http.Request) {
	a.start(w)
	id := r.URL.Query().Get("id")
	if id == "" {
		fail(w, http.StatusBadRequest, "id is missing: POST /connect gives you one")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, status, err := readBody(w, r, a.maxMessage, a.hub.cfg.writeTimeout)
	if err != nil {
		fail(w, status, err.Error())
		return
	}
	msg, err := decodeEmit(body, a.hub.cfg.maxDepth)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.hub.emit(id, msg); err != nil {
		failHub(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody reads a request body of at most limit bytes, then starts the answer again:
// the time the body took to arrive must not eat the answer's. An error comes with the
// status that says it: 413 over the limit, 408 cut by the server's ReadTimeout.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, writeTimeout time.Duration) ([]byte, int, error) {
	if r.ContentLength > limit { // said too big up front: no need to wait for it
		startAnswer(w, writeTimeout)
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over %d bytes", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	startAnswer(w, writeTimeout)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return body, http.StatusOK, nil
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, errors.New("the body stopped arriving before it was complete")
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("the body could not be read: %w", err)
	}
}

// disconnect is the browser's goodbye, so the others hear of it now rather than
// after -client-ttl. Saying goodbye twice is fine.
func (a *api) disconnect(w http.ResponseWriter, r *http.Request) {
	a.start(w)
	id := r.URL.Query().Get("id")
	if id == "" {
		fail(w, http.StatusBadRequest, "id is missing")
		return
	}
	a.hub.disconnect(id)
	w.WriteHeader(http.StatusNoContent)
}

// decodeEmit reads {"event":"E","data":D} strictly: one JSON object whose keys are
// exactly "event" and "data", each at most once (data may be left out), a valid event
// name, and data every reader can take (checkData). It encodes the message for the
// mailboxes right away, so the hub goroutine does no JSON work.
func decodeEmit(body []byte, maxDepth int) (*message, error) {
	event, data, err := emitFields(body)
	if err != nil {
		return nil, err
	}
	return newMessage(event, data, maxDepth)
}

// newMessage checks an event name and the data (bounds.go), and encodes the message
// once for every mailbox; data left out is null. Both faces build their messages here.
func newMessage(event string, data json.RawMessage, maxDepth int) (*message, error) {
	if err := checkEvent(event); err != nil {
		return nil, err
	}
	if err := checkData(data, maxDepth); err != nil {
		return nil, err
	}
	if data == nil {
		data = json.RawMessage("null")
	}
	return &message{body: encode(event, data)}, nil
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

// refusedStatus is the status of a refused connect: 429 when the client's address
// holds its share (its own doing), 503 when the server is full or stopping.
func refusedStatus(err error) int {
	var share shareError
	if errors.As(err, &share) {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// failHub maps the hub's errors to statuses.
func failHub(w http.ResponseWriter, err error) {
	var gone goneError
	var cursor cursorError
	var rate rateError
	switch {
	case errors.As(err, &gone):
		fail(w, http.StatusGone, err.Error())
	case errors.As(err, &cursor):
		fail(w, http.StatusBadRequest, err.Error())
	case errors.As(err, &rate):
		w.Header().Set("Retry-After", rate.retryAfter())
		fail(w, http.StatusTooManyRequests, err.Error())
	default: // errFull, errStopped, shareError: come back later, and not all at once
		w.Header().Set("Retry-After", retryAfter)
		fail(w, refusedStatus(err), err.Error())
	}
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
