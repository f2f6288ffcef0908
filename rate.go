// rate.go owns what one address may emit: a budget in bytes that refills at
// -emit-rate per second. Without it, a sender with a few ids could emit faster than
// any reader can poll, and every reader would overflow its mailbox and be evicted,
// though none stopped reading.

package main

import (
	"fmt"
	"math"
	"time"
)

// emitOverhead is what an emit costs beyond its bytes, so that tiny messages are
// bounded too: at the default rate, one address sends at most 64 a second, and a
// mailbox of 1,024 holds 16 s of it.
const emitOverhead = 1024

// budgetSeconds is how much unspent rate an address may save up: a burst.
const budgetSeconds = 4

// budget is one address's emit allowance in bytes; it may go below zero, so that a
// message bigger than a burst still goes, once the address has saved up for it.
type budget struct {
	bytes float64
	at    time.Time
}

// rateError refuses an emit until the address's budget is positive again (HTTP 429).
type rateError struct{ wait time.Duration }

func (e rateError) Error() string {
	return fmt.Sprintf("too many bytes emitted from your address (-emit-rate): wait %s", e.wait.Round(time.Millisecond))
}

// retryAfter is the wait in whole seconds, at least 1 (RFC 9110, section 10.2.3).
func (e rateError) retryAfter() string {
	return fmt.Sprint(max(1, int(math.Ceil(e.wait.Seconds()))))
}

// spend takes an emit of size bytes from addr's budget, or says how long to wait.
// A zero cfg.emitRate means no limit.
func (s *state) spend(addr string, size int, now time.Time) error {
	rate := float64(s.cfg.emitRate)
	if rate <= 0 {
		return nil
	}
	full := rate * budgetSeconds
	b, ok := s.budgets[addr]
	if !ok {
		b = &budget{bytes: full, at: now}
		s.budgets[addr] = b
	}
	b.bytes = min(full, b.bytes+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.bytes <= 0 {
		return rateError{time.Duration(-b.bytes / rate * float64(time.Second))}
	}
	b.bytes -= float64(size + emitOverhead)
	return nil
}

// forgetBudgets drops the budgets that have refilled: they hold nothing an
// address's next emit would not start with anyway.
func (s *state) forgetBudgets(now time.Time) {
	full := float64(s.cfg.emitRate) * budgetSeconds
	for addr, b := range s.budgets {
		if b.bytes+now.Sub(b.at).Seconds()*float64(s.cfg.emitRate) >= full {
			delete(s.budgets, addr)
		}
	}
}
