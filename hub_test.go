// hub_test.go checks the HTTP contract row by row, then the hub's guarantees: order,
// redelivery, one parked poll per client, online counts, expiry, eviction, unparking,
// shutdown and goroutine hygiene. Durations are milliseconds, never the 25 s default.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// testConfig is short enough for quick tests and long enough for -race on 2 cores.
func testConfig() config {
	return config{pollTimeout: 2 * time.Second, clientTTL: 2 * time.Second, presenceEvery: 20 * time.Millisecond,
		maxClients: 100, mailbox: 64, maxBatch: 1 << 20, writeTimeout: 5 * time.Second, maxDepth: 32}
}

const testMaxMessage = 1024

// testServer is a running server as its tests reach it: a URL, a client, the hub.
type testServer struct {
	URL    string
	client *http.Client
	hub    *hub
}

func start(t *testing.T, cfg config) *testServer {
	t.Helper()
	h := newHub(cfg)
	go h.run()
	files, err := fs.Sub(static, "static")
	require.NoError(t, err)
	srv := httptest.NewServer(routes(h, testMaxMessage, files))
	// Stop the hub first: it answers parked polls, so Close need not wait them out.
	t.Cleanup(func() { h.stopHub(); srv.Close() })
	return &testServer{srv.URL, srv.Client(), h}
}

// startTimed is start with the server's read timeout and the answers' write timeout
// both d, as the real server has them (10 s each), on an address for raw connections.
func startTimed(t *testing.T, d time.Duration) (*testServer, string) {
	t.Helper()
	cfg := testConfig()
	cfg.writeTimeout = d
	h := newHub(cfg)
	go h.run()
	srv := httptest.NewUnstartedServer(routes(h, testMaxMessage, nil))
	srv.Config.ReadTimeout = d
	srv.Start()
	t.Cleanup(func() { h.stopHub(); srv.Close() })
	return &testServer{srv.URL, srv.Client(), h}, srv.Listener.Addr().String()
}

// serveOn runs serve, as main does, on a fresh loopback port; stop is the signal.
func serveOn(t *testing.T, cfg config) (ts *testServer, addr string, stop func(), served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := newHub(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, h, testMaxMessage, nil, slog.New(slog.DiscardHandler)) }()
	return &testServer{"http://" + ln.Addr().String(), &http.Client{}, h}, ln.Addr().String(), cancel, done
}

