// api.go owns a node's HTTP side: the single server's JSON contract, request by
// request, with Redis (store) and this node's tail in place of the hub. It holds no
// client state of its own: everything a poll needs comes with it or from Redis.

package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// api is the HTTP face of one node.
type api struct {
	cfg   config
	st    *store
	tail  *tail
	chk   *checker   // a poll's check goes to Redis in a pipeline with its neighbours
	node  string     // this node's name, in every answer's X-Node header
	hosts *hostCheck // the Host check (guard.go); nil answers every Host
}

// retryAfter is what a 503 asks clients to wait, in whole seconds.
const retryAfter = "2"

// redisTimeout bounds each request's calls to Redis: an unreachable Redis is a
// prompt 503, not a hung request.
const redisTimeout = 2 * time.Second

// routes maps the contract's paths to handlers, behind the single server's Host check
// and refusal of cross-origin POSTs (guard.go). The socket.io face is not here: its
// sessions live in one process (docs/cluster.md).
func routes(a *api, files fs.FS) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/connect", a.only(a.connect, "POST"))
	mux.Handle("/poll", a.only(a.poll, "GET"))
	mux.Handle("/emit", a.only(a.emit, "POST"))
	mux.Handle("/disconnect", a.only(a.disconnect, "POST"))
	mux.Handle("/socket.io/", a.only(func(w http.ResponseWriter, r *http.Request) {
		a.start(w)
		fail(w, http.StatusNotFound, "the cluster serves only the JSON face; socket.io's sessions need one process (run the single server)")
	}, "GET", "POST"))
	mux.Handle("/", a.only(a.page(files), "GET", "HEAD"))
	guarded := a.hosts.wrap(sameOrigin(mux))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Node", a.node) // shows which node answered: there is no affinity
		guarded.ServeHTTP(w, r)
	})
}

// page serves the single server's chat page from its folder, unchanged.
func (a *api) page(files fs.FS) http.HandlerFunc {
	serveFile := http.FileServerFS(files)
	return func(w http.ResponseWriter, r *http.Request) {
		a.start(w)
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if _, err := fs.Stat(files, cmp.Or(name, ".")); err != nil || strings.HasPrefix(name, "test") {
			fail(w, http.StatusNotFound, "no such page: "+r.URL.Path)
			return
		}
		serveFile.ServeHTTP(w, r)
	}
}

// only answers 405 with an Allow header to any other method than methods.
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

// start starts an answer: see startAnswer.
func (a *api) start(w http.ResponseWriter) { startAnswer(w, a.cfg.writeTimeout) }

// connect registers a fresh, unguessable id in Redis; its first poll, at any node,
// gets the online count as seq 1.
func (a *api) connect(w http.ResponseWriter, r *http.Request) {
	a.start(w)
	var b [16]byte
	rand.Read(b[:]) // never fails
	id := hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	if _, err := a.st.connect(ctx, id); err != nil {
		failStore(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID            string `json:"id"`
		PollTimeoutMs int64  `json:"pollTimeoutMs"`
	}{id, a.cfg.pollTimeout.Milliseconds()})
}

// poll checks the client in Redis, then waits at this node's tail for what comes
// after its cursor. A client behind the kept backlog is evicted: it hears 410 now
// and is counted out of presence.
func (a *api) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("id")
	after, err := strconv.ParseUint(q.Get("after"), 10, 64)
	switch {
	case id == "":
		a.start(w)
		fail(w, http.StatusBadRequest, "id is missing: POST /connect gives you one")
		return
	case err != nil:
		a.start(w)
		fail(w, http.StatusBadRequest, fmt.Sprintf("after=%q is not a non-negative integer: send the highest seq you have, 0 at first", q.Get("after")))
		return
	}
	b := a.wait(r, id, after, false)
	if errors.Is(b.err, errRecheck) {
		b = a.wait(r, id, after, true)
	}
	a.start(w)
	if behind := (behindError{}); errors.As(b.err, &behind) {
		a.chk.copies.forget(id)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), redisTimeout)
		a.st.leave(ctx, id, b.err.Error())
		cancel()
	}
	if b.err != nil {
		failStore(w, b.err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	writeBatch(w, b)
}

// wait checks the poll (from the node's copy unless force) and waits at the tail.
func (a *api) wait(r *http.Request, id string, after uint64, force bool) batch {
	c, err := a.chk.check(r.Context(), id, after, force) // the checker bounds its own wait on Redis
	if err != nil {
		return batch{err: err}
	}
	req := &pollRequest{id: id, after: after, c: c, reply: make(chan batch, 1)}
	if after == 0 {
		req.greeting = onlineBody(c.count)
	}
	return a.tail.wait(r.Context(), req)
}

// emit checks one message and appends it to the one order.
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
	body, err := decodeEmit(http.MaxBytesReader(w, r.Body, a.cfg.maxMessage), a.cfg.maxDepth)
	a.start(w) // again: the time the body took to arrive must not eat the answer's
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over %d bytes", a.cfg.maxMessage))
	case errors.Is(err, os.ErrDeadlineExceeded):
		fail(w, http.StatusRequestTimeout, "the body stopped arriving before it was complete")
	case err != nil:
		fail(w, http.StatusBadRequest, err.Error())
	default:
		ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
		defer cancel()
		if err := a.st.emit(ctx, id, body); err != nil {
			failStore(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// disconnect is the browser's goodbye. Saying goodbye twice is fine.
func (a *api) disconnect(w http.ResponseWriter, r *http.Request) {
	a.start(w)
	id := r.URL.Query().Get("id")
	if id == "" {
		fail(w, http.StatusBadRequest, "id is missing")
		return
	}
	a.chk.copies.forget(id) // this node's next poll for id asks Redis, and hears 410
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	if err := a.st.leave(ctx, id, whyBye); err != nil {
		failStore(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// onlineBody is the server's own event: how many clients are connected.
func onlineBody(n int) []byte {
	return encode("online", json.RawMessage(strconv.Itoa(n)))
}

// failStore maps the store's and the tail's errors to statuses.
func failStore(w http.ResponseWriter, err error) {
	var gone goneError
	var behind behindError
	var cursor cursorError
	switch {
	case errors.As(err, &gone), errors.As(err, &behind):
		fail(w, http.StatusGone, err.Error())
	case errors.As(err, &cursor):
		fail(w, http.StatusBadRequest, err.Error())
	default: // full, stopping, Redis away, catching up: come back later, and not all at once
		w.Header().Set("Retry-After", retryAfter)
		fail(w, http.StatusServiceUnavailable, err.Error())
	}
}
