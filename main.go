// Longpoll is a lesson in server push over plain HTTP: a chat whose browsers long-poll
// one hub goroutine that owns every client's mailbox. main.go wires it in plain view:
// flags, the hub goroutine, the HTTP server, and a shutdown that answers every parked
// poll at once. Read hub.go next, then poll.go; README.md gives the reading order.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// static holds the chat page, built into the binary so it runs from any folder: the
// page's own files only, not static/test, the client's tests under Node.
//
//go:embed static/*.html static/*.js static/*.css
var static embed.FS

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "longpoll:", err)
		os.Exit(2)
	}
}

// defaultConfig is the hub's limits when no flag changes them.
func defaultConfig() config {
	return config{
		pollTimeout:   25 * time.Second,
		clientTTL:     45 * time.Second, // see pageHangGrace
		presenceEvery: time.Second,
		maxClients:    10000,
		maxPerAddress: 1000,             // a school behind one NAT address fits; 10 addresses to fill the server
		firstPoll:     10 * time.Second, // the page polls as soon as /connect answers
		mailbox:       1024,
		maxBatch:      65536,
		writeTimeout:  10 * time.Second,
		maxDepth:      32,    // a chat needs 2 or 3; see maxDepthCeiling for the readers' own limits
		emitRate:      65536, // a chat's person types far less; see rate.go
	}
}

// The page (static/backoff.js, its rules) gives up on a poll that hangs for the poll
// timeout + pageHangGrace, and polls again after a first back-off of at most
// pageFirstBackoff. An answer lost silently costs nothing only if the mailbox outlives
// that, so the default client TTL is poll timeout + hang grace + first back-off + a
// margin for the round trip and a busy machine: 25 s + 10 s + 0.5 s + 9.5 s = 45 s.
const (
	pageHangGrace    = 10 * time.Second
	pageFirstBackoff = 500 * time.Millisecond
)

// options are what the flags set.
type options struct {
	cfg        config
	addr       string
	maxMessage int64
	maxConns   int      // 0: derived from the descriptor limit (connLimit)
	allowHosts hostList // more hosts to answer besides loopback names (guard.go)
}

// run serves until ctx is done (SIGINT or SIGTERM), then shuts down cleanly.
// Tests call it directly with their own context and log writer.
func run(ctx context.Context, args []string, logTo io.Writer) error {
	o, err := parseFlags(args, logTo)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(logTo, nil))
	maxConns, limit, err := connLimit(o.maxConns)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hosts := checkHosts(ln.Addr(), o.allowHosts)
	log.Info("serving chat; open this URL in two tabs", "url", openURL(o.addr, ln.Addr()),
		"host-check", hosts != nil, "fd-limit", limit, "max-conns", maxConns)
	return serve(ctx, newConnCap(ln, maxConns), newHub(o.cfg), o.maxMessage, hosts, log)
}

// parseFlags reads the flags over the defaults and checks them.
func parseFlags(args []string, logTo io.Writer) (options, error) {
	o := options{cfg: defaultConfig()}
	cfg := &o.cfg
	flags := flag.NewFlagSet(filepath.Base(os.Args[0]), flag.ContinueOnError) // not go run's build-cache path
	flags.SetOutput(logTo)
	flags.StringVar(&o.addr, "addr", "localhost:8080", "`host:port` to listen on; port 0 picks a free one")
	flags.DurationVar(&cfg.pollTimeout, "poll-timeout", cfg.pollTimeout, "how long a poll may wait for news before it answers empty")
	flags.DurationVar(&cfg.clientTTL, "client-ttl", cfg.clientTTL, "a client with no poll waiting for this long is expired")
	flags.DurationVar(&cfg.presenceEvery, "presence-every", cfg.presenceEvery, "the online count goes to everybody at most this often, when it changed")
	flags.IntVar(&cfg.maxClients, "max-clients", cfg.maxClients, "connected clients at most; more get 503")
	flags.IntVar(&cfg.maxPerAddress, "max-per-address", cfg.maxPerAddress, "connected clients one address may hold (at most -max-clients); more get 429")
	flags.DurationVar(&cfg.firstPoll, "first-poll", cfg.firstPoll, "a client that has not polled this long after connecting is expired (at most -client-ttl)")
	flags.IntVar(&cfg.mailbox, "mailbox", cfg.mailbox, "unacknowledged messages a client may have before it is evicted")
	flags.IntVar(&cfg.maxBatch, "max-batch", cfg.maxBatch, "bytes of messages one poll answer carries at most (always at least one message)")
	flags.Int64Var(&o.maxMessage, "max-message", 65536, "bytes of request body an emit may carry")
	flags.IntVar(&cfg.maxDepth, "max-depth", cfg.maxDepth, "how deeply a message's data may nest arrays and objects; deeper gets 400")
	flags.IntVar(&cfg.emitRate, "emit-rate", cfg.emitRate, "bytes a second one address may emit, each emit counting 1 KiB more than its size; faster gets 429; 0 is no limit")
	flags.IntVar(&o.maxConns, "max-conns", 0, "connections open at once; more wait (0: the descriptor limit less "+strconv.Itoa(spareFDs)+")")
	flags.Var(&o.allowHosts, "allow-host", "a `host` to answer besides loopback names, when listening on loopback; repeat it or list them with commas")
	if err := flags.Parse(args); err != nil {
		return o, err
	}
	return o, o.check()
}

