// Command cluster is one node of the long-poll chat on Redis Streams: it serves the
// single server's JSON contract and page, with the one order, the clients and the
// presence lease in Redis, so that any node answers any poll. Run several behind a
// load balancer with no affinity (run.sh starts Redis, three nodes and nginx).
//
// main.go wires one node in plain view: flags, the Redis client, the reader, the
// tail and the presence goroutines, the HTTP server, and a shutdown that answers
// every parked poll at once.
package main

import (
	"context"
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
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(2)
	}
}

// options are the flags that are not the node's limits.
type options struct {
	addr, redisAddr, prefix, node, static string
	maxConns                              int      // 0: derived from the descriptor limit (conns.go)
	allowHosts                            hostList // more hosts to answer besides loopback names (guard.go)
}

// parse reads the flags into a config and options.
func parse(args []string, logTo io.Writer) (config, options, error) {
	cfg := config{writeTimeout: 10 * time.Second}
	var o options
	flags := flag.NewFlagSet("cluster", flag.ContinueOnError)
	flags.SetOutput(logTo)
	flags.StringVar(&o.addr, "addr", "localhost:8080", "`host:port` to listen on; port 0 picks a free one")
	flags.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis `host:port`, shared by every node")
	flags.StringVar(&o.prefix, "prefix", "lp:", "prefix of every Redis key, so that several chats can share one Redis")
	flags.StringVar(&o.node, "node", "", "this node's name, in the X-Node header (default: the bound address)")
	flags.StringVar(&o.static, "static", "../static", "the chat page's folder: the single server's static/")
	flags.DurationVar(&cfg.pollTimeout, "poll-timeout", 25*time.Second, "how long a poll may wait for news before it answers empty")
	flags.DurationVar(&cfg.clientTTL, "client-ttl", 30*time.Second, "a client no node has seen polling for this long is expired")
	flags.DurationVar(&cfg.presenceEvery, "presence-every", time.Second, "the online count goes to everybody at most this often, when it changed")
	flags.DurationVar(&cfg.firstPoll, "first-poll", 10*time.Second, "a client that has not polled this long after connecting is expired (at most -client-ttl)")
	flags.IntVar(&cfg.maxClients, "max-clients", 10000, "connected clients at most, over all nodes; more get 503")
	flags.IntVar(&cfg.backlog, "backlog", 1024, "messages the stream keeps; a client further behind gets 410")
	flags.IntVar(&cfg.maxBatch, "max-batch", 65536, "bytes of messages one poll answer carries at most (always at least one message)")
	flags.Int64Var(&cfg.maxMessage, "max-message", 65536, "bytes of request body an emit may carry")
	flags.IntVar(&cfg.maxDepth, "max-depth", 32, "how deeply a message's data may nest arrays and objects; deeper gets 400")
	flags.IntVar(&o.maxConns, "max-conns", 0, "connections open at once; more wait (0: the descriptor limit less "+strconv.Itoa(spareFDs)+")")
	flags.Var(&o.allowHosts, "allow-host", "a `host` to answer besides loopback names, when listening on loopback (behind a load balancer: the name browsers use); repeat it or list them with commas")
	if err := flags.Parse(args); err != nil {
		return cfg, o, err
	}
	return cfg, o, check(cfg, o)
}

// check says which flag is out of range, if any.
func check(cfg config, o options) error {
	if cfg.pollTimeout <= 0 || cfg.clientTTL <= 0 || cfg.presenceEvery <= 0 || cfg.firstPoll <= 0 || cfg.maxClients < 1 || cfg.backlog < 1 || cfg.maxBatch < 1 || cfg.maxMessage < 1 || o.maxConns < 0 {
		return errors.New("-poll-timeout, -client-ttl, -first-poll and -presence-every must be positive; -max-clients, -backlog, -max-batch and -max-message at least 1; -max-conns at least 0")
	}
	if cfg.maxDepth < 1 || cfg.maxDepth > maxDepthCeiling {
		return fmt.Errorf("-max-depth must be 1 to %d: deeper, some JSON readers fail on the poll answer", maxDepthCeiling)
	}
	return nil
}

// run serves one node until ctx is done, then shuts down cleanly.
func run(ctx context.Context, args []string, logTo io.Writer) error {
	cfg, o, err := parse(args, logTo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.static + "/index.html"); err != nil {
		return fmt.Errorf("-static %s has no index.html: point it at the single server's static/ folder", o.static)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	capped, hosts, fdLimit, err := atTheDoor(ln, o)
	if err != nil {
		ln.Close()
		return err
	}
	if o.node == "" {
		o.node = ln.Addr().String()
	}
	log := slog.New(slog.NewTextHandler(logTo, nil)).With("node", o.node)
	st := newStore(cfg, o)
	defer st.rdb.Close()
	log.Info("serving chat; open this URL in two tabs", "url", "http://"+ln.Addr().String()+"/", "redis", o.redisAddr,
		"host-check", hosts != nil, "fd-limit", fdLimit, "max-conns", cap(capped.slots))
	return serve(ctx, capped, cfg, st, &api{cfg: cfg, st: st, node: o.node, hosts: hosts}, os.DirFS(o.static), log)
}

// atTheDoor puts the single server's door checks on ln: the connection cap (conns.go)
// and the Host check (guard.go, nil when off); and says the descriptor limit.
func atTheDoor(ln net.Listener, o options) (*connCap, *hostCheck, uint64, error) {
	maxConns, fdLimit, err := connLimit(o.maxConns)
	if err != nil {
		return nil, nil, 0, err
	}
	return newConnCap(ln, maxConns), checkHosts(ln.Addr(), o.allowHosts), fdLimit, nil
}

// newStore connects to Redis (lazily: the first call dials) with the node's limits.
func newStore(cfg config, o options) *store {
	rdb := redis.NewClient(&redis.Options{
		Addr: o.redisAddr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, // a retried emit could append twice: a failure is a 503 instead
	})
	return &store{rdb: rdb, prefix: o.prefix, backlog: cfg.backlog, maxClients: cfg.maxClients, graveMs: (10 * cfg.clientTTL).Milliseconds(),
		firstPollMs: (cfg.clientTTL - cfg.firstPollWithin()).Milliseconds()}
}

// serve runs the node's goroutines and HTTP server on ln until ctx is done.
func serve(ctx context.Context, ln net.Listener, cfg config, st *store, a *api, files fs.FS, log *slog.Logger) error {
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	a.tail = newTail(cfg, func(ids []string) {
		tctx, cancel := context.WithTimeout(bg, redisTimeout)
		defer cancel()
		st.touch(tctx, ids)
	})
	go a.tail.run()
	a.chk = newChecker(st, min(time.Second, cfg.clientTTL/4))
	go a.chk.run(bg)
	rd := &reader{st: st, tail: a.tail, block: min(time.Second, cfg.presenceEvery), log: log.Warn}
	go rd.run(bg)
	p := &presence{st: st, cfg: cfg, me: a.node + "/" + newEpoch(), log: log.Warn}
	go p.run(bg)

	srv := &http.Server{
		Handler:           routes(a, files),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second, // bodies; a parked GET is not reading, so it is not cut
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if c, ok := ln.(*connCap); ok {
		srv.ConnState = c.track // idle connections may be closed to make room
	}
	srv.RegisterOnShutdown(a.tail.stopTail) // parked polls answer 503 at once
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		a.tail.stopTail()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	<-a.tail.done
	return err
}

// shutdownGrace is how long a shutdown waits for answers in flight, as in the single server.
const shutdownGrace = 500 * time.Millisecond
