#!/usr/bin/env bash
# bench/callgrind.sh — scenario 8 of bench/run.sh: user-space instructions per
# request of forklb, nginx, HAProxy and Pingora, counted by callgrind. Wall-clock numbers
# on a shared 2-core machine are noisy; instruction counts are not, so a
# regression of a few percent shows here when it is lost in the req/s noise.
#
#   bash bench/callgrind.sh             # alone: builds forklb, starts its own backend,
#   ONLY=callgrind bash bench/run.sh    #   prints section 8 (the same thing)
#   QUICK=1 ...                         # N1=500 requests (default 2000); N2 = 3*N1
#   CG_N1=1000 ...                      # N1
#   FORKLB_BIN=/path/to/forklb ...      # measure this binary (no cargo build)
#   CG_PROXIES="forklb nginx" ...       # a subset of forklb f-maxconn f-limit f-policy nginx haproxy pingora
#                                       #   (f-maxconn: forklb with "maxconn: 100000" on both
#                                       #   servers, never reached: what the bookkeeping of
#                                       #   per-server maxconn costs, against forklb without;
#                                       #   f-limit: forklb whose route has a limit_req and a
#                                       #   limit_conn by source, never reached: what the
#                                       #   shared-memory limits cost a request;
#                                       #   f-policy: the route of run.sh's scenario 14, a
#                                       #   limit_req and request and response header rules:
#                                       #   what a typical edge route costs a request)
#   PINGORA_BIN=/path/to/pingora-lb ... # Pingora's build (bench/pingora); run.sh passes
#                                       #   it; without it Pingora is left out
#   CG_MODES=ka ...                     # a subset of ka (keep-alive) close (new connection
#                                       #   per request)
#   KEEP_TMP=1 ...                      # keep the temp dir (configs, callgrind files, logs)
#
# run.sh runs it after scenario 7 with CG_BACKEND="PORT1 PORT2" (its backend
# pair), CG_RESULTS (its results file, where the records go) and CG_DIR; its
# summary then prints section 8.
#
# Method. Each proxy runs with ONE worker/thread (forklb "workers: 1", nginx
# worker_processes 1, HAProxy nbthread 1 in the foreground, Pingora threads: 1
# - plus its main thread, which waits for signals) under
#   valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=cg.<proxy>-<mode>.<run>.%p
# (cache and branch simulation off, the defaults), so every process (master,
# worker) writes its own file. A deterministic client (helpers.py requests)
# sends exactly N requests "GET /" one at a time: over one keep-alive connection
# (mode ka), or each over a new connection with "Connection: close", read to EOF
# (mode close). Then the proxy is stopped gracefully (forklb and nginx QUIT,
# HAProxy USR1, Pingora TERM) and callgrind writes its files at exit. Two runs per proxy and
# mode, N1 and N2 = 3*N1 requests; the sum of the files' totals (Ir) of run 2
# minus that of run 1, divided by N2 - N1, is the number of user-space
# instructions per request: start-up, the first connects and shutdown cancel
# (AWS-LC's seeding of its random generator from CPU jitter does not: its
# count depends on timing, so it is left out, see helpers.py SEEDING_FILE).
# Kernel work (syscalls, TCP/IP, copies) is not counted. The client waits for
# the port by retrying refused connects, which never reach the proxy.
#
# A proxy that fails under valgrind (does not start, answers wrongly, does not
# exit, writes no file) gets a note and no number; the others go on.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
HELP="python3 $HERE/helpers.py"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [[ "${QUICK:-0}" == 1 ]]; then : "${CG_N1:=500}"; fi
N1=${CG_N1:-2000}
[[ "$N1" =~ ^[1-9][0-9]*$ ]] || { echo "CG_N1 must be a positive integer" >&2; exit 1; }
N2=$((3 * N1))
CG_PROXIES=(${CG_PROXIES:-forklb f-maxconn f-limit f-policy nginx haproxy${PINGORA_BIN:+ pingora}})
CG_MODES=(${CG_MODES:-ka close})
STANDALONE=0; [[ -z "${CG_BACKEND:-}" ]] && STANDALONE=1

log() { printf '==> %s\n' "$*"; }
# shellcheck source=bench/common.sh
source "$HERE/common.sh"

# ---------------------------------------------------------------- tools (alone only)
if ((STANDALONE)); then
    install_missing valgrind:valgrind nginx:nginx-light haproxy:haproxy python3:python3
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# ---------------------------------------------------------------- temp dir, cleanup
if [[ -n "${CG_DIR:-}" ]]; then
    DIR=$CG_DIR; OWN_DIR=0; mkdir -p "$DIR"
else
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/forklb-callgrind.XXXXXX"); OWN_DIR=1
fi
chmod 755 "$DIR"
RESULTS=${CG_RESULTS:-$DIR/results.jsonl}
# The callgrind files. Writable by all: run as root, nginx's worker is "nobody"
# (as in run.sh) and writes its own file.
OUT=$DIR/cg
mkdir -p "$OUT"
chmod 1777 "$OUT"

