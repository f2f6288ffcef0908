// eio_test.go checks the socket.io face from outside, as a socket.io client reaches it:
// the handshake, each error the Engine.IO document requires, packet encoding both ways,
// the heartbeat, acks, and a socket.io client and a JSON client seeing one order.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const eioPath = "/socket.io/?EIO=4&transport=polling"

// sio is one socket.io client session as the tests drive it by hand.
type sio struct {
	ts    *testServer
	sid   string
	posts sync.Mutex // a client keeps at most one POST open
}

// eioHandshake opens an Engine.IO session.
func eioHandshake(t *testing.T, ts *testServer) *sio {
	t.Helper()
	r, err := ts.request(context.Background(), "GET", eioPath, "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.True(t, bytes.HasPrefix(r.body, []byte("0")), string(r.body))
	var open struct{ SID string }
	require.NoError(t, json.Unmarshal(r.body[1:], &open))
	return &sio{ts: ts, sid: open.SID}
}

// sioConnect opens a session and connects it to namespace "/". The GET that brings
// 40 also brings what the new mailbox holds, the online count; the rest are returned.
func sioConnect(t *testing.T, ts *testServer) (*sio, []string) {
	t.Helper()
	c := eioHandshake(t, ts)
	c.post(t, "40")
	pkts := c.get(t)
	require.Regexp(t, `^40\{"sid":"[0-9a-f]{32}"\}$`, pkts[0])
	return c, pkts[1:]
}

func (c *sio) url() string { return eioPath + "&sid=" + c.sid }

func (c *sio) postRaw(body string) (reply, error) {
	c.posts.Lock()
	defer c.posts.Unlock()
	return c.ts.request(context.Background(), "POST", c.url(), "text/plain;charset=UTF-8", body)
}

func (c *sio) getRaw(ctx context.Context) (reply, error) {
	return c.ts.request(ctx, "GET", c.url(), "", "")
}

// post sends a payload and expects `ok`.
func (c *sio) post(t *testing.T, body string) {
	t.Helper()
	r, err := c.postRaw(body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "ok", string(r.body))
}

// get polls once and splits the payload into its packets.
func (c *sio) get(t *testing.T) []string {
	t.Helper()
	r, err := c.getRaw(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "text/plain; charset=UTF-8", r.header.Get("Content-Type"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	return strings.Split(string(r.body), "\x1e")
}

// getAsync polls in a goroutine.
func (c *sio) getAsync(ctx context.Context) <-chan reply {
	out := make(chan reply, 1)
	go func() {
		r, err := c.getRaw(ctx)
		if err != nil {
			r = reply{status: -1, body: []byte(err.Error())}
		}
		out <- r
	}()
	return out
}

// gone says whether the server has forgotten the session.
func (c *sio) gone() bool {
	r, err := c.postRaw("3")
	return err == nil && r.status == http.StatusBadRequest && strings.Contains(string(r.body), "Session ID unknown")
}

// requireEIOError checks Engine.IO's error shape.
func requireEIOError(t *testing.T, r reply, status, code int) {
	t.Helper()
	require.Equal(t, status, r.status, string(r.body))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var body struct {
		Code    *int
		Message string
	}
	require.NoError(t, json.Unmarshal(r.body, &body), string(r.body))
	require.NotNil(t, body.Code)
	require.Equal(t, code, *body.Code)
	require.NotEmpty(t, body.Message)
}

// hubClients counts the hub's clients, asking the hub goroutine itself.
func hubClients(ts *testServer) int {
	n := make(chan int, 1)
	ts.hub.peek <- func(s *state) { n <- len(s.clients) }
	return <-n
}

func within(t *testing.T, c <-chan reply, d time.Duration) reply {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(d):
		require.FailNow(t, "no answer in time", "within %s", d)
		return reply{}
	}
}

func TestEIOHandshake(t *testing.T) {
	ts := start(t, testConfig())
	r, err := ts.request(context.Background(), "GET", eioPath+"&t=N8hyd6w", "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/plain; charset=UTF-8", r.header.Get("Content-Type"))
	require.Equal(t, byte('0'), r.body[0], "an open packet")
	var open map[string]any
	require.NoError(t, json.Unmarshal(r.body[1:], &open))
	require.Regexp(t, `^[0-9a-f]{32}$`, open["sid"])
	require.Equal(t, map[string]any{
		"sid":          open["sid"],
		"upgrades":     []any{},
		"pingInterval": float64(testConfig().pollTimeout.Milliseconds()),
		"pingTimeout":  float64(testConfig().clientTTL.Milliseconds()),
		"maxPayload":   float64(testMaxMessage),
	}, open)
}

func TestEIORejectsBadRequests(t *testing.T) {
	ts := start(t, testConfig())
	c := eioHandshake(t, ts)
	tests := []struct {
		name, method, path string
		status, code       int
	}{
		{"no EIO", "GET", "/socket.io/?transport=polling", 400, 5},
		{"EIO=3", "GET", "/socket.io/?EIO=3&transport=polling", 400, 5},
		{"no transport", "GET", "/socket.io/?EIO=4", 400, 0},
		{"websocket", "GET", "/socket.io/?EIO=4&transport=websocket", 400, 0},
		{"handshake by POST", "POST", eioPath, 400, 2},
		{"unknown sid, GET", "GET", eioPath + "&sid=nope", 400, 1},
		{"unknown sid, POST", "POST", eioPath + "&sid=nope", 400, 1},
		{"PUT", "PUT", c.url(), 400, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ts.request(context.Background(), tt.method, tt.path, "text/plain", "40")
			require.NoError(t, err)
			requireEIOError(t, r, tt.status, tt.code)
		})
	}
	require.False(t, c.gone(), "a wrong method alone does not close the session")
}

func TestSocketIODecode(t *testing.T) {
	tests := []struct {
		give    string
		want    sioPacket
		wantErr string
	}{
		{give: "0", want: sioPacket{typ: '0', nsp: "/", data: []byte{}}},
		{give: `0{"token":"x"}`, want: sioPacket{typ: '0', nsp: "/", data: []byte(`{"token":"x"}`)}},
		{give: "0/admin,", want: sioPacket{typ: '0', nsp: "/admin", data: []byte{}}},
		{give: "1/admin", want: sioPacket{typ: '1', nsp: "/admin", data: []byte{}}},
		{give: `2["foo"]`, want: sioPacket{typ: '2', nsp: "/", data: []byte(`["foo"]`)}},
		{give: `212["foo"]`, want: sioPacket{typ: '2', nsp: "/", id: "12", data: []byte(`["foo"]`)}},
		{give: `2/admin,13["bar"]`, want: sioPacket{typ: '2', nsp: "/admin", id: "13", data: []byte(`["bar"]`)}},
		{give: "", wantErr: "no Socket.IO packet type"},
		{give: "9", wantErr: "no Socket.IO packet type"},
		{give: `51-["baz",{"_placeholder":true,"num":0}]`, wantErr: "binary"},
		{give: `21234567890123456["x"]`, wantErr: "ack id too long"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := decodeSIO([]byte(tt.give))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSocketIOEncodeEvent(t *testing.T) {
	tests := []struct {
		event, data, want string
	}{
		{"online", "3", `42["online",3]`},
		{"chat", `{"name":"Ann","text":"say \"hi\", \\ ok"}`, `42["chat",{"name":"Ann","text":"say \"hi\", \\ ok"}]`},
		{"a.b:c-d_e", "null", `42["a.b:c-d_e",null]`},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeEvent(&b, encode(tt.event, json.RawMessage(tt.data)))
		require.Equal(t, tt.want, b.String())
		var round []json.RawMessage
		require.NoError(t, json.Unmarshal(b.Bytes()[2:], &round))
	}
}

// TestSocketIOConnectEventAndAck is a session's first steps: 40, the online count, an
// event with an ack, and the event coming back to its sender like to everybody.
func TestSocketIOConnectEventAndAck(t *testing.T) {
	ts := start(t, testConfig())
	c, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",1]`}, first)
	c.post(t, `421["chat",{"text":"hi"}]`+"\x1e"+`42["chat","no ack asked"]`)
	require.Equal(t, []string{`431[]`, `42["chat",{"text":"hi"}]`, `42["chat","no ack asked"]`}, c.get(t),
		"the ack, then the events: they were in every mailbox before the ack was queued")
}

// TestSocketIORefusedEventsAreAckedWithTheReason: events that /emit would refuse with a 400
// are not delivered; the session stays open and the ack, if asked for, says why.
func TestSocketIORefusedEventsAreAckedWithTheReason(t *testing.T) {
	ts := start(t, testConfig())
	c, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",1]`}, first)
	c.post(t, strings.Join([]string{
		`427["online",5]`,
		`428["bad name!",1]`,
		`429["chat",1,2]`,
		`42["online",6]`,
		`4210["chat"]`,
	}, "\x1e"))
	pkts := c.get(t)
	require.Len(t, pkts, 5, pkts)
	require.Regexp(t, `^437\[\{"error":".*reserved.*"\}\]$`, pkts[0])
	require.Regexp(t, `^438\[\{"error":".*A-Za-z0-9.*"\}\]$`, pkts[1])
	require.Regexp(t, `^439\[\{"error":".*one data value.*"\}\]$`, pkts[2])
	require.Equal(t, []string{`4310[]`, `42["chat",null]`}, pkts[3:], "an event without data carries null, as /emit does")
}

func TestSocketIOOtherNamespacesAreRefused(t *testing.T) {
	ts := start(t, testConfig())
	c := eioHandshake(t, ts)
	c.post(t, "40/admin,")
	require.Equal(t, []string{`44/admin,{"message":"Invalid namespace"}`}, c.get(t))
	c.post(t, "40")
	require.Regexp(t, `^40\{"sid":`, c.get(t)[0], "the main namespace still connects")
}

// TestSocketIOMalformedPacketsCloseTheSession: each payload gets a 400, and the session is gone.
func TestSocketIOMalformedPacketsCloseTheSession(t *testing.T) {
	ts := start(t, testConfig())
	tests := []struct{ name, give string }{
		{"empty payload", ""},
		{"unknown Engine.IO type", "9"},
		{"ping from the client", "2"},
		{"upgrade", "5"},
		{"binary Engine.IO packet", "bAQIDBA=="},
		{"empty message", "4"},
		{"unknown Socket.IO type", "49"},
		{"binary event", `451-["baz",{"_placeholder":true,"num":0}]`},
		{"event without payload", "42"},
		{"event with an object", `42{"event":"chat"}`},
		{"event with an empty array", "42[]"},
		{"event name not a string", "42[1]"},
		{"event that is not JSON", `42["chat",`},
		{"event to another namespace", `42/admin,["chat"]`},
		{"second connect", "40"},
		{"connect with an array", "40[1]"},
		{"connect error from the client", `44{"message":"x"}`},
		{"a good packet, then a bad one", "42[\"chat\",1]\x1e42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := sioConnect(t, ts)
			r, err := c.postRaw(tt.give)
			require.NoError(t, err)
			requireEIOError(t, r, http.StatusBadRequest, 3)
			require.Contains(t, string(r.body), "session closed")
			require.True(t, c.gone())
		})
	}
	t.Run("event before connect", func(t *testing.T) {
		c := eioHandshake(t, ts)
		r, err := c.postRaw(`42["chat",1]`)
		require.NoError(t, err)
		requireEIOError(t, r, http.StatusBadRequest, 3)
		require.True(t, c.gone())
	})
	t.Run("binary content type", func(t *testing.T) {
		c, _ := sioConnect(t, ts)
		r, err := ts.request(context.Background(), "POST", c.url(), "application/octet-stream", "\x04hi")
		require.NoError(t, err)
		requireEIOError(t, r, http.StatusBadRequest, 3)
		require.True(t, c.gone())
	})
}

func TestEIOPayloadOverMaxPayloadIs413AndCloses(t *testing.T) {
	ts := start(t, testConfig())
	c, _ := sioConnect(t, ts)
	r, err := c.postRaw(`42["chat","` + strings.Repeat("x", testMaxMessage) + `"]`)
	require.NoError(t, err)
	requireEIOError(t, r, http.StatusRequestEntityTooLarge, 3)
	require.True(t, c.gone())
}

// TestEIOSecondGetClosesTheSession: the open GET hears close (1), the second gets 400.
func TestEIOSecondGetClosesTheSession(t *testing.T) {
	ts := start(t, testConfig())
	c, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",1]`}, first)
	open := c.getAsync(context.Background())
	require.Eventually(t, func() bool { return ts.parked() == 1 }, time.Second, 5*time.Millisecond)
	r, err := c.getRaw(context.Background())
	require.NoError(t, err)
	requireEIOError(t, r, http.StatusBadRequest, 3)
	r = within(t, open, time.Second)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "1", string(r.body))
	require.True(t, c.gone())
	require.Eventually(t, func() bool { return hubClients(ts) == 0 }, time.Second, 5*time.Millisecond,
		"the hub client left with the session")
}

// TestEIOSecondPostClosesTheSession holds one POST open on a body that has not
// finished arriving, then sends another.
func TestEIOSecondPostClosesTheSession(t *testing.T) {
	ts := start(t, testConfig())
	c, _ := sioConnect(t, ts)
	body, feed := io.Pipe()
	req, err := http.NewRequest("POST", ts.URL+c.url(), body)
	require.NoError(t, err)
	first := make(chan error, 1)
	go func() {
		resp, err := ts.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	feed.Write([]byte(`42["chat",`))
	require.Eventually(t, func() bool {
		r, err := c.postRaw(`42["chat",2]`)
		return err == nil && r.status == http.StatusBadRequest && strings.Contains(string(r.body), "second POST")
	}, time.Second, 10*time.Millisecond)
	require.True(t, c.gone())
	feed.Write([]byte(`1]`))
	feed.Close()
	<-first
}

// TestEIOHeartbeat: a parked GET hears a ping each pingInterval; a pong keeps the
// session; no pong within pingTimeout closes it, and the parked GET hears close.
func TestEIOHeartbeat(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = 100 * time.Millisecond // the ping interval
	cfg.clientTTL = 300 * time.Millisecond   // the ping timeout

	t.Run("before connecting", func(t *testing.T) {
		ts := start(t, cfg)
		c := eioHandshake(t, ts)
		began := time.Now()
		require.Equal(t, []string{"2"}, c.get(t))
		require.GreaterOrEqual(t, time.Since(began), 80*time.Millisecond)
		c.post(t, "3")
		require.Equal(t, []string{"2"}, c.get(t), "the next ping, pingInterval after the pong")
		c.post(t, "3")
	})
	t.Run("parked in the hub", func(t *testing.T) {
		ts := start(t, cfg)
		c, first := sioConnect(t, ts)
		require.Equal(t, []string{`42["online",1]`}, first)
		for range 3 { // longer than the ping timeout in all, so the pongs are what keep it
			require.Equal(t, []string{"2"}, c.get(t))
			c.post(t, "3")
		}
		require.False(t, c.gone())
	})
	t.Run("no pong closes", func(t *testing.T) {
		ts := start(t, cfg)
		c, first := sioConnect(t, ts)
		require.Equal(t, []string{`42["online",1]`}, first)
		require.Equal(t, []string{"2"}, c.get(t))
		began := time.Now()
		require.Equal(t, []string{"1"}, c.get(t), "the parked GET hears close")
		require.GreaterOrEqual(t, time.Since(began), 200*time.Millisecond)
		require.True(t, c.gone())
	})
}

// TestEIOCloseFromTheClient: a close packet ends the session; the parked GET hears a
// noop, and the others hear the new count.
func TestEIOCloseFromTheClient(t *testing.T) {
	ts := start(t, testConfig())
	ann := ts.connect(t)
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, ann, 0)))
	c, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",2]`}, first)
	require.Equal(t, []wireMessage{online(2)}, withoutSeq(ts.poll(t, ann, 1)))
	parked := c.getAsync(context.Background())
	require.Eventually(t, func() bool { return ts.parked() == 1 }, time.Second, 5*time.Millisecond)
	c.post(t, "1")
	require.Equal(t, "6", string(within(t, parked, time.Second).body))
	require.True(t, c.gone())
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, ann, 2)))
}

