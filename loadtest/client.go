package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
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
	cfg      config
	base     string       // server root with a trailing slash
	host     string       // its host:port
	path     string       // its path, "/" unless the server sits under a prefix
	shared   *http.Client // a small pool for disconnects (and connects with -separate-connect)
	clients  []*client
	pubs     []*publisher
	keepGone bool // restart: clients that had to connect again are checked too, not set aside

	parked    atomic.Int64 // polls written to the server and not answered yet
	responses atomic.Int64 // polls that ended, answered or failed
	delivered atomic.Int64 // numbered messages received for the first time, all clients
	lat       atomic.Pointer[histogram]
	stopping  atomic.Bool  // poll loops stop re-polling
	gen       atomic.Int64 // which server process is up: the restart mode counts them from 1
	quit      atomic.Int64 // clients that gave up after maxFailures in a row

	spanMu      sync.Mutex // guards the spread of this generation's connects
	firstConn   time.Time  // when the first successful POST /connect of this generation was sent
	lastConn    time.Time  // and the last
	connsInSpan int64
	genStart    time.Time  // when nextGen was called
	connAt      *histogram // successful connects of this generation, by time sent after genStart

	pollErrs   atomic.Int64 // failed polls: network errors, 5xx, aborted, wrong shape
	gone       atomic.Int64 // clients that lost their id at least once (410 or 400)
	reconnects atomic.Int64 // ids lost, all clients
	connectErr atomic.Int64 // failed connects
	emitErrs   atomic.Int64
	lastErrMu  sync.Mutex
	lastErr    string
}

// client is one virtual browser tab: its id, its keep-alive connections (one
// for polls, one more for emits when it publishes), its cursor and what it has
// received.
type client struct {
	i    int
	poll *wire         // connect and every poll
	send *wire         // emits
	done chan struct{} // closed when the poll loop returns

	id       atomic.Pointer[string] // the current id; written by the poll goroutine only
	gen      atomic.Int64           // the server generation that gave this id; 0 without one
	got      atomic.Int64           // numbered messages received for the first time
	gone     atomic.Bool            // the client lost an id at least once
	requests atomic.Int64           // connects and polls sent
	answers  atomic.Int64           // well-formed poll answers received

	// Owned by the poll goroutine; read by others only after done is closed.
	after       int64
	pollTimeout time.Duration // the server's, from the connect answer
	seen        [][]uint64    // per publisher, a bitset of message numbers received
	maxN        []int64       // per publisher, the highest number received
	dups        int64         // numbered messages received twice
	reorders    int64         // numbered messages received after a higher number from the same publisher
	seqGaps     int64         // seq values that were not after+1
	onlines     int64         // online events received
	order       uint64        // rolling hash of (publisher, number) in arrival order
}

// ID is the client's current id, "" while it has none.
func (c *client) ID() string {
	if p := c.id.Load(); p != nil {
		return *p
	}
	return ""
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

// defaultPollTimeout is assumed when a connect answer does not say pollTimeoutMs.
const defaultPollTimeout = 25 * time.Second

// maxFailures in a row make a client give up, so that every loop is bounded
// even against a server that never comes back: four to five minutes of back-off.
const maxFailures = 36

// newRun prepares clients with their transports; nothing is sent yet.
func newRun(cfg config, base string, n, pubs int) *run {
	u, err := url.Parse(base)
	if err != nil {
		panic(err) // loopbackBase made base
	}
	r := &run{cfg: cfg, base: base, host: u.Host, path: u.Path, keepGone: cfg.mode == "restart"}
	r.lat.Store(new(histogram))
	r.gen.Store(1)
	r.shared = &http.Client{Transport: newTransport(cfg, 0, cfg.concurrency)}
	r.clients = make([]*client, n)
	for i := range r.clients {
		r.clients[i] = &client{
			i:           i,
			poll:        newWire(cfg, u.Host, i).withTimeout(defaultPollTimeout + hungMargin),
			send:        newWire(cfg, u.Host, i).withTimeout(30 * time.Second),
			done:        make(chan struct{}),
			pollTimeout: defaultPollTimeout,
			seen:        make([][]uint64, pubs),
			maxN:        make([]int64, pubs),
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

// startAll starts every client's loop, as browsers arrive: at most -arrival
// new clients a second (0: no pacing), and at most -concurrency of them
// between their first request and their first poll on the wire, so a burst
// of dials does not overflow the server's accept queue. It returns when the
// last client has started.
func (r *run) startAll(ctx context.Context) {
	sem := make(chan struct{}, r.cfg.concurrency)
	start := time.Now()
	for i, c := range r.clients {
		if r.cfg.arrival > 0 {
			sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/float64(r.cfg.arrival)*float64(time.Second)))))
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for _, c := range r.clients[i:] {
				close(c.done) // no loop ever ran
			}
			return
		}
		var once sync.Once
		release := func() { once.Do(func() { <-sem }) }
		go r.browse(ctx, c, release)
	}
}