// wireMessage is one element of a poll's "messages".
type wireMessage struct {
	Seq   uint64          `json:"seq"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// reply is a raw HTTP answer; the request helpers below return errors instead of
// failing the test, so goroutines may use them.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (ts *testServer) request(ctx context.Context, method, path, contentType, body string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, err
}

// pollRaw polls once and decodes a 200's messages.
func (ts *testServer) pollRaw(ctx context.Context, id string, after uint64) (int, []wireMessage, error) {
	r, err := ts.request(ctx, "GET", fmt.Sprintf("/poll?id=%s&after=%d", id, after), "", "")
	if err != nil || r.status != http.StatusOK {
		return r.status, nil, err
	}
	var body struct{ Messages []wireMessage }
	if err := json.Unmarshal(r.body, &body); err != nil {
		return r.status, nil, err
	}
	return r.status, body.Messages, nil
}

func (ts *testServer) emitRaw(id, event string, data any) (reply, error) {
	b, err := json.Marshal(map[string]any{"event": event, "data": data})
	if err != nil {
		return reply{}, err
	}
	return ts.request(context.Background(), "POST", "/emit?id="+id, "application/json", string(b))
}

// The helpers below fail the test; call them from the test goroutine only.

func (ts *testServer) connect(t *testing.T) string {
	t.Helper()
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var body struct{ ID string }
	require.NoError(t, json.Unmarshal(r.body, &body))
	return body.ID
}

func (ts *testServer) poll(t *testing.T, id string, after uint64) []wireMessage {
	t.Helper()
	status, msgs, err := ts.pollRaw(context.Background(), id, after)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	return msgs
}

func (ts *testServer) emit(t *testing.T, id, event string, data any) {
	t.Helper()
	r, err := ts.emitRaw(id, event, data)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, r.status, string(r.body))
}

// requireError checks the API's error shape: status, JSON {"error": ...}, no-store.
func requireError(t *testing.T, r reply, status int, contains string) {
	t.Helper()
	require.Equal(t, status, r.status, string(r.body))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	var body struct{ Error string }
	require.NoError(t, json.Unmarshal(r.body, &body))
	require.Contains(t, body.Error, contains)
}

// parked counts the polls parked in the hub, asking the hub goroutine itself.
func (ts *testServer) parked() int {
	n := make(chan int, 1)
	ts.hub.peek <- func(s *state) {
		count := 0
		for _, c := range s.clients {
			if c.parked != nil {
				count++
			}
		}
		n <- count
	}
	return <-n
}

// pollAsync polls in a goroutine; the result arrives on the returned channel.
type pollResult struct {
	status int
	msgs   []wireMessage
	err    error
}

func (ts *testServer) pollAsync(ctx context.Context, id string, after uint64) <-chan pollResult {
	out := make(chan pollResult, 1)
	go func() {
		status, msgs, err := ts.pollRaw(ctx, id, after)
		out <- pollResult{status, msgs, err}
	}()
	return out
}

// receive waits for an async poll's result.
func receive(t *testing.T, c <-chan pollResult, within time.Duration) pollResult {
	t.Helper()
	select {
	case r := <-c:
		require.NoError(t, r.err)
		return r
	case <-time.After(within):
		require.FailNow(t, "poll did not answer in time", "within %s", within)
		return pollResult{}
	}
}

func online(n int) wireMessage {
	return wireMessage{Event: "online", Data: json.RawMessage(fmt.Sprint(n))}
}

// withoutSeq drops seqs, for comparing events alone.
func withoutSeq(msgs []wireMessage) []wireMessage {
	out := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		out[i] = wireMessage{Event: m.Event, Data: m.Data}
	}
	return out
}

func TestConnectGivesFreshHexIDs(t *testing.T) {
	ts := start(t, testConfig())
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	var body struct {
		ID            string
		PollTimeoutMs int64
	}
	require.NoError(t, json.Unmarshal(r.body, &body))
	require.Regexp(t, `^[0-9a-f]{32}$`, body.ID)
	require.Equal(t, int64(2000), body.PollTimeoutMs, "the client learns how long a poll may park")
	require.NotEqual(t, body.ID, ts.connect(t))
}

func TestConnectWhenFullIs503(t *testing.T) {
	cfg := testConfig()
	cfg.maxClients = 2
	ts := start(t, cfg)
	ts.connect(t)
	ts.connect(t)
	r, err := ts.request(context.Background(), "POST", "/connect", "", "")
	require.NoError(t, err)
	requireError(t, r, http.StatusServiceUnavailable, "too many clients")
}

func TestPollRejectsBadInput(t *testing.T) {
	ts := start(t, testConfig())
	id := ts.connect(t) // its mailbox holds seq 1, the online count
	tests := []struct {
		name, query string
		want        int
		contains    string
	}{
		{"id missing", "after=0", 400, "id is missing"},
		{"after missing", "id=ID", 400, "non-negative integer"},
		{"after negative", "id=ID&after=-1", 400, "non-negative integer"},
		{"after not a number", "id=ID&after=one", 400, "non-negative integer"},
		{"after fractional", "id=ID&after=1.5", 400, "non-negative integer"},
		{"after beyond the highest seq", "id=ID&after=2", 400, "beyond the highest seq given to this client (0)"},
		// seq 1 is in the mailbox, but no poll has been given it: acknowledging it would skip it unseen.
		{"after not yet given to a poll", "id=ID&after=1", 400, "beyond the highest seq given to this client (0)"},
		{"unknown id", "id=0123456789abcdef0123456789abcdef&after=0", 410, "unknown id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ts.request(context.Background(), "GET", "/poll?"+strings.ReplaceAll(tt.query, "ID", id), "", "")
			require.NoError(t, err)
			requireError(t, r, tt.want, tt.contains)
		})
	}
}

func TestGoneIDsSayWhy(t *testing.T) {
	tests := []struct {
		name     string
		config   func(*config)
		goAway   func(t *testing.T, ts *testServer, id string)
		contains string
	}{
		{
			name:     "disconnected",
			goAway:   func(t *testing.T, ts *testServer, id string) { disconnect(t, ts, id) },
			contains: "disconnected",
		},
		{
			name:   "expired",
			config: func(c *config) { c.clientTTL = 50 * time.Millisecond },
			goAway: func(t *testing.T, ts *testServer, id string) {
				ts.poll(t, id, 0) // the count waits there, so this answers at once
				require.Eventually(t, func() bool { return !ts.isConnected(id) }, 2*time.Second, 10*time.Millisecond)
			},
			contains: "expired: no poll for more than 50ms",
		},
		{
			name:   "never polled",
			config: func(c *config) { c.firstPoll = 50 * time.Millisecond },
			goAway: func(t *testing.T, ts *testServer, id string) {
				require.Eventually(t, func() bool { return !ts.isConnected(id) }, 2*time.Second, 10*time.Millisecond)
			},
			contains: "expired: no first poll within 50ms of connecting",
		},
		{
			name:   "evicted",
			config: func(c *config) { c.mailbox = 3 },
			goAway: func(t *testing.T, ts *testServer, id string) {
				other := ts.connect(t)
				after := uint64(0)
				for range 3 { // other keeps up, so only id overflows
					for _, m := range ts.poll(t, other, after) {
						after = m.Seq
					}
					ts.emit(t, other, "chat", "x")
				}
			},
			contains: "evicted: more than 3 unacknowledged messages",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.config != nil {
				tt.config(&cfg)
			}
			ts := start(t, cfg)
			id := ts.connect(t)
			tt.goAway(t, ts, id)

			r, err := ts.request(context.Background(), "GET", "/poll?after=0&id="+id, "", "")
			require.NoError(t, err)
			requireError(t, r, http.StatusGone, tt.contains)
			r, err = ts.emitRaw(id, "chat", "late")
			require.NoError(t, err)
			requireError(t, r, http.StatusGone, tt.contains)
		})
	}
}

// isConnected asks the hub whether id has a mailbox.
func (ts *testServer) isConnected(id string) bool {
	ok := make(chan bool, 1)
	ts.hub.peek <- func(s *state) { _, found := s.clients[id]; ok <- found }
	return <-ok
}

func disconnect(t *testing.T, ts *testServer, id string) {
	t.Helper()
	r, err := ts.request(context.Background(), "POST", "/disconnect?id="+id, "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, r.status)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
}

func TestEmitRejectsBadInput(t *testing.T) {
	ts := start(t, testConfig())
	id := ts.connect(t)
	const ctJSON = "application/json"
	tests := []struct {
		name, id, contentType, body string
		want                        int
		contains                    string
	}{
		{"malformed JSON", id, ctJSON, `{"event":"chat",`, 400, "malformed JSON"},
		{"not an object", id, ctJSON, `["chat"]`, 400, "it must be one object"},
		{"a key in another case", id, ctJSON, `{"Event":"chat","DATA":1}`, 400, `unknown field "Event"`},
		{"a key twice", id, ctJSON, `{"event":"chat","data":1,"data":2}`, 400, `"data" appears twice`},
		{"invalid UTF-8", id, ctJSON, "{\"event\":\"chat\",\"data\":\"\xff\"}", 400, "not valid UTF-8"},
		{"unknown field", id, ctJSON, `{"event":"chat","data":1,"to":"bob"}`, 400, `unknown field "to"`},
		{"trailing data", id, ctJSON, `{"event":"chat","data":1} {}`, 400, "trailing data"},
		{"trailing garbage", id, ctJSON, `{"event":"chat","data":1}x`, 400, "trailing data"},
		{"event missing", id, ctJSON, `{"data":1}`, 400, "1 to 64 characters"},
		{"event empty", id, ctJSON, `{"event":"","data":1}`, 400, "1 to 64 characters"},
		{"event too long", id, ctJSON, `{"event":"` + strings.Repeat("e", 65) + `"}`, 400, "got 65"},
		{"event with a space", id, ctJSON, `{"event":"chat room"}`, 400, "use only A-Za-z0-9_.:-"},
		{"event with non-ASCII", id, ctJSON, `{"event":"café"}`, 400, "use only A-Za-z0-9_.:-"},
		{"event not a string", id, ctJSON, `{"event":7}`, 400, `"event" must be a string`},
		{"reserved event", id, ctJSON, `{"event":"online","data":3}`, 400, "reserved"},
		{"body too large", id, ctJSON, `{"event":"chat","data":"` + strings.Repeat("x", testMaxMessage) + `"}`, 413, "over 1024 bytes"},
		{"too large only past the object", id, ctJSON, `{"event":"chat"}` + strings.Repeat(" ", testMaxMessage), 413, "over 1024 bytes"},
		{"text content type", id, "text/plain", `{"event":"chat"}`, 415, "application/json"},
		{"no content type", id, "", `{"event":"chat"}`, 415, "application/json"},
		{"id missing", "", ctJSON, `{"event":"chat"}`, 400, "id is missing"},
		{"unknown id", "0123456789abcdef0123456789abcdef", ctJSON, `{"event":"chat"}`, 410, "unknown id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ts.request(context.Background(), "POST", "/emit?id="+tt.id, tt.contentType, tt.body)
			require.NoError(t, err)
			requireError(t, r, tt.want, tt.contains)
		})
	}
	// None of them reached a mailbox: the next poll has only the online count.
	require.Equal(t, []wireMessage{{Seq: 1, Event: "online", Data: json.RawMessage("1")}}, ts.poll(t, id, 0))
}

func TestEmitDeliversWhatWasSent(t *testing.T) {
	ts := start(t, testConfig())
	id := ts.connect(t)
	ts.poll(t, id, 0)
	tests := []struct {
		name, contentType, body string
		want                    wireMessage
	}{
		{"object data", "application/json", `{"event":"chat","data":{"name":"Ann","text":"hi"}}`, wireMessage{Event: "chat", Data: json.RawMessage(`{"name":"Ann","text":"hi"}`)}},
		{"charset parameter", "application/json; charset=utf-8", `{"event":"chat","data":"é"}`, wireMessage{Event: "chat", Data: json.RawMessage(`"é"`)}},
		{"data missing is null", "application/json", `{"event":"ping"}`, wireMessage{Event: "ping", Data: json.RawMessage("null")}},
		{"every allowed character", "application/json", `{"event":"Az09_.:-","data":[1,2]}`, wireMessage{Event: "Az09_.:-", Data: json.RawMessage("[1,2]")}},
		{"64 characters", "application/json", `{"event":"` + strings.Repeat("e", 64) + `","data":0}`, wireMessage{Event: strings.Repeat("e", 64), Data: json.RawMessage("0")}},
		{"HTML stays text", "application/json", `{"event":"chat","data":"<img src=x onerror=alert(1)>"}`, wireMessage{Event: "chat", Data: json.RawMessage(`"<img src=x onerror=alert(1)>"`)}},
	}
	after := uint64(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ts.request(context.Background(), "POST", "/emit?id="+id, tt.contentType, tt.body)
			require.NoError(t, err)
			require.Equal(t, http.StatusNoContent, r.status, string(r.body))
			require.Equal(t, "no-store", r.header.Get("Cache-Control"))
			after++
			tt.want.Seq = after
			require.Equal(t, []wireMessage{tt.want}, ts.poll(t, id, after-1))
		})
	}
}

func TestDisconnect(t *testing.T) {
	ts := start(t, testConfig())
	a, b := ts.connect(t), ts.connect(t)
	require.Equal(t, []wireMessage{{Seq: 1, Event: "online", Data: json.RawMessage("1")}}, ts.poll(t, a, 0))
	require.Equal(t, []wireMessage{{Seq: 2, Event: "online", Data: json.RawMessage("2")}}, ts.poll(t, a, 1))
	disconnect(t, ts, b)
	require.Equal(t, []wireMessage{{Seq: 3, Event: "online", Data: json.RawMessage("1")}}, ts.poll(t, a, 2))
	disconnect(t, ts, b)                                  // twice is fine
	disconnect(t, ts, "0123456789abcdef0123456789abcdef") // so is an id never seen
	r, err := ts.request(context.Background(), "POST", "/disconnect", "", "")
	require.NoError(t, err)
	requireError(t, r, http.StatusBadRequest, "id is missing")
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	ts := start(t, testConfig())
	tests := []struct{ method, path, allow string }{
		{"GET", "/connect", "POST"},
		{"PUT", "/connect", "POST"},
		{"POST", "/poll", "GET"},
		{"DELETE", "/poll", "GET"},
		{"GET", "/emit", "POST"},
		{"GET", "/disconnect", "POST"},
		{"POST", "/", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r, err := ts.request(context.Background(), tt.method, tt.path+"?id=x&after=0", "", "")
			require.NoError(t, err)
			requireError(t, r, http.StatusMethodNotAllowed, "use "+tt.allow)
			require.Equal(t, tt.allow, r.header.Get("Allow"))
		})
	}
}

func TestStaticFiles(t *testing.T) {
	ts := start(t, testConfig())
	tests := []struct {
		path        string
		rangeHeader string
		want        int
		contentType string
	}{
		{"/", "", 200, "text/html"},
		{"/client.js", "", 200, "text/javascript"},
		{"/no-such-file", "", 404, "application/json"},
		{"/test/client.test.js", "", 404, "application/json"}, // the client's Node tests are not served
		// A range past the end would be FileServer's text/plain 416; the files are small,
		// so ranges are ignored and the whole file comes.
		{"/client.js", "bytes=999999-", 200, "text/javascript"},
		{"/client.js", "bytes=0-9", 200, "text/javascript"},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.rangeHeader, func(t *testing.T) {
			req, err := http.NewRequest("GET", ts.URL+tt.path, nil)
			require.NoError(t, err)
			if tt.rangeHeader != "" {
				req.Header.Set("Range", tt.rangeHeader)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			r := reply{status: resp.StatusCode, header: resp.Header, body: body}
			require.Equal(t, tt.want, r.status)
			require.Contains(t, r.header.Get("Content-Type"), tt.contentType)
			require.Equal(t, "no-store", r.header.Get("Cache-Control"))
		})
	}
}

func TestPollParksUntilAMessageArrives(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = time.Minute // only the emit can answer this poll in time
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)

	parked := ts.pollAsync(context.Background(), id, 1)
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	ts.emit(t, id, "chat", "wake up")
	got := receive(t, parked, 2*time.Second)
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, []wireMessage{{Seq: 2, Event: "chat", Data: json.RawMessage(`"wake up"`)}}, got.msgs)
}

func TestPollTimeoutAnswersAnEmptyList(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = 50 * time.Millisecond
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)
	r, err := ts.request(context.Background(), "GET", "/poll?after=1&id="+id, "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"messages":[]}`, string(r.body)) // [], never null
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.True(t, ts.isConnected(id), "a poll that timed out keeps its client")
}

