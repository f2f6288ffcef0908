#!/usr/bin/env bash
# run.sh starts the chat as a cluster on loopback, in one command: Redis, three
# nodes and nginx in front of them (round-robin, no affinity). Open the URL it
# prints in two browsers; every answer's X-Node header names the node that gave
# it. Ctrl-C stops everything and removes the temporary folder.
#
#   cluster/run.sh              # http://127.0.0.1:8080/
#   PORT=9000 cluster/run.sh    # nginx on 9000, nodes on 9001-9003, Redis on 9010
#   cluster/run.sh -poll-timeout 10s   # any other arguments go to every node
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_all EXIT
trap 'exit 0' INT TERM

PORT=${PORT:-8080}
need redis-server redis-server
need nginx nginx
need go golang
build_node
start_redis $((PORT + 10))
for i in 1 2 3; do start_node $((PORT + i)) $((PORT + 10)) "$@"; done
start_nginx "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3))
echo "cluster ready: open http://127.0.0.1:$PORT/ in two browsers (Ctrl-C stops it; logs in $DIR)"
wait