// TestSocketIODisconnectLeavesTheHubButNotTheSession: 41 leaves the room; the Engine.IO
// session stays and can connect again.
func TestSocketIODisconnectLeavesTheHubButNotTheSession(t *testing.T) {
	ts := start(t, testConfig())
	ann := ts.connect(t)
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, ann, 0)))
	c, _ := sioConnect(t, ts)
	require.Equal(t, []wireMessage{online(2)}, withoutSeq(ts.poll(t, ann, 1)))
	c.post(t, "41")
	require.Equal(t, []wireMessage{online(1)}, withoutSeq(ts.poll(t, ann, 2)))
	require.False(t, c.gone())
	c.post(t, "40")
	pkts := c.get(t)
	require.Regexp(t, `^40\{"sid":`, pkts[0])
	require.Equal(t, []string{`42["online",2]`}, pkts[1:], "a fresh mailbox, from seq 1")
}

// TestSocketIODisconnectWithAGetParkedKeepsTheSession: a 41 while the GET is parked
// in the hub leaves the hub, and the GET must not take the hub's 410 for the socket
// that left on purpose as a reason to close the whole session.
func TestSocketIODisconnectWithAGetParkedKeepsTheSession(t *testing.T) {
	ts := start(t, testConfig())
	c, _ := sioConnect(t, ts)
	get := c.getAsync(context.Background())
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	c.post(t, "41")
	c.post(t, "40")
	r := within(t, get, 2*time.Second)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	pkts := strings.Split(string(r.body), "\x1e")
	require.Regexp(t, `^40\{"sid":`, pkts[0])
	require.NotContains(t, pkts, "1", "the session must not be closed")
	require.False(t, c.gone())
}

