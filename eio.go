// eio.go is the socket.io face's transport: Engine.IO v4 long-polling on /socket.io/.
// Like poll.go it checks a request, makes one hub call and writes the answer, so
// socket.io clients and client.js tabs share one hub and one order. Per session it
// keeps only what the transport needs: whether a GET or a POST is open, the packets of
// its own waiting for the next GET, and the heartbeat. The Socket.IO packets inside,
// and the socket's place in the hub, are sio.go's.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// eioConfig is what the handshake tells the client.
type eioConfig struct {
	pingInterval time.Duration // a ping goes out this long after the handshake or the last pong
	pingTimeout  time.Duration // a session that has not answered a ping within this is closed
	maxPayload   int64         // bytes a POST may carry, so also the most one event may take
}

// eio serves the socket.io polling transport for one hub.
type eio struct {
	hub      *hub
	cfg      eioConfig
	seats    *seats   // sessions open, in all and by address (share.go)
	sessions sync.Map // sid -> *session: written at handshake and close, read by every request
}

// session is one Engine.IO session: one socket.io client. Its GET, its POST and its
// heartbeat run on different goroutines, so its transport fields are behind mu; the
// socket it carries (sio.go) has a mutex of its own.
type session struct {
	sid       string
	addr      string // the client's address, whose seat the session holds
	sock      socket
	mu        sync.Mutex // guards the fields below; never held across a hub call
	getOpen   bool
	postOpen  bool
	wake      func()   // ends the open GET's wait early; nil when no GET waits
	out       [][]byte // packets of the face's own for the next GET, ahead of the hub's events
	closed    bool
	pinged    bool        // a ping is out and its pong has not come back
	due       time.Time   // when the heartbeat is next due, so a stale timer firing is ignored
	heartbeat *time.Timer // pings every pingInterval, closes the session pingTimeout after an unanswered ping
	polled    bool        // a GET has come: the first-poll timer no longer closes it
	firstGet  *time.Timer // closes a session with no GET within the hub's first-poll bound
}

// The packets the face writes itself; the leading 4 of socket.io ones is Engine.IO's "message".
var (
	pktClose = []byte("1")
	pktPing  = []byte("2")
	pktNoop  = []byte("6")
	rs       = []byte{0x1e} // the record separator between the packets of one payload
)

// newEIO makes the face. Its heartbeat follows the hub's clocks: a parked GET hears a
// ping when a JSON poll would answer empty, and a client silent for the client TTL is
// gone on both wires. maxPayload is -max-message, the limit of a JSON emit.
func newEIO(h *hub, maxMessage int64) *eio {
	return &eio{
		hub:   h,
		cfg:   eioConfig{pingInterval: h.cfg.pollTimeout, pingTimeout: h.cfg.clientTTL, maxPayload: maxMessage},
		seats: newSeats(h.cfg.maxClients, h.cfg.perAddress()),
	}
}

// ServeHTTP checks what every request must carry, then hands it to the handshake, the
// GET (poll) or the POST (emit). Errors are 400s with Engine.IO's error shape.
func (e *eio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	startAnswer(w, e.hub.cfg.writeTimeout)
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		eioFail(w, http.StatusBadRequest, 5, "Unsupported protocol version: this server speaks EIO=4")
		return
	}
	if q.Get("transport") != "polling" {
		eioFail(w, http.StatusBadRequest, 0, "Transport unknown: this server speaks transport=polling only")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			eioFail(w, http.StatusBadRequest, 2, "Bad handshake method: the handshake is a GET")
			return
		}
		e.handshake(w, clientAddr(r))
		return
	}
	found, _ := e.sessions.Load(sid)
	s, _ := found.(*session)
	switch {
	case s == nil:
		eioFail(w, http.StatusBadRequest, 1, "Session ID unknown")
	case r.Method == http.MethodGet:
		e.poll(w, r, s)
	case r.Method == http.MethodPost:
		e.emit(w, r, s)
	default:
		eioFail(w, http.StatusBadRequest, 3, "Bad request: use GET to poll and POST to send packets")
	}
}

// handshake opens a session for a client at addr, if the face and its address have
// a seat, and starts its heartbeat. A session that sends no GET within the hub's
// first-poll bound is closed, as a JSON client that never polls is expired. The
// session's socket connects to the hub only when the client connects to namespace
// "/" (sio.go).
func (e *eio) handshake(w http.ResponseWriter, addr string) {
	if err := e.seats.take(addr); err != nil {
		w.Header().Set("Retry-After", retryAfter)
		eioFail(w, refusedStatus(err), 3, err.Error())
		return
	}
	s := &session{sid: newID(), addr: addr}
	s.sock.addr = addr
	s.mu.Lock()
	s.due = time.Now().Add(e.cfg.pingInterval)
	s.heartbeat = time.AfterFunc(e.cfg.pingInterval, func() { e.beat(s) })
	s.firstGet = time.AfterFunc(e.hub.cfg.firstPollWithin(), func() { e.unlessPolled(s) })
	s.mu.Unlock()
	e.sessions.Store(s.sid, s)
	open, _ := json.Marshal(struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int64    `json:"maxPayload"`
	}{s.sid, []string{}, e.cfg.pingInterval.Milliseconds(), e.cfg.pingTimeout.Milliseconds(), e.cfg.maxPayload})
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Write(append([]byte("0"), open...))
}

