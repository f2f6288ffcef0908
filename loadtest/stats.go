package main

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets: values below 128 ns
// exactly, above that 64 buckets per power of two, so a percentile read from
// it is within about 1.6% of the true value. Many goroutines add to it at once.
type histogram struct {
	counts [64*58 + 128]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

// bucketOf maps a duration in nanoseconds to its bucket.
func bucketOf(ns int64) int {
	if ns < 128 {
		return int(max(ns, 0))
	}
	s := bits.Len64(uint64(ns)) - 7 // shift that leaves 7 significant bits
	return 64*s + int(uint64(ns)>>s)
}

// bucketMid is the middle of bucket b, the value a percentile reports.
func bucketMid(b int) int64 {
	if b < 128 {
		return int64(b)
	}
	s := b/64 - 1
	m := int64(b%64 + 64)
	return m<<s + (int64(1)<<s)/2
}

// add records one duration.
func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(int64(d))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// count is the number of durations recorded.
func (h *histogram) count() uint64 { return h.n.Load() }

// quantile returns the q-th quantile (0 < q <= 1), never above the exact max.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	want := uint64(q*float64(n) + 0.999999)
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= want {
			return time.Duration(min(bucketMid(b), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// summary is "p50=.. p99=.. max=.." in milliseconds, each key after prefix.
func (h *histogram) summary(prefix string) string {
	return fmt.Sprintf("%[1]sp50=%[2]s %[1]sp99=%[3]s %[1]smax=%[4]s",
		prefix, ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(time.Duration(h.max.Load())))
}

// ms prints a duration in milliseconds with enough digits for sub-millisecond values.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
}

// procRSS reads the resident set size of process pid from /proc/PID/status.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTick is Linux's USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every mainstream architecture; the standard library has no sysconf.
const clockTick = 10 * time.Millisecond

// procCPU reads the user+system CPU time of process pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces, so count fields after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// probe reads a server's RSS and CPU time when a pid was given; with pid 0
// every reading is zero and the report says "n/a".
type probe struct{ pid int }

// rss is the server's resident set size in bytes, or 0.
func (p probe) rss() int64 {
	if p.pid == 0 {
		return 0
	}
	v, err := procRSS(p.pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: read rss:", err)
	}
	return v
}

// cpu is the server's user+system CPU time, or 0.
func (p probe) cpu() time.Duration {
	if p.pid == 0 {
		return 0
	}
	v, err := procCPU(p.pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: read cpu:", err)
	}
	return v
}

// fds is the number of files the server has open: connections that leak show here.
func (p probe) fds() int {
	if p.pid == 0 {
		return 0
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	return len(ents)
}

// threads is the server's OS thread count from /proc/PID/status.
func (p probe) threads() string {
	if p.pid == 0 {
		return "n/a"
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "n/a"
}

// mib formats bytes as MiB.
func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

// perUnit formats a CPU time divided by a count as microseconds each, or n/a.
func perUnit(cpu time.Duration, n int64, pid int) string {
	if pid == 0 || n == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(float64(cpu)/float64(n)/1e3, 'f', 2, 64) + "us"
}
