// reader.go owns a node's read position in the stream: one goroutine blocks on
// XREAD and hands what it reads to the tail, so that a node asks Redis once per
// batch of entries, not once per parked poll. It also watches the epoch, which is
// how a node learns that Redis lost data.

package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// loadScript reads the whole kept stream and the sequence in one step, so the two
// agree: KEYS epoch seq stream; ARGV newEpoch.
var loadScript = redis.NewScript(ensureEpoch + `
return {epoch, redis.call('GET', KEYS[2]) or '0', redis.call('XRANGE', KEYS[3], '-', '+')}
`)

// rotateScript starts the one order afresh under a new epoch when Redis has gone back
// in time (its sequence is below what nodes have read): KEYS epoch seq stream seen
// churn; ARGV old new. Every client of the old epoch then hears 410 and reconnects.
var rotateScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('INCR', KEYS[5])
return 1
`)

// reader follows the stream for one tail.
type reader struct {
	st    *store
	tail  *tail
	block time.Duration // how long one XREAD waits; the epoch is compared at least this often
	log   func(msg string, args ...any)
}

// run is the reader goroutine. It owns the read position, talks to Redis and sends to
// the tail only, and stops when ctx is done. Each turn of the loop loads a snapshot
// and follows the stream from it until the epoch changes or Redis fails.
func (rd *reader) run(ctx context.Context) {
	pause := 50 * time.Millisecond
	for ctx.Err() == nil {
		snap, err := rd.load(ctx)
		if err != nil {
			rd.log("cannot load the stream; trying again", "err", err, "in", pause)
			sleep(ctx, pause)
			pause = min(pause*2, 2*time.Second)
			continue
		}
		pause = 50 * time.Millisecond
		select {
		case rd.tail.reset <- snap:
		case <-ctx.Done():
			return
		}
		if err := rd.follow(ctx, snap); err != nil && ctx.Err() == nil {
			rd.log("stopped following the stream; loading it again", "err", err)
			sleep(ctx, pause)
		}
	}
}

// load reads a snapshot of the stream.
func (rd *reader) load(ctx context.Context) (snapshot, error) {
	res, err := loadScript.Run(ctx, rd.st.rdb, rd.st.keys("epoch", "seq", "stream"), newEpoch()).Slice()
	if err != nil {
		return snapshot{}, err
	}
	raw, _ := res[2].([]any)
	entries := make([]entry, 0, len(raw))
	for _, r := range raw {
		pair := r.([]any) // XRANGE answers [id, [field, value, ...]]
		fields := pair[1].([]any)
		entries = append(entries, entry{g: seqOf(pair[0].(string)), body: []byte(fields[1].(string))})
	}
	return snapshot{epoch: res[0].(string), next: parseUint(res[1]) + 1, entries: entries}, nil
}

// follow reads entries after snap as they come and hands them to the tail. It returns
// when the epoch is no longer snap's, or when Redis is below what this node has read
// (Redis lost data: the epoch is rotated, so no client is left with a silent gap).
func (rd *reader) follow(ctx context.Context, snap snapshot) error {
	last := snap.next - 1
	checked := time.Now()
	for ctx.Err() == nil {
		streams, err := rd.st.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{rd.st.key("stream"), entryID(last)}, Count: 1000, Block: rd.block,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if len(streams) > 0 && len(streams[0].Messages) > 0 {
			entries := toEntries(streams[0].Messages)
			last = entries[len(entries)-1].g
			select {
			case rd.tail.grow <- entries:
			case <-ctx.Done():
				return nil
			}
		}
		if time.Since(checked) >= rd.block || rd.asked() {
			checked = time.Now()
			if err := rd.compare(ctx, snap.epoch, last); err != nil {
				return err
			}
		}
	}
	return nil
}

// asked says whether the tail asked for a recheck since the last one.
func (rd *reader) asked() bool {
	select {
	case <-rd.tail.recheck:
		return true
	default:
		return false
	}
}

// errMoved ends follow: the snapshot no longer matches Redis.
var errMoved = errors.New("the epoch changed or Redis lost entries this node had read")

// compare checks the epoch and the sequence against what this node has read.
func (rd *reader) compare(ctx context.Context, epoch string, last uint64) error {
	vals, err := rd.st.rdb.MGet(ctx, rd.st.key("epoch"), rd.st.key("seq")).Result()
	if err != nil {
		return err
	}
	now, _ := vals[0].(string)
	if now != epoch {
		return errMoved
	}
	if seq := parseUint(vals[1]); seq < last { // a missing sequence reads as 0
		keys := rd.st.keys("epoch", "seq", "stream", "seen", "churn")
		rd.log("Redis is behind what this node read: starting a new epoch", "read", last, "redis", seq)
		if err := rotateScript.Run(ctx, rd.st.rdb, keys, epoch, newEpoch()).Err(); err != nil {
			return err
		}
		return errMoved
	}
	return nil
}

// toEntries copies XREAD's messages into entries.
func toEntries(msgs []redis.XMessage) []entry {
	entries := make([]entry, len(msgs))
	for i, m := range msgs {
		body, _ := m.Values["b"].(string)
		entries[i] = entry{g: seqOf(m.ID), body: []byte(body)}
	}
	return entries
}

// seqOf reads G from an entry id "0-G".
func seqOf(id string) uint64 {
	_, g, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(g, 10, 64)
	return n
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
