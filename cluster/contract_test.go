// contract_test.go replays the single server's JSON contract (README section 5)
// over real HTTP against three nodes behind nginx, with a real Redis.

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestContractErrors: every error is JSON, no-store, with the single server's statuses.
func TestContractErrors(t *testing.T) {
	_, base := startCluster(t, "-max-message", "100")
	id := connect(t, base)
	tests := []struct {
		name, method, path, body, contentType string
		want                                  int
		wantErr                               string
	}{
		{"poll without id", "GET", "/poll?after=0", "", "", 400, "id is missing"},
		{"poll with a bad cursor", "GET", "/poll?id=" + id + "&after=-1", "", "", 400, "not a non-negative integer"},
		{"poll with an unknown id", "GET", "/poll?id=nobody&after=0", "", "", 410, "unknown id"},
		{"poll past what exists", "GET", "/poll?id=" + id + "&after=5", "", "", 400, "beyond the highest seq"},
		{"poll by POST", "POST", "/poll?id=" + id + "&after=0", "", "", 405, "POST is not allowed"},
		{"connect by GET", "GET", "/connect", "", "", 405, "use POST"},
		{"emit without id", "POST", "/emit", `{"event":"chat"}`, "application/json", 400, "id is missing"},
		{"emit as text", "POST", "/emit?id=" + id, `{"event":"chat"}`, "text/plain", 415, "Content-Type"},
		{"emit malformed", "POST", "/emit?id=" + id, `{"event":`, "application/json", 400, "malformed JSON"},
		{"emit an unknown field", "POST", "/emit?id=" + id, `{"event":"chat","x":1}`, "application/json", 400, "unknown field"},
		{"emit a reserved event", "POST", "/emit?id=" + id, `{"event":"online","data":9}`, "application/json", 400, "reserved"},
		{"emit a bad event name", "POST", "/emit?id=" + id, `{"event":"a b"}`, "application/json", 400, "use only"},
		{"emit too big", "POST", "/emit?id=" + id, `{"event":"chat","data":"` + strings.Repeat("x", 200) + `"}`, "application/json", 413, "over 100 bytes"},
		{"emit from an unknown id", "POST", "/emit?id=nobody", `{"event":"chat"}`, "application/json", 410, "unknown id"},
		{"disconnect without id", "POST", "/disconnect", "", "", 400, "id is missing"},
		{"a missing page", "GET", "/nothing.html", "", "", 404, "no such page"},
		{"the client's tests are not the page", "GET", "/test/client.test.js", "", "", 404, "no such page"},
		{"socket.io stays single-node", "GET", "/socket.io/?EIO=4&transport=polling", "", "", 404, "one process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := doTyped(t, tt.method, base+tt.path, tt.body, tt.contentType)
			require.Equal(t, tt.want, a.status, a.body)
			require.Equal(t, "no-store", a.header.Get("Cache-Control"))
			require.NotEmpty(t, a.header.Get("X-Node"))
			var v struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(a.body), &v), a.body)
			require.Contains(t, v.Error, tt.wantErr)
			if tt.want == 405 {
				require.NotEmpty(t, a.header.Get("Allow"))
			}
		})
	}
}

// TestAnyNodeAnswersAnyPoll: one client's polls land on all three nodes, and it gets
// seq 1 (the count), then every message once, in order, with no gaps; an old cursor
// gets the same messages again.
func TestAnyNodeAnswersAnyPoll(t *testing.T) {
	_, base := startCluster(t)
	ann, bob := connect(t, base), connect(t, base)
	first := poll(t, base, ann, 0)
	require.Equal(t, "online", first[0].Event)
	require.Equal(t, uint64(1), first[0].Seq)
	nodes := map[string]bool{}
	var got []string
	after := uint64(1)
	for i := 0; len(got) < 6; i++ {
		emit(t, base, bob, fmt.Sprint(i)) // one at a time, so that each takes a poll of its own
		a := do(t, "GET", fmt.Sprintf("%s/poll?id=%s&after=%d", base, ann, after), "")
		require.Equal(t, 200, a.status, a.body)
		nodes[a.header.Get("X-Node")] = true
		var v struct{ Messages []message }
		require.NoError(t, json.Unmarshal([]byte(a.body), &v))
		for _, m := range v.Messages {
			require.Equal(t, after+1, m.Seq, "seq counts with no gaps")
			after = m.Seq
			if m.Event == "chat" {
				got = append(got, string(m.Data))
			}
		}
	}
	for i, data := range got {
		require.Equal(t, fmt.Sprint(i), data, "every message once, in order")
	}
	require.GreaterOrEqual(t, len(nodes), 2, "round-robin spreads one client's polls")
	again := poll(t, base, ann, 1)
	require.Equal(t, uint64(2), again[0].Seq, "nothing is forgotten until a later cursor passes it")
}

