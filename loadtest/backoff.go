package main

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The back-off rules every virtual client follows, the same as the page's
// static/backoff.js (testdata/backoff-cases.json holds both to them): after each failure the client waits before it tries again, longer
// the more failures in a row, with jitter, so a restarted server is not met by
// every client in the same millisecond. A well-formed poll answer resets the count.

// outcome is what one request ended in, as far as the back-off cares.
type outcome int

const (
	answered  outcome = iota // a well-formed 200 poll answer: failures reset, poll again at once
	connected                // a new id: poll at once, failures not reset until a poll answers
	failed                   // network error, hung poll aborted, 5xx, a 200 of the wrong shape, failed connect
	busy                     // 503: wait what Retry-After says
	lost                     // 410 or 400 on a poll: drop the id and connect again
	proxyCut                 // 502 or 504 on a poll open at least a second: poll again at once, quietly
)

// Back-off bounds, as static/backoff.js has them.
const (
	firstBackoff   = 500 * time.Millisecond // backoff(1)
	maxBackoff     = 10 * time.Second       // backoff(n) never exceeds it
	reconnectDelay = time.Second            // a first loss reconnects within this, spread evenly
	proxyParked    = time.Second            // a 502/504 after this long cut a parked poll
	hungMargin     = 10 * time.Second       // a poll unanswered pollTimeout + this is aborted
)

// backoff is the nominal wait after n failures in a row: 500 ms doubling up to 10 s.
func backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 6 { // 500 ms << 5 is already past the cap; stop before the shift overflows
		return maxBackoff
	}
	return min(maxBackoff, firstBackoff<<(n-1))
}

// wait is how long to wait after outcome o, with failures already counting it.
// rnd is uniform in [0, 1); each wait is uniform over its range:
//
//	failed                      [backoff(n)/2, backoff(n))   "equal jitter"
//	busy, Retry-After: R        [R, 2R) seconds (no usable header: as failed)
//	lost, the first failure     [0, 1 s) before the new connect
//	lost, later failures        as failed
//	answered, connected, proxyCut   0
func wait(o outcome, failures int, retryAfter string, rnd float64) time.Duration {
	spread := func(lo, width time.Duration) time.Duration {
		return lo + time.Duration(rnd*float64(width))
	}
	switch o {
	case answered, connected, proxyCut:
		return 0
	case busy:
		if r, ok := readRetryAfter(retryAfter); ok {
			d := time.Duration(r) * time.Second
			return spread(d, d)
		}
	case lost:
		if failures == 1 {
			return spread(0, reconnectDelay)
		}
	}
	b := backoff(failures)
	return spread(b/2, b-b/2)
}

// readRetryAfter reads a Retry-After in seconds: digits only, as
// client.js reads it (no sign); the HTTP-date form counts as missing.
func readRetryAfter(h string) (int, bool) {
	h = strings.TrimSpace(h)
	if h == "" || strings.TrimLeft(h, "0123456789") != "" {
		return 0, false
	}
	r, err := strconv.Atoi(h)
	return r, err == nil
}

// pollOutcome classifies a poll's answer: its error, status, whether a 200's
// body had the contract's shape, and how long the poll was open.
func pollOutcome(err error, status int, wellFormed bool, open time.Duration) outcome {
	switch {
	case err != nil:
		return failed
	case status == http.StatusOK && wellFormed:
		return answered
	case status == http.StatusServiceUnavailable:
		return busy
	case status == http.StatusGone || status == http.StatusBadRequest:
		return lost
	case (status == http.StatusBadGateway || status == http.StatusGatewayTimeout) && open >= proxyParked:
		return proxyCut
	}
	return failed // a 200 of the wrong shape, any other 5xx or unexpected status
}

// connectOutcome classifies a POST /connect's answer: only a 200 with an id is
// a success; a 503 or a 429 (this address holds its share) waits what Retry-After says, anything else backs off.
func connectOutcome(err error, status int, hasID bool) outcome {
	switch {
	case err != nil:
		return failed
	case status == http.StatusOK && hasID:
		return connected
	case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests:
		return busy
	}
	return failed
}