// browse is one tab's life, like client.js: connect, then keep exactly one
// poll parked, asking again at once with the new cursor after every answer.
// Every failure waits as the back-off rules say (see wait); a lost id
// connects again. started is called once the first poll is on the wire or
// the first attempt failed. The loop stops on ctx, on r.stopping, or after
// maxFailures in a row.
func (r *run) browse(ctx context.Context, c *client, started func()) {
	defer close(c.done)
	defer started()
	failures := 0
	for ctx.Err() == nil && !r.stopping.Load() {
		var o outcome
		var retryAfter string
		var err error
		if c.ID() == "" {
			o, retryAfter, err = r.connect(ctx, c)
		} else {
			o, retryAfter, err = r.poll(c, started)
		}
		if o != connected {
			started() // a failure, or the first poll is on the wire by now
		}
		if ctx.Err() != nil || r.stopping.Load() {
			return // the run closed the connection: not a failure
		}
		if err != nil {
			r.noteErr(fmt.Errorf("client %d: %w", c.i, err))
		}
		switch o {
		case answered:
			failures = 0
			continue
		case connected, proxyCut:
			continue
		case lost:
			c.id.Store(nil)
			c.gen.Store(0)
			r.reconnects.Add(1)
			if !c.gone.Swap(true) {
				r.gone.Add(1)
			}
		}
		failures++
		if failures >= maxFailures {
			r.quit.Add(1)
			r.noteErr(fmt.Errorf("client %d gave up after %d failures in a row", c.i, failures))
			return
		}
		sleep(ctx, wait(o, failures, retryAfter, rand.Float64()))
	}
}

// connect asks the server for a new id, on the client's own connection (or
// the shared pool with -separate-connect), and starts a new cursor with it.
func (r *run) connect(ctx context.Context, c *client) (outcome, string, error) {
	c.requests.Add(1)
	gen, sent := r.gen.Load(), time.Now()
	var rep reply
	var err error
	if r.cfg.separateConnect {
		rep, err = r.connectShared(ctx) // the poll connection will then only ever park GETs
	} else {
		rep, err = c.poll.do(http.MethodPost, r.path+"connect", nil, nil)
	}
	var v struct {
		ID            string
		PollTimeoutMs int64
	}
	if err == nil && rep.status == http.StatusOK {
		if json.Unmarshal(rep.body, &v) != nil || len(v.ID) != 32 {
			v.ID = ""
		}
	}
	o := connectOutcome(err, rep.status, v.ID != "")
	if o != connected {
		if !r.stopping.Load() {
			r.connectErr.Add(1)
		}
		if err == nil {
			err = fmt.Errorf("connect: status %d %s", rep.status, bytes.TrimSpace(rep.body))
		}
		return o, rep.header.Get("Retry-After"), err
	}
	c.pollTimeout = defaultPollTimeout
	if v.PollTimeoutMs > 0 {
		c.pollTimeout = time.Duration(v.PollTimeoutMs) * time.Millisecond
	}
	c.poll.timeout = c.pollTimeout + hungMargin // a poll unanswered this long has hung: abort it
	c.after = 0
	c.id.Store(&v.ID)
	c.gen.Store(gen)
	r.noteConnect(gen, sent)
	return connected, "", nil
}

