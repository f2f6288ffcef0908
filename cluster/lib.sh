# lib.sh: starting the cluster's parts on loopback, for run.sh, bench.sh and ci.sh.
# Source it; every process started is remembered in PIDS and stopped by stop_all.
# Everything lives in one temporary folder, $DIR, removed at the end.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PIDS=()
DIR="$(mktemp -d /tmp/longpoll-cluster.XXXXXX)"

# need finds a program, or says how to install it and fails.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "$1 is missing: install it with  apt-get install -y $2" >&2
  return 1
}

# wait_port waits (at most 20 s) until something accepts on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1 after 20 s" >&2
  return 1
}

# build_node builds the node program into $DIR/node.
build_node() {
  (cd "$HERE" && go build -o "$DIR/node" .)
}

# start_redis PORT: redis-server with the append-only file on, in $DIR.
start_redis() {
  redis-server --port "$1" --bind 127.0.0.1 --dir "$DIR" --save '' --appendonly yes \
    --appendfsync everysec --daemonize no --logfile "$DIR/redis.log" &
  PIDS+=($!)
  REDIS_PID=$!
  wait_port "$1"
}

# start_node PORT REDIS_PORT [flags...]: one node, serving the root's static/.
start_node() {
  local port=$1 rport=$2
  shift 2
  # NODE_PROCS sets each node's GOMAXPROCS (0, the default, leaves Go's own choice).
  GOMAXPROCS=${NODE_PROCS:-0} "$DIR/node" -addr "127.0.0.1:$port" -node "node-$port" -redis "127.0.0.1:$rport" \
    -static "$HERE/../static" "$@" 2>>"$DIR/node-$port.log" &
  PIDS+=($!)
  NODE_PIDS+=($!)
  wait_port "$port"
}

# start_nginx PORT NODE_PORT...: nginx in front of the nodes, round-robin, no
# affinity; a poll a dead node held is passed to the next (GET is idempotent here:
# the cursor says what to send), an emit once sent is not (it may be appended).
# It passes the browser's Host on ($http_host, port included): each node's Host
# check and cross-origin check (guard.go) must see what the browser sent.
start_nginx() {
  local port=$1 servers="" user=""
  shift
  for p in "$@"; do servers+="    server 127.0.0.1:$p max_fails=1 fail_timeout=1s;"$'\n'; done
  [ "$(id -u)" = 0 ] && user="user root;" # workers would otherwise run as nobody
  cat >"$DIR/nginx.conf" <<EOF
$user
worker_processes 1;
error_log $DIR/nginx-error.log warn;
pid $DIR/nginx.pid;
events { worker_connections 16384; }
worker_rlimit_nofile 40000;
http {
  access_log off;
  client_body_temp_path $DIR/body;
  proxy_temp_path $DIR/proxy;
  fastcgi_temp_path $DIR/fastcgi;
  uwsgi_temp_path $DIR/uwsgi;
  scgi_temp_path $DIR/scgi;
  upstream nodes {
$servers    keepalive 256;
  }
  # Every request reaches a node from this nginx, so only nginx knows a client's
  # address: it bounds each address's connects (a burst of 1,000, then 20 a second)
  # and open connections (2,000: a tab holds a poll and an emit). Over either: 429.
  limit_req_zone \$binary_remote_addr zone=connects:10m rate=20r/s;
  limit_conn_zone \$binary_remote_addr zone=addrs:10m;
  server {
    listen 127.0.0.1:$port;
    keepalive_requests 1000000;
    client_max_body_size 1m;
    limit_conn addrs 2000;
    limit_conn_status 429;
    limit_req_status 429;
    error_page 429 = @busy;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_buffering off;
    proxy_read_timeout 60s;
    proxy_next_upstream error timeout;
    location / {
      proxy_pass http://nodes;
    }
    location = /connect {
      limit_req zone=connects burst=1000 nodelay;
      proxy_pass http://nodes;
    }
    location @busy {
      add_header Retry-After 2 always;
      add_header Cache-Control no-store always;
      default_type application/json;
      return 429 '{"error":"this address holds its share: too many connects or connections at once"}\n';
    }
  }
}
EOF
  nginx -p "$DIR" -c "$DIR/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
  NGINX_PID=$!
  wait_port "$port"
}

# stop_all stops everything started here, newest first, and removes $DIR.
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do wait "${PIDS[i]}" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$DIR"
}
