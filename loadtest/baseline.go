package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	neturl "net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// serveBaseline runs the trivial server of -mode baseline in this process,
// so the real server never has to carry a benchmark route. Its routes:
//
//	GET  /   answers {"messages":[]} at once: the cheapest possible "poll"
//	POST /connect, GET /poll, POST /emit, POST /disconnect
//	         the contract, served by floor below: the least a long-poll
//	         server can do in net/http
//
// So -mode hold and -mode fanout can be pointed at this process as well as at
// the real server, to show what net/http alone costs per parked connection
// and per delivery on the same machine.
func serveBaseline(cfg config) error {
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	closing := make(chan struct{})
	srv := &http.Server{Handler: baselineRoutes(cfg.pollTimeout, closing), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if cfg.debugAddr != "" {
		go serveDebug(cfg.debugAddr)
	}
	fmt.Printf("url=http://%s/ pid=%d\n", ln.Addr(), os.Getpid())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-stop:
	}
	return shutdownFloor(srv, closing, time.Second)
}

// shutdownFloor stops srv the way the contract asks: closing answers every
// parked poll, and any request still arriving, with 503 and Retry-After, so
// clients come back spread out; then it waits at most grace for handlers to
// finish and closes whatever is left (idle or half-sent connections).
func shutdownFloor(srv *http.Server, closing chan struct{}, grace time.Duration) error {
	close(closing)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// baselineRoutes are serveBaseline's routes (see there). Once closing is
// closed, the floor answers 503 with Retry-After; a nil closing never closes.
func baselineRoutes(pollTimeout time.Duration, closing <-chan struct{}) http.Handler {
	empty := []byte(`{"messages":[]}`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		_ = r.URL.Query().Get("id") // parse the query like a poll would
		answer(w, http.StatusOK, empty)
	})
	f := &floor{base: map[string]int{}, news: make(chan struct{}), timeout: pollTimeout, closing: closing}
	mux.HandleFunc("POST /connect", f.open(f.connect))
	mux.HandleFunc("GET /poll", f.open(f.poll))
	mux.HandleFunc("POST /emit", f.open(f.emit))
	mux.HandleFunc("POST /disconnect", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// retryAfterSeconds is what the floor's 503 asks clients to wait, as the server's does.
const retryAfterSeconds = "2"

// open answers 503 with Retry-After instead of calling next once the floor is closing.
func (f *floor) open(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-f.closing:
			f.shuttingDown(w)
		default:
			next(w, r)
		}
	}
}

// shuttingDown is the floor's answer to every request once it is closing.
func (f *floor) shuttingDown(w http.ResponseWriter) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	answer(w, http.StatusServiceUnavailable, []byte(`{"error":"shutting down"}`))
}

// floor is the least a long-poll server can do in net/http: one log of encoded
// messages shared by everybody under a mutex, and a channel that the next emit
// closes to wake every parked poll. A client's seq counts from the log's length
// when it connected. No mailboxes, limits, expiry or online counts, and the log
// only grows (the tool's runs are bounded), so what it costs is the HTTP round
// trips and the parked requests, which any design on net/http pays. It does
// shut down as the contract says, so the restart mode can be pointed at it.
type floor struct {
	timeout time.Duration
	closing <-chan struct{} // closed when shutdown starts: every answer is then 503
	mu      sync.Mutex
	log     [][]byte       // `"event":E,"data":D` of every message, in order
	base    map[string]int // len(log) when each id connected
	news    chan struct{}  // closed by the next emit
}

func (f *floor) connect(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	f.mu.Lock()
	f.base[id] = len(f.log)
	f.mu.Unlock()
	answer(w, http.StatusOK, []byte(`{"id":"`+id+`","pollTimeoutMs":`+strconv.FormatInt(f.timeout.Milliseconds(), 10)+`}`))
}

// since returns id's messages after its cursor, and the channel to wait on if
// there are none.
func (f *floor) since(id string, after int) ([][]byte, <-chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	base, ok := f.base[id]
	return f.log[min(base+after, len(f.log)):], f.news, ok
}

func (f *floor) poll(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	after, err := strconv.Atoi(r.URL.Query().Get("after"))
	if err != nil || after < 0 {
		answer(w, http.StatusBadRequest, []byte(`{"error":"bad after"}`))
		return
	}
	msgs, news, ok := f.since(id, after)
	if !ok {
		answer(w, http.StatusGone, []byte(`{"error":"unknown id"}`))
		return
	}
	if len(msgs) == 0 {
		t := time.NewTimer(f.timeout)
		defer t.Stop()
		select {
		case <-news:
		case <-t.C:
		case <-f.closing:
			f.shuttingDown(w)
			return
		case <-r.Context().Done():
			return
		}
		msgs, _, _ = f.since(id, after)
	}
	out := []byte(`{"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"seq":`...)
		out = strconv.AppendInt(out, int64(after+1+i), 10)
		out = append(out, ',')
		out = append(out, m...)
		out = append(out, '}')
	}
	answer(w, http.StatusOK, append(out, "]}"...))
}

