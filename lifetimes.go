// lifetimes.go owns how clients begin and end: connect, a goodbye, expiry, eviction
// and the shutdown release, and the graveyard that remembers why an id left. The
// hub's API methods run on the caller's goroutine; the state methods on the hub's.

package main

import (
	"errors"
	"fmt"
	"time"
)

// errFull refuses a connect beyond cfg.maxClients; poll.go turns it into a 503.
var errFull = errors.New("server full: too many clients connected")

// shareError refuses a connect from an address that holds its share of the clients
// already (cfg.maxPerAddress), so that no single source takes the server; poll.go
// turns it into a 429.
type shareError struct{ limit int }

func (e shareError) Error() string {
	return fmt.Sprintf("too many clients from your address (%d, -max-per-address): close some, or come back later", e.limit)
}

// perAddress is how many clients one address may hold.
func (c config) perAddress() int {
	if c.maxPerAddress <= 0 {
		return c.maxClients
	}
	return min(c.maxPerAddress, c.maxClients)
}

// firstPollWithin is how soon after connecting a client must poll: a connect that
// never polls gives its slot back then, not a whole TTL later.
func (c config) firstPollWithin() time.Duration {
	if c.firstPoll <= 0 {
		return c.clientTTL
	}
	return min(c.firstPoll, c.clientTTL)
}

// connectRequest asks the hub to open a mailbox for a fresh id, for a client at addr.
type connectRequest struct {
	id    string
	addr  string
	reply chan error
}

// connect opens a mailbox for id, counted against addr's share.
func (h *hub) connect(id, addr string) error {
	req := connectRequest{id: id, addr: addr, reply: make(chan error, 1)}
	select {
	case h.connects <- req:
		return <-req.reply
	case <-h.done:
		return errStopped
	}
}

// disconnect closes id's mailbox; an unknown id is not an error.
func (h *hub) disconnect(id string) {
	select {
	case h.disconnects <- id:
	case <-h.done:
	}
}

// connect opens a mailbox for a new client, if the server and its address have room;
// presence puts the online count in it.
func (s *state) connect(req connectRequest) error {
	if len(s.clients) >= s.cfg.maxClients {
		return errFull
	}
	if s.byAddr[req.addr] >= s.cfg.perAddress() {
		return shareError{s.cfg.perAddress()}
	}
	c := &client{lastSeen: time.Now(), addr: req.addr}
	s.clients[req.id] = c
	s.byAddr[req.addr]++
	s.arrived(c)
	return nil
}

// goneError says why an id no longer has a mailbox (HTTP 410).
type goneError struct{ why string }

func (e goneError) Error() string { return e.why }

// disconnect drops a client that said goodbye, if it is still here; twice is fine.
func (s *state) disconnect(id string) {
	if _, ok := s.clients[id]; ok {
		s.drop(id, "disconnected: this id said goodbye")
	}
}

// expire removes clients that have had no parked poll for longer than the TTL (tabs
// that closed without a goodbye), and sooner those that never polled since connecting.
func (s *state) expire(now time.Time) {
	for id, c := range s.clients {
		idle := now.Sub(c.lastSeen)
		switch {
		case c.parked != nil:
		case !c.polled && idle > s.cfg.firstPollWithin():
			s.drop(id, fmt.Sprintf("expired: no first poll within %s of connecting", s.cfg.firstPollWithin()))
		case idle > s.cfg.clientTTL:
			s.drop(id, fmt.Sprintf("expired: no poll for more than %s", s.cfg.clientTTL))
		}
	}
	s.gone.sweep(now, s.cfg.clientTTL*10)
	s.forgetBudgets(now) // rate.go
}

// evict drops the clients whose mailboxes overflowed: they stopped reading.
func (s *state) evict(ids []string) {
	for _, id := range ids {
		s.drop(id, fmt.Sprintf("evicted: more than %d unacknowledged messages; poll sooner", s.cfg.mailbox))
	}
}

// drop deletes a client's mailbox and remembers why; a parked poll learns it at once,
// the others hear the new count from presence.
func (s *state) drop(id, why string) {
	c := s.clients[id]
	if c.parked != nil {
		c.parked.reply <- batch{err: goneError{why}}
	}
	delete(s.clients, id)
	if s.byAddr[c.addr]--; s.byAddr[c.addr] == 0 {
		delete(s.byAddr, c.addr)
	}
	s.departed(c)
	s.gone.bury(id, why)
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
