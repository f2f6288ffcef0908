// hub.go is the core: the hub goroutine, which alone owns every client's mailbox and
// parked poll, and the calls the HTTP faces make to poll and emit. How clients begin
// and end (lifetimes.go) and the online count (presence.go) are read after this file.

package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// config holds the hub's limits; tests shrink the durations to milliseconds.
type config struct {
	pollTimeout   time.Duration // how long a poll may park before it answers empty
	clientTTL     time.Duration // a client with no parked poll for this long is expired
	presenceEvery time.Duration // the online count goes out at most this often
	maxClients    int           // connects beyond this are refused
	maxPerAddress int           // clients one address may hold (clientAddr); 0 is maxClients
	firstPoll     time.Duration // a client that has not polled this long after connecting is expired; 0 is clientTTL
	mailbox       int           // more unacknowledged messages than this evicts the client
	maxBatch      int           // bytes of messages one answer carries (at least one message)
	writeTimeout  time.Duration // how long writing one answer may take, from when it starts
	maxDepth      int           // how deeply a message's data may nest arrays and objects
	emitRate      int           // bytes a second one address may emit (rate.go); 0 is no limit
}

// message is one event, encoded to JSON once and shared by every mailbox it sits in.
// body is `"event":"E","data":D`; the per-client seq is written around it on delivery.
type message struct{ body []byte }

// batch is the hub's answer to a poll: the waiting messages, first has seq first,
// whole messages up to cfg.maxBatch bytes. msgs is a window on the mailbox itself
// (see take): nothing is copied, whatever the backlog.
type batch struct {
	first uint64
	msgs  []*message
	err   error
}

// wireOverhead is what a poll answer adds around each body: `{"seq":N,` and `},`.
const wireOverhead = 32

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

// client is one mailbox: the messages the client has not yet acknowledged.
type client struct {
	acked    uint64       // the highest seq the client said it has (its latest `after`)
	queue    []*message   // seq acked+1, acked+2, ...
	sent     uint64       // the highest seq ever handed to a poll; `after` may not pass it
	parked   *pollRequest // the poll waiting for news, if any
	lastSeen time.Time    // when it connected or a poll of its last ended: expiry counts from here
	polled   bool         // it has polled at least once: cfg.firstPoll no longer applies
	addr     string       // where it connected from, for its address's share (clientAddr)
}

// last is the highest seq this client has been given.
func (c *client) last() uint64 { return c.acked + uint64(len(c.queue)) }

// errStopped is the hub's answer once it has stopped; poll.go turns it into a 503.
var errStopped = errors.New("server shutting down: come back in a moment")

// cursorError is an `after` beyond anything the client was given (HTTP 400).
type cursorError struct{ after, last uint64 }

func (e cursorError) Error() string {
	return fmt.Sprintf("after=%d is beyond the highest seq given to this client (%d)", e.after, e.last)
}

// hub is the handle the HTTP faces hold. Its channels are the only way in.
type hub struct {
	cfg         config
	connects    chan connectRequest // faces send, run receives
	polls       chan *pollRequest   // faces send, run receives
	unparks     chan *pollRequest   // faces send a poll that timed out or whose browser left
	emits       chan emitRequest    // faces send, run receives
	disconnects chan string         // faces send ids that said goodbye
	peek        chan func(*state)   // tests and benchmarks send a look at the state; run calls it
	stop        chan struct{}       // closed by stopHub to end run
	done        chan struct{}       // closed by run when it has answered every parked poll and returned
}

