package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// ramp is what setup measured while the crowd arrived.
type ramp struct {
	took                      time.Duration // from the first connect sent to every client parked
	settled                   time.Duration // ... to every client parked with no answer for 1s
	answersMax, requestsMax   int64         // per client, during the ramp
	answersMean, requestsMean float64
}

// String is the ramp as key=value pairs.
func (rp ramp) String() string {
	return fmt.Sprintf("ramp_s=%.2f settled_s=%.2f ramp_answers_max=%d ramp_answers_mean=%.2f ramp_requests_max=%d ramp_requests_mean=%.2f",
		rp.took.Seconds(), rp.settled.Seconds(), rp.answersMax, rp.answersMean, rp.requestsMax, rp.requestsMean)
}

// setup starts n clients the way browsers arrive, each connecting and polling
// at once, and waits until all are parked. It returns the run, a function
// that ends it, what the ramp took, and an error when the server did not take
// every client.
func setup(ctx context.Context, cfg config, base string, n, pubs int) (*run, func(), ramp, error) {
	r := newRun(cfg, base, n, pubs)
	pollCtx, cancelPolls := context.WithCancel(ctx)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			r.stop(cancelPolls)
		}
	}

	start := time.Now()
	r.startAll(pollCtx)
	say("started %d clients in %s (arrival %s)", n, time.Since(start).Round(time.Millisecond), cfg.arrival)
	var rp ramp
	parked, first, settled := r.waitParked(ctx, time.Second, 2*time.Minute, func() {
		rp.answersMax, rp.answersMean = r.perClient(func(c *client) int64 { return c.answers.Load() })
		rp.requestsMax, rp.requestsMean = r.perClient(func(c *client) int64 { return c.requests.Load() })
	})
	rp.took, rp.settled = first.Sub(start), settled.Sub(start)
	say("ramp: %d/%d parked %s after the first connect; per client until then: poll answers max %d mean %.2f, requests max %d mean %.2f; settled (all parked, no answer for 1s) after %s; %s",
		parked, n, rp.took.Round(time.Millisecond), rp.answersMax, rp.answersMean, rp.requestsMax, rp.requestsMean, rp.settled.Round(time.Millisecond), r.errors())
	if parked < n {
		stop()
		return nil, nil, rp, fmt.Errorf("only %d of %d polls parked: %s", parked, n, r.errors())
	}
	return r, stop, rp, nil
}

// perClient is the largest and the mean of f over every client.
func (r *run) perClient(f func(c *client) int64) (int64, float64) {
	var most, sum int64
	for _, c := range r.clients {
		v := f(c)
		most = max(most, v)
		sum += v
	}
	return most, float64(sum) / float64(max(len(r.clients), 1))
}

// hold lets N clients arrive and park, measures the server's memory per
// parked client, then times a few broadcasts reaching all of them. Memory is
// read three times: once the ramp is over; in the steady state, after the
// first broadcast, when every connection has answered once and parked again
// (what a running server holds); and after the last broadcast. Each read is
// given with the requests each client had sent by then: a Go server's RSS
// also holds the garbage of every request since its last collection, which
// the collector lets grow to about the live heap before it runs (GOGC=100).
func hold(ctx context.Context, cfg config, base string) bool {
	pr := probe{cfg.pid}
	rss0 := pr.rss()
	say("server rss before connecting: %s", mib(rss0))
	r, stop, rp, err := setup(ctx, cfg, base, cfg.n, 1)
	if err != nil {
		say("FAIL: %v", err)
		summary("hold", false, "n=%d %s", cfg.n, rp)
		return false
	}
	defer stop()

	// Give the server's garbage collector a moment, then read its RSS.
	sleep(ctx, 2*time.Second)
	rss1 := pr.rss()
	sent := func() string {
		_, mean := r.perClient(func(c *client) int64 { return c.requests.Load() })
		return fmt.Sprintf("%.2f", mean)
	}
	kibPer := func(rss int64) string {
		if cfg.pid == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f", float64(rss-rss0)/float64(cfg.n)/1024)
	}
	if cfg.pid != 0 {
		say("server rss with %d parked after the ramp: %s, %s KiB per parked client over the idle server (%.1f KiB total/N); %s requests per client so far",
			cfg.n, mib(rss1), kibPer(rss1), float64(rss1)/float64(cfg.n)/1024, sent())
	}

	all := new(histogram)
	var rssSteady int64
	reached := true
	for b := 1; b <= cfg.broadcasts && ctx.Err() == nil; b++ {
		reached = timeBroadcast(ctx, r, pr, b, all) && reached
		if b == 1 && cfg.pid != 0 {
			sleep(ctx, 2*time.Second)
			rssSteady = pr.rss()
			say("server rss in the steady state (every client answered once and parked again): %s, %s KiB per parked client over the idle server; %s requests per client so far",
				mib(rssSteady), kibPer(rssSteady), sent())
		}
	}
	rss2 := pr.rss()
	if cfg.pid != 0 {
		say("server rss after the broadcasts: %s, %s KiB per parked client over the idle server; %s requests per client so far",
			mib(rss2), kibPer(rss2), sent())
	}
	if cfg.linger > 0 {
		say("lingering %s with every poll parked (for a profiler)", cfg.linger)
		sleep(ctx, cfg.linger)
	}
	stop()
	v := r.check()
	say("checks: %s %s", v, r.errors())
	pass := reached && v.ok() && r.emitErrs.Load() == 0
	steady, steadyPer := "n/a", "n/a"
	if rssSteady > 0 {
		steady, steadyPer = mib(rssSteady), kibPer(rssSteady)
	}
	summary("hold", pass, "n=%d parked=%d %s rss_idle=%s rss_parked=%s rss_per_client_kib=%s rss_steady=%s rss_steady_per_client_kib=%s rss_end=%s rss_end_per_client_kib=%s broadcasts=%d %s %s",
		cfg.n, cfg.n, rp, mib(rss0), mib(rss1), kibPer(rss1), steady, steadyPer, mib(rss2), kibPer(rss2), cfg.broadcasts, all.summary("wake_"), v)
	return pass
}