func TestRepeatedCursorGetsTheSameMessagesAgain(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = 50 * time.Millisecond
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)
	for i := range 3 {
		ts.emit(t, id, "chat", i)
	}
	first := ts.poll(t, id, 1)
	require.Equal(t, []uint64{2, 3, 4}, seqs(first))
	// The answer was "lost": the same cursor brings the same messages, not new ones.
	require.Equal(t, first, ts.poll(t, id, 1))
	require.Equal(t, first[1:], ts.poll(t, id, 2))
	require.Empty(t, ts.poll(t, id, 4))
}

func seqs(msgs []wireMessage) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func TestANewerPollReplacesTheParkedOne(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)

	older := ts.pollAsync(context.Background(), id, 1)
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	newer := ts.pollAsync(context.Background(), id, 1)
	got := receive(t, older, 2*time.Second)
	require.Equal(t, http.StatusOK, got.status)
	require.Empty(t, got.msgs)
	require.NotNil(t, got.msgs, "an empty batch is [], not null")

	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	ts.emit(t, id, "chat", "for the newer one")
	require.Equal(t, []uint64{2}, seqs(receive(t, newer, 2*time.Second).msgs))
}

// TestTimeoutRacingADeliveryLosesNothing plays the handler's side by hand: the hub
// answers a parked poll at the very moment its timer fires and it unparks. The poll
// gets the delivery exactly once, and had that answer been lost on the way, the same
// cursor would bring the message again, because only a later cursor forgets it.
func TestTimeoutRacingADeliveryLosesNothing(t *testing.T) {
	h := newHub(testConfig())
	go h.run()
	defer h.stopHub()
	require.NoError(t, h.connect("a", "127.0.0.1")) // seq 1: the online count
	first := &pollRequest{id: "a", after: 0, reply: make(chan batch, 1)}
	h.polls <- first
	require.Len(t, (<-first.reply).msgs, 1)

	parked := &pollRequest{id: "a", after: 1, reply: make(chan batch, 1)}
	h.polls <- parked
	require.NoError(t, h.emit("a", &message{body: encode("chat", json.RawMessage(`"hi"`))}))
	h.unparks <- parked // the timer fired just after the hub answered
	b := <-parked.reply
	require.Equal(t, uint64(2), b.first)
	require.Len(t, b.msgs, 1)
	h.peek <- func(*state) {} // the hub has handled the unpark by now...
	require.Empty(t, parked.reply, "...and did not answer twice")

	again := &pollRequest{id: "a", after: 1, reply: make(chan batch, 1)}
	h.polls <- again
	require.Equal(t, b, <-again.reply)
}

