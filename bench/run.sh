#!/usr/bin/env bash
# bench/run.sh — forklb vs nginx vs HAProxy, on this machine, in one go.
#
#   make bench                 # ROUNDS=3 DURATION=10s IDLE_CONNS=10000
#   QUICK=1 make bench         # ROUNDS=1 DURATION=3s  IDLE_CONNS=1000 (smoke test)
#   ROUNDS=5 DURATION=20s bash bench/run.sh
#   KEEP_TMP=1 ...             # keep the temp dir (configs, logs, raw wrk output)
#   QUIET_WAIT=60              # before each run, wait up to this many seconds for
#                              # other CPU users (compilers, tests) to go quiet
#   NOISE_RETRIES=2            # repeat a run (at most this often) when other processes
#                              # used > 20% of a core during it; the quietest is kept
#
# Layout: one nginx "backend pair" (two ports, / = "hello\n", /1m = 1 MiB file)
# and three proxies in front of it (forklb, nginx, HAProxy), each with 2
# workers/threads and upstream keep-alive where supported. Every scenario is
# run against the three proxies in turn, round after round (interleaved so that
# drift in machine load hits all three alike); the median is reported.
#
# Everything listens on 127.0.0.1, on free high ports picked at start; all state
# is in a mktemp -d directory; every process we start is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
HELP="python3 $HERE/helpers.py"
# nginx and haproxy live in /usr/sbin, which is not on an ordinary user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# ---------------------------------------------------------------- parameters
if [[ "${QUICK:-0}" == 1 ]]; then
    : "${ROUNDS:=1}" "${DURATION:=3s}" "${IDLE_CONNS:=1000}"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
IDLE_CONNS=${IDLE_CONNS:-10000}
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"   # wrk wants a unit
[[ "$DURATION" =~ ^[0-9]+s$ ]] || { echo "DURATION must be seconds, e.g. 10s" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 1; }

log() { printf '==> %s\n' "$*"; }

# ---------------------------------------------------------------- tools
# Install only what is missing (a fresh Debian/Ubuntu machine has none of them).
missing=()
command -v nginx   >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk     >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

log "building forklb (cargo build --release)"
(cd "$ROOT" && cargo build --release)

# ---------------------------------------------------------------- temp dir, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/forklb-bench.XXXXXX")
# When run as root, nginx workers run as "nobody": they must be able to reach
# the 1 MiB file in here (mktemp -d makes the directory 0700).
chmod 755 "$TMP"
# Use a private copy of the binary: other people may rebuild target/ meanwhile.
cp "$ROOT/target/release/forklb" "$TMP/forklb"

PIDS=()   # every process we start (masters; their workers are found via /proc)
cleanup() {
    local rc=$? pid kids=()
    trap - EXIT INT TERM
    # Note the workers first: if a master is already gone they would be orphans.
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kids+=($($HELP procs "$pid" 2>/dev/null)) || true
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Bounded wait (5 s) for a clean exit, then SIGKILL whatever is left.
    for _ in $(seq 50); do
        local alive=0
        for pid in "${kids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Use the hard limit of open files: 10,000 idle client connections need
# 10,000 fds in the client and at least as many in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if ((NOFILE < IDLE_CONNS + 200)); then
    echo "warning: open files limit is $NOFILE, fewer than IDLE_CONNS=$IDLE_CONNS need;" \
         "the memory scenario will open as many as it can" >&2
fi

# Free ports: backend pair, then one per proxy.
read -r BE1 BE2 P_FORKLB P_NGINX P_HAPROXY < <($HELP freeports 5)

# 1 MiB static body for /1m.
mkdir -p "$TMP/www" "$TMP/backend" "$TMP/forklb-conf" "$TMP/nginx" "$TMP/haproxy" "$TMP/raw"
head -c 1048576 /dev/urandom > "$TMP/www/1m"

# ---------------------------------------------------------------- backend pair (nginx)
# One nginx process serves both backend ports; keep-alive is generous so the
# proxies' pooled connections are never closed under them.
cat > "$TMP/backend/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$BE1 backlog=4096;
        listen 127.0.0.1:$BE2 backlog=4096;
        root $TMP/www;
        location = / { return 200 "hello\n"; }
        location = /1m { default_type application/octet-stream; }
    }
}
EOF

