// guard_test.go checks who may ask: only the hosts meant on loopback, no cross-origin
// POST, and the address a share is counted by.

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHostCheckAllowsLoopbackAndNamedHosts(t *testing.T) {
	c := checkHosts(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, hostList{"chat.example"})
	tests := []struct {
		give string
		want bool
	}{
		{"localhost:8080", true}, {"LOCALHOST", true}, {"app.localhost:8080", true}, {"localhost.", true},
		{"127.0.0.1:8080", true}, {"127.1.2.3", true}, {"[::1]:8080", true}, {"[::ffff:127.0.0.1]:80", true},
		{"chat.example:443", true}, {"Chat.Example.", true},
		{"evil.example:8080", false}, {"localhost.evil.example", false}, {"127.0.0.1.nip.io", false},
		{"10.0.0.1:8080", false}, {"", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, c.allows(tt.give), tt.give)
	}
}

func TestHostCheckIsOnWhereItCanBe(t *testing.T) {
	lan := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 2)}
	require.NotNil(t, checkHosts(&net.TCPAddr{IP: net.IPv6loopback}, nil), "loopback: always")
	require.Nil(t, checkHosts(lan, nil), "elsewhere the names it is reached by are not known")
	require.Nil(t, checkHosts(&net.TCPAddr{IP: net.IPv4zero}, nil))
	require.NotNil(t, checkHosts(lan, hostList{"chat.example"}), "unless -allow-host names them")
}

// runServer runs the program as main does, with args, and returns its URL.
func runServer(t *testing.T, args ...string) string {
	t.Helper()
	logs, logw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), logw); logw.Close() }()
	line, err := bufio.NewReader(logs).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, logs)
	t.Cleanup(func() { cancel(); require.NoError(t, <-ran) })
	url := regexp.MustCompile(`url=(http://\S+)/`).FindStringSubmatch(line)
	require.NotNil(t, url, line)
	return url[1]
}

func TestOnlyTheHostsMeantAndNoCrossOriginPosts(t *testing.T) {
	base := runServer(t, "-allow-host", "chat.example,other.example")
	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
		contains           string
	}{
		{"a rebinding page's host", "GET", "/", map[string]string{"Host": "evil.example"}, 403, "-allow-host evil.example"},
		{"on every path", "POST", "/connect", map[string]string{"Host": "evil.example:8080"}, 403, "-allow-host evil.example"},
		{"and the socket.io face", "GET", eioPath, map[string]string{"Host": "evil.example"}, 403, "-allow-host"},
		{"a cross-site form", "POST", "/connect", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin"},
		{"an older browser's form", "POST", "/connect", map[string]string{"Origin": "http://evil.example"}, 403, "cross-origin"},
		{"the page itself", "POST", "/connect", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, ""},
		// A socket.io handshake is a GET that takes one of its address's seats: a foreign
		// page's <img> loop must not take them all.
		{"a foreign page's handshake", "GET", eioPath, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin"},
		{"an older browser's handshake", "GET", eioPath, map[string]string{"Origin": "http://evil.example"}, 403, "cross-origin"},
		{"the page's own handshake", "GET", eioPath, map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, ""},
		{"a handshake from curl, Node or Go", "GET", eioPath, nil, 200, ""},
		{"curl, Node or Go", "POST", "/connect", nil, 200, ""},
		{"a named host", "POST", "/connect", map[string]string{"Host": "chat.example"}, 200, ""},
		{"localhost", "GET", "/", map[string]string{"Host": "localhost:8080"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
			require.NoError(t, err)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if h, ok := tt.header["Host"]; ok {
				req.Host = h
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			if tt.want != http.StatusOK {
				requireError(t, reply{resp.StatusCode, resp.Header, body}, tt.want, tt.contains)
				return
			}
			require.Equal(t, tt.want, resp.StatusCode, string(body))
		})
	}
}

// TestARequestWithoutAHostIsToldWhy: HTTP/1.0 may send no Host; the refusal says so
// rather than naming an empty host to allow.
func TestARequestWithoutAHostIsToldWhy(t *testing.T) {
	check := &hostCheck{}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = ""
	w := httptest.NewRecorder()
	check.wrap(http.NotFoundHandler()).ServeHTTP(w, r)
	requireError(t, reply{w.Code, w.Header(), w.Body.Bytes()}, http.StatusForbidden, "without a Host")
}