// timeBroadcast sends broadcast number b from the first publisher once every
// client is parked, and times its reaching them all and their polling again;
// it adds the wake-up times to all and reports whether every client had it.
func timeBroadcast(ctx context.Context, r *run, pr probe, b int, all *histogram) bool {
	if parked, _, _ := r.waitParked(ctx, 500*time.Millisecond, 30*time.Second, nil); parked < r.live() {
		say("broadcast %d: only %d/%d parked before it", b, parked, r.live())
	}
	h := new(histogram)
	r.lat.Store(h)
	self := probe{os.Getpid()}
	cpu0, own0, start := pr.cpu(), self.cpu(), time.Now()
	if err := r.emit(r.pubs[0]); err != nil {
		say("broadcast %d: emit failed: %v", b, err)
		return false
	}
	emitTook := time.Since(start)
	ok := r.waitDelivered(ctx, r.pubs[0].succeeded(), 30*time.Second)
	// Wait for the re-polls too: their cost is part of every delivery.
	r.waitParked(ctx, 200*time.Millisecond, 30*time.Second, nil)
	cpu, own := pr.cpu()-cpu0, self.cpu()-own0
	say("broadcast %d: reached %d/%d clients, %s (emit answered 204 after %s); cpu for the broadcast and the re-polls: server %s, loadtest %s",
		b, h.count(), r.live(), h.summary(""), ms(emitTook), cpu, own)
	merge(all, h)
	return ok
}

// merge adds every count of src to dst.
func merge(dst, src *histogram) {
	for b := range src.counts {
		if c := src.counts[b].Load(); c > 0 {
			dst.counts[b].Add(c)
		}
	}
	dst.n.Add(src.n.Load())
	if m := src.max.Load(); m > dst.max.Load() {
		dst.max.Store(m)
	}
}

// fanout has one publisher emit at a fixed rate to N parked clients and
// measures loss, latency and the server's CPU time per delivered message.
func fanout(ctx context.Context, cfg config, base string) (bool, float64) {
	pr := probe{cfg.pid}
	r, stop, _, err := setup(ctx, cfg, base, cfg.n, 1)
	if err != nil {
		say("FAIL: %v", err)
		return false, 0
	}
	defer stop()

	total := int(cfg.rate * cfg.duration.Seconds())
	self := probe{os.Getpid()}
	rss0, cpu0, own0, start := pr.rss(), pr.cpu(), self.cpu(), time.Now()
	stopMonitor := monitor(ctx, r, pr, start)
	pub := r.pubs[0]
	for i := range total {
		sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/cfg.rate*float64(time.Second)))))
		if ctx.Err() != nil {
			break
		}
		r.emit(pub)
	}
	emitted := time.Since(start)
	drained := r.waitDelivered(ctx, int64(total), 15*time.Second)
	cpu1, own1, took, rss1 := pr.cpu(), self.cpu(), time.Since(start), pr.rss()
	stopMonitor()
	say("emitted %d messages in %s, %.1f/s (asked for %g/s); every client had them all %s later (drained=%v)",
		pub.attempts.Load(), emitted.Round(time.Millisecond), float64(pub.attempts.Load())/emitted.Seconds(), cfg.rate,
		(took - emitted).Round(time.Millisecond), drained)
	deliveries := r.delivered.Load()
	cpu := cpu1 - cpu0
	say("server cpu %s for %d deliveries: %s per delivery (loadtest itself: %s per delivery); rss %s -> %s",
		cpu, deliveries, perUnit(cpu, deliveries, cfg.pid), perUnit(own1-own0, deliveries, 1), mib(rss0), mib(rss1))
	say("latency emit->delivery: %s", r.lat.Load().summary(""))
	stop()
	v := r.check()
	say("checks: %s %s", v, r.errors())
	pass := drained && v.ok() && r.emitErrs.Load() == 0
	summary("fanout", pass, "n=%d rate=%g duration=%s deliveries=%d cpu_per_delivery=%s %s rss_start=%s rss_end=%s %s",
		cfg.n, cfg.rate, cfg.duration, deliveries, perUnit(cpu, deliveries, cfg.pid), r.lat.Load().summary("latency_"), mib(rss0), mib(rss1), v)
	return pass, perMicro(cpu, deliveries)
}

