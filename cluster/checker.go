// checker.go owns how a node asks Redis about its polls. A client polls again at
// once after every answer, so asking Redis each time would cost a round trip per
// delivered message. Instead a node keeps a short-lived copy of each record it
// has read (at most `fresh` old) and notes the clients it served in Redis once per
// `fresh`, in one command; the checks it does send go as one pipeline. The copy is
// a cache, not a source: any node can answer any poll from Redis alone.

package main

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxPipeline bounds one pipeline, so that one slow batch cannot hold many polls.
const maxPipeline = 256

// errRecheck is the tail's answer to a poll checked from the copy that the copy
// cannot vouch for: a cursor past what this node has read, or another epoch.
var errRecheck = errors.New("check this poll against Redis")

// checkRequest is one poll's check for Redis. reply is buffered 1
// so that the checker never blocks on a handler that has gone.
type checkRequest struct {
	id    string
	after uint64
	reply chan checkReply
}

// checkReply is the client's record, or why the poll is refused.
type checkReply struct {
	c   client
	err error
}

// known is a copy of a record and when Redis said it.
type known struct {
	c  client
	at time.Time
}

// checker checks the polls of one node.
type checker struct {
	st     *store
	fresh  time.Duration     // how old a copy may be; also how often served clients are noted as seen
	checks chan checkRequest // handlers send, run receives
	copies copies
}

// copies are the records this node read in the last `fresh`, and the clients served
// from them since they were last noted as seen. A mutex guards them rather than the
// checker goroutine owning them: a hit is one map read, which a hop to a goroutine
// and back would cost several times over, on every poll.
type copies struct {
	mu     sync.Mutex
	known  map[string]known
	served map[string]bool
}

// newChecker makes a checker; call go k.run(ctx).
func newChecker(st *store, fresh time.Duration) *checker {
	return &checker{st: st, fresh: fresh, checks: make(chan checkRequest),
		copies: copies{known: map[string]known{}, served: map[string]bool{}}}
}

// get returns id's record if it was read less than fresh ago, and notes id as served.
func (cp *copies) get(id string, fresh time.Duration) (client, bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	c, ok := cp.known[id]
	if !ok || time.Since(c.at) >= fresh {
		return client{}, false
	}
	cp.served[id] = true
	c.c.known = true
	return c.c, true
}

// put keeps a record Redis just gave, or forgets id's (c is nil: Redis refused it).
func (cp *copies) put(id string, c *client, at time.Time) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if c == nil {
		delete(cp.known, id)
		return
	}
	cp.known[id] = known{*c, at}
}

// forget drops id's copy: it said goodbye here, or was evicted here.
func (cp *copies) forget(id string) { cp.put(id, nil, time.Time{}) }

// takeServed returns the clients served since the last call, and forgets stale copies.
func (cp *copies) takeServed(now time.Time, fresh time.Duration) []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	ids := slices.Collect(maps.Keys(cp.served))
	clear(cp.served)
	maps.DeleteFunc(cp.known, func(_ string, c known) bool { return now.Sub(c.at) >= fresh })
	return ids
}

// run is the checker goroutine. It owns the pipeline; handlers talk to it only
// through checks; it stops when ctx is done. It takes every check already waiting
// without waiting for more: a lone poll pays no delay, and while one pipeline is on
// its way the next batch gathers by itself. Every `fresh` it notes the clients served
// from copies as seen, in one command, on a goroutine that owns the ids and talks
// only to Redis.
func (k *checker) run(ctx context.Context) {
	note := time.NewTicker(k.fresh)
	defer note.Stop()
	for {
		select {
		case req := <-k.checks:
			k.send(ctx, k.gather(req))
		case now := <-note.C:
			if ids := k.copies.takeServed(now, k.fresh); len(ids) > 0 {
				go k.touch(ctx, ids)
			}
		case <-ctx.Done():
			return
		}
	}
}

// gather returns req and every check already waiting, up to maxPipeline.
func (k *checker) gather(req checkRequest) []checkRequest {
	batch := []checkRequest{req}
	for len(batch) < maxPipeline {
		select {
		case req := <-k.checks:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// touch notes ids as seen now.
func (k *checker) touch(ctx context.Context, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	k.st.touch(ctx, ids)
}

// send runs checkScript for every request in one pipeline, answers each, and keeps
// a copy of each record. A Redis that restarted has forgotten the script: those
// checks run again one by one, which loads it.
func (k *checker) send(ctx context.Context, batch []checkRequest) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	pipe := k.st.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, req := range batch {
		cmds[i] = checkScript.EvalSha(ctx, pipe, k.st.checkKeys(req.id), checkArgs(req.id, req.after)...)
	}
	pipe.Exec(ctx) // each command keeps its own error
	now := time.Now()
	for i, req := range batch {
		res, err := cmds[i].Slice()
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			res, err = checkScript.Run(ctx, k.st.rdb, k.st.checkKeys(req.id), checkArgs(req.id, req.after)...).Slice()
		}
		c, err := checked(req.after, res, err)
		if err == nil {
			k.copies.put(req.id, &c, now)
		} else {
			k.copies.put(req.id, nil, now)
		}
		req.reply <- checkReply{c, err}
	}
}

// check answers from a fresh copy, unless force, or asks Redis about one poll and
// waits for the answer, or for ctx.
func (k *checker) check(ctx context.Context, id string, after uint64, force bool) (client, error) {
	if !force {
		if c, ok := k.copies.get(id, k.fresh); ok {
			return c, nil
		}
	}
	req := checkRequest{id: id, after: after, reply: make(chan checkReply, 1)}
	select {
	case k.checks <- req:
	case <-ctx.Done():
		return client{}, redisErr(ctx.Err())
	}
	select {
	case r := <-req.reply:
		return r.c, r.err
	case <-ctx.Done():
		return client{}, redisErr(ctx.Err())
	}
}
