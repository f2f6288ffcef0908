// presence.go owns the online count: the hooks the hub calls when a client arrives or
// departs, and the tick that tells everybody the new count once the crowd has settled.
// It runs on the hub goroutine, like everything that touches the state.

package main

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// presence is what the hub knows about counts. A count wakes every parked poll, so it
// goes out once clients stop coming and going, not once per arrival: a crowd of N
// that arrives in a few seconds costs N answers plus one count each, not N each.
type presence struct {
	owed      bool            // clients came or went since the last count went out
	unsettled bool            // ... and did so during the current tick, so wait one more
	postponed int             // ticks the owed count has waited while clients kept moving
	told      map[*client]int // the last count put in each mailbox
}

// maxPostpone is how many ticks a count may wait while clients keep coming or going:
// it goes out at the latest on the tick after.
const maxPostpone = 4

func newPresence() *presence { return &presence{told: map[*client]int{}} }

// arrived puts the current count in a newcomer's mailbox, so its first poll learns it
// at once. The others hear of it at a later announce.
func (s *state) arrived(c *client) {
	p := s.presence
	p.owed, p.unsettled = true, true
	n := len(s.clients)
	c.queue = append(c.queue, onlineMessage(n))
	p.told[c] = n
}

// departed forgets a client that was dropped; the others hear of it at a later announce.
func (s *state) departed(c *client) {
	p := s.presence
	p.owed, p.unsettled = true, true
	delete(p.told, c)
}

// announce runs every cfg.presenceEvery. If clients came or went since the last count,
// everybody hears the new one, as one event in the one order, once the crowd has
// settled: when nobody came or went during the last tick, or after maxPostpone ticks.
func (s *state) announce() {
	p := s.presence
	if !p.owed {
		return
	}
	if p.unsettled && p.postponed < maxPostpone {
		p.unsettled = false
		p.postponed++
		return
	}
	p.owed, p.unsettled, p.postponed = false, false, 0
	n := len(s.clients)
	msg := onlineMessage(n)
	s.deliver(func(c *client) bool { return p.tell(c, msg, n) })
}

// tell puts count n in c's mailbox, unless c was told n already. A count that no poll
// has been given yet is replaced rather than queued, so a client that is not polling
// while thousands come and go holds one count. That count lies past every answer's
// capped slice (state.take), so replacing it changes no answer in flight.
func (p *presence) tell(c *client, msg *message, n int) bool {
	if p.told[c] == n {
		return false
	}
	p.told[c] = n
	if tail := len(c.queue) - 1; tail >= 0 && isOnline(c.queue[tail]) && c.last() > c.sent {
		c.queue[tail] = msg
	} else {
		c.queue = append(c.queue, msg)
	}
	return true
}

// onlinePrefix starts every count's body. "online" is reserved (checkEvent), so no
// client's message starts so.
var onlinePrefix = []byte(`"event":"online",`)

// onlineMessage is the server's own event: how many clients are connected.
func onlineMessage(n int) *message {
	return &message{body: encode("online", json.RawMessage(strconv.Itoa(n)))}
}

// isOnline says whether m is a count.
func isOnline(m *message) bool { return bytes.HasPrefix(m.body, onlinePrefix) }