// flood has several publishers emit back to back to N clients for a bounded
// time. A publisher waits while the slowest client is more than -window
// messages behind, so the run measures throughput, not evictions.
func flood(ctx context.Context, cfg config, base string) (bool, float64) {
	pr := probe{cfg.pid}
	pubs := min(cfg.publishers, cfg.n)
	r, stop, _, err := setup(ctx, cfg, base, cfg.n, pubs)
	if err != nil {
		say("FAIL: %v", err)
		return false, 0
	}
	defer stop()

	self := probe{os.Getpid()}
	cpu0, own0, rss0, start := pr.cpu(), self.cpu(), pr.rss(), time.Now()
	stopMonitor := monitor(ctx, r, pr, start)
	done := make(chan struct{})
	for _, pub := range r.pubs {
		go func() {
			defer func() { done <- struct{}{} }()
			for time.Since(start) < cfg.duration && ctx.Err() == nil {
				for cfg.window > 0 && r.emitted()-r.minGot() > int64(cfg.window) && time.Since(start) < cfg.duration {
					sleep(ctx, 100*time.Microsecond)
				}
				r.emit(pub)
			}
		}()
	}
	for range r.pubs {
		<-done
	}
	emitted := r.emitted()
	emitTook := time.Since(start)
	drained := r.waitDelivered(ctx, emitted, 15*time.Second)
	cpu1, own1, took, rss1 := pr.cpu(), self.cpu(), time.Since(start), pr.rss()
	stopMonitor()
	deliveries := r.delivered.Load()
	rate := float64(deliveries) / took.Seconds()
	cpu := cpu1 - cpu0
	say("%d publishers emitted %d messages in %s (%.0f/s); drained=%v after %s",
		pubs, emitted, emitTook.Round(time.Millisecond), float64(emitted)/emitTook.Seconds(), drained, took.Round(time.Millisecond))
	say("deliveries %d in %s: %.0f deliveries/s; server cpu %s: %s per delivery (loadtest itself: %s); rss %s -> %s",
		deliveries, took.Round(time.Millisecond), rate, cpu, perUnit(cpu, deliveries, cfg.pid), perUnit(own1-own0, deliveries, 1), mib(rss0), mib(rss1))
	say("latency emit->delivery: %s", r.lat.Load().summary(""))
	stop()
	v := r.check()
	say("checks: %s %s", v, r.errors())
	pass := drained && v.ok() && r.emitErrs.Load() == 0
	summary("flood", pass, "n=%d publishers=%d duration=%s emits=%d deliveries=%d deliveries_per_s=%.0f cpu_per_delivery=%s %s %s",
		cfg.n, pubs, cfg.duration, emitted, deliveries, rate, perUnit(cpu, deliveries, cfg.pid), r.lat.Load().summary("latency_"), v)
	return pass, rate
}

// emitted is the number of numbered messages all publishers have sent.
func (r *run) emitted() int64 {
	var n int64
	for _, p := range r.pubs {
		n += p.attempts.Load()
	}
	return n
}

// monitor prints the server's RSS and the deliveries every -every while a
// long run goes on, so growth shows; it returns a function that stops it.
func monitor(ctx context.Context, r *run, pr probe, start time.Time) func() {
	if r.cfg.every <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.cfg.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				say("t=%s server rss=%s cpu=%s threads=%s fds=%d delivered=%d parked=%d",
					time.Since(start).Round(time.Second), mib(pr.rss()), pr.cpu(), pr.threads(), pr.fds(), r.delivered.Load(), r.parked.Load())
			}
		}
	}()
	return func() { cancel(); <-done }
}

// perMicro is CPU time per unit in microseconds, 0 when unknown.
func perMicro(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu) / float64(n) / 1e3
}
