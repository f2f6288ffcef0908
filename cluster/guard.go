// guard.go owns who may ask, whatever their address: the Host check and the refusal
// of cross-origin POSTs. The cluster (cluster/guard.go) is this file byte for byte.

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

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
