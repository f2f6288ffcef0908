// faults_test.go checks the guarantees against what real clients do to a server: a
// crowd that arrives at once, readers too slow for their backlog, bodies that stop
// arriving, cursors that run ahead, and a shutdown with all of that still connected.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestACrowdArrivingWakesEachPollAFewTimes connects clients that poll at once, as the
// page does, arriving over about a second as a crowd of browsers does. Presence goes
// out once the crowd settles, or every few ticks while it keeps coming, so each poll
// is woken by a count a few times at most: a crowd of N costs about N answers, not N
// squared.
func TestACrowdArrivingWakesEachPollAFewTimes(t *testing.T) {
	const clients = 200
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	cfg.presenceEvery = 500 * time.Millisecond
	cfg.maxClients = clients
	ts := start(t, cfg)
	ts.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer ts.client.Transport.(*http.Transport).CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answers := make([]int, clients)
	errs := make(chan error, clients)
	began := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond) // one arrival every 5 ms
			id, err := soakConnect(ts)
			if err != nil {
				errs <- err
				return
			}
			for after := uint64(0); ctx.Err() == nil; {
				status, msgs, err := ts.pollRaw(ctx, id, after)
				if ctx.Err() != nil {
					return
				}
				if err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("poll: %d %v", status, err)
					return
				}
				answers[i]++
				after += uint64(len(msgs))
			}
		})
	}
	require.Eventually(t, func() bool { return ts.parked() == clients }, 20*time.Second, 5*time.Millisecond)
	ramp := time.Since(began)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// One answer for the client's own count at connect, then while the crowd keeps
	// arriving at most one count per maxPostpone+1 ticks, and one once it settled.
	most := 0
	for _, n := range answers {
		most = max(most, n)
	}
	require.LessOrEqual(t, most, 2+int(ramp/(cfg.presenceEvery*(maxPostpone+1))), "ramp took %s", ramp)
}

