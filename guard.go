// guard.go owns who may ask: the address a client's share of the server is counted
// by, the Engine.IO face's count of open sessions by address (the hub counts its own
// clients in lifetimes.go), the Host check and the refusal of cross-origin POSTs.

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
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

// hostList is -allow-host: repeated, or a comma list; host names, any port ignored.
type hostList []string

func (l *hostList) String() string { return strings.Join(*l, ",") }

func (l *hostList) Set(v string) error {
	for h := range strings.SplitSeq(v, ",") {
		if h = hostOnly(h); h != "" {
			*l = append(*l, h)
		}
	}
	return nil
}

// hostCheck answers only requests whose Host is a loopback name or address, or one it
// was told. On loopback it stops a page that rebinds its own name to 127.0.0.1 from
// reading the chat: the browser sends that page's name as Host.
type hostCheck struct{ allowed []string }

// checkHosts is the Host check for a server listening on bound: always on loopback;
// elsewhere only when -allow-host names the hosts, since the names a LAN or public
// server is reached by are not known here.
func checkHosts(bound net.Addr, allowed hostList) *hostCheck {
	tcp, ok := bound.(*net.TCPAddr)
	if ok && tcp.IP.IsLoopback() || len(allowed) > 0 {
		return &hostCheck{allowed}
	}
	return nil
}

// wrap puts the check in front of next; a nil check answers every Host.
func (c *hostCheck) wrap(next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.allows(r.Host) {
			w.Header().Set("Cache-Control", "no-store")
			why := fmt.Sprintf("Host %q is not one this server answers: start it with -allow-host %s to answer it", r.Host, hostOnly(r.Host))
			if hostOnly(r.Host) == "" {
				why = "a request without a Host is not answered here: send the name you reach the server by"
			}
			fail(w, http.StatusForbidden, why)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allows says whether host (from a Host header) is loopback or allowed.
func (c *hostCheck) allows(host string) bool {
	host = hostOnly(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	return slices.Contains(c.allowed, host)
}

// hostOnly is a Host header's name or address, lower case, without port, brackets
// or a final dot.
func hostOnly(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.Trim(host, "[]"), ".")
}

// sameOrigin refuses a POST that a browser says comes from another site (a plain
// HTML form can POST /connect with no body and no preflight), and a socket.io
// handshake, a GET that takes a seat (an <img> on any page could take them all), with
// the API's JSON 403. Requests without Sec-Fetch-Site or Origin, from curl, Node or
// Go, pass.
func sameOrigin(next http.Handler) http.Handler {
	deny := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fail(w, http.StatusForbidden, "cross-origin request refused: this server answers only its own page")
	})
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(deny)
	checked := p.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handshake := r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/socket.io/") && r.URL.Query().Get("sid") == ""
		if handshake && crossSite(r) {
			deny(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// crossSite says whether a browser sent r from another site's page: by its
// Sec-Fetch-Site, or, from a browser too old to send that, by an Origin that is not
// this host.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "":
	default:
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}