// TestParkedPollWakesOnAnEmitAtAnotherNode: the stream, not the node, carries news.
func TestParkedPollWakesOnAnEmitAtAnotherNode(t *testing.T) {
	r := startRedis(t)
	n1, n2 := "http://"+startNode(t, r.addr), "http://"+startNode(t, r.addr)
	ann, bob := connect(t, n1), connect(t, n2)
	poll(t, n1, ann, 0)
	got := make(chan answer, 1)
	start := time.Now()
	go func() { got <- doQuiet(n1 + "/poll?id=" + ann + "&after=1") }()
	time.Sleep(50 * time.Millisecond) // let the poll park; the assertion below does not depend on it
	emit(t, n2, bob, `"hi"`)
	a := <-got
	require.Equal(t, 200, a.status, a.body)
	require.Less(t, time.Since(start), 1500*time.Millisecond, "woken by the emit, not by the 2s poll timeout")
	var v struct{ Messages []message }
	require.NoError(t, json.Unmarshal([]byte(a.body), &v))
	msgs := v.Messages
	chats := 0
	for _, m := range msgs {
		if m.Event == "chat" {
			chats++
		}
	}
	if chats == 0 { // the presence count may have woken the poll first
		msgs = poll(t, n1, ann, msgs[len(msgs)-1].Seq)
	}
	require.Contains(t, fmt.Sprint(msgsData(msgs)), `"hi"`)
}

func msgsData(ms []message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Data))
	}
	return out
}

// TestGoodbyeAndExpiry: an id that said goodbye, or stopped polling, hears why.
func TestGoodbyeAndExpiry(t *testing.T) {
	r, base := startCluster(t)
	rdb := r.client()
	tests := []struct {
		name    string
		leave   func(id string)
		wantErr string
	}{
		{"goodbye", func(id string) {
			require.Equal(t, 204, do(t, "POST", base+"/disconnect?id="+id, "").status)
			require.Equal(t, 204, do(t, "POST", base+"/disconnect?id="+id, "").status, "twice is fine")
		}, "disconnected"},
		{"no poll for the TTL", func(id string) {
			// Polling would keep it alive: watch Redis drop it instead.
			require.Eventually(t, func() bool {
				return rdb.ZScore(t.Context(), "lp:seen", id).Err() != nil
			}, 5*time.Second, 20*time.Millisecond)
		}, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := connect(t, base)
			tt.leave(id)
			require.Eventually(t, func() bool {
				a := do(t, "GET", base+"/poll?id="+id+"&after=0", "")
				return a.status == 410 && strings.Contains(a.body, tt.wantErr)
			}, 5*time.Second, 50*time.Millisecond)
		})
	}
}

// TestBehindTheBacklogIs410: a cursor older than what the stream keeps is never
// answered with a silent gap, and the client is counted out.
func TestBehindTheBacklogIs410(t *testing.T) {
	_, base := startCluster(t, "-backlog", "4")
	slow, fast := connect(t, base), connect(t, base)
	poll(t, base, slow, 0)
	for i := range 10 {
		emit(t, base, fast, fmt.Sprint(i))
	}
	a := do(t, "GET", base+"/poll?id="+slow+"&after=1", "")
	require.Equal(t, 410, a.status, a.body)
	require.Contains(t, a.body, "evicted")
	a = do(t, "GET", base+"/poll?id="+slow+"&after=1", "")
	require.Equal(t, 410, a.status, "and it stays gone")
}

