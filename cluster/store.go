// store.go owns what every node shares, in Redis: the one order (a stream), the
// clients (records and a set by last seen), the epoch, and the presence lease. Each
// operation that reads and writes is one Lua script, so Redis runs it as one step
// and two nodes can never interleave halfway through a connect or an emit.

package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// store is one node's handle on Redis. Its fields never change after newStore.
type store struct {
	rdb        *redis.Client
	prefix     string // every key starts with it, so that tests and runs can share one Redis
	backlog    int    // stream entries Redis keeps; a cursor behind them gets 410
	maxClients int    // clients registered at most; more get 503
	graveMs    int64  // how long a departed id's reason is kept, for a clear 410
	// firstPollMs is how much earlier than now a connect is noted as seen: the expiry
	// sweep then drops one that never polls after -first-poll, not a whole TTL.
	firstPollMs int64
}

// The keys, named once. The stream's entry ids are "0-G": G is the global
// sequence, so an id says where an entry stands and a gap says what was trimmed.
func (s *store) key(name string) string  { return s.prefix + name }
func (s *store) record(id string) string { return s.prefix + "c:" + id }
func (s *store) grave(id string) string  { return s.prefix + "g:" + id }
func entryID(g uint64) string            { return "0-" + strconv.FormatUint(g, 10) }

// newEpoch names a fresh start of the one order.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// keys prefixes each name.
func (s *store) keys(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.key(n)
	}
	return out
}

// Errors a store call answers with; api.go maps them to statuses.
var (
	errFull    = errors.New("server full: too many clients connected")
	errStopped = errors.New("server shutting down: come back in a moment")
	errRedis   = errors.New("the shared store (Redis) is unreachable: come back in a moment")
	errCatchUp = errors.New("this node is catching up with the shared store: come back in a moment")
)

// goneError says why an id has no record (HTTP 410).
type goneError struct{ why string }

func (e goneError) Error() string { return e.why }

// cursorError is an `after` beyond anything that exists for the client (HTTP 400).
type cursorError struct{ after, last uint64 }

func (e cursorError) Error() string {
	return fmt.Sprintf("after=%d is beyond the highest seq that exists for this client (%d)", e.after, e.last)
}

// Reasons an id went, as the 410 says them.
const (
	whyUnknown = "unknown id: never connected here, or gone long ago; connect again"
	whyLost    = "lost: the shared store lost messages (Redis restarted without them); connect again, messages may be missing"
	whyBye     = "disconnected: this id said goodbye"
)

// ensureEpoch is the start of every script that may be the first to write: a missing
// epoch means Redis is new or lost its data, so the order starts afresh under a new one.
const ensureEpoch = `
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3])
end
`

// connectScript registers a client: KEYS epoch seq stream seen churn record;
// ARGV newEpoch id seen maxClients. Its base is the sequence now: it gets what comes after.
// fresh marks a client that has not polled yet, for the expiry's reason.
var connectScript = redis.NewScript(ensureEpoch + `
local n = redis.call('ZCARD', KEYS[4])
if n >= tonumber(ARGV[4]) then return {'full'} end
local base = redis.call('GET', KEYS[2]) or '0'
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[6], 'base', base, 'count', n + 1, 'epoch', epoch, 'fresh', 1)
redis.call('INCR', KEYS[5])
return {'ok', epoch, base, n + 1}
`)

// client is what a poll needs to know about its client, from its record.
type client struct {
	epoch string
	base  uint64 // the sequence at connect: seq s is entry base+s-1, seq 1 the greeting
	count int    // the online count at connect: the greeting
	known bool   // from this node's copy, not read from Redis for this poll (checker.go)
}

// connect registers id and returns its record.
func (s *store) connect(ctx context.Context, id string) (client, error) {
	keys := append(s.keys("epoch", "seq", "stream", "seen", "churn"), s.record(id))
	res, err := connectScript.Run(ctx, s.rdb, keys, newEpoch(), id, nowMs()-s.firstPollMs, s.maxClients).Slice()
	if err != nil {
		return client{}, redisErr(err)
	}
	if res[0] == "full" {
		return client{}, errFull
	}
	return client{epoch: res[1].(string), base: parseUint(res[2]), count: int(res[3].(int64))}, nil
}