// poll is the long poll, in four steps: claim the GET, park until something is due,
// take what is due, write it as one payload. A client keeps at most one GET open, so a
// new one means the last answer arrived, and its cursor acknowledges that answer.
func (e *eio) poll(w http.ResponseWriter, r *http.Request, s *session) {
	if !e.claim(w, s, &s.getOpen, "GET") {
		return
	}
	defer s.unclaim(&s.getOpen)
	b, from, ok := e.park(r.Context(), s)
	if !ok {
		// The client dropped its GET. A socket.io client never resumes a session
		// after that, so close it now and let the others hear the new count.
		e.close(s, pktNoop)
		return
	}
	out, closed := s.takeOut()
	if closed {
		b.msgs = nil
	} else {
		b = s.sock.advance(b, from)
	}
	// However long the GET was parked, its answer gets the usual time to be written.
	startAnswer(w, e.hub.cfg.writeTimeout)
	writePayload(w, out, b)
}

// claim marks a GET or a POST (open is s.getOpen or s.postOpen) as open on s. A
// client keeps at most one of each, so a second one closes the session and is
// answered 400, as the Engine.IO document requires; claim then returns false.
func (e *eio) claim(w http.ResponseWriter, s *session, open *bool, what string) bool {
	s.mu.Lock()
	already := *open
	*open = true
	s.polled = s.polled || open == &s.getOpen
	s.mu.Unlock()
	if already {
		e.refuse(w, s, http.StatusBadRequest, errors.New("Bad request: a second "+what+" while one is open"))
	}
	return !already
}

// unlessPolled is the first-poll timer: it closes a session that has had no GET.
func (e *eio) unlessPolled(s *session) {
	s.mu.Lock()
	polled := s.polled
	s.mu.Unlock()
	if !polled {
		e.close(s, pktClose)
	}
}

// unclaim marks the GET or POST that claim opened as done.
func (s *session) unclaim(open *bool) {
	s.mu.Lock()
	*open = false
	if open == &s.getOpen {
		s.wake = nil
	}
	s.mu.Unlock()
}

// park waits until something is due for the GET: the hub's events for the socket, a
// packet of the face's own, the session's close or the hub's stop. It returns the
// batch, the hub client it came from, and false if the client dropped the GET.
func (e *eio) park(ctx context.Context, s *session) (batch, string, bool) {
	for {
		wait, cancel, pending, closed := s.arm(ctx)
		if closed {
			cancel()
			return batch{}, "", true
		}
		from, cursor := s.sock.position()
		b := e.await(wait, from, cursor, pending)
		cancel()
		if ctx.Err() != nil {
			return b, from, false
		}
		var gone goneError
		if errors.As(b.err, &gone) {
			// Evicted or expired: closing makes the client reconnect. A socket that
			// left on purpose (41) meanwhile is no reason to close the session.
			if still, _ := s.sock.position(); still == from {
				e.close(s, pktClose)
			}
			continue
		}
		if pending || len(b.msgs) > 0 || b.err != nil {
			return b, from, true
		}
	}
}

// arm readies one wait of the GET. With packets of its own due, the wait is over
// before it starts, so the GET takes what the hub has without parking; otherwise a
// packet queued meanwhile ends it (s.wake).
func (s *session) arm(parent context.Context) (ctx context.Context, cancel func(), pending, closed bool) {
	ctx, cancel = context.WithCancel(parent)
	s.mu.Lock()
	defer s.mu.Unlock()
	pending = len(s.out) > 0
	if pending {
		cancel()
	} else {
		s.wake = cancel
	}
	return ctx, cancel, pending, s.closed
}

// await asks the hub for the socket's events after cursor. A session whose socket is
// not in the hub yet can only get packets of its own, so it waits for ctx alone.
func (e *eio) await(ctx context.Context, hubID string, cursor uint64, pending bool) batch {
	switch {
	case hubID != "":
		return e.hub.poll(ctx, hubID, cursor)
	case pending:
		return batch{}
	}
	select {
	case <-ctx.Done():
		return batch{}
	case <-e.hub.done:
		return batch{err: errStopped}
	}
}

// takeOut takes the packets of the face's own that are due, and says whether the
// session has closed (then the hub's events are no longer its to write).
func (s *session) takeOut() ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	s.out = nil
	return out, s.closed
}