// seen is what one reader took: the data of its chats in order, or what went wrong.
type seen struct {
	chats []string
	err   error
}

// readChats polls as client.js does, keeping its cursor, until want chats came or
// ctx ends; a gap or a repeat in the seqs is an error. Safe on any goroutine.
func (ts *testServer) readChats(ctx context.Context, id string, want int) seen {
	var s seen
	after := uint64(0)
	for len(s.chats) < want && s.err == nil {
		var status int
		var msgs []wireMessage
		status, msgs, s.err = ts.pollRaw(ctx, id, after)
		if s.err == nil && status != http.StatusOK {
			s.err = fmt.Errorf("poll: status %d", status)
		}
		for _, m := range msgs {
			if m.Seq != after+1 {
				s.err = fmt.Errorf("seq %d after %d: a gap or a repeat", m.Seq, after)
			}
			after = m.Seq
			if m.Event == "chat" {
				s.chats = append(s.chats, string(m.Data))
			}
		}
	}
	return s
}

// TestAllClientsSeeTheSameOrder has publishers emit concurrently while readers poll
// as a browser does; every reader must see every message once, in one shared order.
func TestAllClientsSeeTheSameOrder(t *testing.T) {
	const readers, publishers, each = 3, 4, 40
	cfg := testConfig()
	cfg.clientTTL = time.Minute // publishers never poll
	cfg.mailbox = 1000
	ts := start(t, cfg)

	ids := make([]string, readers)
	for i := range ids {
		ids[i] = ts.connect(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	results := make(chan seen, readers)
	for _, id := range ids {
		go func() { results <- ts.readChats(ctx, id, publishers*each) }()
	}

	var wg sync.WaitGroup
	emitErrs := make(chan error, publishers*each)
	for p := range publishers {
		id := ts.connect(t)
		wg.Go(func() {
			for n := range each {
				r, err := ts.emitRaw(id, "chat", fmt.Sprintf("%d-%03d", p, n))
				if err == nil && r.status != http.StatusNoContent {
					err = fmt.Errorf("emit: status %d", r.status)
				}
				if err != nil {
					emitErrs <- err
				}
			}
		})
	}
	wg.Wait()
	close(emitErrs)
	for err := range emitErrs {
		require.NoError(t, err)
	}

	var first []string
	for range readers {
		s := <-results
		require.NoError(t, s.err)
		require.Len(t, s.chats, publishers*each)
		if first == nil {
			first = s.chats
			continue
		}
		require.Equal(t, first, s.chats, "two readers saw different orders")
	}
	// Each publisher's own messages keep the order it sent them in.
	last := map[byte]string{}
	for _, c := range first {
		p := c[1]
		require.Less(t, last[p], c)
		last[p] = c
	}
}

func TestOnlineCountsReachEverybody(t *testing.T) {
	ts := start(t, testConfig())
	a := ts.connect(t)
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, a, 0)), "the first poll learns the count at once")
	b := ts.connect(t)
	require.Equal(t, []wireMessage{online(2)}, withoutSeq(ts.poll(t, a, 1)))
	require.Equal(t, []wireMessage{online(2)}, withoutSeq(ts.poll(t, b, 0)))
	disconnect(t, ts, b)
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, a, 2)))
}