// check says which flag is out of range, if any.
func (o options) check() error {
	c := o.cfg
	if c.pollTimeout <= 0 || c.clientTTL <= 0 || c.presenceEvery <= 0 || c.firstPoll <= 0 || c.maxClients < 1 || c.maxPerAddress < 1 || c.mailbox < 1 || c.maxBatch < 1 || o.maxMessage < 1 || o.maxConns < 0 {
		return errors.New("-poll-timeout, -client-ttl, -first-poll and -presence-every must be positive; -max-clients, -max-per-address, -mailbox, -max-batch and -max-message at least 1; -max-conns at least 0")
	}
	if c.maxDepth < 1 || c.maxDepth > maxDepthCeiling {
		return fmt.Errorf("-max-depth must be 1 to %d: deeper, some JSON readers fail on the poll answer", maxDepthCeiling)
	}
	return nil
}

// serve runs the hub and the HTTP server on ln until ctx is done, then shuts both down.
// hosts, when not nil, is the Host check (guard.go); a cross-origin POST is always
// refused. If ln is a connCap, the server tells it which connections are idle.
func serve(ctx context.Context, ln net.Listener, h *hub, maxMessage int64, hosts *hostCheck, log *slog.Logger) error {
	go h.run()
	files, _ := fs.Sub(static, "static") // cannot fail: the folder is embedded
	polls := &answering{}
	srv := &http.Server{
		Handler:           hosts.wrap(sameOrigin(polls.count(routes(h, maxMessage, files)))),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second, // bodies; a parked GET is not reading, so it is not cut
		// No WriteTimeout: it would start when the request is read, so a poll's time
		// parked would count against its answer. Each answer gets cfg.writeTimeout
		// from when it starts instead (startAnswer).
		IdleTimeout: 60 * time.Second,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if c, ok := ln.(*connCap); ok {
		srv.ConnState = c.track
	}
	// Shutdown waits for requests to finish, and parked polls would wait out their
	// timeout: stopping the hub answers them all at once, with 503 and Retry-After.
	srv.RegisterOnShutdown(h.stopHub)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		h.stopHub()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	err := shutdown(srv, polls, log)
	<-h.done
	return err
}

// shutdown stops srv. Shutdown waits for every connection to go idle, and some never
// will in time: one that sent half a body, or nothing at all yet. So it gets a short
// grace; then, once the polls that stopping the hub answered have written their 503s
// (a busy machine may need longer than the grace for thousands), the rest is closed.
func shutdown(srv *http.Server, polls *answering, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		polls.wait(answerGrace)
		log.Info("closing connections still open after the grace", "grace", shutdownGrace)
		err = srv.Close()
	}
	return err
}

// shutdownGrace is how long a shutdown waits for every connection to go idle before
// it closes them, so that SIGTERM exits within about a second; answerGrace bounds the
// extra wait for poll answers still being written when the grace ends.
const (
	shutdownGrace = 500 * time.Millisecond
	answerGrace   = 5 * time.Second
)

// answering counts the polls in flight, JSON and socket.io GETs alike, from the
// request's arrival to its answer's last byte, so a shutdown can let them finish.
type answering struct{ n atomic.Int64 }

// count wraps next, counting the polls that pass through it.
func (a *answering) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/poll" || strings.HasPrefix(r.URL.Path, "/socket.io/")) {
			a.n.Add(1)
			defer a.n.Add(-1)
		}
		next.ServeHTTP(w, r)
	})
}

// wait returns when no poll is in flight, or after limit.
func (a *answering) wait(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for a.n.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// openURL names the port actually bound (so -addr 127.0.0.1:0 works) with the host
// the user asked for, or localhost when they asked for every interface.
func openURL(addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	port := bound.(*net.TCPAddr).Port
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
}
