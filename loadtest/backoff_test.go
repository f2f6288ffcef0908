package main

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackoffDoublesUpToTenSeconds: backoff(n) = min(10 s, 500 ms * 2^(n-1)).
func TestBackoffDoublesUpToTenSeconds(t *testing.T) {
	for _, tt := range []struct {
		give int
		want time.Duration
	}{
		{0, 500 * time.Millisecond}, // not a failure count, but never below the first step
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{3, 2 * time.Second},
		{4, 4 * time.Second},
		{5, 8 * time.Second},
		{6, 10 * time.Second},
		{7, 10 * time.Second},
		{100, 10 * time.Second},
	} {
		require.Equal(t, tt.want, backoff(tt.give), "backoff(%d)", tt.give)
	}
}

// TestWaitBounds: each wait covers exactly its range, low end included at
// rnd = 0, high end approached but never reached as rnd nears 1.
func TestWaitBounds(t *testing.T) {
	below1 := math.Nextafter(1, 0)
	for _, tt := range []struct {
		name       string
		o          outcome
		failures   int
		retryAfter string
		lo, hi     time.Duration // the wait is in [lo, hi)
	}{
		{"network error, first", failed, 1, "", 250 * time.Millisecond, 500 * time.Millisecond},
		{"network error, second", failed, 2, "", 500 * time.Millisecond, time.Second},
		{"network error, fifth", failed, 5, "", 4 * time.Second, 8 * time.Second},
		{"network error, capped", failed, 9, "", 5 * time.Second, 10 * time.Second},
		{"503 Retry-After 2", busy, 1, "2", 2 * time.Second, 4 * time.Second},
		{"503 Retry-After 2, later failure", busy, 4, " 2 ", 2 * time.Second, 4 * time.Second},
		{"503 Retry-After 0", busy, 3, "0", 0, 0},
		{"503 without Retry-After", busy, 3, "", time.Second, 2 * time.Second},
		{"503 with a date", busy, 1, "Wed, 21 Oct 2015 07:28:00 GMT", 250 * time.Millisecond, 500 * time.Millisecond},
		{"503 negative", busy, 2, "-1", 500 * time.Millisecond, time.Second},
		{"410 as the first failure", lost, 1, "", 0, time.Second},
		{"410 after a 503", lost, 2, "", 500 * time.Millisecond, time.Second},
		{"410 after three failures", lost, 4, "", 2 * time.Second, 4 * time.Second},
		{"answered", answered, 0, "", 0, 0},
		{"connected", connected, 3, "", 0, 0},
		{"proxy cut a parked poll", proxyCut, 2, "", 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.lo, wait(tt.o, tt.failures, tt.retryAfter, 0), "low end")
			high := wait(tt.o, tt.failures, tt.retryAfter, below1)
			if tt.hi == tt.lo {
				require.Equal(t, tt.lo, high, "no range")
				return
			}
			require.Less(t, high, tt.hi, "high end is excluded")
			require.Greater(t, high, tt.hi-time.Millisecond, "high end is approached")
			mid := wait(tt.o, tt.failures, tt.retryAfter, 0.5)
			require.Equal(t, tt.lo+(tt.hi-tt.lo)/2, mid, "uniform: the middle maps to the middle")
		})
	}
}

// TestPollOutcome: every answer a poll can get, sorted the way the rules say.
func TestPollOutcome(t *testing.T) {
	netErr := errors.New("connection refused")
	for _, tt := range []struct {
		name       string
		err        error
		status     int
		wellFormed bool
		open       time.Duration
		want       outcome
	}{
		{"well-formed answer", nil, http.StatusOK, true, 0, answered},
		{"200 of the wrong shape", nil, http.StatusOK, false, 0, failed},
		{"network error", netErr, 0, false, 0, failed},
		{"503", nil, http.StatusServiceUnavailable, false, 0, busy},
		{"410", nil, http.StatusGone, false, 0, lost},
		{"400", nil, http.StatusBadRequest, false, 0, lost},
		{"500", nil, http.StatusInternalServerError, false, 0, failed},
		{"502 on a parked poll", nil, http.StatusBadGateway, false, time.Second, proxyCut},
		{"504 on a parked poll", nil, http.StatusGatewayTimeout, false, 30 * time.Second, proxyCut},
		{"fast 502", nil, http.StatusBadGateway, false, 999 * time.Millisecond, failed},
		{"fast 504", nil, http.StatusGatewayTimeout, false, 0, failed},
		{"unexpected 404", nil, http.StatusNotFound, false, 0, failed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, pollOutcome(tt.err, tt.status, tt.wellFormed, tt.open))
		})
	}
}

