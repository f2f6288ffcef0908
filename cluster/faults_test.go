// faults_test.go plays what goes wrong in a cluster: a node killed mid-stream, Redis
// restarting with its data, Redis losing its data, Redis going back in time, and
// Redis unreachable. Each story says what a client sees; none may be a silent gap.

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// follower polls through base in its own goroutine, as client.js would, and reports
// every answer to the test's goroutine.
type follower struct {
	answers chan answer
	stop    chan struct{}
}

// followPolls starts polling for id from cursor after; stop ends it.
func followPolls(base, id string, after uint64) *follower {
	rd := &follower{answers: make(chan answer, 1000), stop: make(chan struct{})}
	// This goroutine owns the cursor; it talks to the test only through answers.
	go func() {
		defer close(rd.answers)
		for {
			select {
			case <-rd.stop:
				return
			default:
			}
			a := doQuiet(fmt.Sprintf("%s/poll?id=%s&after=%d", base, id, after))
			var v struct{ Messages []message }
			if a.status == 200 && json.Unmarshal([]byte(a.body), &v) == nil && len(v.Messages) > 0 {
				after = v.Messages[len(v.Messages)-1].Seq
			} else if a.status != 200 {
				time.Sleep(50 * time.Millisecond) // a back-off, as client.js has
			}
			rd.answers <- a
		}
	}()
	return rd
}

// TestKilledNodeLosesNothing: one of three nodes is SIGKILLed and started again while
// messages flow; a client polling through nginx gets every acknowledged message once,
// in order, with seqs 1, 2, 3, ... and no gaps, from more than one node.
func TestKilledNodeLosesNothing(t *testing.T) {
	r := startRedis(t)
	var nodes []*nodeProcess
	var addrs []string
	for range 3 {
		n := startNodeProcess(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), r.addr)
		nodes, addrs = append(nodes, n), append(addrs, n.addr)
	}
	base := startNginx(t, addrs)
	ann, bob := connect(t, base), connect(t, base)
	rd := followPolls(base, ann, 0)
	defer close(rd.stop)

	acked := map[string]bool{}
	for i := range 60 {
		switch i {
		case 20:
			nodes[1].kill()
		case 40:
			nodes[1] = startNodeProcess(t, addrs[1], r.addr)
		}
		a := do(t, "POST", base+"/emit?id="+bob, fmt.Sprintf(`{"event":"chat","data":%d}`, i))
		if a.status == 204 {
			acked[fmt.Sprint(i)] = true
		}
		time.Sleep(10 * time.Millisecond) // a message every 10 ms, so the kill lands mid-stream
	}
	got, seen := readUntil(t, rd, acked)
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i], got[i-1], "in order, nothing twice")
	}
	require.GreaterOrEqual(t, len(seen), 2, "answered by more than one node")
}

// readUntil takes answers until every acked message arrived; it checks seqs and
// returns the chat numbers in arrival order and the nodes that answered.
func readUntil(t *testing.T, rd *follower, acked map[string]bool) ([]int, map[string]bool) {
	var got []int
	seen := map[string]bool{}
	missing := len(acked)
	last := uint64(0)
	deadline := time.After(20 * time.Second)
	for missing > 0 {
		select {
		case a := <-rd.answers:
			if a.status != 200 {
				require.Contains(t, []int{0, 502, 503}, a.status, "only a dead node's cut or a 503 may fail a poll: %s", a.body)
				continue
			}
			seen[a.header.Get("X-Node")] = true
			var v struct{ Messages []message }
			require.NoError(t, json.Unmarshal([]byte(a.body), &v))
			for _, m := range v.Messages {
				require.LessOrEqual(t, m.Seq, last+1, "no gap in seqs")
				if m.Seq <= last {
					continue // an answer lost on the way came again: harmless by design
				}
				last = m.Seq
				if m.Event == "chat" {
					var n int
					require.NoError(t, json.Unmarshal(m.Data, &n))
					got = append(got, n)
					if acked[fmt.Sprint(n)] {
						missing--
					}
				}
			}
		case <-deadline:
			t.Fatalf("still missing %d acknowledged messages; got %v", missing, got)
		}
	}
	return got, seen
}