func TestSocketIOConnectWhenFullIs44(t *testing.T) {
	cfg := testConfig()
	cfg.maxClients = 2
	ts := start(t, cfg)
	ts.connect(t)
	ts.connect(t)
	c := eioHandshake(t, ts)
	c.post(t, "40")
	require.Equal(t, []string{`44{"message":"server full: too many clients connected"}`}, c.get(t))
	eioHandshake(t, ts)
	r, err := ts.request(context.Background(), "GET", eioPath, "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "sessions are bounded like clients")
	require.Equal(t, "2", r.header.Get("Retry-After"))
}

// TestEIODroppedGetClosesTheSession: a socket.io client never resumes a session whose
// GET failed, so the server closes it at once and the count drops.
func TestEIODroppedGetClosesTheSession(t *testing.T) {
	ts := start(t, testConfig())
	c, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",1]`}, first)
	ctx, cancel := context.WithCancel(context.Background())
	parked := c.getAsync(ctx)
	require.Eventually(t, func() bool { return ts.parked() == 1 }, time.Second, 5*time.Millisecond)
	cancel()
	<-parked
	require.Eventually(t, c.gone, time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return hubClients(ts) == 0 }, time.Second, 5*time.Millisecond)
}

// TestEIOShutdownAnswersParkedGets: stopping the hub answers a parked GET at once.
func TestEIOShutdownAnswersParkedGets(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	h := newHub(cfg)
	go h.run()
	srv := httptest.NewServer(routes(h, testMaxMessage, nil))
	defer srv.Close()
	ts := &testServer{srv.URL, srv.Client(), h}
	connected, first := sioConnect(t, ts)
	require.Equal(t, []string{`42["online",1]`}, first)
	waiting := eioHandshake(t, ts) // not in the hub: it waits on the face alone
	a, b := connected.getAsync(context.Background()), waiting.getAsync(context.Background())
	require.Eventually(t, func() bool { return ts.parked() == 1 }, time.Second, 5*time.Millisecond)
	h.stopHub()
	for _, r := range []reply{within(t, a, time.Second), within(t, b, time.Second)} {
		require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
		require.Equal(t, "2", r.header.Get("Retry-After"))
	}
}

