package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// run is one load run against one server: its virtual clients, its
// publishers and the counters every goroutine adds to.
type run struct {
	cfg     config
	base    string       // server root with a trailing slash
	host    string       // its host:port
	path    string       // its path, "/" unless the server sits under a prefix
	shared  *http.Client // a small pool for disconnects (and connects with -separate-connect)
	clients []*client
	pubs    []*publisher

	parked    atomic.Int64 // polls written to the server and not answered yet
	delivered atomic.Int64 // numbered messages received for the first time, all clients
	lat       atomic.Pointer[histogram]
	stopping  atomic.Bool // poll loops stop re-polling

	pollErrs   atomic.Int64 // network errors and unexpected statuses on polls
	gone       atomic.Int64 // clients told 410 (evicted or expired)
	emitErrs   atomic.Int64
	lastErrMu  sync.Mutex
	lastErr    string
	connectErr atomic.Int64
}

// client is one virtual browser tab: its id, its keep-alive connections (one
// for polls, one more for emits when it publishes), its cursor and what it has
// received.
type client struct {
	i    int
	id   string
	poll *wire         // connect and every poll
	send *wire         // emits
	done chan struct{} // closed when the poll loop returns

	got  atomic.Int64 // numbered messages received for the first time
	gone atomic.Bool  // the server answered 410

	// Owned by the poll goroutine; read by others only after done is closed.
	after    int64
	seen     [][]uint64 // per publisher, a bitset of message numbers received
	maxN     []int64    // per publisher, the highest number received
	dups     int64      // numbered messages received twice
	reorders int64      // numbered messages received after a higher number from the same publisher
	seqGaps  int64      // seq values that were not after+1
	onlines  int64      // online events received
	order    uint64     // rolling hash of (publisher, number) in arrival order
}

// publisher emits numbered messages from one client. attempts is the last
// number used; failed holds numbers whose emit did not answer 204.
type publisher struct {
	p        int
	c        *client
	attempts atomic.Int64
	mu       sync.Mutex
	failed   map[int64]bool
}

// payload is the data of every numbered message: publisher, number, send time.
type payload struct {
	P int   `json:"p"`
	N int64 `json:"n"`
	T int64 `json:"t"` // unix nanoseconds when the emit was sent
}

