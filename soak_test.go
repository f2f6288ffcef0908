// soak_test.go runs a few hundred clients against the real handlers for a few seconds,
// with the faults a long-poll server meets in the wild: tabs that vanish without a
// goodbye, responses lost on the way (the client polls again with its old cursor),
// polls cut mid-park, and publishers on several goroutines. Skipped under -short.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soakKind is how a soak client behaves.
type soakKind int

const (
	keeper    soakKind = iota // polls again at once with the highest seq it has
	dropper                   // often ignores a response, or cuts a parked poll, and polls again with its old cursor
	abandoner                 // polls for a while, then vanishes without a goodbye
)

// soakClient is one client's id and, once its goroutine returns, what it saw.
type soakClient struct {
	kind soakKind
	id   string
	seen []soakMsg // numbered messages in the order received
	err  error     // the first thing that went wrong, reported by the test goroutine
}

// soakMsg is the data of a numbered message: publisher and number.
type soakMsg struct{ P, N int }

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped under -short")
	}
	const (
		keepers, droppers, abandoners = 150, 50, 50
		publishers, perPublisher      = 4, 30
	)
	// The TTL is generous because a keeper must never expire: under -race on a busy
	// 2-core machine shared with other work, a burst of a few hundred re-polls can take
	// seconds to drain.
	cfg := config{pollTimeout: 2 * time.Second, clientTTL: 5 * time.Second, presenceEvery: 100 * time.Millisecond,
		maxClients: 1000, mailbox: 1024, maxBatch: 4096, writeTimeout: 5 * time.Second, maxDepth: 32}

	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()
	var heapBefore runtime.MemStats
	runtime.ReadMemStats(&heapBefore)

	h := newHub(cfg)
	go h.run()
	srv := httptest.NewServer(routes(h, testMaxMessage, nil))
	// One idle connection per client, as a browser tab keeps one; the default of two
	// would close and reopen connections all run long.
	transport := &http.Transport{MaxIdleConnsPerHost: keepers + droppers + abandoners + publishers}
	hc := &http.Client{Transport: transport}
	ts := &testServer{srv.URL, hc, h}
	stopAll := sync.OnceFunc(func() { h.stopHub(); srv.Close(); transport.CloseIdleConnections() })
	defer stopAll()

	// Connect everybody at once, quickly, so that nobody's TTL runs out before its
	// first poll, even under -race on a busy machine.
	var clients []*soakClient
	for kind, n := range []int{keepers, droppers, abandoners} {
		for range n {
			clients = append(clients, &soakClient{kind: soakKind(kind)})
		}
	}
	var connecting sync.WaitGroup
	for i := range 8 {
		connecting.Go(func() {
			for j := i; j < len(clients); j += 8 {
				clients[j].id, clients[j].err = soakConnect(ts)
			}
		})
	}
	connecting.Wait()
	for _, c := range clients {
		require.NoError(t, c.err)
	}

	// The heap is sampled while the soak runs, and must stay bounded.
	var heapMax atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			heapMax.Store(max(heapMax.Load(), m.HeapAlloc))
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var complete atomic.Int64 // cursor keepers that have every numbered message
	total := publishers * perPublisher
	for i, c := range clients {
		wg.Go(func() { soakPoll(ctx, ts, c, uint64(i), total, &complete) })
	}

	// Publishers emit from the first keepers' ids, in small bursts, so that batches
	// of several messages and single messages both happen.
	var pubWG sync.WaitGroup
	pubErrs := make([]error, publishers)
	for p := range publishers {
		pubWG.Go(func() {
			for n := 1; n <= perPublisher; n++ {
				r, err := ts.emitRaw(clients[p].id, "soak", soakMsg{p, n})
				if err == nil && r.status != http.StatusNoContent {
					err = fmt.Errorf("emit %d/%d: status %d %s", p, n, r.status, r.body)
				}
				if err != nil {
					pubErrs[p] = err
					return
				}
				if n%4 == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	pubWG.Wait()
	for _, err := range pubErrs {
		require.NoError(t, err)
	}

	// Every cursor keeper gets every message; then the polls stop.
	require.Eventually(t, func() bool { return complete.Load() == keepers+droppers }, 20*time.Second, 10*time.Millisecond,
		"clients with every message: %d of %d", complete.Load(), keepers+droppers)
	// Abandoned clients were never told goodbye: the hub must expire them.
	require.Eventually(t, func() bool {
		for _, c := range clients {
			if c.kind == abandoner && ts.isConnected(c.id) {
				return false
			}
		}
		return true
	}, 3*cfg.clientTTL, 20*time.Millisecond, "abandoned clients were not expired")
	cancel()
	wg.Wait()
	close(stopSampling)
	<-sampled

	var first []soakMsg
	for _, c := range clients {
		if c.kind == abandoner {
			require.NoError(t, c.err, "abandoner %s", c.id)
			r, err := ts.request(context.Background(), "GET", fmt.Sprintf("/poll?id=%s&after=0", c.id), "", "")
			require.NoError(t, err)
			requireError(t, r, http.StatusGone, "expired")
			continue
		}
		require.NoError(t, c.err, "client %s (kind %d)", c.id, c.kind)
		require.Len(t, c.seen, total, "client %s (kind %d): every message, each once", c.id, c.kind)
		if first == nil {
			first = c.seen
			got := map[soakMsg]bool{}
			for _, m := range first {
				got[m] = true
			}
			require.Len(t, got, total, "no message twice")
		}
		require.Equal(t, first, c.seen, "client %s (kind %d): the same order as everybody", c.id, c.kind)
	}

	// Every mailbox stayed within its bound, and memory with it.
	require.LessOrEqual(t, longestMailbox(h), cfg.mailbox)
	require.Less(t, heapMax.Load(), heapBefore.HeapAlloc+256<<20, "heap while soaking")

	// Once everybody leaves, the goroutines and the heap go back to where they were.
	stopAll()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutinesBefore+1 }, 5*time.Second, 20*time.Millisecond,
		"goroutines: %d before, %d now", goroutinesBefore, runtime.NumGoroutine())
	runtime.GC()
	var heapAfter runtime.MemStats
	runtime.ReadMemStats(&heapAfter)
	require.Less(t, heapAfter.HeapAlloc, heapBefore.HeapAlloc+16<<20, "heap after the soak")
}

// soakPoll is one client's loop. It checks, as it goes, that seqs come gapless and
// that each publisher's numbers arrive in order, and counts itself complete once it
// has all total numbered messages. It stops on ctx; an abandoner stops on its own.
func soakPoll(ctx context.Context, ts *testServer, c *soakClient, seed uint64, total int, complete *atomic.Int64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	var after uint64
	last := map[int]int{} // publisher -> highest number seen
	quitAt := time.Now().Add(time.Duration(300+rng.IntN(700)) * time.Millisecond)
	counted := false
	for ctx.Err() == nil {
		if c.kind == abandoner && time.Now().After(quitAt) {
			return // no goodbye: the hub must notice by itself
		}
		pollCtx, cut := ctx, context.CancelFunc(func() {})
		if c.kind == dropper && rng.IntN(4) == 0 {
			// The network cuts this poll while it may be parked.
			pollCtx, cut = context.WithTimeout(ctx, time.Duration(1+rng.IntN(30))*time.Millisecond)
		}
		status, msgs, err := ts.pollRaw(pollCtx, c.id, after)
		cut()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && pollCtx.Err() != nil:
			continue // the cut poll: ask again with the same cursor
		case err != nil:
			c.err = err
			return
		case status != http.StatusOK:
			c.err = fmt.Errorf("poll after=%d: status %d", after, status)
			return
		}
		if c.kind == dropper && rng.IntN(3) == 0 {
			continue // the response is lost on the way: poll again with the old cursor
		}
		for _, m := range msgs {
			if m.Seq != after+1 {
				c.err = fmt.Errorf("seq %d after %d", m.Seq, after)
				return
			}
			after = m.Seq
			if m.Event != "soak" {
				continue // an online count
			}
			var sm soakMsg
			if err := json.Unmarshal(m.Data, &sm); err != nil {
				c.err = err
				return
			}
			if sm.N <= last[sm.P] {
				c.err = fmt.Errorf("publisher %d: %d after %d", sm.P, sm.N, last[sm.P])
				return
			}
			last[sm.P] = sm.N
			c.seen = append(c.seen, sm)
		}
		// Only a client that keeps its cursor is counted: an abandoner may see every
		// message before it vanishes, and must not make the count pass the keepers'.
		if !counted && c.kind != abandoner && len(c.seen) == total {
			counted = true
			complete.Add(1)
		}
	}
}

// soakConnect is connect without require, for goroutines.
func soakConnect(ts *testServer) (string, error) {
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	if err != nil {
		return "", err
	}
	var body struct{ ID string }
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != http.StatusOK {
		return "", fmt.Errorf("connect: status %d %s", r.status, r.body)
	}
	return body.ID, nil
}

// longestMailbox asks the hub goroutine for the most messages any mailbox holds.
func longestMailbox(h *hub) int {
	n := make(chan int, 1)
	h.peek <- func(s *state) {
		most := 0
		for _, c := range s.clients {
			most = max(most, len(c.queue))
		}
		n <- most
	}
	return <-n
}