func (f *floor) emit(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Event == "" {
		answer(w, http.StatusBadRequest, []byte(`{"error":"bad message"}`))
		return
	}
	if m.Data == nil {
		m.Data = json.RawMessage("null")
	}
	ev, _ := json.Marshal(m.Event)
	body := append(append(append([]byte(`"event":`), ev...), `,"data":`...), m.Data...)
	f.mu.Lock()
	f.log = append(f.log, body)
	close(f.news)
	f.news = make(chan struct{})
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func answer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}

// spawnBaseline starts "loadtest -mode serve-baseline" as a child process,
// which dies with this one, and returns its URL, pid and a function that
// stops it.
func spawnBaseline(cfg config) (string, int, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(exe, "-mode", "serve-baseline", "-addr", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	url, _, _ := strings.Cut(strings.TrimPrefix(line, "url="), " ")
	if err != nil || !strings.HasPrefix(url, "http://127.0.0.1:") {
		stop()
		return "", 0, nil, fmt.Errorf("trivial server did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return url, cmd.Process.Pid, stop, nil
}

// baseline measures the trivial endpoint with the same HTTP client: n
// keep-alive connections, each sending a poll-shaped GET as soon as the last
// one is answered, for -duration. With no -url it starts its own trivial
// server. It returns requests per second and server CPU per request in µs.
func baseline(ctx context.Context, cfg config) (bool, float64, float64) {
	url, pid := cfg.url, cfg.pid
	if url == "" {
		u, p, stop, err := spawnBaseline(cfg)
		if err != nil {
			say("FAIL: %v", err)
			return false, 0, 0
		}
		defer stop()
		url, pid = u, p
		say("started the trivial server at %s (pid %d)", url, pid)
	}
	pr := probe{pid}
	u, err := neturl.Parse(url)
	if err != nil {
		say("FAIL: %v", err)
		return false, 0, 0
	}
	target := u.Path + "?id=" + strings.Repeat("0", 32) + "&after=0"
	clients := make([]*wire, cfg.n)
	for i := range clients {
		clients[i] = newWire(cfg, u.Host, i).withTimeout(30 * time.Second)
	}
	get := func(_ context.Context, w *wire) error {
		rep, err := w.do(http.MethodGet, target, nil, nil)
		if err == nil && rep.status != http.StatusOK {
			err = fmt.Errorf("GET %s: status %d", target, rep.status)
		}
		return err
	}
	// Open every connection first, so the measured part is only round trips.
	if err := forEach(ctx, cfg.n, cfg.concurrency, func(i int) error { return get(ctx, clients[i]) }); err != nil {
		say("FAIL: warm-up: %v", err)
		return false, 0, 0
	}
	var reqs, errs atomic.Int64
	self := probe{os.Getpid()}
	cpu0, own0, start := pr.cpu(), self.cpu(), time.Now()
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	forEach(ctx, cfg.n, cfg.n, func(i int) error {
		for runCtx.Err() == nil {
			if err := get(runCtx, clients[i]); err == nil {
				reqs.Add(1)
			} else if runCtx.Err() == nil {
				errs.Add(1)
				sleep(runCtx, 100*time.Millisecond)
			}
		}
		return nil
	})
	took, cpu, own := time.Since(start), pr.cpu()-cpu0, self.cpu()-own0
	for _, w := range clients {
		w.close()
	}
	n := reqs.Load()
	rate := float64(n) / took.Seconds()
	say("%d requests on %d connections in %s: %.0f requests/s; server cpu %s: %s per request (loadtest itself: %s)",
		n, cfg.n, took.Round(time.Millisecond), rate, cpu, perUnit(cpu, n, pid), perUnit(own, n, 1))
	pass := errs.Load() == 0 && n > 0
	summary("baseline", pass, "n=%d duration=%s requests=%d requests_per_s=%.0f cpu_per_request=%s errors=%d",
		cfg.n, cfg.duration, n, rate, perUnit(cpu, n, pid), errs.Load())
	return pass, rate, perMicro(cpu, n)
}

// serveDebug offers, on its own loopback address, net/http/pprof and
// /debug/metrics: the runtime/metrics figures that say where memory per
// parked connection goes (goroutine stacks against heap objects).
func serveDebug(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("gc") {
			runtime.GC() // count only what is live
		}
		writeMetrics(w)
	})
	fmt.Fprintln(os.Stderr, "loadtest: debug server:", http.ListenAndServe(addr, mux))
}

// debugMetrics are the runtime/metrics figures /debug/metrics prints.
var debugMetrics = []string{
	"/sched/goroutines:goroutines",
	"/gc/stack/starting-size:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/total:bytes",
}

// writeMetrics prints one "name value" line per debugMetrics entry.
func writeMetrics(w io.Writer) {
	samples := make([]metrics.Sample, len(debugMetrics))
	for i, name := range debugMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(w, "%s %d\n", s.Name, s.Value.Uint64())
		}
	}
}
