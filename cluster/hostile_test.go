// hostile_test.go holds the checks the cluster shares with the single server against
// hostile clients: the same files (copied from the root, which this module cannot
// import), and the same refusals over real HTTP through nginx.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCopiesOfTheRootAreIdentical: the rules against hostile clients are one rule,
// kept in the root and copied here byte for byte, so that the two cannot drift.
func TestCopiesOfTheRootAreIdentical(t *testing.T) {
	for _, name := range []string{"bounds.go", "guard.go", "conns.go"} {
		t.Run(name, func(t *testing.T) {
			root, err := os.ReadFile("../" + name)
			require.NoError(t, err)
			copied, err := os.ReadFile(name)
			require.NoError(t, err)
			require.True(t, string(root) == string(copied),
				"cluster/%s differs from the root's %s, which owns the rule: copy it again (cp %s cluster/)", name, name, name)
		})
	}
}

// TestHostileDataIsRefused: data some reader could not read back gets the single
// server's 400 and its text, is never stored, and a well-behaved client polling all
// the while still receives the next chat, as the next seq.
func TestHostileDataIsRefused(t *testing.T) {
	_, base := startCluster(t)
	mallory, alice, bob := connect(t, base), connect(t, base), connect(t, base)
	after := poll(t, base, alice, 0)[0].Seq
	tests := []struct{ name, data, want string }{
		{"nested 33 levels", strings.Repeat("[", 33) + strings.Repeat("]", 33), "data is nested deeper than 32 levels (-max-depth)"},
		{"nested 10,000 levels", strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "data is nested deeper than 32 levels (-max-depth)"},
		{"invalid UTF-8", "\"a\xffb\"", "data is not valid UTF-8"},
		{"a number beyond float64", "1e400", "data holds the number 1e400, beyond what a float64 holds"},
		{"a lone surrogate escape", `"\ud800"`, `data holds a lone high surrogate escape (\ud800-\udbff)`},
		{"a lone low surrogate escape", `["x\udc00"]`, `data holds a lone low surrogate escape (\udc00-\udfff)`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, "POST", base+"/emit?id="+mallory, `{"event":"chat","data":`+tt.data+`}`)
			require.Equal(t, 400, a.status, a.body)
			require.Equal(t, "application/json", a.header.Get("Content-Type"))
			var v struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(a.body), &v), a.body)
			require.Equal(t, tt.want, v.Error)

			emit(t, base, bob, fmt.Sprint(i))
			require.JSONEq(t, fmt.Sprint(i), string(nextChat(t, base, alice, &after).Data), "the refused message was stored")
		})
	}
}

// TestMaxDepthFlag: -max-depth moves the bound, within the single server's range.
func TestMaxDepthFlag(t *testing.T) {
	for _, tt := range []struct {
		value string
		ok    bool
	}{{"1", true}, {"32", true}, {"500", true}, {"0", false}, {"501", false}} {
		_, _, err := parse([]string{"-max-depth", tt.value}, os.Stderr)
		if tt.ok {
			require.NoError(t, err, tt.value)
		} else {
			require.ErrorContains(t, err, "-max-depth must be 1 to 500", tt.value)
		}
	}
}

// nextChat polls until a chat arrives after *after (online counts may come between)
// and moves *after past it.
func nextChat(t *testing.T, base, id string, after *uint64) message {
	t.Helper()
	for range 10 {
		for _, m := range poll(t, base, id, *after) {
			*after = m.Seq
			if m.Event == "chat" {
				return m
			}
		}
	}
	require.Fail(t, "no chat in 10 polls")
	return message{}
}

