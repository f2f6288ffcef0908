// eio.go is the socket.io face of the hub: Engine.IO v4 long-polling on /socket.io/,
// with Socket.IO v5 packets inside. Like poll.go it checks a request, makes one hub
// call and writes the answer, so socket.io clients and client.js tabs share one hub and
// one order. It keeps only the state its wire needs, per session: the hub id it maps
// to, the cursor (the last seq written to it, which its next GET acknowledges), whether
// a GET or a POST is open, the packets of its own (40, 43, 44, pings, close) waiting for
// the next GET, and the heartbeat timer.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
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
	hub         *hub
	cfg         eioConfig
	maxSessions int
	open        atomic.Int64 // sessions open, at most maxSessions
	sessions    sync.Map     // sid -> *session: written at handshake and close, read by every request
}

// session is one Engine.IO session: one socket.io client. Its GET, its POST and its
// heartbeat run on different goroutines, so its fields are behind its own mutex.
type session struct {
	mu        sync.Mutex // guards the fields below; never held across a hub call
	sid       string
	hubID     string // the hub client it maps to; "" until it connects to namespace "/"
	cursor    uint64 // the highest seq written to this session; its next GET acknowledges it
	getOpen   bool
	postOpen  bool
	wake      func()   // ends the open GET's wait early; nil when no GET waits
	out       [][]byte // packets of the face's own for the next GET, ahead of the hub's events
	closed    bool
	pinged    bool        // a ping is out and its pong has not come back
	due       time.Time   // when the heartbeat is next due, so a stale timer firing is ignored
	heartbeat *time.Timer // pings every pingInterval, closes the session pingTimeout after an unanswered ping
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
		hub:         h,
		cfg:         eioConfig{pingInterval: h.cfg.pollTimeout, pingTimeout: h.cfg.clientTTL, maxPayload: maxMessage},
		maxSessions: h.cfg.maxClients,
	}
}

// ServeHTTP checks what every request must carry, then hands it to the handshake, the
// GET (receive) or the POST (send). Errors are 400s with Engine.IO's error shape.
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
		e.handshake(w)
		return
	}
	found, _ := e.sessions.Load(sid)
	s, _ := found.(*session)
	switch {
	case s == nil:
		eioFail(w, http.StatusBadRequest, 1, "Session ID unknown")
	case r.Method == http.MethodGet:
		e.receive(w, r, s)
	case r.Method == http.MethodPost:
		e.send(w, r, s)
	default:
		eioFail(w, http.StatusBadRequest, 3, "Bad request: use GET to receive and POST to send")
	}
}