PIDS=()   # everything we start (valgrind'ed masters, the backend); workers via /proc
cleanup() {
    local rc=$? pid kids=()
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kids+=($($HELP procs "$pid" 2>/dev/null)) || true
    done
    for pid in "${kids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do   # bounded: 5 s, then SIGKILL
        local alive=0
        for pid in "${kids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((OWN_DIR)); then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bg CMD...: run CMD in the background and wait for it, so that a TERM/INT to
# this script is acted on at once rather than after CMD.
bg() { "$@" & local c=$!; PIDS+=("$c"); wait "$c"; }

# ---------------------------------------------------------------- forklb binary
if [[ -n "${FORKLB_BIN:-}" ]]; then
    [[ -x "$FORKLB_BIN" ]] || { echo "FORKLB_BIN=$FORKLB_BIN is not executable" >&2; exit 1; }
    [[ "$FORKLB_BIN" -ef "$DIR/forklb" ]] || cp "$FORKLB_BIN" "$DIR/forklb"
else
    log "building forklb (cargo build --release)"
    (cd "$ROOT" && cargo build --release)
    cp "$ROOT/target/release/forklb" "$DIR/forklb"
fi
FORKLB=$DIR/forklb

# ---------------------------------------------------------------- backend pair
if ((STANDALONE)); then
    read -r BE1 BE2 < <($HELP freeports 2)
    mkdir -p "$DIR/backend"
    write_backend_conf "$DIR/backend" "$BE1" "$BE2" "$DIR/www"
    log "starting backend nginx on 127.0.0.1:$BE1 and :$BE2"
    nginx -p "$DIR/backend/" -c "$DIR/backend/nginx.conf" -e "$DIR/backend/error.log" \
        >"$DIR/backend/stdout" 2>&1 &
    PIDS+=($!)
    $HELP waitport "$BE1" 10 && $HELP waitport "$BE2" 5 \
        || { cat "$DIR/backend/stdout" >&2; echo "backend nginx did not start" >&2; exit 1; }
else
    read -r BE1 BE2 <<< "$CG_BACKEND"
fi

# ---------------------------------------------------------------- configs
# write_conf PROXY PORT DIR: the proxy's config in DIR, set CMD and STOPSIG.
# The same settings as run.sh's instances, but one worker/thread.
write_conf() {
    local p=$1 port=$2 d=$3 limit="" route="{upstream: be}"
    # f-maxconn: a limit per server high enough never to be reached, so
    # that its bookkeeping (a compare-exchange per request, the queue's
    # checks) is all that differs from forklb.
    [[ $p == f-maxconn ]] && limit=", maxconn: 100000"
    # f-limit: the route limits every request (the table lookups, the
    # bucket's update, the in-flight count taken and given back) without
    # ever refusing one.
    [[ $p == f-limit ]] && route="{upstream: be, limit_req: {key: source, rate: 1000000/s, burst: 1000000}, limit_conn: {key: source, max: 100000}}"
    # f-policy: f-limit's limits plus header rules (bench/common.sh).
    [[ $p == f-policy ]] && route=$POLICY_ROUTE
    case $p in
    forklb|f-maxconn|f-limit|f-policy)
        cat > "$d/forklb.yaml" <<EOF
version: 1
workers: 1
log_level: warn
error_log: $d/error.log
pid_file: $d/forklb.pid
upgrade_sock: $d/upgrade.sock
# QUIT stops at once, as nginx's does (a set upgrade_sock would bring a 5 s grace)
upgrade_grace: 0s
shutdown_timeout: 10s
listeners:
  - name: bench
    bind: ["127.0.0.1:$port"]
    routes: [$route]
upstreams:
  be:
    keepalive: 32
    servers:
      - {addr: "127.0.0.1:$BE1"$limit}
      - {addr: "127.0.0.1:$BE2"$limit}
EOF
        CMD=("$FORKLB" -c "$d/forklb.yaml"); STOPSIG=QUIT ;;
    nginx)
        cat > "$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
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
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        CMD=(nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log"); STOPSIG=QUIT ;;
    haproxy)
        # hard-stop-after bounds the soft stop (USR1).
        cat > "$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 1000
    pidfile $d/haproxy.pid
    hard-stop-after 20s
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
    bind 127.0.0.1:$port
    default_backend be
backend be
    balance roundrobin
    server be1 127.0.0.1:$BE1
    server be2 127.0.0.1:$BE2
EOF
        CMD=(haproxy -db -f "$d/haproxy.cfg"); STOPSIG=USR1 ;;
    pingora)
        # bench/pingora with one worker thread; TERM: graceful, and it exits
        # at once (its conf sets no grace period).
        [[ -n "${PINGORA_BIN:-}" && -x "$PINGORA_BIN" ]] \
            || { echo "pingora: PINGORA_BIN (bench/pingora's build) is not set or not executable" >&2; return 1; }
        CMD=("$PINGORA_BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$BE1"
             --upstream "127.0.0.1:$BE2" --threads 1); STOPSIG=TERM ;;
    *) echo "unknown proxy $p" >&2; return 1 ;;
    esac
}

