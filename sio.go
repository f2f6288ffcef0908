// sio.go is the Socket.IO v5 layer inside an Engine.IO session: it decodes the
// packets a client sends and connects, emits and disconnects the session's socket in
// the hub. Only namespace "/" exists. Each handler returns the packet it answers with,
// which eio.go queues for the session's next GET.

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// socket is a session's connection to namespace "/": the hub client it maps to and
// its cursor. The session's GET and POST both reach it, so it has its own mutex.
type socket struct {
	mu     sync.Mutex
	addr   string // the session's client address (clientAddr), set before the session is shared
	hubID  string // the hub client; "" until the client connects to "/"
	cursor uint64 // the highest seq written to the session; its next GET acknowledges it
	ended  bool   // the session has closed: the socket may not connect again
}

// position is where the next GET asks the hub from.
func (k *socket) position() (string, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.hubID, k.cursor
}

// advance moves the cursor past b, which the hub client from answered. A batch from a
// mailbox the socket has left since is not written at all.
func (k *socket) advance(b batch, from string) batch {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(b.msgs) > 0 && k.hubID == from && !k.ended {
		k.cursor = b.first + uint64(len(b.msgs)) - 1
		return b
	}
	b.msgs = nil
	return b
}

// end marks the socket ended with its session and returns the hub client to
// disconnect, if any.
func (k *socket) end() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	hubID := k.hubID
	k.hubID, k.cursor, k.ended = "", 0, true
	return hubID
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

// handle takes one Socket.IO packet and returns the packet that answers it, if any. A
// packet for a namespace the client has not connected to is an error, which closes
// the session, as socket.io does.
func (k *socket) handle(h *hub, p []byte) ([]byte, error) {
	pk, err := decodeSIO(p)
	if err != nil {
		return nil, err
	}
	hubID, _ := k.position()
	switch {
	case pk.typ == '0' && pk.nsp != "/":
		return fmt.Appendf(nil, `44%s,{"message":"Invalid namespace"}`, pk.nsp), nil
	case pk.typ == '0' && hubID != "":
		return nil, errors.New("a second CONNECT to namespace /")
	case pk.typ == '0':
		return k.connect(h, pk)
	case pk.nsp != "/" || hubID == "":
		return nil, fmt.Errorf("packet type %c for namespace %s, which this session has not connected to", pk.typ, pk.nsp)
	case pk.typ == '1':
		k.disconnect(h)
		return nil, nil
	case pk.typ == '2':
		return k.emit(h, pk, hubID)
	case pk.typ == '3': // an ack: this server never asks for one, so there is nothing to match
		return nil, nil
	default:
		return nil, fmt.Errorf("packet type %c is not one a client sends", pk.typ)
	}
}

// connect connects the socket to the hub for namespace "/" and answers
// 40{"sid":...}, or 44 when the hub refuses (full or stopping).
func (k *socket) connect(h *hub, pk sioPacket) ([]byte, error) {
	if len(pk.data) > 0 && (pk.data[0] != '{' || !json.Valid(pk.data)) {
		return nil, errors.New("malformed CONNECT: its payload must be a JSON object")
	}
	id := newID()
	if err := h.connect(id, k.addr); err != nil {
		why, _ := json.Marshal(err.Error())
		return fmt.Appendf(nil, `44{"message":%s}`, why), nil
	}
	k.mu.Lock()
	ended := k.ended
	if !ended {
		k.hubID, k.cursor = id, 0
	}
	k.mu.Unlock()
	if ended { // the session closed while connecting: take the hub client back
		h.disconnect(id)
		return nil, nil
	}
	return fmt.Appendf(nil, `40{"sid":"%s"}`, newID()), nil // socket.io's id of this connection; nothing here needs it again
}

// disconnect leaves the hub for namespace "/"; the Engine.IO session stays open.
func (k *socket) disconnect(h *hub) {
	k.mu.Lock()
	hubID := k.hubID
	k.hubID, k.cursor = "", 0
	k.mu.Unlock()
	if hubID != "" {
		h.disconnect(hubID)
	}
}

// emit turns 42["E",D] into a hub emit of E with data D, checked like /emit. An event
// with an ack id is acknowledged once every mailbox has it, as /emit answers 204; one
// the server refuses is dropped, and its ack, if asked for, says why.
func (k *socket) emit(h *hub, pk sioPacket, hubID string) ([]byte, error) {
	msg, refused, err := decodeEvent(pk.data, h.cfg.maxDepth)
	if err != nil {
		return nil, err
	}
	if refused == nil {
		refused = h.emit(hubID, msg)
		var gone goneError
		if errors.As(refused, &gone) {
			return nil, refused
		}
	}
	if pk.id == "" {
		return nil, nil
	}
	if refused == nil {
		return fmt.Appendf(nil, `43%s[]`, pk.id), nil
	}
	why, _ := json.Marshal(refused.Error())
	return fmt.Appendf(nil, `43%s[{"error":%s}]`, pk.id, why), nil
}

// decodeEvent reads an EVENT's ["E",D] into a message. A malformed array is an error
// (it closes the session); an event the server refuses comes back as refused.
func decodeEvent(data []byte, maxDepth int) (msg *message, refused, err error) {
	var args []json.RawMessage
	if err := json.Unmarshal(data, &args); err != nil || len(args) == 0 {
		return nil, nil, errors.New("malformed EVENT: its payload must be a non-empty JSON array")
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return nil, nil, errors.New("malformed EVENT: its first element must be the event name")
	}
	var value json.RawMessage
	if len(args) == 2 {
		value = args[1]
	}
	msg, refused = newMessage(name, value, maxDepth)
	if refused == nil && len(args) > 2 {
		refused = errors.New("an event here carries one data value, not several")
	}
	return msg, refused, nil
}