// connectShared sends POST /connect through the shared pool.
func (r *run) connectShared(ctx context.Context) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"connect", nil)
	if err != nil {
		return reply{}, err
	}
	resp, err := r.shared.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, body}, err
}

// noteConnect widens the span of successful connects sent to server
// generation gen, if that is still the current one.
func (r *run) noteConnect(gen int64, sent time.Time) {
	r.spanMu.Lock()
	defer r.spanMu.Unlock()
	if gen != r.gen.Load() {
		return
	}
	if r.connsInSpan == 0 || sent.Before(r.firstConn) {
		r.firstConn = sent
	}
	if sent.After(r.lastConn) {
		r.lastConn = sent
	}
	r.connsInSpan++
	if r.connAt != nil {
		r.connAt.add(sent.Sub(r.genStart))
	}
}

// nextGen says a new server process is about to start: connects count
// toward its span from now on. It returns the new generation.
func (r *run) nextGen() int64 {
	r.spanMu.Lock()
	defer r.spanMu.Unlock()
	r.firstConn, r.lastConn, r.connsInSpan = time.Time{}, time.Time{}, 0
	r.genStart, r.connAt = time.Now(), new(histogram)
	r.shared.CloseIdleConnections() // they went to the old process
	return r.gen.Add(1)
}

// connectSpan is the first and last successful connect sent to the current
// server generation, how many there were, and (after nextGen) when they were
// sent, counted from nextGen.
func (r *run) connectSpan() (time.Time, time.Time, int64, *histogram) {
	r.spanMu.Lock()
	defer r.spanMu.Unlock()
	return r.firstConn, r.lastConn, r.connsInSpan, r.connAt
}