// TestSocketIOAndJSONClientsSeeOneOrder: a socket.io client and a JSON client emit
// concurrently; each sees every chat once, in the same order.
func TestSocketIOAndJSONClientsSeeOneOrder(t *testing.T) {
	const each = 40
	cfg := testConfig()
	cfg.mailbox = 1000
	ts := start(t, cfg)
	ann := ts.connect(t)
	bob, _ := sioConnect(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	annSaw, bobSaw := make(chan seen, 1), make(chan seen, 1)
	go func() { annSaw <- ts.readChats(ctx, ann, 2*each) }() // Ann polls as client.js does
	event := regexp.MustCompile(`^42\["chat",(.*)\]$`)
	go func() { // Bob polls as socket.io-client does, answering pings
		var s seen
		for len(s.chats) < 2*each && s.err == nil {
			var r reply
			r, s.err = bob.getRaw(ctx)
			if s.err == nil && r.status != http.StatusOK {
				s.err = fmt.Errorf("GET: status %d %s", r.status, r.body)
			}
			for p := range strings.SplitSeq(string(r.body), "\x1e") {
				if p == "2" {
					bob.postRaw("3")
				}
				if m := event.FindStringSubmatch(p); m != nil {
					s.chats = append(s.chats, m[1])
				}
			}
		}
		bobSaw <- s
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	wg.Go(func() {
		for n := range each {
			r, err := ts.emitRaw(ann, "chat", fmt.Sprintf("ann-%03d", n))
			if err == nil && r.status != http.StatusNoContent {
				err = fmt.Errorf("emit: %d", r.status)
			}
			errs <- err
		}
	})
	wg.Go(func() {
		for n := range each {
			r, err := bob.postRaw(fmt.Sprintf(`42%d["chat","bob-%03d"]`, n, n))
			if err == nil && r.status != http.StatusOK {
				err = fmt.Errorf("POST: %d %s", r.status, r.body)
			}
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	a, b := <-annSaw, <-bobSaw
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	require.Len(t, a.chats, 2*each)
	require.Equal(t, a.chats, b.chats, "one hub, one order, on both wires")
}

// TestEIOStalledBodyIs408AndCloses: a POST whose body stops arriving is cut by the
// server's ReadTimeout; the packets it carried are lost, so the session is closed.
func TestEIOStalledBodyIs408AndCloses(t *testing.T) {
	// The read and write timeouts are equal, as in the real server (10 s each):
	// the 408 must get a write deadline of its own, from when it starts.
	ts, _ := startTimed(t, 200*time.Millisecond)
	c, _ := sioConnect(t, ts)

	body, feed := io.Pipe()
	defer feed.Close()
	go feed.Write([]byte(`42["chat",`)) // and then nothing
	req, err := http.NewRequest("POST", ts.URL+c.url(), body)
	require.NoError(t, err)
	resp, err := ts.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	require.True(t, c.gone())
}