// TestAnswersAreBoundedInBytes: an answer carries whole messages up to -max-batch
// bytes, at least one, and the rest comes with the next polls, in order, each once.
func TestAnswersAreBoundedInBytes(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		sizes    []int // data bytes of each message after the online count
		want     [][]uint64
	}{
		{"everything fits", 1 << 20, []int{100, 100, 100}, [][]uint64{{1, 2, 3, 4}}},
		// The count takes 57 bytes with its wrapping, each chat of 100 characters 156.
		{"two per answer", 320, []int{100, 100, 100, 100}, [][]uint64{{1, 2}, {3, 4}, {5}}},
		{"one too big still goes alone", 300, []int{900, 10}, [][]uint64{{1}, {2}, {3}}},
		{"budget of one byte", 1, []int{5, 5}, [][]uint64{{1}, {2}, {3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.maxBatch = tt.maxBatch
			cfg.pollTimeout = 50 * time.Millisecond
			ts := start(t, cfg)
			id := ts.connect(t)
			for _, n := range tt.sizes {
				ts.emit(t, id, "chat", strings.Repeat("x", n))
			}
			var got [][]uint64
			for after := uint64(0); ; {
				msgs := ts.poll(t, id, after)
				if len(msgs) == 0 {
					break
				}
				got = append(got, seqs(msgs))
				after = msgs[len(msgs)-1].Seq
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// TestAnAnswerCopiesNoMessageBytes: a poll answer is written from the bytes the
// mailboxes share, so writing a 1 MiB backlog allocates far less than 1 MiB.
func TestAnAnswerCopiesNoMessageBytes(t *testing.T) {
	cfg := testConfig()
	cfg.mailbox = 200
	cfg.maxBatch = 2 << 20
	ts := start(t, cfg)
	id := ts.connect(t)
	ts.poll(t, id, 0)
	const each, count = 8 << 10, 128 // 1 MiB waiting
	msg := &message{body: encode("chat", json.RawMessage(`"`+strings.Repeat("x", each)+`"`))}
	for range count {
		require.NoError(t, ts.hub.emit(id, msg))
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := ts.client.Get(fmt.Sprintf("%s/poll?id=%s&after=1", ts.URL, id))
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, resp.Body) // the client side allocates one 32 KiB buffer
	resp.Body.Close()
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	require.Greater(t, n, int64(count*each))
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(256<<10), "bytes allocated to answer %d bytes", n)
}

// TestASlowReaderGetsABigBacklogInSeveralAnswers: a reader slower than one big answer
// allows still gets everything, in answers small enough to write within the write
// timeout, which starts when each answer starts, not when the poll parked.
func TestASlowReaderGetsABigBacklogInSeveralAnswers(t *testing.T) {
	cfg := testConfig()
	cfg.mailbox = 100
	cfg.maxBatch = 16 << 10
	cfg.writeTimeout = 1500 * time.Millisecond
	cfg.pollTimeout = 5 * time.Second
	h := newHub(cfg)
	go h.run()
	srv := httptest.NewUnstartedServer(routes(h, testMaxMessage, nil))
	// Small socket buffers, so that the server's writes wait for the reader, as they
	// do for a slow phone once the kernel's buffers are full.
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { h.stopHub(); srv.Close() })

	ts := &testServer{srv.URL, srv.Client(), h}
	id := ts.connect(t)
	ts.poll(t, id, 0)
	// The poll parks for longer than the write timeout before its backlog arrives.
	type answer struct {
		msgs []wireMessage
		err  error
	}
	parked := make(chan answer, 1)
	go func() {
		msgs, err := slowPoll(srv.Listener.Addr().String(), id, 1)
		parked <- answer{msgs, err}
	}()
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)
	time.Sleep(cfg.writeTimeout) // parked longer than an answer may take to write
	const count = 60             // 60 x 4 KiB: about 3 s at the reader's speed
	for i := range count {       // straight to the hub: each is over the test's -max-message
		data := fmt.Sprintf(`"%04d%s"`, i, strings.Repeat("x", 4<<10))
		require.NoError(t, h.emit(id, &message{body: encode("chat", json.RawMessage(data))}))
	}
	// The parked poll's answer, and then the rest in later answers, all read just as
	// slowly; nothing lost, nothing cut.
	var got []int
	after := uint64(1)
	for len(got) < count {
		var msgs []wireMessage
		if after == 1 {
			first := <-parked
			require.NoError(t, first.err, "the parked poll's answer arrived whole")
			msgs = first.msgs
		} else {
			var err error
			msgs, err = slowPoll(srv.Listener.Addr().String(), id, after)
			require.NoError(t, err)
		}
		require.NotEmpty(t, msgs)
		require.Less(t, len(msgs), count, "a bounded answer, not the whole backlog")
		for _, m := range msgs {
			require.Equal(t, after+1, m.Seq)
			after = m.Seq
			var text string
			require.NoError(t, json.Unmarshal(m.Data, &text))
			var n int
			fmt.Sscanf(text[:4], "%d", &n)
			got = append(got, n)
		}
	}
	for i := range got {
		require.Equal(t, i, got[i])
	}
}

// smallBuffers gives every accepted connection a 4 KiB send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(4 << 10)
	}
	return c, err
}

// slowPoll polls on a connection of its own with a 4 KiB receive buffer and reads
// the answer at about 200 KB/s (2 KiB every 10 ms): 16 KiB takes some 80 ms.
func slowPoll(addr, id string, after uint64) ([]wireMessage, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /poll?id=%s&after=%d HTTP/1.1\r\nHost: x\r\n\r\n", id, after)
	resp, err := http.ReadResponse(bufio.NewReaderSize(slowReader{conn}, 2048), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct{ Messages []wireMessage }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return body.Messages, nil
}

// slowReader reads at most 2 KiB at a time, 10 ms apart.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 2048)])
}