// TestUnseenOnlineCountsAreReplaced: a client that is not polling while others come
// and go holds one pending count, the latest, not one per change.
func TestUnseenOnlineCountsAreReplaced(t *testing.T) {
	cfg := testConfig()
	cfg.presenceEvery = time.Hour // the test announces by hand
	ts := start(t, cfg)
	a := ts.connect(t)
	for range 10 {
		ts.connect(t)
	}
	ts.announce()
	require.Equal(t, []wireMessage{{Seq: 1, Event: "online", Data: json.RawMessage("11")}}, ts.poll(t, a, 0))
	// Once delivered, a count is a message like any other: a newer one queues behind it.
	ts.connect(t)
	ts.announce()
	require.Equal(t, []wireMessage{online(11), online(12)}, withoutSeq(ts.poll(t, a, 0)))
}

// announce runs two presence ticks now, on the hub goroutine: one in which the
// newcomers arrived, which holds the count back, and a quiet one, which sends it.
func (ts *testServer) announce() {
	done := make(chan struct{})
	ts.hub.peek <- func(s *state) { s.announce(); s.announce(); close(done) }
	<-done
}

func TestExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.clientTTL = 100 * time.Millisecond
	cfg.pollTimeout = 400 * time.Millisecond // parked for longer than the TTL
	ts := start(t, cfg)
	a := ts.connect(t)
	ts.poll(t, a, 0)
	b := ts.connect(t) // never polls: a closed tab
	require.Equal(t, []wireMessage{online(2)}, withoutSeq(ts.poll(t, a, 1)))

	// a's parked poll hears of b's expiry; a itself outlives the TTL while parked.
	got := receive(t, ts.pollAsync(context.Background(), a, 2), 2*time.Second)
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(got.msgs))
	require.False(t, ts.isConnected(b))
	require.Empty(t, ts.poll(t, a, 3), "timed out after 400ms, still connected")
	require.True(t, ts.isConnected(a))
}