# gone PID...: true when none of them is alive (exited, or a zombie).
gone() {
    local q st
    for q in "$@"; do
        st=$(sed 's/.*) //' "/proc/$q/stat" 2>/dev/null | cut -d' ' -f1) || true
        [[ -n "$st" && "$st" != Z ]] && return 1
    done
    return 0
}
# wait_gone SECONDS PID...
wait_gone() {
    local t=$1 _; shift
    for _ in $(seq $((t * 10))); do gone "$@" && return 0; sleep 0.1; done
    gone "$@"
}

# cg_run PROXY MODE RUN N: one run under callgrind, recorded in $OUT/runs.PROXY-MODE.jsonl.
cg_run() {
    local p=$1 mode=$2 run=$3 n=$4
    local tag=$p-$mode.$run port d pid procs=() t0=$SECONDS rc=0 stopped=0
    local prob=$OUT/cg.$tag.problems
    port=$($HELP freeports 1)   # a fresh port per run: no TIME_WAIT left from the last one
    d=$DIR/$p-$mode-$run
    mkdir -p "$d"
    write_conf "$p" "$port" "$d"
    valgrind --tool=callgrind --trace-children=yes --cache-sim=no --branch-sim=no --vgdb=no \
        --callgrind-out-file="$OUT/cg.$tag.%p" --log-file="$OUT/vg.$tag.%p.log" \
        "${CMD[@]}" >"$d/stdout" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # The client retries refused connects for up to 90 s while the proxy starts.
    if ! bg timeout 900 $HELP requests "$port" "$n" "$mode" "$pid" >"$d/client.txt" 2>&1; then
        echo "client: $(tail -n1 "$d/client.txt")" >> "$prob"
        tail -n 5 "$d/stdout" "$d/error.log" 2>/dev/null | sed 's/^/      /' || true
    fi
    # The processes that must write a file: the master and its children.
    if kill -0 "$pid" 2>/dev/null; then
        procs=($($HELP procs "$pid"))
        kill -"$STOPSIG" "$pid" 2>/dev/null || true
        stopped=1
        if ! wait_gone 60 "${procs[@]}"; then
            echo "did not exit within 60 s of SIG$STOPSIG: TERM" >> "$prob"
            kill -TERM "${procs[@]}" 2>/dev/null || true
            if ! wait_gone 15 "${procs[@]}"; then
                echo "did not exit within 15 s of SIGTERM: KILL" >> "$prob"
                kill -KILL "${procs[@]}" 2>/dev/null || true
            fi
        fi
    else
        echo "valgrind'ed process exited before it was stopped" >> "$prob"
    fi
    wait "$pid" 2>/dev/null || rc=$?
    ((rc == 0)) || echo "exit status $rc$( ((stopped)) && echo " after SIG$STOPSIG")" >> "$prob"
    if grep -h "Process terminating with default action of signal" "$OUT"/vg."$tag".*.log \
            2>/dev/null | sort -u | sed 's/^==[0-9]*== //' >> "$prob"; then :; fi
    $HELP cgrun "$OUT/runs.$p-$mode.jsonl" "$run" "$n" "$OUT/cg.$tag" "${procs[@]}"
    printf '  callgrind  %-6s   %-8s run %d: %5d requests, %s, %ds\n' "$mode" "$p" "$run" "$n" \
        "$(tail -n1 "$d/client.txt")" $((SECONDS - t0))
}

declare -A MODE_TEXT=([ka]="keep-alive (one connection)" [close]="new connection per request (Connection: close)")
T0=$SECONDS
log "scenario 8: user-space instructions per request under callgrind, N1=$N1 N2=$N2" \
    "(${CG_PROXIES[*]}; one worker/thread each)"
for mode in "${CG_MODES[@]}"; do
    [[ -n "${MODE_TEXT[$mode]:-}" ]] || { echo "unknown mode $mode (ka | close)" >&2; exit 1; }
    log "  $mode: ${MODE_TEXT[$mode]}"
    for p in "${CG_PROXIES[@]}"; do
        cg_run "$p" "$mode" 1 "$N1"
        cg_run "$p" "$mode" 2 "$N2"
        $HELP cgresult "$RESULTS" "$p" "$mode" "$OUT/runs.$p-$mode.jsonl"
        # The call graphs are large and no longer needed (KEEP_TMP keeps them).
        [[ "${KEEP_TMP:-0}" == 1 ]] || rm -f "$OUT"/cg."$p-$mode".[12].[0-9]*
    done
done
log "scenario 8 took $((SECONDS - T0)) s"

if ((STANDALONE)); then
    echo
    $HELP cgtable "$RESULTS"
fi
