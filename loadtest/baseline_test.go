package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// floorClient talks to the floor server the way the load tool's clients do.
type floorClient struct {
	t    *testing.T
	base string
	id   string
}

func (c *floorClient) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp.StatusCode, string(b)
}

func connectFloor(t *testing.T, base string) *floorClient {
	c := &floorClient{t: t, base: base}
	status, body := c.do("POST", "/connect", "")
	require.Equal(t, http.StatusOK, status)
	var v struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	require.Len(t, v.ID, 32)
	c.id = v.ID
	return c
}

func (c *floorClient) poll(after string) (int, string) {
	return c.do("GET", "/poll?id="+c.id+"&after="+after, "")
}

func (c *floorClient) emit(event string) {
	status, _ := c.do("POST", "/emit?id="+c.id, `{"event":"`+event+`","data":1}`)
	require.Equal(c.t, http.StatusNoContent, status)
}

// TestFloorParksAndDelivers: a poll with nothing to read waits, the next emit
// wakes it, and every client counts seq from the moment it connected.
func TestFloorParksAndDelivers(t *testing.T) {
	srv := httptest.NewServer(baselineRoutes(time.Minute, nil))
	defer srv.Close()
	ada := connectFloor(t, srv.URL)

	// The parked poll runs on its own goroutine, which must not call require:
	// it hands its response to the test goroutine, which checks it.
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/poll?id=" + ada.id + "&after=0")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	require.Never(t, func() bool { return len(got) > 0 }, 100*time.Millisecond, 10*time.Millisecond, "a poll with nothing to read must park")
	ada.emit("first")
	require.Eventually(t, func() bool { return len(got) > 0 }, 5*time.Second, 5*time.Millisecond)
	first := <-got
	require.NoError(t, first.err)
	require.JSONEq(t, `{"messages":[{"seq":1,"event":"first","data":1}]}`, first.body)

	bob := connectFloor(t, srv.URL)
	ada.emit("second")
	status, body := bob.poll("0")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"messages":[{"seq":1,"event":"second","data":1}]}`, body)
	_, body = ada.poll("1")
	require.JSONEq(t, `{"messages":[{"seq":2,"event":"second","data":1}]}`, body)
}

// TestFloorPollTimesOut: with no news, a poll answers empty at its timeout.
func TestFloorPollTimesOut(t *testing.T) {
	srv := httptest.NewServer(baselineRoutes(20*time.Millisecond, nil))
	defer srv.Close()
	status, body := connectFloor(t, srv.URL).poll("0")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"messages":[]}`, body)
}

// TestFloorRejects: the floor is minimal, but bad input still gets a clear status.
func TestFloorRejects(t *testing.T) {
	srv := httptest.NewServer(baselineRoutes(time.Minute, nil))
	defer srv.Close()
	c := connectFloor(t, srv.URL)
	for _, tt := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown id", "GET", "/poll?id=nobody&after=0", "", http.StatusGone},
		{"after not a number", "GET", "/poll?id=" + c.id + "&after=x", "", http.StatusBadRequest},
		{"negative after", "GET", "/poll?id=" + c.id + "&after=-1", "", http.StatusBadRequest},
		{"emit not JSON", "POST", "/emit?id=" + c.id, "{", http.StatusBadRequest},
		{"emit without event", "POST", "/emit?id=" + c.id, `{"data":1}`, http.StatusBadRequest},
		{"disconnect", "POST", "/disconnect?id=" + c.id, "", http.StatusNoContent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _ := (&floorClient{t: t, base: srv.URL}).do(tt.method, tt.path, tt.body)
			require.Equal(t, tt.want, status)
		})
	}
}

// TestFloorConnectSaysPollTimeout: the connect answer tells the client how
// long a poll may park, so it can abort one that hangs well past that.
func TestFloorConnectSaysPollTimeout(t *testing.T) {
	srv := httptest.NewServer(baselineRoutes(1500*time.Millisecond, nil))
	defer srv.Close()
	status, body := (&floorClient{t: t, base: srv.URL}).do("POST", "/connect", "")
	require.Equal(t, http.StatusOK, status)
	var v struct {
		ID            string
		PollTimeoutMs int64
	}
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	require.Len(t, v.ID, 32)
	require.Equal(t, int64(1500), v.PollTimeoutMs)
}

// TestFloorShutdownAsksClientsToComeBackLater: on shutdown a parked poll is
// answered 503 with Retry-After at once, not after its timeout, and so is
// every request that still arrives.
func TestFloorShutdownAsksClientsToComeBackLater(t *testing.T) {
	closing := make(chan struct{})
	srv := httptest.NewServer(baselineRoutes(time.Minute, closing))
	defer srv.Close()
	ada := connectFloor(t, srv.URL)

	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/poll?id=" + ada.id + "&after=0")
		if err != nil {
			resp = nil
		}
		got <- resp // nil on an error: the test goroutine fails on it
	}()
	require.Never(t, func() bool { return len(got) > 0 }, 100*time.Millisecond, 10*time.Millisecond, "a poll with nothing to read must park")
	close(closing)
	var resp *http.Response
	require.Eventually(t, func() bool {
		select {
		case resp = <-got:
			return true
		default:
			return false
		}
	}, 5*time.Second, 5*time.Millisecond)
	require.NotNil(t, resp, "the parked poll failed instead of getting an answer")
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))

	for _, tt := range []struct{ name, method, path, body string }{
		{"connect", "POST", "/connect", ""},
		{"poll", "GET", "/poll?id=" + ada.id + "&after=0", ""},
		{"emit", "POST", "/emit?id=" + ada.id, `{"event":"e"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			require.Equal(t, "2", resp.Header.Get("Retry-After"))
		})
	}
}

// TestFloorShutdownIsPrompt: whatever is connected (a parked poll, an idle
// keep-alive connection, a request whose body stops arriving), shutting the
// floor down takes about its grace period at most.
func TestFloorShutdownIsPrompt(t *testing.T) {
	closing := make(chan struct{})
	srv := httptest.NewUnstartedServer(baselineRoutes(time.Minute, closing))
	srv.Start()
	defer srv.Close()
	ada := connectFloor(t, srv.URL) // leaves an idle keep-alive connection in the default client

	parked := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/poll?id=" + ada.id + "&after=0")
		if err == nil {
			resp.Body.Close()
		}
		parked <- err
	}()
	half, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer half.Close()
	_, err = half.Write([]byte("POST /emit?id=" + ada.id + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ev"))
	require.NoError(t, err)
	require.Never(t, func() bool { return len(parked) > 0 }, 100*time.Millisecond, 10*time.Millisecond, "the poll must park")

	start := time.Now()
	require.NoError(t, shutdownFloor(srv.Config, closing, 300*time.Millisecond))
	require.Less(t, time.Since(start), 2*time.Second)
	require.Eventually(t, func() bool { return len(parked) > 0 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, <-parked, "the parked poll got an answer, not a cut connection")
}
