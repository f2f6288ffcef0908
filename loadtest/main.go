// Command loadtest drives a running long-poll server the way the chat page
// does: N virtual clients arrive, each connects and at once keeps exactly one
// poll parked with its own cursor and keep-alive connection, backing off and
// reconnecting exactly as client.js does, and publishers emit numbered,
// timestamped messages. Every mode checks that nothing was lost, duplicated
// or reordered, and, given the server's -pid, reads its memory and CPU time
// from /proc. Run the server and this tool as separate processes:
//
//	go build -o /tmp/srv .
//	/tmp/srv -addr 127.0.0.1:8080 &   # on its own, so that $! is the server's pid
//	go run ./loadtest -url http://127.0.0.1:8080 -pid $! -mode hold
//	go run ./loadtest -mode restart -server "/tmp/srv -addr 127.0.0.1:8081"
//
// Modes: hold (N arrive and park: the ramp, memory per client after the ramp
// and in the steady state, broadcast wake-up time), restart (N parked, the
// server stopped with SIGTERM and started again by the tool: how the clients
// come back), fanout (one publisher at a fixed rate, loss and CPU per
// delivery), flood (publishers as fast as the clients keep up, deliveries per
// second), baseline (the same client against a trivial server it starts
// itself, the machine's limit for comparison) and serve-baseline (that
// trivial server, which also serves the contract the least way net/http
// allows, so every other mode can measure that floor too).
//
// Every loop is bounded in count and time, and all traffic goes to the given
// loopback URL. The last line of every mode is a "SUMMARY" line of key=value
// pairs that ends in PASS or FAIL.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is every flag of the tool.
type config struct {
	mode            string
	url             string
	pid             int
	n               int           // virtual clients (0: the mode's default)
	rate            float64       // fanout: messages per second
	duration        time.Duration // fanout, flood, baseline: how long to send
	broadcasts      int           // hold: broadcasts to time
	linger          time.Duration // hold: stay parked this long at the end
	publishers      int           // flood: publishing clients
	window          int           // flood: how far the slowest client may lag
	concurrency     int           // connects, first polls and goodbyes in flight
	arrival         arrivalRate   // new clients a second (0: as fast as the tool goes)
	server          string        // restart: the server's command line
	sources         int           // source addresses 127.0.0.1..N (0: one per 1,000 clients, the server's default -max-per-address)
	separateConnect bool          // connect on another connection than the polls
	compare         bool          // fanout, flood: also run baseline and print the ratio
	every           time.Duration // fanout, flood: print server rss this often (0: never)
	timeout         time.Duration // hard limit on the whole run
	addr            string        // serve-baseline: listen address
	pollTimeout     time.Duration // serve-baseline: how long /poll parks
	readRate        int           // slow: bytes a second each reader takes
	backlogMiB      int           // slow: MiB waiting in every mailbox
	maxBatch        int           // slow: the server's -max-batch, for the memory bound
	debugAddr       string        // serve-baseline: pprof and runtime metrics here
}

// defaultN is each mode's client count when -n is not given.
var defaultN = map[string]int{"hold": 10000, "restart": 10000, "fanout": 1000, "flood": 100, "baseline": 1000, "slow": 12, "cluster": 50}