func TestEvictionWhenTheMailboxOverflows(t *testing.T) {
	cfg := testConfig()
	cfg.mailbox = 4
	cfg.presenceEvery = time.Hour // the test announces by hand
	ts := start(t, cfg)
	slow := ts.connect(t) // slow holds one pending online count
	fast := ts.connect(t)
	ts.poll(t, fast, 0)
	for i := range 4 {
		ts.emit(t, fast, "chat", i)
		ts.poll(t, fast, uint64(i+1)) // fast keeps up
	}
	require.False(t, ts.isConnected(slow), "5 unacknowledged messages > mailbox 4")
	ts.announce()
	require.Equal(t, []wireMessage{{Seq: 6, Event: "online", Data: json.RawMessage("1")}}, ts.poll(t, fast, 5), "the others hear of it")
	r, err := ts.request(context.Background(), "GET", "/poll?after=0&id="+slow, "", "")
	require.NoError(t, err)
	requireError(t, r, http.StatusGone, "evicted")
}

// TestCancelledPollIsUnparkedAtOnce: a browser that goes away must not keep its client
// alive until the poll timeout, and its unanswered messages wait for the next poll.
func TestCancelledPollIsUnparkedAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)

	ctx, cancel := context.WithCancel(context.Background())
	gone := ts.pollAsync(ctx, id, 1)
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	cancel()
	require.Error(t, (<-gone).err)
	require.Eventually(t, func() bool { return ts.parked() == 0 }, time.Second, 5*time.Millisecond)

	ts.emit(t, id, "chat", "still here")
	require.Equal(t, []uint64{2}, seqs(ts.poll(t, id, 1)))
}

