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
	"time"

	"github.com/redis/go-redis/v9"
)

// maxPipeline bounds one pipeline, so that one slow batch cannot hold many polls.
const maxPipeline = 256

// errRecheck is the tail's answer to a poll checked from the copy that the copy
// cannot vouch for: a cursor past what this node has read, or another epoch.
var errRecheck = errors.New("check this poll against Redis")

// checkRequest is one poll's check; force skips the copy. reply is buffered 1
// so that the checker never blocks on a handler that has gone.
type checkRequest struct {
	id    string
	after uint64
	force bool
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
}

// run is the checker goroutine. It owns the copies and the clients served since
// they were last noted as seen; handlers talk to it only through checks; it stops
// when ctx is done. It takes every check already waiting without waiting for
// more: a lone poll pays no delay, and while one pipeline is on its way the next
// batch gathers by itself.
func (k *checker) run(ctx context.Context) {
	copies, served := map[string]known{}, map[string]bool{}
	note := time.NewTicker(k.fresh)
	defer note.Stop()
	for {
		var batch []checkRequest
		select {
		case req := <-k.checks:
			batch = k.gather(req, copies, served)
		case now := <-note.C:
			k.note(ctx, now, copies, served)
			continue
		case <-ctx.Done():
			return
		}
		if len(batch) > 0 {
			k.send(ctx, batch, copies)
		}
	}
}

// gather answers from the copies what it can and returns the checks for Redis:
// req and every check already waiting, up to maxPipeline.
func (k *checker) gather(req checkRequest, copies map[string]known, served map[string]bool) []checkRequest {
	var batch []checkRequest
	now := time.Now()
	for {
		if c, ok := copies[req.id]; ok && !req.force && now.Sub(c.at) < k.fresh {
			served[req.id] = true
			c.c.known = true
			req.reply <- checkReply{c: c.c}
		} else {
			batch = append(batch, req)
		}
		if len(batch) >= maxPipeline {
			return batch
		}
		select {
		case req = <-k.checks:
		default:
			return batch
		}
	}
}

// note tells Redis that the clients served from copies were seen, in one command,
// and forgets stale copies. The touch goroutine owns ids and talks only to Redis.
func (k *checker) note(ctx context.Context, now time.Time, copies map[string]known, served map[string]bool) {
	ids := slices.Collect(maps.Keys(served))
	clear(served)
	maps.DeleteFunc(copies, func(_ string, c known) bool { return now.Sub(c.at) >= k.fresh })
	if len(ids) > 0 {
		go func() {
			tctx, cancel := context.WithTimeout(ctx, redisTimeout)
			defer cancel()
			k.st.touch(tctx, ids)
		}()
	}
}

// send runs checkScript for every request in one pipeline, answers each, and keeps
// a copy of each record. A Redis that restarted has forgotten the script: those
// checks run again one by one, which loads it.
func (k *checker) send(ctx context.Context, batch []checkRequest, copies map[string]known) {
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
			copies[req.id] = known{c, now}
		} else {
			delete(copies, req.id)
		}
		req.reply <- checkReply{c, err}
	}
}

// check asks about one poll and waits for the answer, or for ctx.
func (k *checker) check(ctx context.Context, id string, after uint64, force bool) (client, error) {
	req := checkRequest{id: id, after: after, force: force, reply: make(chan checkReply, 1)}
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