// TestRedisRestartKeepsWhatWasAcknowledged: with the append-only file, a restart of
// Redis loses no message and no client; the nodes follow it again by themselves.
func TestRedisRestartKeepsWhatWasAcknowledged(t *testing.T) {
	r, base := startCluster(t)
	ann, bob := connect(t, base), connect(t, base)
	poll(t, base, ann, 0)
	emit(t, base, bob, `"before"`)
	r.restart()
	require.Eventually(t, func() bool {
		return do(t, "POST", base+"/emit?id="+bob, `{"event":"chat","data":"after"}`).status == 204
	}, 10*time.Second, 50*time.Millisecond)
	var chats []string
	after := uint64(1)
	require.Eventually(t, func() bool {
		a := do(t, "GET", fmt.Sprintf("%s/poll?id=%s&after=%d", base, ann, after), "")
		var v struct{ Messages []message }
		if a.status != 200 || json.Unmarshal([]byte(a.body), &v) != nil {
			return false
		}
		for _, m := range v.Messages {
			require.Equal(t, after+1, m.Seq, "no gap in seqs")
			after = m.Seq
			if m.Event == "chat" {
				chats = append(chats, string(m.Data))
			}
		}
		return len(chats) >= 2
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{`"before"`, `"after"`}, chats)
}

// TestRedisLossIsNeverSilent: where Redis lost data, every client hears 410 (the
// page then says messages may be missing) and can connect again.
func TestRedisLossIsNeverSilent(t *testing.T) {
	tests := []struct {
		name    string
		lose    func(r *redisServer)
		wantErr string
	}{
		{"restarted empty", func(r *redisServer) { r.wipe(); r.start() }, "connect again"},
		{"went back in time", func(r *redisServer) {
			require.NoError(t, r.client().Set(t.Context(), "lp:seq", 1, 0).Err()) // as a crash that lost the last writes
		}, "lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, base := startCluster(t)
			ann, bob := connect(t, base), connect(t, base)
			poll(t, base, ann, 0)
			for i := range 5 {
				emit(t, base, bob, fmt.Sprint(i))
			}
			poll(t, base, ann, 1)
			tt.lose(r)
			var last answer
			require.Eventually(t, func() bool {
				last = do(t, "GET", base+"/poll?id="+ann+"&after=1", "")
				return last.status == 410
			}, 10*time.Second, 20*time.Millisecond, "last answer: %v", last)
			require.Contains(t, last.body, tt.wantErr)
			// A node may answer 503 for a moment while it loads the new epoch.
			again := connect(t, base)
			require.Eventually(t, func() bool {
				a := do(t, "GET", base+"/poll?id="+again+"&after=0", "")
				return a.status == 200 && strings.Contains(a.body, `"seq":1,"event":"online"`)
			}, 10*time.Second, 20*time.Millisecond)
		})
	}
}

// TestRedisUnreachableIs503: while Redis is away every request that needs it is a
// prompt 503 with Retry-After, and the cluster serves again once it is back.
func TestRedisUnreachableIs503(t *testing.T) {
	r, base := startCluster(t)
	ann := connect(t, base)
	r.stop()
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/connect", ""},
		{"GET", "/poll?id=" + ann + "&after=0", ""},
		{"POST", "/emit?id=" + ann, `{"event":"chat"}`},
	} {
		start := time.Now()
		a := do(t, req.method, base+req.path, req.body)
		require.Equal(t, 503, a.status, "%s %s: %s", req.method, req.path, a.body)
		require.Equal(t, "2", a.header.Get("Retry-After"))
		require.True(t, strings.Contains(a.body, "Redis"), a.body)
		require.Less(t, time.Since(start), 3*time.Second)
	}
	r.start()
	require.Eventually(t, func() bool {
		last := do(t, "GET", base+"/poll?id="+ann+"&after=0", "")
		if last.status != 200 {
			t.Logf("poll while Redis comes back: %d %s", last.status, last.body)
		}
		return last.status == 200
	}, 10*time.Second, 50*time.Millisecond)
}