// TestShutdownAnswersParkedPollsFast parks many polls, then stops the server the way
// a signal does, and expects every poll answered and serve returned at once.
func TestShutdownAnswersParkedPollsFast(t *testing.T) {
	const clients = 1000
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	cfg.clientTTL = time.Minute
	cfg.presenceEvery = time.Hour // no count may answer the parked polls first
	cfg.maxClients = clients
	ts, _, stop, served := serveOn(t, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	ts.client = client
	ids := make([]string, clients)
	for i := range ids {
		ids[i] = ts.connect(t)
		ts.poll(t, ids[i], 0) // seq 1, the online count
	}
	answers := make(chan pollResult, clients)
	for _, id := range ids { // after=1 parks
		go func() {
			status, msgs, err := pollWith(client, ts.URL, id, 1)
			answers <- pollResult{status, msgs, err}
		}()
	}
	require.Eventually(t, func() bool { return ts.parked() == clients }, 20*time.Second, 20*time.Millisecond)

	began := time.Now()
	stop()
	for range clients {
		r := <-answers
		require.NoError(t, r.err)
		require.Equal(t, http.StatusServiceUnavailable, r.status, "come back later, not at once")
	}
	require.NoError(t, <-served)
	// The point is "at once", not at the one-minute poll timeout. On a quiet machine
	// this takes a fraction of a second (see the README); the bound leaves room for a
	// busy one.
	require.Less(t, time.Since(began), underRace(5*time.Second, 10*time.Second))
}

// underRace picks the looser bound when the race detector, several times slower,
// shares two cores with a thousand test clients.
func underRace(plain, race time.Duration) time.Duration {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return race
			}
		}
	}
	return plain
}

