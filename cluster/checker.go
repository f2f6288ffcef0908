// checker.go owns how a node asks Redis about its polls: the checks of polls that
// arrive together go to Redis as one pipeline. After a message every client polls
// again at once, so a node gets its share of the crowd within a millisecond or two,
// and one round trip for all of them costs Redis and the node far less CPU than
// one each (docs/cluster.md has the figures).

package main

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// maxPipeline bounds one pipeline, so that one slow batch cannot hold many polls.
const maxPipeline = 256

// checkRequest is one poll's check. reply is buffered 1 so that the checker never
// blocks on a handler that has gone.
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

// checker batches checks for one node.
type checker struct {
	st     *store
	checks chan checkRequest // handlers send, run receives
}

// run is the checker goroutine. It owns the pipeline; handlers talk to it only
// through checks; it stops when ctx is done. It takes every check already waiting,
// without waiting for more: a lone poll pays no delay, and while one pipeline is
// on its way the next batch gathers by itself.
func (k *checker) run(ctx context.Context) {
	for {
		var batch []checkRequest
		select {
		case req := <-k.checks:
			batch = append(batch, req)
		case <-ctx.Done():
			return
		}
	gather:
		for len(batch) < maxPipeline {
			select {
			case req := <-k.checks:
				batch = append(batch, req)
			default:
				break gather
			}
		}
		k.send(ctx, batch)
	}
}

// send runs checkScript for every request in one pipeline and answers each. A
// Redis that restarted has forgotten the script: those checks run again one by
// one, which loads it.
func (k *checker) send(ctx context.Context, batch []checkRequest) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	pipe := k.st.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, req := range batch {
		cmds[i] = checkScript.EvalSha(ctx, pipe, k.st.checkKeys(req.id), checkArgs(req.id, req.after)...)
	}
	pipe.Exec(ctx) // each command keeps its own error
	for i, req := range batch {
		res, err := cmds[i].Slice()
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			res, err = checkScript.Run(ctx, k.st.rdb, k.st.checkKeys(req.id), checkArgs(req.id, req.after)...).Slice()
		}
		c, err := checked(req.after, res, err)
		req.reply <- checkReply{c, err}
	}
}

// check asks about one poll and waits for the answer, or for ctx.
func (k *checker) check(ctx context.Context, id string, after uint64) (client, error) {
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