// wireMessage and wireBatch are the poll response, as the contract says.
type wireMessage struct {
	Seq   int64           `json:"seq"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

type wireBatch struct {
	Messages []wireMessage `json:"messages"`
}

// newRun prepares clients with their transports; nothing is sent yet.
func newRun(cfg config, base string, n, pubs int) *run {
	u, err := url.Parse(base)
	if err != nil {
		panic(err) // loopbackBase made base
	}
	r := &run{cfg: cfg, base: base, host: u.Host, path: u.Path}
	r.lat.Store(new(histogram))
	r.shared = &http.Client{Transport: newTransport(cfg, 0, cfg.concurrency)}
	r.clients = make([]*client, n)
	for i := range r.clients {
		r.clients[i] = &client{
			i:    i,
			poll: newWire(cfg, u.Host, i),
			send: newWire(cfg, u.Host, i).withTimeout(30 * time.Second),
			done: make(chan struct{}),
			seen: make([][]uint64, pubs),
			maxN: make([]int64, pubs),
		}
	}
	for p := range pubs {
		r.pubs = append(r.pubs, &publisher{p: p, c: r.clients[p], failed: map[int64]bool{}})
	}
	return r
}

// newTransport is a keep-alive transport for virtual client i, whose
// connections leave from source address 127.0.0.(1 + i mod -sources) so that
// many thousands of clients do not run out of ephemeral ports on one address.
func newTransport(cfg config, i, idle int) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	if cfg.sources > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.sources))}
	}
	return &http.Transport{
		Proxy:               nil, // never through a proxy: the traffic stays on loopback
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
}

// noteErr keeps the last error text for the report.
func (r *run) noteErr(err error) {
	r.lastErrMu.Lock()
	r.lastErr = err.Error()
	r.lastErrMu.Unlock()
}

// connectAll connects every client with -concurrency requests in flight.
func (r *run) connectAll(ctx context.Context) error {
	err := forEach(ctx, len(r.clients), r.cfg.concurrency, func(i int) error {
		c := r.clients[i]
		if r.cfg.separateConnect {
			return r.connectShared(ctx, c) // the poll connection will then only ever park GETs
		}
		status, body, err := c.poll.do(http.MethodPost, r.path+"connect", nil, nil)
		return c.takeID(status, body, err)
	})
	if err != nil {
		r.connectErr.Add(1)
	}
	return err
}

// connectShared asks the server for an id through the shared pool.
func (r *run) connectShared(ctx context.Context, c *client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"connect", nil)
	if err != nil {
		return err
	}
	resp, err := r.shared.Do(req)
	if err != nil {
		return c.takeID(0, nil, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return c.takeID(resp.StatusCode, body, err)
}

// takeID reads the id out of a connect's answer.
func (c *client) takeID(status int, body []byte, err error) error {
	if err != nil {
		return fmt.Errorf("connect client %d: %w", c.i, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("connect client %d: status %d %s", c.i, status, bytes.TrimSpace(body))
	}
	var v struct{ ID string }
	if err := json.Unmarshal(body, &v); err != nil || len(v.ID) != 32 {
		return fmt.Errorf("connect client %d: bad body %q (%v)", c.i, body, err)
	}
	c.id = v.ID
	return nil
}

// startPolls starts one poll loop per client. At most -concurrency first
// polls are being sent at once, so a burst of dials does not overflow the
// server's accept queue.
func (r *run) startPolls(ctx context.Context) {
	sem := make(chan struct{}, r.cfg.concurrency)
	for _, c := range r.clients {
		sem <- struct{}{}
		var once sync.Once
		release := func() { once.Do(func() { <-sem }) }
		go r.pollLoop(ctx, c, release)
	}
}

// pollLoop keeps exactly one poll parked for c, like the page: poll, take
// the batch, poll again at once with the new cursor. It stops on ctx, on
// r.stopping, on 410, or after too many errors in a row.
func (r *run) pollLoop(ctx context.Context, c *client, started func()) {
	defer close(c.done)
	defer started()
	errorsInRow := 0
	for ctx.Err() == nil && !r.stopping.Load() && errorsInRow < 20 {
		status, err := r.poll(c, started)
		started()
		switch {
		case ctx.Err() != nil || r.stopping.Load():
			return
		case err != nil:
			r.pollErrs.Add(1)
			r.noteErr(err)
		case status == http.StatusGone:
			c.gone.Store(true)
			r.gone.Add(1)
			return
		case status != http.StatusOK:
			r.pollErrs.Add(1)
			r.noteErr(fmt.Errorf("poll: status %d", status))
		default:
			errorsInRow = 0
			continue
		}
		errorsInRow++
		select { // back off a little, as the page does
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// poll sends one GET /poll and takes in its batch. r.parked counts it from
// the moment its request is written until its response arrives.
func (r *run) poll(c *client, written func()) (int, error) {
	counted := false
	target := r.path + "poll?id=" + c.id + "&after=" + strconv.FormatInt(c.after, 10)
	status, body, err := c.poll.do(http.MethodGet, target, nil, func() {
		if !counted {
			counted = true
			r.parked.Add(1)
		}
		written()
	})
	if counted {
		r.parked.Add(-1)
	}
	if err != nil || status != http.StatusOK {
		return status, err
	}
	var b wireBatch
	if err := json.Unmarshal(body, &b); err != nil {
		return 0, fmt.Errorf("poll body: %w", err)
	}
	now := time.Now()
	for _, m := range b.Messages {
		r.take(c, m, now)
	}
	return http.StatusOK, nil
}

// take checks one message against everything c has received so far.
func (r *run) take(c *client, m wireMessage, now time.Time) {
	if m.Seq != c.after+1 {
		c.seqGaps++
	}
	c.after = max(c.after, m.Seq)
	switch m.Event {
	case "online":
		c.onlines++
		return
	case "load":
	default:
		return // somebody else's event (a browser tab left open): not ours to count
	}
	var p payload
	if err := json.Unmarshal(m.Data, &p); err != nil || p.P < 0 || p.P >= len(c.seen) || p.N < 1 {
		c.seqGaps++ // malformed numbered message: count it as a protocol fault
		return
	}
	set := c.seen[p.P]
	word, bit := int(p.N/64), uint(p.N%64)
	for len(set) <= word {
		set = append(set, 0)
	}
	c.seen[p.P] = set
	if set[word]&(1<<bit) != 0 {
		c.dups++
		return
	}
	set[word] |= 1 << bit
	if p.N < c.maxN[p.P] {
		c.reorders++
	}
	c.maxN[p.P] = max(c.maxN[p.P], p.N)
	c.order = (c.order ^ uint64(p.P)<<40 ^ uint64(p.N)) * 1099511628211
	c.got.Add(1)
	r.delivered.Add(1)
	r.lat.Load().add(now.Sub(time.Unix(0, p.T)))
}

// emit sends the publisher's next numbered message and waits for its 204.
func (r *run) emit(pub *publisher) error {
	n := pub.attempts.Add(1)
	body := fmt.Appendf(nil, `{"event":"load","data":{"p":%d,"n":%d,"t":%d}}`, pub.p, n, time.Now().UnixNano())
	status, answer, err := pub.c.send.do(http.MethodPost, r.path+"emit?id="+pub.c.id, body, nil)
	if err == nil && status != http.StatusNoContent {
		err = fmt.Errorf("POST /emit: status %d %s", status, bytes.TrimSpace(answer))
	}
	if err != nil {
		pub.mu.Lock()
		pub.failed[n] = true
		pub.mu.Unlock()
		r.emitErrs.Add(1)
		r.noteErr(err)
	}
	return err
}

// post sends a JSON POST and wants the given status.
func (r *run) post(ctx context.Context, hc *http.Client, path string, body []byte, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return fmt.Errorf("POST /%s: %s %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// live is the number of clients the server has not told 410.
func (r *run) live() int { return len(r.clients) - int(r.gone.Load()) }

// waitParked waits until every live client has a poll parked and that has
// held for settle: the server answers a poll at once unless it parks it, so
// a poll unanswered for that long is parked. It gives up after limit.
func (r *run) waitParked(ctx context.Context, settle, limit time.Duration) (int, time.Duration) {
	start := time.Now()
	var since time.Time
	for time.Since(start) < limit && ctx.Err() == nil {
		if int(r.parked.Load()) >= r.live() {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= settle {
				return int(r.parked.Load()), since.Sub(start)
			}
		} else {
			since = time.Time{}
		}
		sleep(ctx, 20*time.Millisecond)
	}
	return int(r.parked.Load()), time.Since(start)
}

// waitDelivered waits until every live client has received want numbered
// messages, or limit passes. It reports whether all did.
func (r *run) waitDelivered(ctx context.Context, want int64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.minGot() >= want {
			return true
		}
		sleep(ctx, 5*time.Millisecond)
	}
	return r.minGot() >= want
}

// minGot is the fewest numbered messages any live client has received.
func (r *run) minGot() int64 {
	m := int64(-1)
	for _, c := range r.clients {
		if c.gone.Load() {
			continue
		}
		if g := c.got.Load(); m < 0 || g < m {
			m = g
		}
	}
	return max(m, 0)
}

// stop ends every poll loop, then says goodbye for every client through
// the small shared pool, so the server frees them now rather than at expiry.
func (r *run) stop(cancelPolls context.CancelFunc) {
	r.stopping.Store(true)
	cancelPolls()
	for _, c := range r.clients {
		c.poll.close() // a parked poll returns at once
		c.send.close()
	}
	timeout := time.After(15 * time.Second)
	for _, c := range r.clients {
		select {
		case <-c.done:
		case <-timeout:
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	forEach(ctx, len(r.clients), r.cfg.concurrency, func(i int) error {
		if c := r.clients[i]; c.id != "" {
			r.post(ctx, r.shared, "disconnect?id="+c.id, nil, http.StatusNoContent)
		}
		return nil
	})
	r.shared.CloseIdleConnections()
}

// verdict is what every mode checks at the end: loss, duplicates, order.
type verdict struct {
	expected, delivered, lost, dups, reorders, seqGaps, orderMismatch, gone int64
}

// check counts, for every client the server did not evict, the numbered
// messages that were emitted with a 204 and never arrived, those that arrived
// twice or out of order, and whether every such client saw the same order.
func (r *run) check() verdict {
	var v verdict
	hashes := map[uint64]int64{}
	for _, c := range r.clients {
		select {
		case <-c.done:
		default:
			panic("check before every poll loop stopped")
		}
		if c.gone.Load() {
			v.gone++
			continue
		}
		lost := int64(0)
		for _, pub := range r.pubs {
			ok := pub.attempts.Load() - int64(len(pub.failed))
			seen := int64(0)
			for _, w := range c.seen[pub.p] {
				seen += int64(bits.OnesCount64(w))
			}
			for n := range pub.failed { // a failed emit may still have been delivered
				if int(n/64) < len(c.seen[pub.p]) && c.seen[pub.p][n/64]&(1<<uint(n%64)) != 0 {
					seen--
				}
			}
			v.expected += ok
			lost += max(ok-seen, 0)
		}
		v.delivered += c.got.Load()
		v.lost += lost
		v.dups += c.dups
		v.reorders += c.reorders
		v.seqGaps += c.seqGaps
		if lost == 0 && c.dups == 0 {
			hashes[c.order]++
		}
	}
	var most, total int64
	for _, k := range hashes {
		most = max(most, k)
		total += k
	}
	v.orderMismatch = total - most
	return v
}

// String is the verdict as key=value pairs.
func (v verdict) String() string {
	return fmt.Sprintf("delivered=%d/%d lost=%d dup=%d reorder=%d seq_gaps=%d order_mismatch=%d evicted=%d",
		v.delivered, v.expected, v.lost, v.dups, v.reorders, v.seqGaps, v.orderMismatch, v.gone)
}

// ok says whether nothing was lost, duplicated or reordered.
func (v verdict) ok() bool {
	return v.lost == 0 && v.dups == 0 && v.reorders == 0 && v.seqGaps == 0 && v.orderMismatch == 0 && v.gone == 0
}

// errors is the error counters as key=value pairs.
func (r *run) errors() string {
	s := fmt.Sprintf("poll_errors=%d emit_errors=%d", r.pollErrs.Load(), r.emitErrs.Load())
	r.lastErrMu.Lock()
	defer r.lastErrMu.Unlock()
	if r.lastErr != "" {
		s += fmt.Sprintf(" last_error=%q", r.lastErr)
	}
	return s
}

// forEach calls f(0..n-1) on at most workers goroutines and returns the
// first error; after an error no new calls start.
func forEach(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errTimeout marks a phase that did not finish in its time.
var errTimeout = errors.New("timed out")