// pollWith polls through a given client, for tests that need many connections.
func pollWith(c *http.Client, base, id string, after uint64) (int, []wireMessage, error) {
	resp, err := c.Get(fmt.Sprintf("%s/poll?id=%s&after=%d", base, id, after))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body struct{ Messages []wireMessage }
	err = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Messages, err
}

func TestGoroutinesReturnToBaselineAfterClientsLeave(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := testConfig()
	cfg.pollTimeout = 50 * time.Millisecond
	h := newHub(cfg)
	go h.run()
	srv := httptest.NewServer(routes(h, testMaxMessage, nil))
	ts := &testServer{srv.URL, srv.Client(), h}
	for range 50 {
		id := ts.connect(t)
		ts.poll(t, id, 0)
		ts.poll(t, id, 1) // parks, then times out
		disconnect(t, ts, id)
	}
	h.stopHub()
	srv.Close()
	ts.client.CloseIdleConnections()
	// +1: Eventually runs the condition on a goroutine of its own.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, 5*time.Second, 20*time.Millisecond,
		"goroutines: %d before", before)
}

func TestRunLogsTheURLAndStopsOnCancel(t *testing.T) {
	logs, logw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- run(ctx, []string{"-addr", "127.0.0.1:0", "-poll-timeout", "1s"}, logw); logw.Close() }()

	line, err := bufio.NewReader(logs).ReadString('\n')
	require.NoError(t, err)
	url := regexp.MustCompile(`url=(http://\S+)`).FindStringSubmatch(line)
	require.NotNil(t, url, line)
	require.NotContains(t, url[1], ":0/", "the log names the port actually bound")
	resp, err := http.Get(url[1])
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	go io.Copy(io.Discard, logs) // let run log its goodbye
	cancel()
	require.NoError(t, <-ran)
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"zero poll timeout", []string{"-poll-timeout", "0s"}},
		{"negative ttl", []string{"-client-ttl", "-1s"}},
		{"no clients", []string{"-max-clients", "0"}},
		{"no mailbox", []string{"-mailbox", "0"}},
		{"no message", []string{"-max-message", "0"}},
		{"no depth", []string{"-max-depth", "0"}},
		{"deeper than readers take", []string{"-max-depth", "501"}},
		{"no share", []string{"-max-per-address", "0"}},
		{"no first poll", []string{"-first-poll", "0s"}},
		{"negative cap", []string{"-max-conns", "-1"}},
		{"a cap over the descriptor limit", []string{"-max-conns", "2000000000"}},
		{"unknown flag", []string{"-nope"}},
		{"bad address", []string{"-addr", "127.0.0.1:99999"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, run(context.Background(), tt.args, io.Discard))
		})
	}
}

func TestOpenURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4321}
	tests := []struct{ give, want string }{
		{"localhost:8080", "http://localhost:4321/"},
		{"127.0.0.1:0", "http://127.0.0.1:4321/"},
		{":8080", "http://localhost:4321/"},
		{"0.0.0.0:0", "http://localhost:4321/"},
		{"[::1]:0", "http://[::1]:4321/"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, openURL(tt.give, bound), tt.give)
	}
}

// FuzzDecodeEmit: whatever the body, the decoder either refuses it or yields a valid
// event whose encoding, wrapped in braces, is one well-formed JSON object.
func FuzzDecodeEmit(f *testing.F) {
	for _, seed := range []string{
		`{"event":"chat","data":{"name":"Ann","text":"hi"}}`,
		`{"event":"chat"}`,
		`{"event":"online","data":1}`,
		`{"event":"a","data":"\u003c\/script\u003e"}`,
		`{"event":"chat","data":1} {}`,
		`{"event":"chat","data":[1,{"a":null}],"x":1}`,
		`{"data":"no event"}`,
		` {"event" : "spaced" , "data" : [ 1 , 2 ] } `,
		`null`, `[]`, `"chat"`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := decodeEmit(body, 32)
		if err != nil {
			require.Nil(t, msg)
			return
		}
		var got struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		wire := append(append([]byte("{"), msg.body...), '}')
		require.True(t, utf8.Valid(wire), "%q", wire)
		require.True(t, json.Valid(wire), "%s", wire)
		require.NoError(t, json.Unmarshal(wire, &got))
		require.NoError(t, checkEvent(got.Event))
		var strict any // what a strict Go reader of a poll answer does with it
		require.NoError(t, json.Unmarshal(got.Data, &strict))
	})
}