// TestShutdownAnswers503: a node that stops answers its parked polls at once.
func TestShutdownAnswers503(t *testing.T) {
	r := startRedis(t)
	n := startNodeProcess(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), r.addr, "-poll-timeout", "20s")
	base := "http://" + n.addr
	id := connect(t, base)
	poll(t, base, id, 0)
	got := make(chan answer, 1)
	go func() { got <- doQuiet(fmt.Sprintf("%s/poll?id=%s&after=1", base, id)) }()
	time.Sleep(100 * time.Millisecond) // let it park; a poll arriving during shutdown gets 503 too
	start := time.Now()
	n.cmd.Process.Signal(syscall.SIGTERM)
	a := <-got
	require.Equal(t, 503, a.status, a.body)
	require.Equal(t, "2", a.header.Get("Retry-After"))
	require.Less(t, time.Since(start), 2*time.Second)
	require.NoError(t, n.cmd.Wait(), "exits 0")
}

// TestPresenceSettlesOnceOverAllNodes: a crowd arriving through nginx at all three
// nodes is counted over all of them; the true count reaches a watcher within two
// presence intervals after the last arrival, and goes out once, not once per node.
func TestPresenceSettlesOnceOverAllNodes(t *testing.T) {
	const every = 250 * time.Millisecond
	_, base := startCluster(t, "-presence-every", every.String(), "-poll-timeout", "5s", "-client-ttl", "30s")
	watcher := connect(t, base)
	after := uint64(len(poll(t, base, watcher, 0)))
	rd := followPolls(base, watcher, after)
	defer close(rd.stop)
	const crowd = 30
	for range crowd {
		connect(t, base)
		time.Sleep(every / 10) // a crowd arriving over about one interval and a bit
	}
	arrived := time.Now()
	var counts []string
	var settled time.Duration
	quiet := time.After(2*every + 4*every) // then four more intervals with nobody arriving
	for done := false; !done; {
		select {
		case a := <-rd.answers:
			require.Equal(t, 200, a.status, a.body)
			var v struct{ Messages []message }
			require.NoError(t, json.Unmarshal([]byte(a.body), &v))
			for _, m := range v.Messages {
				counts = append(counts, string(m.Data))
				if string(m.Data) == fmt.Sprint(crowd+1) && settled == 0 {
					settled = time.Since(arrived)
				}
			}
		case <-quiet:
			done = true
		}
	}
	t.Logf("counts the watcher heard: %v; the true count %s after the last arrival", counts, settled)
	require.NotZero(t, settled, "the true count arrived")
	require.LessOrEqual(t, settled, 2*every+every/2, "within two presence intervals (and a little for the wire)")
	require.Equal(t, fmt.Sprint(crowd+1), counts[len(counts)-1])
	require.LessOrEqual(t, len(counts), 1+presenceHold, "one count per settled change, not one per node")
}

// TestACopiedRecordStillChecksCursorsAndGoodbyes: a node answers a client it has
// just checked from its copy of the record, but the copy never vouches for a cursor
// past what the node has read (Redis says 400), and a goodbye at another node
// reaches it within the copy's lifetime.
func TestACopiedRecordStillChecksCursorsAndGoodbyes(t *testing.T) {
	r := startRedis(t)
	n1, n2 := "http://"+startNode(t, r.addr), "http://"+startNode(t, r.addr)
	ann := connect(t, n1)
	poll(t, n1, ann, 0) // n1 now holds a copy of ann's record
	a := do(t, "GET", n1+"/poll?id="+ann+"&after=99", "")
	require.Equal(t, 400, a.status, a.body)
	require.Contains(t, a.body, "beyond the highest seq")

	bob := connect(t, n1)
	poll(t, n1, bob, 0)
	require.Equal(t, 204, do(t, "POST", n1+"/disconnect?id="+bob, "").status)
	a = do(t, "GET", n1+"/poll?id="+bob+"&after=1", "")
	require.Equal(t, 410, a.status, "a goodbye at the node that holds the copy reaches it at once: %s", a.body)

	require.Equal(t, 204, do(t, "POST", n2+"/disconnect?id="+ann, "").status)
	start := time.Now()
	require.Eventually(t, func() bool {
		return do(t, "GET", n1+"/poll?id="+ann+"&after=1", "").status == 410
	}, 5*time.Second, 10*time.Millisecond)
	require.Less(t, time.Since(start), 2*time.Second+500*time.Millisecond, "within the copy's lifetime (and one poll timeout)")
}