// poll sends one GET /poll and takes in its batch. r.parked counts it from
// the moment its request is written until its response arrives.
func (r *run) poll(c *client, written func()) (outcome, string, error) {
	counted := false
	target := r.path + "poll?id=" + c.ID() + "&after=" + strconv.FormatInt(c.after, 10)
	c.requests.Add(1)
	sent := time.Now()
	rep, err := c.poll.do(http.MethodGet, target, nil, func() {
		if !counted {
			counted = true
			r.parked.Add(1)
		}
		written()
	})
	if counted {
		r.parked.Add(-1)
	}
	r.responses.Add(1)
	var b wireBatch
	wellFormed := false
	if err == nil && rep.status == http.StatusOK {
		// A well-formed answer has a messages array; null or missing is not one.
		wellFormed = json.Unmarshal(rep.body, &b) == nil && b.Messages != nil
	}
	o := pollOutcome(err, rep.status, wellFormed, time.Since(sent))
	switch o {
	case answered:
		c.answers.Add(1)
		if answerHook != nil { // the cluster mode counts the nodes that answer (cluster.go)
			answerHook(c, rep.header)
		}
		now := time.Now()
		for _, m := range b.Messages {
			r.take(c, m, now)
		}
	case failed, busy, lost:
		if !r.stopping.Load() && o != lost {
			r.pollErrs.Add(1)
		}
		if err == nil {
			err = fmt.Errorf("poll: status %d %s", rep.status, bytes.TrimSpace(rep.body))
		}
	}
	return o, rep.header.Get("Retry-After"), err
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

// succeeded is the number of the publisher's emits that were answered 204.
func (pub *publisher) succeeded() int64 {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	return pub.attempts.Load() - int64(len(pub.failed))
}

// emit sends the publisher's next numbered message and waits for its 204.
func (r *run) emit(pub *publisher) error {
	n := pub.attempts.Add(1)
	body := fmt.Appendf(nil, `{"event":"load","data":{"p":%d,"n":%d,"t":%d}}`, pub.p, n, time.Now().UnixNano())
	rep, err := pub.c.send.do(http.MethodPost, r.path+"emit?id="+pub.c.ID(), body, nil)
	if err == nil && rep.status != http.StatusNoContent {
		err = fmt.Errorf("POST /emit: status %d %s", rep.status, bytes.TrimSpace(rep.body))
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

// live is the number of clients still trying: those that have not given up.
func (r *run) live() int { return len(r.clients) - int(r.quit.Load()) }

// onCurrentGen is the number of clients whose id came from the server
// process that is up now.
func (r *run) onCurrentGen() int {
	gen, n := r.gen.Load(), 0
	for _, c := range r.clients {
		if c.gen.Load() == gen {
			n++
		}
	}
	return n
}

// waitParked waits until every live client has an id from the current server
// and a poll parked there, and that has held for settle with no poll
// answered: the server answers a poll at once unless it parks it, so a poll
// unanswered for that long is parked. It returns how many were parked, when
// they all were for the first time (and calls atFirst, if not nil, then), and
// when the quiet spell that ended the wait began: a server that sends a count
// once a crowd has settled answers every poll once more between the two.
func (r *run) waitParked(ctx context.Context, settle, limit time.Duration, atFirst func()) (int, time.Time, time.Time) {
	start := time.Now()
	var since, first time.Time
	var answers int64
	for time.Since(start) < limit && ctx.Err() == nil {
		live, n := r.live(), r.responses.Load()
		all := int(r.parked.Load()) >= live && r.onCurrentGen() >= live
		if all && first.IsZero() {
			first = time.Now()
			if atFirst != nil {
				atFirst()
			}
		}
		if all && n == answers {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= settle {
				return int(r.parked.Load()), first, since
			}
		} else {
			since = time.Time{}
		}
		answers = n
		sleep(ctx, 20*time.Millisecond)
	}
	if first.IsZero() {
		first = time.Now()
	}
	return int(r.parked.Load()), first, time.Now()
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

// minGot is the fewest numbered messages any checked client has received:
// clients that lost their id are set aside, except in the restart mode.
func (r *run) minGot() int64 {
	m := int64(-1)
	for _, c := range r.clients {
		if c.gone.Load() && !r.keepGone {
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
		if id := r.clients[i].ID(); id != "" {
			r.post(ctx, r.shared, "disconnect?id="+id, nil, http.StatusNoContent)
		}
		return nil
	})
	r.shared.CloseIdleConnections()
}

// verdict is what every mode checks at the end: loss, duplicates, order.
type verdict struct {
	expected, delivered, lost, dups, reorders, seqGaps, orderMismatch int64
	gone                                                              int64 // clients set aside because they lost their id (evicted, expired)
	reconnected                                                       int64 // restart: clients that connected again, and were checked all the same
}

// check counts, for every client that kept its id (in the restart mode:
// every client), the numbered messages that were emitted with a 204 and never
// arrived, those that arrived twice or out of order, and whether every such
// client saw the same order.
func (r *run) check() verdict {
	var v verdict
	hashes := map[uint64]int64{}
	for _, c := range r.clients {
		select {
		case <-c.done:
		default:
			panic("check before every poll loop stopped")
		}
		if c.gone.Load() && r.keepGone {
			v.reconnected++
		} else if c.gone.Load() {
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
	return fmt.Sprintf("delivered=%d/%d lost=%d dup=%d reorder=%d seq_gaps=%d order_mismatch=%d evicted=%d reconnected=%d",
		v.delivered, v.expected, v.lost, v.dups, v.reorders, v.seqGaps, v.orderMismatch, v.gone, v.reconnected)
}

// ok says whether nothing was lost, duplicated or reordered.
func (v verdict) ok() bool {
	return v.lost == 0 && v.dups == 0 && v.reorders == 0 && v.seqGaps == 0 && v.orderMismatch == 0 && v.gone == 0
}

// errors is the error counters as key=value pairs.
func (r *run) errors() string {
	s := fmt.Sprintf("poll_errors=%d connect_errors=%d reconnects=%d gave_up=%d emit_errors=%d",
		r.pollErrs.Load(), r.connectErr.Load(), r.reconnects.Load(), r.quit.Load(), r.emitErrs.Load())
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