// TestOnlyTheHostsMeantAndNoCrossOriginPosts: behind nginx, a node answers only the
// Hosts a browser on loopback or a named host sends, and refuses a POST that a
// browser says comes from another site, with JSON 403s that name the way out.
func TestOnlyTheHostsMeantAndNoCrossOriginPosts(t *testing.T) {
	_, base := startCluster(t, "-allow-host", "chat.example")
	tests := []struct {
		name, method, path, host string
		header                   map[string]string
		want                     int
		wantErr                  string
	}{
		{"loopback, as nginx was reached", "GET", "/index.html", "", nil, 200, ""},
		{"localhost", "GET", "/index.html", "localhost:8080", nil, 200, ""},
		{"a named host", "POST", "/connect", "chat.example", nil, 200, ""},
		{"a page that rebound its name to loopback", "GET", "/index.html", "evil.example:8080", nil, 403, "start it with -allow-host evil.example"},
		{"a rebound page posting", "POST", "/connect", "evil.example", nil, 403, "-allow-host evil.example"},
		{"a cross-site form", "POST", "/connect", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin request refused"},
		{"a foreign Origin", "POST", "/connect", "", map[string]string{"Origin": "http://evil.example"}, 403, "cross-origin request refused"},
		{"the page's own Origin", "POST", "/connect", "", map[string]string{"Origin": base}, 200, ""},
		{"the page itself", "POST", "/connect", "", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
			require.NoError(t, err)
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tt.want, resp.StatusCode, string(body))
			if tt.want == 403 {
				require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				var v struct{ Error string }
				require.NoError(t, json.Unmarshal(body, &v), string(body))
				require.Contains(t, v.Error, tt.wantErr)
			}
		})
	}
}

// TestTheConnectionCapHolds: a node with -max-conns 2 keeps at most 2 connections,
// closing the idlest to make room (silent ones, here, long before their 5 s header
// timeout), and a legitimate client still gets its answer.
func TestTheConnectionCapHolds(t *testing.T) {
	r := startRedis(t)
	node := startNode(t, r.addr, "-max-conns", "2")
	closed := make(chan bool, 5)
	for range 5 {
		c, err := net.Dial("tcp", node)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		go func() { // owns c's reads; says whether the node closed it within 3 s
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err != nil && !os.IsTimeout(err)
		}()
	}
	id := connect(t, "http://"+node)
	require.Equal(t, "online", poll(t, "http://"+node, id, 0)[0].Event)
	n := 0
	for range 5 {
		if <-closed {
			n++
		}
	}
	require.GreaterOrEqual(t, n, 3, "the node kept more than -max-conns connections open")
}

// TestMaxConnsFlag: -max-conns beyond the descriptor limit is refused at start.
func TestMaxConnsFlag(t *testing.T) {
	_, o, err := parse([]string{"-max-conns", "2000000000"}, io.Discard)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, _, _, err = atTheDoor(ln, o)
	require.ErrorContains(t, err, "-max-conns 2000000000 is over the descriptor limit")
	_, _, err = parse([]string{"-max-conns", "-1"}, io.Discard)
	require.ErrorContains(t, err, "-max-conns at least 0")
}

// TestAConnectThatNeverPollsGivesItsSlotBackSoon: a client that never polls is
// dropped after -first-poll, long before -client-ttl, with the single server's
// reason; one that polled stays.
func TestAConnectThatNeverPollsGivesItsSlotBackSoon(t *testing.T) {
	r, base := startCluster(t, "-client-ttl", "20s", "-first-poll", "300ms")
	rdb := r.client()
	start := time.Now()
	silent, active := connect(t, base), connect(t, base)
	poll(t, base, active, 0)
	require.Eventually(t, func() bool {
		return rdb.Exists(context.Background(), "lp:c:"+silent).Val() == 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Less(t, time.Since(start), 5*time.Second, "the silent client stayed for most of -client-ttl")
	require.Equal(t, "expired: no first poll within 300ms of connecting", rdb.Get(context.Background(), "lp:g:"+silent).Val())
	a := do(t, "GET", fmt.Sprintf("%s/poll?id=%s&after=0", base, silent), "")
	require.Equal(t, 410, a.status, a.body)
	require.Contains(t, a.body, "no first poll within 300ms")
	require.Equal(t, int64(1), rdb.Exists(context.Background(), "lp:c:"+active).Val(), "a client that polled was dropped")
}
