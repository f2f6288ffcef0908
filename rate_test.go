// rate_test.go checks the emit budget: one address that emits as fast as it can is
// held to -emit-rate, so a reader that keeps polling is never evicted.

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAFloodOfEmitsFromOneAddressEvictsNoReader(t *testing.T) {
	cfg := testConfig()
	cfg.mailbox = 1024
	cfg.emitRate = 65536
	cfg.presenceEvery = time.Hour // only the flood fills the mailboxes
	ts := start(t, cfg)
	bad := attacker(ts, 8)
	reader := ts.connect(t)
	after := uint64(len(ts.poll(t, reader, 0))) // its count

	var stop atomic.Bool
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	text := strings.Repeat("x", 900)
	for range 8 {
		wg.Go(func() {
			id := ""
			for n := 0; !stop.Load() && n < 100_000; n++ {
				if id == "" { // a sender whose own mailbox overflowed comes back as a new id
					id = connectRaw(bad)
					continue
				}
				r, _ := bad.emitRaw(id, "chat", text)
				if r.status == http.StatusGone {
					id = ""
				}
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		})
	}
	chats := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		status, msgs, err := ts.pollRaw(t.Context(), reader, after)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "the reader polls four times a second and is never evicted")
		after += uint64(len(msgs))
		chats += len(msgs)
		time.Sleep(250 * time.Millisecond) // a reader that polls, if not at once
	}
	stop.Store(true)
	wg.Wait()
	msgs := ts.poll(t, reader, after)
	chats += len(msgs)
	require.Positive(t, counts[http.StatusTooManyRequests], "the flood was held back: %v", counts)
	require.Equal(t, counts[http.StatusNoContent], chats, "every emit answered 204 reached the reader, once")
	// 4 s of burst and 2-3 s of rate, at 900 bytes and 1 KiB more each: about 200.
	require.Less(t, counts[http.StatusNoContent], 300, "one address emits at most its rate")
}

// connectRaw connects a client for a test's goroutine, which may not call require:
// the id, or "" if the connect was refused.
func connectRaw(ts *testServer) string {
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	var body struct{ ID string }
	if err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &body) != nil {
		return ""
	}
	return body.ID
}

func TestTheEmitBudget(t *testing.T) {
	at := time.Unix(0, 0)
	s := &state{cfg: config{emitRate: 1000}, budgets: map[string]*budget{}}
	require.NoError(t, s.spend("a", 2975, at), "a fresh address has 4 s saved: 4,000 bytes, and an emit costs 1,024 more than its size")
	require.NoError(t, s.spend("a", 0, at), "one byte left: it may go below zero")
	err := s.spend("a", 0, at)
	var rate rateError
	require.ErrorAs(t, err, &rate)
	require.InDelta(t, float64(1023*time.Millisecond), float64(rate.wait), float64(time.Millisecond), "1,023 bytes below zero at 1,000 a second")
	require.Equal(t, "2", rate.retryAfter())
	require.NoError(t, s.spend("b", 100, at), "another address has its own budget")
	require.NoError(t, s.spend("a", 0, at.Add(1024*time.Millisecond)), "back above zero")
	s.forgetBudgets(at.Add(time.Hour))
	require.Empty(t, s.budgets, "refilled budgets are forgotten")
	require.NoError(t, (&state{cfg: config{}}).spend("a", 1<<30, at), "a zero rate is no limit")
}
