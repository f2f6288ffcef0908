// share_test.go checks that no single source takes the server: an address holds at
// most its share of clients and sessions, connects that never poll give their slot
// back soon, and a legitimate client from another address connects, polls and
// receives in time during and after a flood.

package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attacker is a test server as a client at 127.0.0.2 reaches it.
func attacker(ts *testServer, conns int) *testServer {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: conns}
	return &testServer{ts.URL, &http.Client{Transport: tr, Timeout: 10 * time.Second}, ts.hub}
}

// flood sends n requests from bad, conns at a time, and counts the answers by status.
func flood(bad *testServer, n, conns int, method, path string) map[int]int {
	var mu sync.Mutex
	counts := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				r, _ := bad.request(context.Background(), method, path, "", "") // status 0: the request failed
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

// legitimate checks that a client at 127.0.0.1 connects, polls and hears a chat within
// a second, on the JSON face and the socket.io face.
func legitimate(t *testing.T, ts *testServer) {
	t.Helper()
	const inTime = time.Second
	start := time.Now()
	id, other := ts.connect(t), ts.connect(t)
	c, _ := sioConnect(t, ts)
	ts.emit(t, other, "chat", "hello")
	require.Eventually(t, func() bool {
		for _, m := range ts.poll(t, id, 0) {
			if m.Event == "chat" {
				return true
			}
		}
		return false
	}, inTime, time.Millisecond)
	require.Contains(t, c.get(t), `42["chat","hello"]`)
	require.Less(t, time.Since(start), inTime)
	disconnect(t, ts, id)
	disconnect(t, ts, other)
	c.post(t, "1")
}

func TestOneAddressTakesAtMostItsShare(t *testing.T) {
	n := 20000                                  // what took every slot of the default server in 0.45 s
	if testing.Short() || underRace(0, 1) > 0 { // the same bound, at a tenth of the cost
		n = 2000
	}
	cfg := testConfig()
	cfg.maxClients, cfg.maxPerAddress = 1000, 100
	cfg.clientTTL, cfg.firstPoll = time.Minute, time.Minute // no slot comes back during the flood
	ts := start(t, cfg)
	bad := attacker(ts, 16)

	type result struct{ connects, handshakes map[int]int }
	done := make(chan result, 1)
	go func() {
		done <- result{flood(bad, n, 16, "POST", "/connect"), flood(bad, n, 16, "GET", eioPath)}
	}()
	require.Eventually(t, func() bool { return hubClients(ts) >= 100 }, 10*time.Second, time.Millisecond)
	legitimate(t, ts) // during the flood
	var got result
	select {
	case got = <-done:
	case <-time.After(60 * time.Second):
		require.FailNow(t, "the flood did not end in time")
	}
	require.Equal(t, map[int]int{200: 100, 429: n - 100}, got.connects)
	require.Equal(t, map[int]int{200: 100, 429: n - 100}, got.handshakes)
	legitimate(t, ts) // and after it
}

// TestAConnectThatNeverPollsGivesItsSlotBackSoon: on both faces, a full share comes
// back within the first-poll bound, long before the TTL, and a refusal says why.
func TestAConnectThatNeverPollsGivesItsSlotBackSoon(t *testing.T) {
	cfg := testConfig()
	cfg.maxPerAddress, cfg.clientTTL, cfg.firstPoll = 5, time.Minute, 100*time.Millisecond
	ts := start(t, cfg)
	bad := attacker(ts, 1)
	for _, path := range []string{"/connect", eioPath} {
		method := map[string]string{"/connect": "POST", eioPath: "GET"}[path]
		require.Equal(t, map[int]int{200: 5, 429: 1}, flood(bad, 6, 1, method, path))
		r, err := bad.request(context.Background(), method, path, "", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusTooManyRequests, r.status)
		require.Contains(t, string(r.body), "-max-per-address")
		_, err = strconv.Atoi(r.header.Get("Retry-After"))
		require.NoError(t, err, "a refusal says when to come back")
		require.Eventually(t, func() bool {
			r, err := bad.request(context.Background(), method, path, "", "")
			return err == nil && r.status == http.StatusOK
		}, 5*time.Second, 10*time.Millisecond)
	}
	legitimate(t, ts)
}

// TestJSONClientsAndSocketsShareOneAddressShare: a socket.io socket is a hub client
// like a JSON one, so an address's share counts both; the refusal is socket.io's 44.
func TestJSONClientsAndSocketsShareOneAddressShare(t *testing.T) {
	cfg := testConfig()
	cfg.maxPerAddress = 2
	ts := start(t, cfg)
	ts.connect(t)
	sioConnect(t, ts)
	c := eioHandshake(t, ts) // a session is a seat of the face's own, not a hub client
	c.post(t, "40")
	require.Regexp(t, `^44\{"message":"too many clients from your address \(2, -max-per-address\)`, c.get(t)[0])
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	require.NoError(t, err)
	requireError(t, r, http.StatusTooManyRequests, "-max-per-address")
}

func TestClientAddr(t *testing.T) {
	tests := []struct{ give, want string }{
		{"127.0.0.2:5000", "127.0.0.2"},
		{"[::ffff:10.0.0.1]:5000", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, clientAddr(&http.Request{RemoteAddr: tt.give}), tt.give)
	}
	require.Equal(t, "pipe", clientAddr(&http.Request{RemoteAddr: "pipe"}))
}
