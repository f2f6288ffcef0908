// bench_test.go measures the hub alone (a broadcast into 1,000 and 10,000 mailboxes,
// the poll-deliver cycle) and one poll round trip through real HTTP, so a change to
// the hot path shows up as ns/op and allocs/op:
//
//	go test -run '^$' -bench . -benchmem

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchConfig never times out or evicts during a benchmark; each benchmark sets
// the mailbox size it needs.
func benchConfig(clients, mailbox int) config {
	return config{pollTimeout: time.Minute, clientTTL: time.Hour, presenceEvery: time.Hour,
		maxClients: clients + 1, mailbox: mailbox, maxBatch: 1 << 20, writeTimeout: 10 * time.Second, maxDepth: 32}
}

// benchHub starts a hub with n connected clients and returns their ids.
func benchHub(b *testing.B, cfg config, n int) (*hub, []string) {
	b.Helper()
	h := newHub(cfg)
	go h.run()
	b.Cleanup(h.stopHub)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
		if err := h.connect(ids[i], "127.0.0.1"); err != nil {
			b.Fatal(err)
		}
	}
	return h, ids
}

// ackAll empties every mailbox, as if each client had polled with its latest seq.
// It runs on the hub goroutine, like everything that touches the state.
func ackAll(h *hub) {
	done := make(chan struct{})
	h.peek <- func(s *state) {
		for _, c := range s.clients {
			c.acked = c.last()
			c.sent = c.acked
			c.queue = c.queue[:0]
		}
		close(done)
	}
	<-done
}

// BenchmarkBroadcast is one emit into every mailbox of clients that are not polling:
// the hub goroutine's cost per message, which it pays once per client.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("mailboxes=%d", n), func(b *testing.B) {
			const ackEvery = 256 // mailboxes are emptied between rounds, off the clock
			h, ids := benchHub(b, benchConfig(n, ackEvery+2), n)
			msg := &message{body: encode("chat", json.RawMessage(`{"n":1}`))}
			ackAll(h)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%ackEvery == ackEvery-1 {
					b.StopTimer()
					ackAll(h)
					b.StartTimer()
				}
				if err := h.emit(ids[0], msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/mailbox")
		})
	}
}

// BenchmarkPollDeliverCycle is the hub's side of a delivery: clients parked in
// hub.wait, an emit wakes them all, and each asks again at once with its new cursor,
// exactly as the poll handler does, but without HTTP. One op is one emit; ns/delivery
// divides it among the clients.
func BenchmarkPollDeliverCycle(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			// A client may fall behind by every message of the run, never more.
			h, ids := benchHub(b, benchConfig(n, b.N+n+2), n)
			msg := &message{body: encode("chat", json.RawMessage(`{"n":1}`))}
			ctx := context.Background()
			var ready, done sync.WaitGroup
			for _, id := range ids {
				ready.Add(1)
				done.Add(1)
				go func() {
					defer done.Done()
					// The first poll takes the online counts that connecting left behind.
					bt := h.poll(ctx, id, 0)
					after := bt.first + uint64(len(bt.msgs)) - 1
					ready.Done()
					for got := 0; got < b.N; {
						bt := h.poll(ctx, id, after)
						if bt.err != nil {
							panic(bt.err)
						}
						got += len(bt.msgs)
						after += uint64(len(bt.msgs))
					}
				}()
			}
			ready.Wait()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := h.emit(ids[0], msg); err != nil {
					b.Fatal(err)
				}
			}
			done.Wait()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// benchServer is the real handlers behind httptest, with one connected client that
// has a message waiting in its mailbox.
func benchServer(b *testing.B) (base, id string, client *http.Client) {
	b.Helper()
	h := newHub(benchConfig(1, 1024))
	go h.run()
	srv := httptest.NewServer(routes(h, 65536, nil))
	b.Cleanup(func() { h.stopHub(); srv.Close() })
	client = srv.Client()
	resp, err := client.Post(srv.URL+"/connect", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	var v struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	// Take the online count, seq 1, so that later cursors may acknowledge it.
	benchDo(b, client, "GET", srv.URL+"/poll?after=0&id="+v.ID, "", http.StatusOK)
	return srv.URL, v.ID, client
}

// benchDo sends one request and wants the status, reading the whole body.
func benchDo(b *testing.B, client *http.Client, method, url, body string, want int) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("%s %s: status %d, want %d", method, url, resp.StatusCode, want)
	}
}

// BenchmarkPollRoundTrip is one GET /poll through real HTTP on a keep-alive
// connection, answered at once because a message is waiting: the same cursor each
// time, so the same message is delivered again, as after a lost response. Client
// and server share the process, so ns/op counts both sides.
func BenchmarkPollRoundTrip(b *testing.B) {
	base, id, client := benchServer(b)
	benchDo(b, client, "POST", base+"/emit?id="+id, `{"event":"chat","data":{"text":"hello"}}`, http.StatusNoContent)
	url := base + "/poll?id=" + id + "&after=1" // seq 1 is the online count; seq 2 waits
	b.ReportAllocs()
	for b.Loop() {
		benchDo(b, client, "GET", url, "", http.StatusOK)
	}
}

// BenchmarkEmitPollRoundTrip is an emit followed by the poll that takes it and
// acknowledges the one before: the whole life of one message for one client.
func BenchmarkEmitPollRoundTrip(b *testing.B) {
	base, id, client := benchServer(b)
	emitURL := base + "/emit?id=" + id
	after := 1 // the online count
	b.ReportAllocs()
	for b.Loop() {
		benchDo(b, client, "POST", emitURL, `{"event":"chat","data":{"text":"hello"}}`, http.StatusNoContent)
		benchDo(b, client, "GET", fmt.Sprintf("%s/poll?id=%s&after=%d", base, id, after), "", http.StatusOK)
		after++
	}
}