// writePayload writes the face's own packets, then the hub's events, as one payload;
// or a 503 once the hub has stopped.
func writePayload(w http.ResponseWriter, out [][]byte, b batch) {
	if b.err != nil {
		w.Header().Set("Retry-After", retryAfter)
		eioFail(w, http.StatusServiceUnavailable, 3, b.err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	for i, p := range out {
		if i > 0 {
			w.Write(rs)
		}
		w.Write(p)
	}
	for i, m := range b.msgs {
		if i > 0 || len(out) > 0 {
			w.Write(rs)
		}
		writeEvent(w, m.body)
	}
}

// writeEvent writes a hub message as a Socket.IO EVENT, 42["E",D], straight from its
// shared body `"event":"E","data":D`. An event name never holds a quote or a backslash
// (checkEvent), so the name ends at the first quote after the one that opens it.
func writeEvent(w io.Writer, body []byte) {
	const name = len(`"event":`)
	end := name + 1 + bytes.IndexByte(body[name+1:], '"') + 1
	w.Write([]byte(`42[`))
	w.Write(body[name:end])
	w.Write([]byte(`,`))
	w.Write(body[end+len(`,"data":`):])
	w.Write([]byte(`]`))
}

// emit takes a POST's packets in order, each event into the hub before the next, and
// answers ok once all are handled. A payload it cannot read closes the session.
func (e *eio) emit(w http.ResponseWriter, r *http.Request, s *session) {
	if !e.claim(w, s, &s.postOpen, "POST") {
		return
	}
	defer s.unclaim(&s.postOpen)
	if r.Header.Get("Content-Type") == "application/octet-stream" {
		e.refuse(w, s, http.StatusBadRequest, errors.New("Bad request: binary payloads are not supported"))
		return
	}
	payload, status, err := readBody(w, r, e.cfg.maxPayload, e.hub.cfg.writeTimeout)
	if err == nil {
		status, err = http.StatusBadRequest, e.packets(s, payload)
	}
	if err != nil {
		e.refuse(w, s, status, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Write([]byte("ok"))
}

// refuse closes the session and says why, as Engine.IO answers a broken request.
func (e *eio) refuse(w http.ResponseWriter, s *session, status int, why error) {
	e.close(s, pktClose)
	eioFail(w, status, 3, why.Error()+"; session closed")
}

// packets handles a payload's packets in order, until one fails or the session closes.
func (e *eio) packets(s *session, payload []byte) error {
	for p := range bytes.SplitSeq(payload, rs) {
		if err := e.packet(s, p); err != nil {
			return err
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed { // by a close packet, or by the heartbeat meanwhile: the rest is moot
			return nil
		}
	}
	return nil
}

// packet handles one Engine.IO packet from the client.
func (e *eio) packet(s *session, p []byte) error {
	if len(p) == 0 {
		return errors.New("malformed payload: an empty packet")
	}
	switch p[0] {
	case '1': // close: the GET, if one is open, answers with a noop and ends
		e.close(s, pktNoop)
	case '3': // pong: the next ping is due pingInterval from now
		s.mu.Lock()
		if s.pinged {
			s.pinged = false
			e.rearm(s, e.cfg.pingInterval)
		}
		s.mu.Unlock()
	case '4': // a Socket.IO packet; its answer, if any, goes out with the next GET
		reply, err := s.sock.handle(e.hub, p[1:])
		if reply != nil {
			s.queue(reply)
		}
		return err
	default:
		return fmt.Errorf("malformed payload: Engine.IO packet type %q is not one a polling client sends", p[0])
	}
	return nil
}

// queue hands a packet to the session's next GET, waking the open one.
func (s *session) queue(pkt []byte) {
	s.mu.Lock()
	s.queueLocked(pkt)
	s.mu.Unlock()
}

func (s *session) queueLocked(pkt []byte) {
	if s.closed {
		return
	}
	s.out = append(s.out, pkt)
	if s.wake != nil {
		s.wake()
	}
}

// beat is the heartbeat timer. It sends a ping; if the pong has not come when it fires
// again, pingTimeout later, the session is closed.
func (e *eio) beat(s *session) {
	s.mu.Lock()
	if s.closed || time.Now().Before(s.due) { // a pong re-armed the timer meanwhile
		s.mu.Unlock()
		return
	}
	if s.pinged {
		s.mu.Unlock()
		e.close(s, pktClose)
		return
	}
	s.pinged = true
	e.rearm(s, e.cfg.pingTimeout)
	s.queueLocked(pktPing)
	s.mu.Unlock()
}

// rearm sets the heartbeat to fire after d; s.mu is held.
func (e *eio) rearm(s *session, d time.Duration) {
	s.due = time.Now().Add(d)
	s.heartbeat.Reset(d)
}

// close ends a session: the open GET, if any, answers with last (close or noop), the
// sid is forgotten and the socket disconnects from the hub, so the others hear the count.
func (e *eio) close(s *session, last []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queueLocked(last)
	s.closed = true
	s.heartbeat.Stop()
	s.firstGet.Stop()
	s.mu.Unlock()
	e.sessions.Delete(s.sid)
	e.seats.give(s.addr)
	if hubID := s.sock.end(); hubID != "" {
		e.hub.disconnect(hubID)
	}
}

// eioFail writes Engine.IO's error shape, {"code":N,"message":"why"}.
func eioFail(w http.ResponseWriter, status, code int, why string) {
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, why})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
