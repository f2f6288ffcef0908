// conns.go owns the connection cap: a listener that keeps at most a set number of
// connections open, so that the server never runs out of file descriptors, and that
// closes idle ones to make room while every slot is taken. Each cluster node uses it
// too: cluster/conns.go is this file byte for byte (a test there checks).

package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connCap is a listener with at most cap(slots) connections open. Over the cap,
// Accept waits, and the kernel's backlog holds the newcomers; meanwhile it closes the
// connection that has been idle longest, so a flood of idle or silent connections
// cannot hold every slot until their timeouts (60 s idle, 5 s for headers).
type connCap struct {
	net.Listener
	slots  chan struct{} // one token per open connection
	closed chan struct{} // closed by Close, so a waiting Accept ends
	once   sync.Once
	mu     sync.Mutex
	open   map[*cappedConn]struct{} // every open connection; changed only as one opens or closes
}

// shedEvery is how often a full Accept looks again for an idle connection to close:
// one that went idle since the last look.
const shedEvery = 50 * time.Millisecond

func newConnCap(ln net.Listener, max int) *connCap {
	return &connCap{Listener: ln, slots: make(chan struct{}, max), closed: make(chan struct{}), open: map[*cappedConn]struct{}{}}
}

// Accept waits for a free slot, making room if none is free, then accepts.
func (l *connCap) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
			c, err := l.Listener.Accept()
			if err != nil {
				<-l.slots
				return nil, err
			}
			capped := &cappedConn{Conn: c}
			capped.idleSince.Store(time.Now().UnixNano()) // no request yet
			capped.free = sync.OnceFunc(func() { l.forget(capped); <-l.slots })
			l.mu.Lock()
			l.open[capped] = struct{}{}
			l.mu.Unlock()
			return capped, nil
		default:
		}
		l.shed()
		select {
		case l.slots <- struct{}{}:
			<-l.slots // taken back at once: the loop takes it for the connection it accepts
		case <-time.After(shedEvery):
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

// Close stops the listener and any Accept waiting for a slot.
func (l *connCap) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// shed closes the connection idle longest, if any; closing it frees its slot. A
// linear look is fine: it runs only when every slot is taken, once per wait. One
// that starts a request just as it is picked is closed anyway; its client retries.
func (l *connCap) shed() {
	l.mu.Lock()
	var oldest *cappedConn
	var since int64
	for c := range l.open {
		if t := c.idleSince.Load(); t != 0 && (oldest == nil || t < since) {
			oldest, since = c, t
		}
	}
	l.mu.Unlock()
	if oldest != nil {
		oldest.Close()
	}
}

// track is the server's ConnState hook: a connection that has not sent a request yet,
// or is between requests, may be closed to make room; one in a request may not. It
// runs twice per request, so it only stores the connection's own mark: no lock.
func (l *connCap) track(c net.Conn, state http.ConnState) {
	capped, ok := c.(*cappedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateNew, http.StateIdle:
		capped.idleSince.Store(time.Now().UnixNano())
	default:
		capped.idleSince.Store(0)
	}
}

func (l *connCap) forget(c *cappedConn) {
	l.mu.Lock()
	delete(l.open, c)
	l.mu.Unlock()
}

// cappedConn gives its slot back when closed, once, however often it is closed.
type cappedConn struct {
	net.Conn
	free      func()
	idleSince atomic.Int64 // when it went idle, in Unix nanoseconds; 0 while in a request
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.free()
	return err
}

// spareFDs are the descriptors kept for other than connections: the listener, the
// standard streams, and what the runtime and a log file may open.
const spareFDs = 64

// connLimit is -max-conns checked against the descriptor limit (RLIMIT_NOFILE, which
// Go raises to its hard limit at start), or, when 0, derived from it; and the limit.
func connLimit(want int) (int, uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("reading the descriptor limit: %w", err)
	}
	room := int(min(rl.Cur, 1<<30)) - spareFDs
	switch {
	case room < 1:
		return 0, rl.Cur, fmt.Errorf("the descriptor limit (%d) leaves no room for connections", rl.Cur)
	case want > room:
		return 0, rl.Cur, fmt.Errorf("-max-conns %d is over the descriptor limit %d less %d: raise ulimit -n, or lower it", want, rl.Cur, spareFDs)
	case want == 0:
		return room, rl.Cur, nil
	}
	return want, rl.Cur, nil
}