// newHub makes a hub; call go h.run() to start it.
func newHub(cfg config) *hub {
	return &hub{
		cfg:         cfg,
		connects:    make(chan connectRequest),
		polls:       make(chan *pollRequest),
		unparks:     make(chan *pollRequest),
		emits:       make(chan emitRequest),
		disconnects: make(chan string),
		peek:        make(chan func(*state)),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
}

// run is the hub goroutine. It owns s, made here so that nothing else can reach it,
// and stops when stop is closed.
func (h *hub) run() {
	defer close(h.done)
	s := &state{cfg: h.cfg, clients: map[string]*client{}, byAddr: map[string]int{}, budgets: map[string]*budget{}, gone: newGraveyard(h.cfg.maxClients), presence: newPresence()}
	sweep := time.NewTicker(max(h.cfg.firstPollWithin()/4, time.Millisecond)) // expiry is checked 4 times per bound
	defer sweep.Stop()
	presence := time.NewTicker(h.cfg.presenceEvery)
	defer presence.Stop()

	for {
		select {
		case req := <-h.connects:
			req.reply <- s.connect(req) // lifetimes.go
		case req := <-h.polls:
			s.poll(req)
		case req := <-h.unparks:
			s.unpark(req)
		case req := <-h.emits:
			req.reply <- s.emit(req)
		case id := <-h.disconnects:
			s.disconnect(id) // lifetimes.go
		case look := <-h.peek:
			look(s)
		case now := <-sweep.C:
			s.expire(now) // lifetimes.go
		case <-presence.C:
			s.announce() // presence.go
		case <-h.stop:
			s.release() // lifetimes.go
			return
		}
	}
}

// stopHub ends run; faces that still call the hub get errStopped.
func (h *hub) stopHub() { close(h.stop); <-h.done }

// The methods below are the hub's API, named like the HTTP paths (connect and
// disconnect are in lifetimes.go). They run on the caller's goroutine (an HTTP
// handler's) and only send and receive on the channels.

// poll asks for the messages after the cursor `after` and waits for the hub's answer,
// the poll timeout, or ctx (the browser going away), whichever comes first.
func (h *hub) poll(ctx context.Context, id string, after uint64) batch {
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

// emit puts msg in every mailbox, on behalf of the client from.
func (h *hub) emit(from string, msg *message) error {
	req := emitRequest{from: from, msg: msg, reply: make(chan error, 1)}
	select {
	case h.emits <- req:
		return <-req.reply
	case <-h.done:
		return errStopped
	}
}

// state is what run owns. Its methods run only on the hub goroutine.
type state struct {
	cfg      config
	clients  map[string]*client // by id
	byAddr   map[string]int     // how many clients each address holds (lifetimes.go)
	budgets  map[string]*budget // what each address may still emit (rate.go)
	gone     *graveyard         // why recent ids left, for clear 410s (lifetimes.go)
	presence *presence          // who was told which online count (presence.go)
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
	c.polled = true
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
		req.reply <- s.take(c, time.Now())
	}
}

// take unparks a client's poll and returns its answer: the oldest messages in its
// mailbox, whole ones up to cfg.maxBatch bytes but always at least one. They stay in
// the mailbox until a later poll acknowledges them, so an answer lost on the way, or
// one that races a timeout, costs nothing: the next poll with the same cursor gets the
// same messages again. The answer shares the mailbox's slice, capped so that nothing
// appended later can reach it.
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
// clients see all messages in the same order. Once stored, the emit succeeded, even
// for a sender that this very message evicted: that sender hears of it from its next
// poll, and an error here would make it send again what everybody else already has.
func (s *state) emit(req emitRequest) error {
	c, ok := s.clients[req.from]
	if !ok {
		return s.gone.why(req.from)
	}
	if err := s.spend(c.addr, len(req.msg.body), time.Now()); err != nil {
		return err // rate.go: this address emits faster than readers should have to read
	}
	s.broadcast(req.msg)
	return nil
}

// broadcast appends msg to every mailbox.
func (s *state) broadcast(msg *message) {
	s.deliver(func(c *client) bool {
		c.queue = append(c.queue, msg)
		return true
	})
}

// deliver calls add on every mailbox (add says whether it added anything), answers the
// parked polls of those it added to, and evicts those that overflowed cfg.mailbox:
// memory stays bounded, and the evicted client hears of its loss from its next poll's
// 410. presence.go's announce delivers the online count through it too.
func (s *state) deliver(add func(*client) bool) {
	var full []string
	var woken wakeups
	now := time.Now()
	for id, c := range s.clients {
		switch {
		case !add(c):
		case len(c.queue) > s.cfg.mailbox:
			full = append(full, id)
		case c.parked != nil:
			req := c.parked // take unparks it
			woken.add(req, s.take(c, now))
		}
	}
	woken.send()
	s.evict(full) // lifetimes.go
}

// wakeups are the answers one delivery owes to parked polls.
type wakeups struct {
	polls   []*pollRequest
	answers []batch
}

func (w *wakeups) add(req *pollRequest, b batch) {
	w.polls = append(w.polls, req)
	w.answers = append(w.answers, b)
}

// send answers the polls from a goroutine of its own, which owns w and never blocks
// (each reply is buffered 1 and hears one answer). Thousands of sends can get the
// sender preempted, and the hub must not wait behind the handlers it just woke.
func (w *wakeups) send() {
	if len(w.polls) == 0 {
		return
	}
	go func() {
		for i, req := range w.polls {
			req.reply <- w.answers[i]
		}
	}()
}
