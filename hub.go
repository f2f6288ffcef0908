// hub.go owns the clients: their mailboxes, their parked polls and their lifetimes.
// One goroutine, hub.run, is the only code that reads or writes that state; everybody
// else talks to it through the channels below, so no mutex is needed and every client
// sees every message in the one order in which the hub handled them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// config holds the hub's limits; tests shrink the durations to milliseconds.
type config struct {
	pollTimeout   time.Duration // how long a poll may park before it answers empty
	clientTTL     time.Duration // a client with no parked poll for this long is expired
	presenceEvery time.Duration // the online count goes out at most this often
	maxClients    int           // connects beyond this are refused
	mailbox       int           // more unacknowledged messages than this evicts the client
	maxBatch      int           // bytes of messages one answer carries (at least one message)
	writeTimeout  time.Duration // how long writing one answer may take, from when it starts
}

// message is one event, encoded to JSON once and shared by every mailbox it sits in.
// body is `"event":"E","data":D`; the per-client seq is written around it on delivery.
type message struct {
	body   []byte
	online bool // an `online` count, which a newer count may replace before delivery
	count  int  // the count, when online
}

// wireOverhead is what a poll answer adds around each body: `{"seq":N,` and `},`.
const wireOverhead = 32

// batch is the hub's answer to a poll: the waiting messages, first has seq first,
// whole messages up to cfg.maxBatch bytes. msgs is a window on the mailbox itself
// (see take): nothing is copied, whatever the backlog.
type batch struct {
	first uint64
	msgs  []*message
	err   error
}

// pollRequest asks for the messages after a cursor. reply is buffered 1 so that the
// hub never blocks on a handler that has already gone.
type pollRequest struct {
	id    string
	after uint64
	reply chan batch
}

// emitRequest asks the hub to put msg in every mailbox; the hub answers on reply (buffered 1).
type emitRequest struct {
	from  string
	msg   *message
	reply chan error
}

// connectRequest asks the hub to open a mailbox for a fresh id.
type connectRequest struct {
	id    string
	reply chan error
}

// client is one mailbox: the messages the client has not yet acknowledged.
type client struct {
	acked    uint64       // the highest seq the client said it has (its latest `after`)
	queue    []*message   // seq acked+1, acked+2, ...
	sent     uint64       // the highest seq ever handed to a poll; `after` may not pass it
	parked   *pollRequest // the poll waiting for news, if any
	lastSeen time.Time    // when the client last had a poll parked or answered
	count    int          // the last online count put in this mailbox
}

// last is the highest seq this client has been given.
func (c *client) last() uint64 { return c.acked + uint64(len(c.queue)) }

// Errors the hub answers with; poll.go turns them into HTTP statuses.
var (
	errFull    = errors.New("server full: too many clients connected")
	errStopped = errors.New("server shutting down: come back in a moment")
)

// goneError says why an id no longer has a mailbox (HTTP 410).
type goneError struct{ why string }

func (e goneError) Error() string { return e.why }

// cursorError is an `after` beyond anything the client was given (HTTP 400).
type cursorError struct{ after, last uint64 }

func (e cursorError) Error() string {
	return fmt.Sprintf("after=%d is beyond the highest seq given to this client (%d)", e.after, e.last)
}

// hub is the handle the HTTP handlers hold. Its channels are the only way in.
type hub struct {
	cfg      config
	connects chan connectRequest // handlers send, run receives
	polls    chan *pollRequest   // handlers send, run receives
	unparks  chan *pollRequest   // handlers send when a poll times out or its browser leaves
	emits    chan emitRequest    // handlers send, run receives
	leaves   chan string         // handlers send ids that said goodbye
	peek     chan func(*state)   // tests and benchmarks send a look at the state; run calls it
	stop     chan struct{}       // closed by stopHub to end run
	done     chan struct{}       // closed by run when it has answered every parked poll and returned
}

