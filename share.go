// share.go owns how much of the server one address may hold: the address a client's
// share is counted by, and the Engine.IO face's count of open sessions by address
// (the hub counts its own clients in lifetimes.go).

package main

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// clientAddr is the address a client's share is counted by: the peer's IP, or its /64
// for IPv6, since one host commonly holds a whole /64. Behind a reverse proxy every
// client is the proxy's address (README, section 6).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr // not host:port (a test's, or a unix socket's): count it as it is
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// seats counts a face's open sessions, in all and by address, so that one address
// cannot hold them all. Requests of many sessions take and give seats at once, so a
// mutex guards it.
type seats struct {
	mu      sync.Mutex
	open    int
	byAddr  map[string]int
	max     int // seats in all
	perAddr int // seats one address may hold
}

func newSeats(max, perAddr int) *seats {
	return &seats{byAddr: map[string]int{}, max: max, perAddr: perAddr}
}

// take gives addr a seat, or says why not: errFull, or its share is taken.
func (c *seats) take(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.open >= c.max:
		return errFull
	case c.byAddr[addr] >= c.perAddr:
		return shareError{c.perAddr}
	}
	c.open++
	c.byAddr[addr]++
	return nil
}

// give takes back the seat addr took.
func (c *seats) give(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.byAddr[addr]--; c.byAddr[addr] == 0 {
		delete(c.byAddr, addr)
	}
}