// TestABodyThatStopsArrivingIs408: the server's read timeout cuts an emit whose body
// stops halfway, and the client hears a timeout, not "malformed JSON".
func TestABodyThatStopsArrivingIs408(t *testing.T) {
	// The read and write timeouts are equal, as in the real server (10 s each):
	// the 408 must get a write deadline of its own, from when it starts.
	ts, addr := startTimed(t, 200*time.Millisecond)
	id := ts.connect(t)

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	body := `{"event":"chat","data":"half`
	fmt.Fprintf(conn, "POST /emit?id=%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		id, len(body)+10, body)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	requireError(t, reply{resp.StatusCode, resp.Header, b}, http.StatusRequestTimeout, "stopped arriving")
}

// TestShutdownEndsWellWhateverIsConnected stops a server that has a connection that
// never sent a request, one halfway through a body, and parked polls. It must return
// cleanly within about a second, and the polls must hear "come back later" (503 with
// Retry-After), as must a poll that arrives during the shutdown.
func TestShutdownEndsWellWhateverIsConnected(t *testing.T) {
	cfg := testConfig()
	cfg.pollTimeout = time.Minute
	cfg.presenceEvery = time.Hour
	ts, addr, stop, served := serveOn(t, cfg)
	h := ts.hub
	id := ts.connect(t)
	ts.poll(t, id, 0)

	silent, err := net.Dial("tcp", addr) // connects, never asks
	require.NoError(t, err)
	defer silent.Close()
	half, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer half.Close()
	fmt.Fprintf(half, "POST /emit?id=%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ev", id)

	type answer struct {
		status     int
		retryAfter string
		err        error
	}
	parked := make(chan answer, 1)
	go func() {
		resp, err := ts.client.Get(fmt.Sprintf("%s/poll?id=%s&after=1", ts.URL, id))
		if err != nil {
			parked <- answer{err: err}
			return
		}
		resp.Body.Close()
		parked <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), nil}
	}()
	require.Eventually(t, func() bool { return ts.parked() == 1 }, 2*time.Second, 5*time.Millisecond)

	began := time.Now()
	stop()
	got := <-parked
	require.NoError(t, got.err)
	require.Equal(t, http.StatusServiceUnavailable, got.status)
	require.Equal(t, "2", got.retryAfter)
	require.NoError(t, <-served)
	require.Less(t, time.Since(began), underRace(1500*time.Millisecond, 3*time.Second))

	// A poll that reaches the stopped hub (here, directly) hears the same.
	rec := httptest.NewRecorder()
	routes(h, testMaxMessage, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/poll?after=1&id="+id, nil))
	requireError(t, reply{rec.Code, rec.Header(), rec.Body.Bytes()}, http.StatusServiceUnavailable, "shutting down")
	require.Equal(t, "2", rec.Header().Get("Retry-After"))
}

// TestASenderEvictedByItsOwnEmitHearsSoFromItsPoll: an emit that overflows the
// sender's own mailbox is still in everybody else's, so it answers 204 (a 410 would make
// the page send it again, and the others would get it twice); the sender's next poll
// answers 410 evicted.
func TestASenderEvictedByItsOwnEmitHearsSoFromItsPoll(t *testing.T) {
	cfg := testConfig()
	cfg.mailbox = 3
	cfg.presenceEvery = time.Hour // no count may fill a mailbox but the test's
	ts := start(t, cfg)
	id := ts.connect(t)
	other := ts.connect(t)
	ts.poll(t, id, 0)    // seq 1 handed out, not yet acknowledged
	ts.poll(t, other, 0) // the other keeps up: its count, seq 1
	for i := range 2 {
		ts.emit(t, id, "chat", i) // seqs 2 and 3: the sender's mailbox holds 3
		ts.poll(t, other, uint64(i+1))
	}
	r, err := ts.emitRaw(id, "chat", "one too many")
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, r.status, "the message is in every connected mailbox")
	got := ts.poll(t, other, 3)
	require.Len(t, got, 1, "the other gets it once")
	require.JSONEq(t, `"one too many"`, string(got[0].Data))
	r, err = ts.request(context.Background(), "GET", "/poll?after=1&id="+id, "", "")
	require.NoError(t, err)
	requireError(t, r, http.StatusGone, "evicted: more than 3 unacknowledged messages")
}