// checkScript is a poll's arrival: KEYS epoch seq seen record grave; ARGV id now after.
// It says why a gone id went, refuses a cursor past what exists, and notes the client
// as seen. A record from before the epoch changed is gone: Redis lost what it had.
var checkScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[4], 'base', 'count', 'epoch')
if not r[1] then return {'gone', redis.call('GET', KEYS[5]) or ''} end
local epoch = redis.call('GET', KEYS[1])
if r[3] ~= epoch then
  redis.call('DEL', KEYS[4])
  return {'lost'}
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0') - tonumber(r[1]) + 1
if tonumber(ARGV[3]) > last then return {'cursor', last} end
redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[4], 'fresh')
return {'ok', epoch, r[1], tonumber(r[2])}
`)

// checkKeys and checkArgs are checkScript's keys and arguments for one poll.
func (s *store) checkKeys(id string) []string {
	return append(s.keys("epoch", "seq", "seen"), s.record(id), s.grave(id))
}

func checkArgs(id string, after uint64) []any { return []any{id, nowMs(), after} }

// checked reads checkScript's answer for a poll with cursor after.
func checked(after uint64, res []any, err error) (client, error) {
	if err != nil {
		return client{}, redisErr(err)
	}
	switch res[0] {
	case "gone":
		return client{}, goneError{cmp.Or(res[1].(string), whyUnknown)}
	case "lost":
		return client{}, goneError{whyLost}
	case "cursor":
		return client{}, cursorError{after, uint64(max(res[1].(int64), 0))}
	}
	return client{epoch: res[1].(string), base: parseUint(res[2]), count: int(res[3].(int64))}, nil
}

// emitScript appends one message to the one order: KEYS epoch seq stream record grave;
// ARGV backlog body. INCR and XADD in one script: the entry's id is its sequence.
var emitScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[4], 'epoch')
if not e then return {'gone', redis.call('GET', KEYS[5]) or ''} end
if e ~= redis.call('GET', KEYS[1]) then return {'lost'} end
local g = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[1], '0-' .. g, 'b', ARGV[2])
return {'ok', g}
`)

// emit appends body (`"event":"E","data":D`) on behalf of id.
func (s *store) emit(ctx context.Context, id string, body []byte) error {
	keys := append(s.keys("epoch", "seq", "stream"), s.record(id), s.grave(id))
	res, err := emitScript.Run(ctx, s.rdb, keys, s.backlog, body).Slice()
	if err != nil {
		return redisErr(err)
	}
	switch res[0] {
	case "gone":
		return goneError{cmp.Or(res[1].(string), whyUnknown)}
	case "lost":
		return goneError{whyLost}
	}
	return nil
}

// leaveScript removes a client and remembers why: KEYS record seen churn grave;
// ARGV id why graveMs. Leaving twice is fine.
var leaveScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('INCR', KEYS[3])
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
end
return 0
`)

// leave removes id, remembering why for its late polls.
func (s *store) leave(ctx context.Context, id, why string) error {
	keys := []string{s.record(id), s.key("seen"), s.key("churn"), s.grave(id)}
	return redisErr(leaveScript.Run(ctx, s.rdb, keys, id, why, s.graveMs).Err())
}

// touch notes ids as seen now: the clients whose polls this node holds parked.
func (s *store) touch(ctx context.Context, ids []string) error {
	members := make([]redis.Z, len(ids))
	now := float64(time.Now().UnixMilli())
	for i, id := range ids {
		members[i] = redis.Z{Score: now, Member: id}
	}
	return redisErr(s.rdb.ZAddXX(ctx, s.key("seen"), members...).Err())
}

// redisErr turns any Redis failure into errRedis (503), keeping the cause for logs.
func redisErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return fmt.Errorf("%w (%v)", errRedis, err)
}

func nowMs() int64 { return time.Now().UnixMilli() }

func parseUint(v any) uint64 {
	n, _ := strconv.ParseUint(fmt.Sprint(v), 10, 64)
	return n
}