// TestConnectOutcome: only a 200 with an id connects.
func TestConnectOutcome(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		status int
		hasID  bool
		want   outcome
	}{
		{"id", nil, http.StatusOK, true, connected},
		{"200 without an id", nil, http.StatusOK, false, failed},
		{"full or shutting down", nil, http.StatusServiceUnavailable, false, busy},
		{"500", nil, http.StatusInternalServerError, false, failed},
		{"refused", errors.New("connection refused"), 0, false, failed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, connectOutcome(tt.err, tt.status, tt.hasID))
		})
	}
}

// backoffCases is testdata/backoff-cases.json: the back-off rules as cases
// that static/test/backoff.test.js checks against client.js's rules too.
type backoffCases struct {
	Backoff []struct {
		Failures int
		Ms       float64
	}
	Waits []struct {
		Name       string
		Exit       string
		Failures   int
		RetryAfter *string
		At         [][2]float64 // [random, wait in ms]
	}
	Exits []struct {
		Name       string
		Error      *string
		Status     int
		WellFormed bool
		ParkedMs   int64
		Exit       string
	}
	Connects []struct {
		Name   string
		Error  *string
		Status int
		HasID  bool `json:"hasId"`
		Exit   string
	}
}

// outcomes maps client.js's exit names to ours: every failure is failed.
var outcomes = map[string]outcome{
	"answer": answered, "cut": proxyCut, "gone": lost, "busy": busy,
	"network": failed, "hung": failed, "http": failed, "malformed": failed, "connect failed": failed,
	"connected": connected,
}

func readBackoffCases(t *testing.T) backoffCases {
	t.Helper()
	raw, err := os.ReadFile("../testdata/backoff-cases.json")
	require.NoError(t, err)
	var c backoffCases
	require.NoError(t, json.Unmarshal(raw, &c))
	require.NotEmpty(t, c.Backoff)
	require.NotEmpty(t, c.Waits)
	require.NotEmpty(t, c.Exits)
	require.NotEmpty(t, c.Connects)
	return c
}

// TestSharedBackoffCases: the page's cases hold for backoff, wait and pollOutcome.
func TestSharedBackoffCases(t *testing.T) {
	c := readBackoffCases(t)
	for _, tt := range c.Backoff {
		require.Equal(t, time.Duration(tt.Ms*float64(time.Millisecond)), backoff(tt.Failures), "backoff(%d)", tt.Failures)
	}
	for _, tt := range c.Waits {
		o, ok := outcomes[tt.Exit]
		require.True(t, ok, "%s: unknown exit %q", tt.Name, tt.Exit)
		retryAfter := ""
		if tt.RetryAfter != nil {
			retryAfter = *tt.RetryAfter
		}
		for _, at := range tt.At {
			want := time.Duration(at[1] * float64(time.Millisecond))
			require.Equal(t, want, wait(o, tt.Failures, retryAfter, at[0]), "%s, random %v", tt.Name, at[0])
		}
	}
	for _, tt := range c.Exits {
		var err error
		if tt.Error != nil {
			err = errors.New(*tt.Error)
		}
		open := time.Duration(tt.ParkedMs) * time.Millisecond
		require.Equal(t, outcomes[tt.Exit], pollOutcome(err, tt.Status, tt.WellFormed, open), tt.Name)
	}
	for _, tt := range c.Connects {
		var err error
		if tt.Error != nil {
			err = errors.New(*tt.Error)
		}
		o, ok := outcomes[tt.Exit]
		require.True(t, ok, "%s: unknown exit %q", tt.Name, tt.Exit)
		require.Equal(t, o, connectOutcome(err, tt.Status, tt.HasID), tt.Name)
	}
}