func main() {
	var cfg config
	flag.StringVar(&cfg.mode, "mode", "", "hold, restart, fanout, flood, slow, cluster, baseline or serve-baseline")
	flag.StringVar(&cfg.url, "url", "", "server root, on 127.0.0.x (baseline: empty starts its own trivial server; restart: empty takes -server's -addr)")
	flag.IntVar(&cfg.pid, "pid", 0, "server pid, to read its RSS and CPU time from /proc")
	flag.IntVar(&cfg.n, "n", 0, "virtual clients (default hold and restart 10000, fanout 1000, flood 100, slow 12, baseline 1000)")
	flag.Float64Var(&cfg.rate, "rate", 20, "fanout: messages per second")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "fanout, flood, baseline: how long to send; slow: how long to read")
	flag.IntVar(&cfg.readRate, "read-rate", 8000, "slow: bytes a second each reader takes")
	flag.IntVar(&cfg.backlogMiB, "backlog-mib", 57, "slow: MiB of messages waiting in every mailbox (at most -mailbox messages of 60,000 bytes)")
	flag.IntVar(&cfg.maxBatch, "max-batch", 65536, "slow: the server's -max-batch, for the memory bound")
	flag.IntVar(&cfg.broadcasts, "broadcasts", 5, "hold: broadcasts to time (0: only measure memory); restart: broadcasts after the recovery")
	flag.DurationVar(&cfg.linger, "linger", 0, "hold: keep every poll parked this long at the end (to profile the server)")
	flag.IntVar(&cfg.publishers, "publishers", 4, "flood: publishing clients")
	flag.IntVar(&cfg.window, "window", 512, "flood: most messages the slowest client may lag behind (0: no limit)")
	flag.IntVar(&cfg.concurrency, "concurrency", 100, "clients between their connect and their first poll, and goodbyes, in flight")
	flag.Var(&cfg.arrival, "arrival", "new clients a second, as `N/s` or N; each connects and polls at once (0: as fast as -concurrency allows)")
	flag.StringVar(&cfg.server, "server", "", "restart: the server's command line, split on spaces, with a fixed 127.0.0.x -addr")
	flag.IntVar(&cfg.sources, "sources", 0, "spread connections over source addresses 127.0.0.1..N (0: one per 1000 clients, the server's -max-per-address)")
	flag.BoolVar(&cfg.separateConnect, "separate-connect", false, "connect on a shared connection, so poll connections only ever park GETs")
	flag.BoolVar(&cfg.compare, "compare", false, "fanout, flood: then run baseline with the same -n and -duration and print the ratio")
	flag.DurationVar(&cfg.every, "every", 0, "fanout, flood: print the server's rss this often")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "hard limit on the whole run")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "serve-baseline: listen address")
	flag.StringVar(&cfg.debugAddr, "debug-addr", "", "serve-baseline: serve pprof and /debug/metrics on this loopback address")
	flag.DurationVar(&cfg.pollTimeout, "poll-timeout", 25*time.Second, "serve-baseline: how long GET /poll parks")
	flag.Parse()
	os.Exit(runMode(cfg))
}

// runMode checks the flags, prepares the process and runs one mode; it
// returns the exit code: 0 when the mode passed its checks.
func runMode(cfg config) int {
	if cfg.mode == "serve-baseline" {
		if err := serveBaseline(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			return 1
		}
		return 0
	}
	if _, ok := defaultN[cfg.mode]; !ok {
		fmt.Fprintln(os.Stderr, "loadtest: -mode must be hold, restart, fanout, flood, slow, cluster, baseline or serve-baseline")
		return 2
	}
	if cfg.n <= 0 {
		cfg.n = defaultN[cfg.mode]
	}
	if cfg.sources <= 0 {
		cfg.sources = 1 + (cfg.n-1)/1000 // the server's default -max-per-address
	}
	cfg.concurrency = max(cfg.concurrency, 1)
	var serverArgs []string
	if cfg.mode == "restart" {
		serverArgs = strings.Fields(cfg.server)
		if len(serverArgs) == 0 {
			fmt.Fprintln(os.Stderr, `loadtest: -mode restart needs -server "/path/to/server -addr 127.0.0.1:PORT ..."`)
			return 2
		}
		if cfg.url == "" {
			var err error
			if cfg.url, err = serverURL(serverArgs); err != nil {
				fmt.Fprintln(os.Stderr, "loadtest:", err)
				return 2
			}
		}
	}
	base := ""
	if cfg.url != "" || cfg.mode != "baseline" {
		var err error
		if base, err = loopbackBase(cfg.url); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			return 2
		}
		if cfg.mode == "baseline" {
			cfg.url = base
		}
	}
	// Two connections per publisher (poll and emit), one per other client,
	// plus the shared pool and a margin for the runtime's own files.
	if err := raiseFileLimit(cfg.n+cfg.publishers+cfg.concurrency+64, cfg.pid); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	say("mode=%s url=%s n=%d sources=%d pid=%d", cfg.mode, cfg.url, cfg.n, cfg.sources, cfg.pid)
	var pass bool
	switch cfg.mode {
	case "hold":
		pass = hold(ctx, cfg, base)
	case "restart":
		pass, _ = restart(ctx, cfg, serverArgs, base)
	case "fanout":
		var perDelivery float64
		pass, perDelivery = fanout(ctx, cfg, base)
		if cfg.compare && ctx.Err() == nil {
			pass = compare(ctx, cfg, func(_, perRequest float64) {
				say("ratio: server cpu per fanout delivery / per trivial request = %.2f / %.2f us = %.2f",
					perDelivery, perRequest, perDelivery/perRequest)
			}) && pass
		}
	case "flood":
		var rate float64
		pass, rate = flood(ctx, cfg, base)
		if cfg.compare && ctx.Err() == nil {
			pass = compare(ctx, cfg, func(reqRate, _ float64) {
				say("ratio: flood deliveries/s / trivial requests/s = %.0f / %.0f = %.2f", rate, reqRate, rate/reqRate)
			}) && pass
		}
	case "slow":
		pass = slow(ctx, cfg, base)
	case "cluster":
		pass = clusterRun(ctx, cfg, base) // cluster.go
	case "baseline":
		pass, _, _ = baseline(ctx, cfg)
	}
	if !pass {
		return 1
	}
	return 0
}