# ---------------------------------------------------------------- forklb
cat > "$TMP/forklb-conf/forklb.yaml" <<EOF
version: 1
workers: 2
log_level: warn
error_log: $TMP/forklb-conf/error.log
pid_file: $TMP/forklb-conf/forklb.pid
listeners:
  - name: bench
    bind: ["127.0.0.1:$P_FORKLB"]
    routes: [{upstream: be}]
upstreams:
  be:
    keepalive: 32
    servers:
      - {addr: "127.0.0.1:$BE1"}
      - {addr: "127.0.0.1:$BE2"}
EOF

# ---------------------------------------------------------------- nginx as a proxy
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
# worker_connections counts client and upstream connections of one worker.
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    upstream be {
        server 127.0.0.1:$BE1;
        server 127.0.0.1:$BE2;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

# ---------------------------------------------------------------- HAProxy
# HAProxy budgets two fds per connection (client + server side) and refuses to
# start if maxconn*2 (+ a few) exceeds the open files limit it can get. With a
# hard limit of 20000 it can therefore hold at most ~9,950 client connections;
# the memory scenario then reports how many it really got.
HAPROXY_MAXCONN=$((IDLE_CONNS + 500))
if ((HAPROXY_MAXCONN > (NOFILE - 64) / 2)); then
    HAPROXY_MAXCONN=$(((NOFILE - 64) / 2))
    echo "note: open files limit $NOFILE caps HAProxy at maxconn $HAPROXY_MAXCONN" \
         "(2 fds per connection), below IDLE_CONNS=$IDLE_CONNS" | tee -a "$TMP/notes.txt" >&2
fi
cat > "$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn $HAPROXY_MAXCONN
    pidfile $TMP/haproxy/haproxy.pid
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    timeout http-request 10s
frontend bench
    bind 127.0.0.1:$P_HAPROXY
    default_backend be
backend be
    balance roundrobin
    server be1 127.0.0.1:$BE1
    server be2 127.0.0.1:$BE2
EOF

# ---------------------------------------------------------------- start everything
# start NAME PORT CMD... : run CMD in the background, remember its pid, wait
# (bounded) for its port; on failure show its logs and stop.
start() {
    local name=$1 port=$2; shift 2
    "$@" >"$TMP/$name.stdout" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    if ! $HELP waitport "$port" 15 || ! kill -0 "$pid" 2>/dev/null; then
        echo "$name did not start; its output:" >&2
        tail -n 30 "$TMP/$name.stdout" "$TMP"/*/error.log >&2 2>/dev/null || true
        exit 1
    fi
    eval "PID_$name=$pid"
}

log "starting backend nginx on 127.0.0.1:$BE1 and :$BE2"
start backend "$BE2" nginx -p "$TMP/backend/" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/error.log"
$HELP waitport "$BE1" 5

log "starting forklb on :$P_FORKLB"
"$TMP/forklb" -t -c "$TMP/forklb-conf/forklb.yaml" >/dev/null
start forklb "$P_FORKLB" "$TMP/forklb" -c "$TMP/forklb-conf/forklb.yaml"
# forklb writes its pid file once the workers serve; wait for it (bounded).
for _ in $(seq 100); do [[ -s "$TMP/forklb-conf/forklb.pid" ]] && break; sleep 0.1; done
[[ -s "$TMP/forklb-conf/forklb.pid" ]] || { echo "forklb wrote no pid file" >&2; exit 1; }

log "starting nginx proxy on :$P_NGINX"
start nginx "$P_NGINX" nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"

log "starting haproxy on :$P_HAPROXY"
start haproxy "$P_HAPROXY" haproxy -db -f "$TMP/haproxy/haproxy.cfg"

declare -A PORT=([forklb]=$P_FORKLB [nginx]=$P_NGINX [haproxy]=$P_HAPROXY)
declare -A PID=([forklb]=$PID_forklb [nginx]=$PID_nginx [haproxy]=$PID_haproxy)
PROXIES=(forklb nginx haproxy)
# The wrk helper subtracts the backend's CPU when it estimates foreign load.
export BENCH_BACKEND_PID=$PID_backend
for p in "${PROXIES[@]}"; do
    log "$p: processes $($HELP procs "${PID[$p]}")"
done

# Sanity: each proxy answers / and /1m correctly before we measure anything.
for p in "${PROXIES[@]}"; do
    $HELP check "${PORT[$p]}" / 6 && $HELP check "${PORT[$p]}" /1m 1048576 "$TMP/www/1m" \
        || { echo "$p does not proxy correctly; aborting" >&2; exit 1; }
done

# ---------------------------------------------------------------- run header
RESULTS="$TMP/results.jsonl"
HEADER="$TMP/header.txt"
{
    echo "forklb benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
    echo "ROUNDS=$ROUNDS DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS$([[ ${QUICK:-0} == 1 ]] && echo ' (QUICK)')"
    echo "$("$TMP/forklb" -V 2>&1 | head -n1) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty')), $(nginx -v 2>&1), $(haproxy -v 2>&1 | head -n1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
    cat "$TMP/notes.txt" 2>/dev/null || true
} > "$HEADER"
cat "$HEADER"

# Warm-up: one short keep-alive run per proxy (page cache, allocator, pools).
log "warm-up (2s per proxy, not measured)"
for p in "${PROXIES[@]}"; do
    timeout 30 wrk -t2 -c50 -d2s "http://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1 || true
done

# run_scenario NAME PATH WRK-ARGS...: ROUNDS rounds, each over the three proxies.
run_scenario() {
    local scen=$1 path=$2; shift 2
    local r p
    for r in $(seq "$ROUNDS"); do
        for p in "${PROXIES[@]}"; do
            $HELP wrk "$scen" "$p" "$r" "${PID[$p]}" "$RESULTS" "$TMP/raw" -- \
                "$@" -d "$DURATION" --latency "http://127.0.0.1:${PORT[$p]}$path"
        done
    done
}

# Scenario 4 is measured first, on freshly warmed-up proxies: the
# "Connection: close" scenario leaves tens of thousands of TIME_WAIT sockets on
# the proxies' ports, and a new client connection whose port collides with one
# of them waits a 1 s SYN retransmission - 10,000 sequential connects would then
# take minutes and measure the kernel, not the proxy.
log "scenario 4 (run first): RSS of $IDLE_CONNS idle keep-alive connections"
for p in "${PROXIES[@]}"; do
    # The helper stops by itself after 180 s; timeout is the outer bound.
    timeout 300 $HELP idle idle "$p" "${PID[$p]}" "${PORT[$p]}" "$IDLE_CONNS" "$RESULTS" \
        || echo "      !! $p: idle-connection helper failed (exit $?)"
done

log "scenario 1: small responses, keep-alive (wrk -t2 -c50)"
run_scenario keepalive / -t2 -c50

log "scenario 2: new connection per request (wrk -t2 -c50 -H 'Connection: close')"
run_scenario close / -t2 -c50 -H "Connection: close"

log "scenario 3: 1 MiB bodies (wrk -t2 -c10 /1m)"
run_scenario 1m /1m -t2 -c10

# Anything forklb logged at warn or above during the run is worth seeing.
if [[ -s "$TMP/forklb-conf/error.log" ]]; then
    {
        echo "forklb error_log ($(wc -l < "$TMP/forklb-conf/error.log") lines), last 10:"
        tail -n 10 "$TMP/forklb-conf/error.log" | sed 's/^/  /'
    } >> "$HEADER.log"
fi

# ---------------------------------------------------------------- summary
mkdir -p "$HERE/results"
echo
$HELP summary "$RESULTS" "$HEADER" | tee "$HERE/results/latest.txt"
if [[ -s "$HEADER.log" ]]; then
    echo | tee -a "$HERE/results/latest.txt"
    tee -a "$HERE/results/latest.txt" < "$HEADER.log"
fi
echo
echo "summary written to bench/results/latest.txt"
