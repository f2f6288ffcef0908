#!/usr/bin/env bash
# bench.sh measures the cluster against its targets (docs/cluster.md), on loopback:
# Redis, three nodes and nginx, then loadtest -mode cluster twice (with one node
# SIGKILLed and restarted halfway, then without), then the single server with
# loadtest -mode fanout in the same minutes, with the same clients and messages;
# last, memory: each node's RSS and Redis's used_memory, idle and with HOLD
# clients parked through nginx (loadtest -mode hold).
#
#   cluster/bench.sh                  # 50 clients, 100 messages/s for 20 s: 2,000 messages
#   N=50 RATE=100 DURATION=20s cluster/bench.sh
#   NODE_PROCS=1 cluster/bench.sh     # each node with GOMAXPROCS=1: three nodes share two cores here
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_all EXIT
trap 'exit 130' INT TERM

N=${N:-50} RATE=${RATE:-100} DURATION=${DURATION:-20s} PORT=${PORT:-28080} HOLD=${HOLD:-3000}
need redis-server redis-server
need nginx nginx
build_node
(cd "$HERE/.." && go build -o "$DIR/single" . && go build -o "$DIR/loadtest" ./loadtest)
NODE_PIDS=()
start_redis $((PORT + 10))
start_node $((PORT + 1)) $((PORT + 10))
start_node $((PORT + 3)) $((PORT + 10))
# The second node is started by loadtest itself, which kills it halfway.
start_nginx "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3))
node2="$DIR/node -addr 127.0.0.1:$((PORT + 2)) -node node-$((PORT + 2)) -redis 127.0.0.1:$((PORT + 10)) -static $HERE/../static"
others="${NODE_PIDS[0]},${NODE_PIDS[1]},$REDIS_PID"
WORKER_PID=$(pgrep -P "$NGINX_PID" | head -1) # worker_processes 1: the worker does the proxying
lt=("$DIR/loadtest" -url "http://127.0.0.1:$PORT" -n "$N" -rate "$RATE" -duration "$DURATION" -proxy-pid "$WORKER_PID")

echo "== cluster, one node SIGKILLed and restarted halfway"
"${lt[@]}" -mode cluster -server "$node2" -pids "$others"
echo "== cluster, no kill (CPU per delivery, side by side with the single server below)"
start_node $((PORT + 2)) $((PORT + 10))
"${lt[@]}" -mode cluster -pids "$others,${NODE_PIDS[2]}"
echo "== the single server, fanout, same clients and messages"
"$DIR/single" -addr 127.0.0.1:$((PORT + 20)) 2>>"$DIR/single.log" &
PIDS+=($!)
wait_port $((PORT + 20))
"$DIR/loadtest" -mode fanout -url "http://127.0.0.1:$((PORT + 20))" -pid "${PIDS[-1]}" -n "$N" -rate "$RATE" -duration "$DURATION"

echo "== memory: each node's RSS (kB) and Redis's used_memory (bytes), idle and with $HOLD parked"
memory() {
  for p in "${NODE_PIDS[@]}"; do awk '/VmRSS/{printf "node_rss_kb=%s ", $2}' "/proc/$p/status"; done
  redis-cli -p $((PORT + 10)) info memory | awk -F: '/^used_memory:/{printf "redis_used_memory=%s", $2}'
  echo
}
echo "idle: $(memory)"
"$DIR/loadtest" -mode hold -url "http://127.0.0.1:$PORT" -n "$HOLD" -broadcasts 2 -linger 6s >"$DIR/hold.out" 2>&1 &
hold=$!
for _ in $(seq 1200); do grep -q lingering "$DIR/hold.out" && break; sleep 0.1; done
sleep 2 # into the linger: every client parked again after the broadcasts
echo "parked: $(memory)"
wait $hold
grep SUMMARY "$DIR/hold.out"