// compare runs baseline against a trivial server of its own, with the same
// -n and -duration as the mode before it, and hands the figures to report.
func compare(ctx context.Context, cfg config, report func(reqRate, cpuPerRequest float64)) bool {
	cfg.url, cfg.pid = "", 0
	say("mode=baseline (for comparison) n=%d duration=%s", cfg.n, cfg.duration)
	pass, rate, perRequest := baseline(ctx, cfg)
	if pass {
		report(rate, perRequest)
	}
	return pass
}

// loopbackBase checks that raw is an http URL on 127.0.0.x and returns it
// with a trailing slash, the root every API path is appended to.
func loopbackBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("-url must be like http://127.0.0.1:8080, not %q", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return "", fmt.Errorf("-url must be on 127.0.0.x (loopback), not %q", u.Host)
	}
	return "http://" + u.Host + strings.TrimSuffix(u.Path, "/") + "/", nil
}

// raiseFileLimit lifts this process's open-file limit to its hard limit and
// says whether need files fit; with a pid it also reads the server's limit.
func raiseFileLimit(need, pid int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return err
		}
	}
	say("open-file limit %d (hard limit %d); this run needs about %d", l.Cur, l.Max, need)
	if uint64(need) > l.Cur {
		return fmt.Errorf("this run needs about %d open files but the hard limit is %d: raise it (as root: ulimit -Hn) or lower -n", need, l.Max)
	}
	if pid != 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
			for line := range strings.Lines(string(b)) {
				if strings.HasPrefix(line, "Max open files") {
					say("server: %s", strings.Join(strings.Fields(line), " "))
				}
			}
		}
	}
	return nil
}

// say prints one result line.
func say(format string, args ...any) {
	fmt.Printf(time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// summary prints the final line of a mode: its key figures and PASS or FAIL.
func summary(mode string, pass bool, format string, args ...any) {
	verdict := "FAIL"
	if pass {
		verdict = "PASS"
	}
	fmt.Printf("SUMMARY mode=%s "+format+" result=%s\n", append(append([]any{mode}, args...), verdict)...)
}

// arrivalRate is the -arrival flag: clients a second, written "500/s" or "500".
type arrivalRate float64

func (a arrivalRate) String() string {
	if a == 0 {
		return "0: as fast as the tool goes"
	}
	return strconv.FormatFloat(float64(a), 'f', -1, 64) + "/s"
}

func (a *arrivalRate) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("want clients a second like 500/s, not %q", s)
	}
	*a = arrivalRate(v)
	return nil
}
