package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scripted is a server that answers the n-th request with script[n] and parks
// every poll after the script, recording when each request arrived.
type scripted struct {
	script []func(w http.ResponseWriter)
	mu     sync.Mutex
	log    []seen
}

// seen is one request as the scripted server saw it.
type seen struct {
	at     time.Time
	target string // method and request URI
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.log)
	s.log = append(s.log, seen{time.Now(), r.Method + " " + r.URL.RequestURI()})
	s.mu.Unlock()
	switch {
	case n < len(s.script):
		s.script[n](w)
	case r.URL.Path == "/poll":
		<-r.Context().Done() // parked until the client goes
	default:
		w.WriteHeader(http.StatusNoContent) // the goodbye at the end of the run
	}
}

func (s *scripted) seen() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.log...)
}

func reply200(body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { answer(w, http.StatusOK, []byte(body)) }
}

func replyStatus(status int) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { answer(w, status, []byte(`{"error":"scripted"}`)) }
}

// TestClientBacksOffAsThePageDoes: one virtual client through a run of
// failures. A connect does not reset the failure count, a well-formed answer
// does, and each wait falls in the range the rules give it.
func TestClientBacksOffAsThePageDoes(t *testing.T) {
	idA, idB, idC := strings.Repeat("a", 32), strings.Repeat("b", 32), strings.Repeat("c", 32)
	s := &scripted{script: []func(http.ResponseWriter){
		reply200(`{"id":"` + idA + `","pollTimeoutMs":25000}`),
		reply200(`{"messages":null}`),    // not the shape: failure 1, wait [250, 500) ms
		replyStatus(http.StatusGone),     // failure 2: wait [500, 1000) ms, then connect
		reply200(`{"id":"` + idB + `"}`), // connected, failures still 2
		reply200(`{"messages":[]}`),      // well-formed: failures back to 0
		replyStatus(http.StatusGone),     // failure 1: connect within [0, 1000) ms
		reply200(`{"id":"` + idC + `"}`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	base, err := loopbackBase(srv.URL)
	require.NoError(t, err)
	r := newRun(config{mode: "hold", concurrency: 1, sources: 1}, base, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer r.stop(cancel)
	r.startAll(ctx)
	require.Eventually(t, func() bool { return len(s.seen()) >= 8 }, 10*time.Second, 10*time.Millisecond)

	got := s.seen()
	want := []string{
		"POST /connect",
		"GET /poll?id=" + idA + "&after=0",
		"GET /poll?id=" + idA + "&after=0",
		"POST /connect",
		"GET /poll?id=" + idB + "&after=0",
		"GET /poll?id=" + idB + "&after=0",
		"POST /connect",
		"GET /poll?id=" + idC + "&after=0",
	}
	for i, w := range want {
		require.Equal(t, w, got[i].target, "request %d", i)
	}
	const slack = 250 * time.Millisecond // the request itself, on a busy machine
	for _, tt := range []struct {
		name   string
		from   int // the wait is between request from and from+1
		lo, hi time.Duration
	}{
		{"after a 200 of the wrong shape", 1, 250 * time.Millisecond, 500 * time.Millisecond},
		{"after a 410 that is the second failure", 2, 500 * time.Millisecond, time.Second},
		{"after the new id", 3, 0, 0},
		{"after a well-formed answer", 4, 0, 0},
		{"after a 410 that is the first failure", 5, 0, time.Second},
	} {
		gap := got[tt.from+1].at.Sub(got[tt.from].at)
		require.GreaterOrEqual(t, gap, tt.lo, tt.name)
		require.Less(t, gap, tt.hi+slack, tt.name)
	}
	require.Equal(t, int64(8), r.clients[0].requests.Load())
	require.Equal(t, int64(1), r.clients[0].answers.Load(), "one well-formed answer")
	require.Equal(t, int64(2), r.reconnects.Load())
}