// handshake opens a session and starts its heartbeat. The session joins the hub only
// when the client connects to namespace "/", as socket.io counts it connected then.
func (e *eio) handshake(w http.ResponseWriter) {
	s := &session{sid: newSID()}
	if e.open.Add(1) > int64(e.maxSessions) {
		e.open.Add(-1)
		w.Header().Set("Retry-After", retryAfter)
		eioFail(w, http.StatusServiceUnavailable, 3, errFull.Error())
		return
	}
	s.mu.Lock()
	s.due = time.Now().Add(e.cfg.pingInterval)
	s.heartbeat = time.AfterFunc(e.cfg.pingInterval, func() { e.beat(s) })
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

// receive is the long poll. It acknowledges what the previous GET carried (a client
// keeps at most one GET open, so a new one means the last answer arrived), then waits
// for the hub's events or a packet of the face's own, and writes them as one payload.
func (e *eio) receive(w http.ResponseWriter, r *http.Request, s *session) {
	if !e.claim(w, s, &s.getOpen, "GET") {
		return
	}
	defer func() {
		s.mu.Lock()
		s.getOpen, s.wake = false, nil
		s.mu.Unlock()
	}()

	var b batch
	var waited string // the hub id b came from
	for {
		ctx, cancel := context.WithCancel(r.Context())
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			cancel()
			break
		}
		// With packets of its own to send, the GET takes what the hub has waiting
		// without parking (a cancelled ctx); otherwise it parks until woken.
		pending := len(s.out) > 0
		if pending {
			cancel()
		} else {
			s.wake = cancel
		}
		waited = s.hubID
		cursor := s.cursor
		s.mu.Unlock()

		switch {
		case waited != "":
			b = e.hub.wait(ctx, waited, cursor)
		case !pending: // not in the hub yet: only the face's own packets can come
			select {
			case <-ctx.Done():
			case <-e.hub.done:
				b.err = errStopped
			}
		}
		cancel()
		if r.Context().Err() != nil {
			// The client dropped its GET. A socket.io client never resumes a session
			// after that, so close it now and let the others hear the new count.
			e.close(s, pktNoop)
			return
		}
		var gone goneError
		if errors.As(b.err, &gone) { // evicted or expired: closing makes the client reconnect
			e.close(s, pktClose)
			b = batch{}
			continue
		}
		if pending || len(b.msgs) > 0 || b.err != nil {
			break
		}
	}
	s.mu.Lock()
	out := s.out
	s.out = nil
	if len(b.msgs) > 0 && s.hubID == waited && !s.closed {
		s.cursor = b.first + uint64(len(b.msgs)) - 1
	} else {
		b.msgs = nil // from a mailbox this session has left since
	}
	s.mu.Unlock()
	// However long the GET was parked, its answer gets the usual time to be written.
	startAnswer(w, e.hub.cfg.writeTimeout)
	if b.err != nil { // the hub has stopped
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

// claim marks a GET or a POST (open is s.getOpen or s.postOpen) as open on s. A
// client keeps at most one of each, so a second one closes the session and is
// answered 400, as the Engine.IO document requires; claim then returns false.
func (e *eio) claim(w http.ResponseWriter, s *session, open *bool, what string) bool {
	s.mu.Lock()
	if *open {
		s.mu.Unlock()
		e.close(s, pktClose)
		eioFail(w, http.StatusBadRequest, 3, "Bad request: a second "+what+" while one is open; session closed")
		return false
	}
	*open = true
	s.mu.Unlock()
	return true
}

// send takes a POST's packets in order, each event into the hub before the next, and
// answers ok once all are handled. A packet it cannot read closes the session.
func (e *eio) send(w http.ResponseWriter, r *http.Request, s *session) {
	if !e.claim(w, s, &s.postOpen, "POST") {
		return
	}
	defer func() {
		s.mu.Lock()
		s.postOpen = false
		s.mu.Unlock()
	}()

	if r.Header.Get("Content-Type") == "application/octet-stream" {
		e.close(s, pktClose)
		eioFail(w, http.StatusBadRequest, 3, "Bad request: binary payloads are not supported; session closed")
		return
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.cfg.maxPayload))
	startAnswer(w, e.hub.cfg.writeTimeout) // the body's time arriving must not eat the answer's
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		e.close(s, pktClose)
		eioFail(w, http.StatusRequestEntityTooLarge, 3, fmt.Sprintf("payload over maxPayload (%d bytes); session closed", e.cfg.maxPayload))
		return
	}
	if err != nil { // the server's ReadTimeout cut a body that stopped arriving
		e.close(s, pktClose)
		eioFail(w, http.StatusRequestTimeout, 3, "the body stopped arriving before it was complete; session closed")
		return
	}
	for p := range bytes.SplitSeq(payload, rs) {
		if err := e.packet(s, p); err != nil {
			e.close(s, pktClose)
			eioFail(w, http.StatusBadRequest, 3, err.Error()+"; session closed")
			return
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed { // by a close packet, or by the heartbeat meanwhile: the rest is moot
			break
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Write([]byte("ok"))
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
	case '4':
		return e.message(s, p[1:])
	default:
		return fmt.Errorf("malformed payload: Engine.IO packet type %q is not one a polling client sends", p[0])
	}
	return nil
}

// sioPacket is a decoded Socket.IO packet: type, namespace, ack id and JSON payload.
type sioPacket struct {
	typ  byte
	nsp  string
	id   string // the acknowledgement id's digits, or ""
	data []byte
}

// decodeSIO reads <type>[<namespace>,][<ack id>][JSON]; binary packets are refused.
func decodeSIO(p []byte) (sioPacket, error) {
	if len(p) == 0 || p[0] < '0' || p[0] > '6' {
		return sioPacket{}, fmt.Errorf("malformed packet %.20q: no Socket.IO packet type", p)
	}
	pk := sioPacket{typ: p[0], nsp: "/"}
	if pk.typ == '5' || pk.typ == '6' {
		return pk, errors.New("binary packets are not supported")
	}
	p = p[1:]
	if len(p) > 0 && p[0] == '/' {
		end := bytes.IndexByte(p, ',')
		if end < 0 {
			end = len(p)
		}
		pk.nsp, p = string(p[:end]), p[min(end+1, len(p)):]
	}
	n := 0
	for n < len(p) && '0' <= p[n] && p[n] <= '9' {
		n++
	}
	if n > 15 { // socket.io's ids are JavaScript numbers
		return pk, errors.New("malformed packet: ack id too long")
	}
	pk.id, pk.data = string(p[:n]), p[n:]
	return pk, nil
}

// message handles one Socket.IO packet. Only namespace "/" exists; a packet for a
// namespace the client has not connected to closes the session, as socket.io does.
func (e *eio) message(s *session, p []byte) error {
	pk, err := decodeSIO(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	hubID := s.hubID
	s.mu.Unlock()
	switch {
	case pk.typ == '0' && pk.nsp != "/":
		e.queue(s, fmt.Appendf(nil, `44%s,{"message":"Invalid namespace"}`, pk.nsp))
		return nil
	case pk.typ == '0':
		return e.connect(s, pk, hubID)
	case pk.nsp != "/" || hubID == "":
		return fmt.Errorf("packet type %c for namespace %s, which this session has not connected to", pk.typ, pk.nsp)
	case pk.typ == '1': // disconnect from "/": the Engine.IO session stays open
		s.mu.Lock()
		s.hubID, s.cursor = "", 0
		s.mu.Unlock()
		e.hub.leave(hubID)
		return nil
	case pk.typ == '2':
		return e.event(s, pk, hubID)
	case pk.typ == '3': // an ack: this server never asks for one, so there is nothing to match
		return nil
	default:
		return fmt.Errorf("packet type %c is not one a client sends", pk.typ)
	}
}

// connect joins the hub for namespace "/" and answers 40{"sid":...}, or 44 when the
// hub refuses (full or stopping).
func (e *eio) connect(s *session, pk sioPacket, hubID string) error {
	if hubID != "" {
		return errors.New("a second CONNECT to namespace /")
	}
	if len(pk.data) > 0 && (pk.data[0] != '{' || !json.Valid(pk.data)) {
		return errors.New("malformed CONNECT: its payload must be a JSON object")
	}
	id := newSID()
	if err := e.hub.join(id); err != nil {
		why, _ := json.Marshal(err.Error())
		e.queue(s, fmt.Appendf(nil, `44{"message":%s}`, why))
		return nil
	}
	s.mu.Lock()
	if s.closed { // closed while joining: take the hub client back
		s.mu.Unlock()
		e.hub.leave(id)
		return nil
	}
	s.hubID, s.cursor = id, 0
	e.queueLocked(s, fmt.Appendf(nil, `40{"sid":"%s"}`, newSID())) // socket.io's id of this connection; nothing here needs it again
	s.mu.Unlock()
	return nil
}

// event turns 42["E",D] into a hub emit of E with data D, checked like /emit. An
// event with an ack id is acknowledged once every mailbox has it, as /emit answers 204;
// one the server refuses is dropped, and its ack, if asked for, says why.
func (e *eio) event(s *session, pk sioPacket, hubID string) error {
	var args []json.RawMessage
	if err := json.Unmarshal(pk.data, &args); err != nil || len(args) == 0 {
		return errors.New("malformed EVENT: its payload must be a non-empty JSON array")
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return errors.New("malformed EVENT: its first element must be the event name")
	}
	refused := checkEvent(name)
	if refused == nil && len(args) > 2 {
		refused = errors.New("an event here carries one data value, not several")
	}
	if refused == nil {
		data := json.RawMessage("null")
		if len(args) == 2 {
			data = args[1]
		}
		refused = e.hub.send(hubID, &message{body: encode(name, data)})
		var gone goneError
		if errors.As(refused, &gone) {
			return refused
		}
	}
	if pk.id == "" {
		return nil
	}
	if refused == nil {
		e.queue(s, fmt.Appendf(nil, `43%s[]`, pk.id))
		return nil
	}
	why, _ := json.Marshal(refused.Error())
	e.queue(s, fmt.Appendf(nil, `43%s[{"error":%s}]`, pk.id, why))
	return nil
}

// queue hands a packet to the session's next GET, waking the open one.
func (e *eio) queue(s *session, pkt []byte) {
	s.mu.Lock()
	e.queueLocked(s, pkt)
	s.mu.Unlock()
}

func (e *eio) queueLocked(s *session, pkt []byte) {
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
	e.queueLocked(s, pktPing)
	s.mu.Unlock()
}

// rearm sets the heartbeat to fire after d; s.mu is held.
func (e *eio) rearm(s *session, d time.Duration) {
	s.due = time.Now().Add(d)
	s.heartbeat.Reset(d)
}

// close ends a session: the open GET, if any, answers with last (close or noop), the
// sid is forgotten and the hub client, if any, leaves, so the others hear the count.
func (e *eio) close(s *session, last []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	e.queueLocked(s, last)
	s.closed = true
	s.heartbeat.Stop()
	hubID := s.hubID
	s.mu.Unlock()
	e.sessions.Delete(s.sid)
	e.open.Add(-1)
	if hubID != "" {
		e.hub.leave(hubID)
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

// newSID is a fresh, unguessable session or socket id.
func newSID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}
