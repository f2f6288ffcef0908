// tail.go owns what one node keeps for itself: a copy of the stream's tail and the
// polls parked here. One goroutine, tail.run, is the only code that touches them; the
// reader feeds it the stream as it grows, and HTTP handlers send it their polls. None
// of this is needed by another node: a poll carries its own cursor and the client's
// record comes from Redis, so whichever node a poll reaches can answer it.

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// config holds a node's limits; tests shrink the durations to milliseconds.
type config struct {
	pollTimeout   time.Duration // how long a poll may park before it answers empty
	clientTTL     time.Duration // a client not seen polling for this long is expired
	firstPoll     time.Duration // a client that has not polled this long after connecting is expired
	presenceEvery time.Duration // the online count goes out at most this often
	maxClients    int           // clients registered at most, over all nodes
	backlog       int           // stream entries kept (in Redis and here); a cursor behind gets 410
	maxBatch      int           // bytes of messages one answer carries (at least one message)
	maxMessage    int64         // bytes of request body an emit may carry
	writeTimeout  time.Duration // how long writing one answer may take, from when it starts
	maxDepth      int           // how deeply a message's data may nest arrays and objects (bounds.go)
}

// firstPollWithin is how soon after connecting a client must poll, as in the single
// server: a connect that never polls gives its slot back then, not a whole TTL later.
func (c config) firstPollWithin() time.Duration { return min(c.firstPoll, c.clientTTL) }

// entry is one message of the one order: g is its place in it, body is
// `"event":"E","data":D`, shared by every answer that carries it.
type entry struct {
	g    uint64
	body []byte
}

// snapshot is the stream as the reader loaded it: its epoch and what it keeps.
type snapshot struct {
	epoch   string
	next    uint64 // the sequence the next entry will have
	entries []entry
}

// batch is a poll's answer: msgs have seqs first, first+1, ...
type batch struct {
	first uint64
	msgs  [][]byte
	err   error
}

// wireOverhead is what an answer adds around each body: `{"seq":N,` and `},`.
const wireOverhead = 32

// pollRequest asks for the messages after a cursor. reply is buffered 1 so that the
// tail never blocks on a handler that has already gone.
type pollRequest struct {
	id       string
	after    uint64
	c        client // the record, as Redis had it when the poll arrived
	greeting []byte // seq 1: the online count at connect
	reply    chan batch
}

// from is the first entry of the one order the poll asks for: seq s is entry
// base+s-1, and seq 1 is the greeting, which no entry holds.
func (req *pollRequest) from() uint64 { return req.c.base + max(req.after, 1) }

// behindError is a cursor older than what the backlog keeps (HTTP 410).
type behindError struct{ backlog int }

func (e behindError) Error() string {
	return fmt.Sprintf("evicted: more than %d messages behind, and those were trimmed; poll sooner", e.backlog)
}

// tail is the handle handlers and the reader hold. Its channels are the only way in.
type tail struct {
	cfg     config
	polls   chan *pollRequest // handlers send, run receives
	unparks chan *pollRequest // handlers send when a poll times out or its browser leaves
	grow    chan []entry      // the reader sends entries as the stream grows
	reset   chan snapshot     // the reader sends a fresh load (start, Redis back, epoch changed)
	recheck chan struct{}     // run asks the reader to compare epochs now (buffered 1)
	touch   func([]string)    // notes parked clients as seen; run calls it on a goroutine
	stop    chan struct{}     // closed by stopTail to end run
	once    sync.Once         // stopTail closes stop once: shutdown and a failed Serve may both call it
	done    chan struct{}     // closed by run once every parked poll is answered
}

// newTail makes a tail; call go t.run() once the reader has sent its first snapshot.
func newTail(cfg config, touch func([]string)) *tail {
	return &tail{
		cfg: cfg, touch: touch,
		polls: make(chan *pollRequest), unparks: make(chan *pollRequest),
		grow: make(chan []entry), reset: make(chan snapshot), recheck: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// run is the tail goroutine. It owns s, made here so that nothing else can reach it.
// Until the reader's first snapshot it takes no polls: a node that does not yet know
// the stream cannot tell a cursor behind the backlog from one it has not read.
func (t *tail) run() {
	defer close(t.done)
	s := &tailState{cfg: t.cfg, parked: map[string]*pollRequest{}, recheck: t.recheck}
	select {
	case snap := <-t.reset:
		s.load(snap)
	case <-t.stop:
		return
	}
	refresh := time.NewTicker(max(t.cfg.clientTTL/4, time.Millisecond))
	defer refresh.Stop()
	for {
		select {
		case req := <-t.polls:
			s.poll(req)
		case req := <-t.unparks:
			s.unpark(req)
		case entries := <-t.grow:
			s.grow(entries)
		case snap := <-t.reset:
			s.load(snap)
		case <-refresh.C:
			// The touch goroutine owns ids and talks only to Redis.
			go t.touch(slices.Collect(maps.Keys(s.parked)))
		case <-t.stop:
			s.release()
			return
		}
	}
}

// stopTail ends run; handlers that still call it get errStopped.
func (t *tail) stopTail() { t.once.Do(func() { close(t.stop) }); <-t.done }

// wait sends a poll to the tail and waits for its answer, the poll timeout, or ctx
// (the browser going away), whichever comes first.
func (t *tail) wait(ctx context.Context, req *pollRequest) batch {
	select {
	case t.polls <- req:
	case <-t.done:
		return batch{err: errStopped}
	}
	timer := time.NewTimer(t.cfg.pollTimeout)
	defer timer.Stop()
	select {
	case b := <-req.reply:
		return b
	case <-timer.C:
	case <-ctx.Done():
	}
	// Unpark through the tail, which answers req exactly once: with what it already
	// sent, or with an empty batch now. Nothing is lost either way: the entries stay
	// in the stream until the client's cursor passes them.
	select {
	case t.unparks <- req:
	case <-t.done: // a stopped tail has answered every parked poll already
	}
	return <-req.reply
}