// pageRule reads one of the page's rules (static/backoff.js, `rules`), in milliseconds,
// so that the server's defaults are checked against the page as it is.
func pageRule(t *testing.T, name string) time.Duration {
	t.Helper()
	src, err := fs.ReadFile(static, "static/backoff.js")
	require.NoError(t, err)
	m := regexp.MustCompile(`\b` + name + `:\s*(\d+)`).FindSubmatch(src)
	require.NotNil(t, m, "static/backoff.js no longer says %s", name)
	ms, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return time.Duration(ms) * time.Millisecond
}

// TestTheDefaultTTLOutlastsAHungPoll: with the default flags, a mailbox outlives the
// longest a page takes to give up on a poll whose answer never came and ask again, so
// changing one of those defaults without the other fails here.
func TestTheDefaultTTLOutlastsAHungPoll(t *testing.T) {
	require.Equal(t, pageRule(t, "hangGraceMs"), pageHangGrace, "main.go's copy of the page's hang grace")
	require.Equal(t, pageRule(t, "backoffMs"), pageFirstBackoff, "main.go's copy of the page's first back-off")
	def := defaultConfig()
	comeBack := def.pollTimeout + pageHangGrace + pageFirstBackoff
	require.GreaterOrEqual(t, def.clientTTL, comeBack+5*time.Second,
		"-client-ttl %s must outlast poll timeout + hang grace + first back-off (%s), with a margin", def.clientTTL, comeBack)
}

// swallow is a loopback TCP proxy to addr that passes requests on and swallows every
// answer, keeping both connections open and silent: a connection that died without
// an error.
func swallow(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				return
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go io.Copy(out, in)
			go io.Copy(io.Discard, out)
		}
	}()
	return ln.Addr().String()
}

// TestAnAnswerLostSilentlyCostsNothing plays the page's timing with the default
// durations shrunk 25 times: a poll's answer never arrives and nothing says so, the
// page gives up at poll timeout + hang grace, backs off as long as its first back-off
// can be, and polls again with its old cursor. It must get the same messages again,
// not a 410, however late in that window the expiry sweep runs.
func TestAnAnswerLostSilentlyCostsNothing(t *testing.T) {
	const scale = 25
	def := defaultConfig()
	cfg := testConfig()
	cfg.pollTimeout, cfg.clientTTL = def.pollTimeout/scale, def.clientTTL/scale
	hung := cfg.pollTimeout + pageHangGrace/scale // when the page aborts a poll with no answer
	backoff := pageFirstBackoff / scale           // the longest first back-off: the page draws from [half, all)
	ts := start(t, cfg)
	id := ts.connect(t) // seq 1: the online count
	ts.emit(t, id, "chat", "kept")
	lost := &testServer{"http://" + swallow(t, strings.TrimPrefix(ts.URL, "http://")), &http.Client{}, ts.hub}

	ctx, cancel := context.WithTimeout(context.Background(), hung)
	defer cancel()
	gaveUp := time.Now().Add(hung)
	_, _, err := lost.pollRaw(ctx, id, 0)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the answer must be lost, not refused")
	handed := make(chan uint64, 1)
	ts.hub.peek <- func(s *state) { handed <- s.clients[id].sent }
	require.Equal(t, uint64(2), <-handed, "the hub handed both messages to the lost poll")

	<-time.After(time.Until(gaveUp.Add(backoff))) // the page's back-off, as long as it can be
	swept := make(chan struct{})
	ts.hub.peek <- func(s *state) { s.expire(time.Now()); close(swept) } // the sweep at its latest
	<-swept
	status, msgs, err := ts.pollRaw(context.Background(), id, 0)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "the mailbox must outlast the page's way back")
	require.Len(t, msgs, 2)
	require.Equal(t, []uint64{1, 2}, []uint64{msgs[0].Seq, msgs[1].Seq})
	require.Equal(t, "chat", msgs[1].Event)
	require.JSONEq(t, `"kept"`, string(msgs[1].Data))
}

// TestABodyTooBigUpFrontIsRefusedAtOnce: an emit whose Content-Length is over
// -max-message gets its 413 at once, not after waiting for a body that never comes.
func TestABodyTooBigUpFrontIsRefusedAtOnce(t *testing.T) {
	ts := start(t, testConfig())
	id := ts.connect(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "POST /emit?id=%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n", id)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "answered within 3 s, with no body sent")
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}
