// conns_test.go checks the connection cap: the server never holds more connections
// than -max-conns, and silent or idle connections filling every slot cannot keep a
// legitimate client out.

package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// counted counts the connections a listener has open, and the most it ever had.
type counted struct {
	net.Listener
	open, peak atomic.Int64
}

func (l *counted) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &countedConn{Conn: c, done: sync.OnceFunc(func() { l.open.Add(-1) })}, nil
}

type countedConn struct {
	net.Conn
	done func()
}

func (c *countedConn) Close() error { c.done(); return c.Conn.Close() }

// serveCapped runs serve, as main does, behind a cap of max connections.
func serveCapped(t *testing.T, max int) (*testServer, *counted) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	count := &counted{Listener: ln}
	h := newHub(testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, newConnCap(count, max), h, testMaxMessage, nil, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
	return &testServer{"http://" + ln.Addr().String(), client, h}, count
}

// hog dials from 127.0.0.2 until stop, and holds what it dialled: silent connections,
// and keep-alive ones left idle after one request. It returns when stop is closed.
func hog(addr string, stop <-chan struct{}, dialled *atomic.Int64) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 100 * time.Millisecond}
	var held []net.Conn
	pace := time.NewTicker(time.Millisecond) // the attacker's pace, not a wait for the server
	defer pace.Stop()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 100000; i++ { // bounded; stop comes long before
		select {
		case <-stop:
			return
		case <-pace.C:
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue // the backlog is full: the cap holds
		}
		if i%2 == 0 {
			c.Write([]byte("GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) // then idle
		}
		held = append(held, c)
		dialled.Add(1)
	}
}

func TestTheConnectionCapHoldsAndLetsALegitimateClientIn(t *testing.T) {
	const max = 8
	ts, count := serveCapped(t, max)
	stop := make(chan struct{})
	hogged := make(chan struct{})
	var dialled atomic.Int64
	go func() { hog(ts.URL[len("http://"):], stop, &dialled); close(hogged) }()
	require.Eventually(t, func() bool { return count.peak.Load() == max && dialled.Load() >= 4*max }, 5*time.Second, time.Millisecond,
		"the hog fills every slot, and the backlog behind them")

	// Well within the 5 s a silent connection may hold a slot, and the 60 s an idle one may.
	began := time.Now()
	var id string
	require.Eventually(t, func() bool {
		r, err := ts.request(context.Background(), "POST", "/connect", "", "")
		if err == nil && r.status == http.StatusOK {
			id = string(r.body[7:39]) // {"id":"<32 hex>",...
		}
		return id != ""
	}, 3*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		status, msgs, err := ts.pollRaw(context.Background(), id, 0)
		return err == nil && status == http.StatusOK && len(msgs) > 0
	}, 3*time.Second, 10*time.Millisecond)
	t.Logf("in after %s", time.Since(began))
	require.Less(t, time.Since(began), 3*time.Second)
	close(stop)
	<-hogged
	require.LessOrEqual(t, count.peak.Load(), int64(max), "never more connections than the cap")
}
