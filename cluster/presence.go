// presence.go owns the work that one node does for all: the online count and the
// expiry sweep. Every node ticks, but only the holder of a short lease in Redis acts,
// so a count is sent once, not once per node, and a dead holder is replaced within
// three ticks.

package main

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// presenceHold is how many presence intervals a count may be held back while
// clients keep coming or going, as in the single server.
const presenceHold = 4

// tickScript is one presence tick: KEYS epoch seq stream seen churn lease announced
// ticked held; ARGV newEpoch me leaseMs hold backlog. churn counts every arrival and
// departure; a changed count goes out at the first tick with no churn during the
// interval before it, or after `hold` held ticks. It returns 0 when another node
// holds the lease, 1 when this one does, 2 when it also sent a count.
var tickScript = redis.NewScript(ensureEpoch + `
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[3])
local churn = redis.call('GET', KEYS[5]) or '0'
local ticked = redis.call('GET', KEYS[8]) or '0'
redis.call('SET', KEYS[8], churn)
if churn == (redis.call('GET', KEYS[7]) or '0') then return 1 end
local held = tonumber(redis.call('GET', KEYS[9]) or '0')
if churn ~= ticked and held < tonumber(ARGV[4]) then
  redis.call('SET', KEYS[9], held + 1)
  return 1
end
redis.call('SET', KEYS[9], 0)
redis.call('SET', KEYS[7], churn)
local g = redis.call('INCR', KEYS[2])
local body = '"event":"online","data":' .. redis.call('ZCARD', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[5], '0-' .. g, 'b', body)
return 2
`)

// expireScript drops clients not seen since a cutoff: KEYS seen churn; ARGV cutoff
// prefix why graveMs limit whyFresh onlyFresh. Bounded per call, so one sweep never
// holds Redis long. A client that never polled (fresh) was noted at connect as seen
// earlier than it was (store.firstPollMs), and its grave says so; onlyFresh ("1")
// drops only those.
var expireScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[5])
local n = 0
for _, id in ipairs(ids) do
  local fresh = redis.call('HGET', ARGV[2] .. 'c:' .. id, 'fresh')
  if fresh or ARGV[7] ~= '1' then
    redis.call('DEL', ARGV[2] .. 'c:' .. id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('SET', ARGV[2] .. 'g:' .. id, fresh and ARGV[6] or ARGV[3], 'PX', ARGV[4])
    n = n + 1
  end
end
if n > 0 then redis.call('INCR', KEYS[2]) end
return n
`)

// presence ticks for one node.
type presence struct {
	st  *store
	cfg config
	me  string // this node's name, the lease's value
	log func(msg string, args ...any)
}

// run is the presence goroutine. It owns whether this node leads (from the last
// tick) and since when Redis has answered, talks only to Redis, and stops when ctx
// is done. No client is expired until Redis has answered for a whole TTL (one that
// never polled: for -first-poll): while it was away no poll could note a client as
// seen, so their last-seen times say nothing.
func (p *presence) run(ctx context.Context) {
	tick := time.NewTicker(p.cfg.presenceEvery)
	defer tick.Stop()
	sweep := time.NewTicker(max(p.cfg.firstPollWithin()/4, time.Millisecond)) // as the single server: 4 times per bound
	defer sweep.Stop()
	leading, up := false, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			var ok bool
			leading, ok = p.tick(ctx)
			if !ok {
				up = time.Time{}
			} else if up.IsZero() {
				up = now
			}
		case now := <-sweep.C:
			if leading && !up.IsZero() && now.Sub(up) >= p.cfg.firstPollWithin() {
				p.expire(ctx, now, now.Sub(up) < p.cfg.clientTTL)
			}
		}
	}
}

// tick runs one presence tick and says whether this node holds the lease, and
// whether Redis answered.
func (p *presence) tick(ctx context.Context) (bool, bool) {
	keys := p.st.keys("epoch", "seq", "stream", "seen", "churn", "lease", "announced", "ticked", "held")
	lease := 3 * p.cfg.presenceEvery.Milliseconds()
	n, err := tickScript.Run(ctx, p.st.rdb, keys, newEpoch(), p.me, max(lease, 3), presenceHold, p.st.backlog).Int()
	if err != nil && ctx.Err() == nil {
		p.log("presence tick failed", "err", err)
	}
	return n > 0, err == nil
}

// expire drops the clients that no node has seen polling for cfg.clientTTL, and those
// that never polled within cfg.firstPollWithin() of connecting; onlyFresh, only those.
// (While onlyFresh, the first 1,000 stale entries may be others, so a fresh one
// further on waits: at most until Redis has been up for a TTL.)
func (p *presence) expire(ctx context.Context, now time.Time, onlyFresh bool) {
	cutoff := now.Add(-p.cfg.clientTTL).UnixMilli()
	why := "expired: no poll for more than " + p.cfg.clientTTL.String()
	whyFresh := "expired: no first poll within " + p.cfg.firstPollWithin().String() + " of connecting"
	keys := p.st.keys("seen", "churn")
	err := expireScript.Run(ctx, p.st.rdb, keys, strconv.FormatInt(cutoff, 10), p.st.prefix, why, p.st.graveMs, 1000, whyFresh, onlyFresh).Err()
	if err != nil && ctx.Err() == nil {
		p.log("expiry sweep failed", "err", err)
	}
}