// newHub makes a hub; call go h.run() to start it.
func newHub(cfg config) *hub {
	return &hub{
		cfg:      cfg,
		connects: make(chan connectRequest),
		polls:    make(chan *pollRequest),
		unparks:  make(chan *pollRequest),
		emits:    make(chan emitRequest),
		leaves:   make(chan string),
		peek:     make(chan func(*state)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// run is the hub goroutine. It owns s, made here so that nothing else can reach it,
// and stops when stop is closed.
func (h *hub) run() {
	defer close(h.done)
	s := &state{cfg: h.cfg, clients: map[string]*client{}, gone: newGraveyard(h.cfg.maxClients)}
	sweep := time.NewTicker(max(h.cfg.clientTTL/4, time.Millisecond)) // expiry is checked 4 times per TTL
	defer sweep.Stop()
	presence := time.NewTicker(h.cfg.presenceEvery)
	defer presence.Stop()

	for {
		select {
		case req := <-h.connects:
			req.reply <- s.connect(req.id)
		case req := <-h.polls:
			s.poll(req)
		case req := <-h.unparks:
			s.unpark(req)
		case req := <-h.emits:
			req.reply <- s.emit(req)
		case id := <-h.leaves:
			s.remove(id, "disconnected: this id said goodbye")
		case look := <-h.peek:
			look(s)
		case now := <-sweep.C:
			s.expire(now)
		case <-presence.C:
			s.announce()
		case <-h.stop:
			s.release()
			return
		}
	}
}

// stopHub ends run; handlers that still call the hub get errStopped.
func (h *hub) stopHub() { close(h.stop); <-h.done }

// The methods below are the hub's API. They run on the caller's goroutine (an HTTP
// handler's) and only send and receive on the hub's channels.

// join opens a mailbox for id.
func (h *hub) join(id string) error {
	req := connectRequest{id: id, reply: make(chan error, 1)}
	select {
	case h.connects <- req:
		return <-req.reply
	case <-h.done:
		return errStopped
	}
}

// wait asks for the messages after the cursor `after` and waits for the hub's answer,
// the poll timeout, or ctx (the browser going away), whichever comes first.
func (h *hub) wait(ctx context.Context, id string, after uint64) batch {
	req := &pollRequest{id: id, after: after, reply: make(chan batch, 1)}
	select {
	case h.polls <- req:
	case <-h.done:
		return batch{err: errStopped}
	}
	timer := time.NewTimer(h.cfg.pollTimeout)
	defer timer.Stop()
	select {
	case b := <-req.reply:
		return b
	case <-timer.C:
	case <-ctx.Done():
	}
	// Unpark at once, so the hub stops counting this poll as a live client. The hub
	// answers req exactly once: with what it already sent, or with an empty batch now.
	select {
	case h.unparks <- req:
	case <-h.done: // a stopped hub has answered every parked poll already
	}
	return <-req.reply
}

// send puts msg in every mailbox, on behalf of the client from.
func (h *hub) send(from string, msg *message) error {
	req := emitRequest{from: from, msg: msg, reply: make(chan error, 1)}
	select {
	case h.emits <- req:
		return <-req.reply
	case <-h.done:
		return errStopped
	}
}

// leave closes id's mailbox; an unknown id is not an error.
func (h *hub) leave(id string) {
	select {
	case h.leaves <- id:
	case <-h.done:
	}
}

// state is what run owns. Its methods run only on the hub goroutine.
type state struct {
	cfg      config
	clients  map[string]*client // by id
	gone     *graveyard         // why recent ids left, for clear 410s
	changed  bool               // clients came or went since the last announce
	stirring bool               // ... and did during the current presence interval
	held     int                // presence intervals the new count has been held back
}

// connect opens a mailbox holding the current online count, so the newcomer's first
// poll learns it at once. The others hear of the newcomer at the next announce, not
// now: a crowd of N arriving would otherwise wake every parked poll N times.
func (s *state) connect(id string) error {
	if len(s.clients) >= s.cfg.maxClients {
		return errFull
	}
	c := &client{lastSeen: time.Now()}
	s.clients[id] = c
	s.changed, s.stirring = true, true
	s.put(c, onlineMessage(len(s.clients)))
	return nil
}

// poll acknowledges everything up to req.after, then answers at once if anything is
// waiting, or parks req until a message arrives. A parked poll it replaces answers empty:
// at most one poll per client waits, so a reconnecting browser never leaves one behind.
func (s *state) poll(req *pollRequest) {
	c, ok := s.clients[req.id]
	if !ok {
		req.reply <- batch{err: s.gone.why(req.id)}
		return
	}
	if req.after > c.sent { // acknowledging what no poll was given would skip it unseen
		req.reply <- batch{err: cursorError{req.after, c.sent}}
		return
	}
	if req.after > c.acked { // forget what the client now has; it can never ask again
		c.queue = c.queue[req.after-c.acked:]
		c.acked = req.after
	}
	if c.parked != nil {
		c.parked.reply <- batch{}
	}
	c.parked = req
	if len(c.queue) > 0 {
		s.answer(c)
	}
}

// answer hands a client's parked poll the oldest messages in its mailbox, whole ones
// up to cfg.maxBatch bytes but always at least one, and unparks it; the rest waits for
// the next poll, which comes at once. The messages stay in the mailbox until a later
// poll acknowledges them, so a response lost on the way, or one that races a timeout,
// costs nothing: the next poll with the same cursor gets the same messages again.
func (s *state) answer(c *client) {
	if c.parked != nil {
		req := c.parked
		req.reply <- s.take(c, time.Now())
	}
}

// take unparks a client's poll and returns its answer, for answer to send now or
// broadcast to send with the others. The answer shares the mailbox's slice, capped
// so that nothing appended later can reach it; put only ever replaces a count that
// no poll was given, which lies past it.
func (s *state) take(c *client, now time.Time) batch {
	n, size := 0, 0
	for n < len(c.queue) && (n == 0 || size+len(c.queue[n].body)+wireOverhead <= s.cfg.maxBatch) {
		size += len(c.queue[n].body) + wireOverhead
		n++
	}
	c.parked = nil
	c.sent = max(c.sent, c.acked+uint64(n))
	c.lastSeen = now
	return batch{first: c.acked + 1, msgs: c.queue[:n:n]}
}

// unpark forgets a poll that timed out or whose browser went away. If it is still
// parked it gets an empty batch; if the hub answered it already, that answer stands.
func (s *state) unpark(req *pollRequest) {
	c, ok := s.clients[req.id]
	if !ok || c.parked != req {
		return
	}
	c.parked = nil
	c.lastSeen = time.Now()
	req.reply <- batch{}
}

// emit puts one message in every mailbox, the sender's too, in one step, so all
// clients see all messages in the same order. A sender that this very message
// evicts hears so (410), since its own mailbox does not hold it.
func (s *state) emit(req emitRequest) error {
	if _, ok := s.clients[req.from]; !ok {
		return s.gone.why(req.from)
	}
	s.broadcast(req.msg)
	if _, ok := s.clients[req.from]; !ok { // this message overflowed the sender's own mailbox
		return s.gone.why(req.from)
	}
	return nil
}

// broadcast appends msg to every mailbox and wakes every parked poll. A client whose
// mailbox overflows is evicted (the others hear the new count at the next announce):
// memory stays bounded, and the evicted client learns of its loss from its next
// poll's 410. An online count goes only to mailboxes that do not hold it already.
func (s *state) broadcast(msg *message) {
	var full []string
	var woken []*pollRequest
	var answers []batch
	now := time.Now()
	for id, c := range s.clients {
		if msg.online && c.count == msg.count {
			continue
		}
		if !s.put(c, msg) {
			full = append(full, id)
			continue
		}
		if c.parked != nil {
			woken = append(woken, c.parked)
			answers = append(answers, s.take(c, now))
		}
	}
	// The woken polls hear their answers from a goroutine of their own. It owns
	// woken and answers, talks to nobody but the reply channels, and never blocks,
	// since each is buffered and hears one answer. Thousands of sends take long
	// enough for the runtime to preempt the sender, and a preempted goroutine waits
	// behind the very handlers it woke: were the hub the sender, the emit's own
	// answer and every re-poll would wait with it (about 200 ms with 10,000 parked,
	// against the floor's 10-25 ms; loadtest -mode hold prints it per broadcast).
	if len(woken) > 0 {
		go func() {
			for i, req := range woken {
				req.reply <- answers[i]
			}
		}()
	}
	for _, id := range full {
		s.drop(id, fmt.Sprintf("evicted: more than %d unacknowledged messages; poll sooner", s.cfg.mailbox))
	}
}

// put appends msg to one mailbox and says whether it still fits. An online count
// that no poll has been given yet is replaced by the newer one rather than queued,
// so a client that is not polling while thousands come and go holds one count.
func (s *state) put(c *client, msg *message) bool {
	tail := len(c.queue) - 1
	if msg.online && tail >= 0 && c.queue[tail].online && c.last() > c.sent {
		c.queue[tail] = msg
	} else {
		c.queue = append(c.queue, msg)
	}
	if msg.online {
		c.count = msg.count
	}
	return len(c.queue) <= s.cfg.mailbox
}

// presenceHold is how many presence intervals a count may be held back while
// clients keep coming or going: it goes out at the latest in the interval after.
const presenceHold = 4

// announce runs every cfg.presenceEvery. If clients came or went since the last
// count, everybody hears the new one, as one event in the one order, once the crowd
// has settled: when nobody came or went during the last interval, or after
// presenceHold intervals at the latest. Each count wakes every parked poll, and the
// moment a crowd arrives (a launch, a restart) is when a count is least worth that:
// a crowd of N that arrives in a few seconds costs N answers plus one count each.
func (s *state) announce() {
	if !s.changed {
		return
	}
	if s.stirring && s.held < presenceHold {
		s.stirring = false
		s.held++
		return
	}
	s.changed, s.stirring, s.held = false, false, 0
	s.broadcast(onlineMessage(len(s.clients)))
}

// onlineMessage is the server's own event: how many clients are connected.
func onlineMessage(n int) *message {
	return &message{body: encode("online", json.RawMessage(strconv.Itoa(n))), online: true, count: n}
}

// release answers every parked poll at shutdown: now, not at its timeout, and with
// errStopped, which tells the client to come back in a moment (503, Retry-After).
func (s *state) release() {
	for _, c := range s.clients {
		if c.parked != nil {
			c.parked.reply <- batch{err: errStopped}
		}
	}
}

// expire removes clients that have had no parked poll for longer than the TTL:
// tabs that closed without a goodbye.
func (s *state) expire(now time.Time) {
	for id, c := range s.clients {
		if c.parked == nil && now.Sub(c.lastSeen) > s.cfg.clientTTL {
			s.drop(id, fmt.Sprintf("expired: no poll for more than %s", s.cfg.clientTTL))
		}
	}
	s.gone.sweep(now, s.cfg.clientTTL*10)
}

// remove drops a client if it is still here; saying goodbye twice is fine.
func (s *state) remove(id, why string) {
	if _, ok := s.clients[id]; ok {
		s.drop(id, why)
	}
}

// drop deletes a client's mailbox and remembers why; a parked poll learns it at once,
// the others at the next announce.
func (s *state) drop(id, why string) {
	if c := s.clients[id]; c.parked != nil {
		c.parked.reply <- batch{err: goneError{why}}
	}
	delete(s.clients, id)
	s.changed, s.stirring = true, true
	s.gone.bury(id, why)
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

// graveyard remembers, for a while and up to a bound, why ids left, so that a late poll
// hears "expired" or "evicted" rather than just "unknown".
type graveyard struct {
	reasons map[string]string
	order   []grave // oldest first
	limit   int
}

type grave struct {
	id string
	at time.Time
}

func newGraveyard(limit int) *graveyard {
	return &graveyard{reasons: map[string]string{}, limit: max(limit, 1)}
}

func (g *graveyard) bury(id, why string) {
	g.reasons[id] = why
	g.order = append(g.order, grave{id, time.Now()})
	for len(g.order) > g.limit {
		g.forgetOldest()
	}
}

// sweep forgets graves older than keep.
func (g *graveyard) sweep(now time.Time, keep time.Duration) {
	for len(g.order) > 0 && now.Sub(g.order[0].at) > keep {
		g.forgetOldest()
	}
}

func (g *graveyard) forgetOldest() {
	delete(g.reasons, g.order[0].id)
	g.order = g.order[1:]
}

// why is the 410 for an id without a mailbox.
func (g *graveyard) why(id string) error {
	if why, ok := g.reasons[id]; ok {
		return goneError{why}
	}
	return goneError{"unknown id: never connected here, or gone long ago; connect again"}
}
