#!/usr/bin/env bash
# bench/callgrind_h2.sh — user-space instructions per HTTP/2 request of forklb,
# nginx and HAProxy over TLS, counted by callgrind (the method of
# bench/callgrind.sh, read its header; this is its HTTP/2 counterpart).
#
#   bash bench/callgrind_h2.sh          # builds forklb (cargo build --release)
#   FORKLB_BIN=/path/to/forklb ...      # measure this binary (no cargo build)
#   CG_PROXIES="forklb nginx" ...       # a subset of forklb nginx haproxy
#   CG_MODES="m1 m100 1m" ...           # the scenarios (default: all three):
#       m1    h2load -c1 -m1   GET /    (one stream at a time, "hello\n")
#       m100  h2load -c1 -m100 GET /    (100 concurrent streams)
#       1m    h2load -c1 -m4   GET /1m  (1 MiB bodies, 4 concurrent streams)
#   CG_N1=2000 ...                      # N1 for m1 and m100 (default 2000;
#                                       #   N2 = 3*N1); 1m uses CG_N1_1M
#                                       #   (default 40)
#   CG_TOP=15 ...                       # for forklb, the top functions of the
#                                       #   difference (self Ir/request); 0: none
#   KEEP_TMP=1 ...                      # keep the temp dir (callgrind files)
#
# Method: each proxy with ONE worker/thread under valgrind --tool=callgrind
# --trace-children=yes, a TLS 1.3 listener (TLS_AES_256_GCM_SHA384, the
# suite of bench/run.sh's h2 scenarios, one ECDSA P-256 certificate), ALPN h2,
# HTTP/1.1 keep-alive upstreams (the backend nginx pair of bench/common.sh).
# One h2load connection sends exactly N requests; then the proxy is stopped
# gracefully and the files of all its processes are summed. Two runs, N1 and
# N2 requests: (Ir(N2) - Ir(N1)) / (N2 - N1) is the instructions per request,
# the handshake, start-up and shutdown cancel — except AWS-LC's seeding of
# its random generator from CPU jitter, whose instruction count depends on
# timing: it is left out (helpers.py, SEEDING_FILE). Kernel work is not counted:
# for 1m, the socket copies of 2 MiB per request (read from the backend,
# write to the client) are outside these numbers; the TLS encryption of the
# 1 MiB is inside.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
HELP="python3 $HERE/helpers.py"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

N1=${CG_N1:-2000}
N1_1M=${CG_N1_1M:-40}
for v in "$N1" "$N1_1M"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "CG_N1 and CG_N1_1M must be positive integers" >&2; exit 1; }
done
CG_PROXIES=(${CG_PROXIES:-forklb nginx haproxy})
CG_MODES=(${CG_MODES:-m1 m100 1m})
TOP=${CG_TOP:-15}

log() { printf '==> %s\n' "$*"; }
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
install_missing valgrind:valgrind nginx:nginx-light haproxy:haproxy python3:python3 \
    h2load:nghttp2-client openssl:openssl

DIR=$(mktemp -d "${TMPDIR:-/tmp}/forklb-callgrind-h2.XXXXXX")
chmod 755 "$DIR"
RESULTS=$DIR/results.jsonl
OUT=$DIR/cg
mkdir -p "$OUT" "$DIR/www" "$DIR/backend" "$DIR/tls"
chmod 1777 "$OUT"

PIDS=()
cleanup() {
    local rc=$? pid kids=()
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kids+=($($HELP procs "$pid" 2>/dev/null)) || true
    done
    for pid in "${kids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${kids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- forklb binary
if [[ -n "${FORKLB_BIN:-}" ]]; then
    [[ -x "$FORKLB_BIN" ]] || { echo "FORKLB_BIN=$FORKLB_BIN is not executable" >&2; exit 1; }
    cp "$FORKLB_BIN" "$DIR/forklb"
elif [[ " ${CG_PROXIES[*]} " == *" forklb "* ]]; then
    log "building forklb (cargo build --release)"
    (cd "$ROOT" && cargo build --release)
    cp "$ROOT/target/release/forklb" "$DIR/forklb"
fi
FORKLB=$DIR/forklb

# ---------------------------------------------------------------- backend, certificate
head -c 1048576 /dev/urandom > "$DIR/www/1m"
read -r BE1 BE2 < <($HELP freeports 2)
write_backend_conf "$DIR/backend" "$BE1" "$BE2" "$DIR/www"
nginx -p "$DIR/backend/" -c "$DIR/backend/nginx.conf" -e "$DIR/backend/error.log" \
    >"$DIR/backend/stdout" 2>&1 &
PIDS+=($!)
$HELP waitport "$BE1" 10 && $HELP waitport "$BE2" 5 \
    || { cat "$DIR/backend/stdout" >&2; echo "backend nginx did not start" >&2; exit 1; }
CERT=$DIR/tls/cert.pem KEY=$DIR/tls/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 2 \
    -keyout "$KEY" -out "$CERT" 2>"$DIR/tls/openssl.log" \
    || { cat "$DIR/tls/openssl.log" >&2; echo "openssl req failed" >&2; exit 1; }
cat "$CERT" "$KEY" > "$DIR/tls/haproxy.pem"
chmod 644 "$DIR/tls/"*.pem

# ---------------------------------------------------------------- configs
# write_conf PROXY PORT DIR: sets CMD and STOPSIG.
write_conf() {
    local p=$1 port=$2 d=$3
    case $p in
    forklb)
        cat > "$d/forklb.yaml" <<EOF
version: 1
workers: 1
log_level: warn
error_log: $d/error.log
pid_file: $d/forklb.pid
upgrade_sock: $d/upgrade.sock
upgrade_grace: 0s
shutdown_timeout: 10s
listeners:
  - name: bench
    bind: ["127.0.0.1:$port"]
    tls:
      certificates:
        - {cert: $CERT, key: $KEY}
    routes: [{upstream: be}]
upstreams:
  be:
    keepalive: 512
    servers:
      - {addr: "127.0.0.1:$BE1"}
      - {addr: "127.0.0.1:$BE2"}
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
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    upstream be {
        server 127.0.0.1:$BE1;
        server 127.0.0.1:$BE2;
        keepalive 512;
    }
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
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
    bind 127.0.0.1:$port ssl crt $DIR/tls/haproxy.pem alpn h2,http/1.1
    default_backend be
backend be
    balance roundrobin
    server be1 127.0.0.1:$BE1
    server be2 127.0.0.1:$BE2
EOF
        CMD=(haproxy -db -f "$d/haproxy.cfg"); STOPSIG=USR1 ;;
    *) echo "unknown proxy $p" >&2; return 1 ;;
    esac
}

gone() {
    local q st
    for q in "$@"; do
        st=$(sed 's/.*) //' "/proc/$q/stat" 2>/dev/null | cut -d' ' -f1) || true
        [[ -n "$st" && "$st" != Z ]] && return 1
    done
    return 0
}
wait_gone() {
    local t=$1 _; shift
    for _ in $(seq $((t * 10))); do gone "$@" && return 0; sleep 0.1; done
    gone "$@"
}

# h2load_args MODE N: the client's command line (port appended by the caller).
h2load_args() {
    local mode=$1 n=$2
    local common=(-c1 -t1 -n "$n" --npn-list=h2 --tls13-ciphers=TLS_AES_256_GCM_SHA384)
    case $mode in
    m1) H2ARGS=("${common[@]}" -m1); H2PATH=/ ;;
    m100) H2ARGS=("${common[@]}" -m100); H2PATH=/ ;;
    1m) H2ARGS=("${common[@]}" -m4); H2PATH=/1m ;;
    *) echo "unknown mode $mode (m1 | m100 | 1m)" >&2; return 1 ;;
    esac
}

# cg_run PROXY MODE RUN N
cg_run() {
    local p=$1 mode=$2 run=$3 n=$4
    local tag=$p-$mode.$run port d pid procs=() t0=$SECONDS rc=0
    local prob=$OUT/cg.$tag.problems
    port=$($HELP freeports 1)
    d=$DIR/$p-$mode-$run
    mkdir -p "$d"
    write_conf "$p" "$port" "$d"
    valgrind --tool=callgrind --trace-children=yes --cache-sim=no --branch-sim=no --vgdb=no \
        --callgrind-out-file="$OUT/cg.$tag.%p" --log-file="$OUT/vg.$tag.%p.log" \
        "${CMD[@]}" >"$d/stdout" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # The probe connects (and closes) once in both runs: it cancels.
    if ! $HELP waitport "$port" 90 2>>"$prob"; then
        echo "did not listen within 90 s" >> "$prob"
    else
        h2load_args "$mode" "$n"
        timeout 600 h2load "${H2ARGS[@]}" "https://localhost:$port$H2PATH" >"$d/client.txt" 2>&1 \
            || echo "h2load exited with $?" >> "$prob"
        grep -q "^requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored, 0 timeout" \
            "$d/client.txt" || echo "h2load: $(grep '^requests:' "$d/client.txt" || tail -n1 "$d/client.txt")" >> "$prob"
        grep -q "^status codes: $n 2xx" "$d/client.txt" \
            || echo "h2load: $(grep '^status codes:' "$d/client.txt" || echo 'no status codes')" >> "$prob"
        grep -q "^Application protocol: h2" "$d/client.txt" || echo "h2load: not h2" >> "$prob"
    fi
    if kill -0 "$pid" 2>/dev/null; then
        procs=($($HELP procs "$pid"))
        kill -"$STOPSIG" "$pid" 2>/dev/null || true
        if ! wait_gone 60 "${procs[@]}"; then
            echo "did not exit within 60 s of SIG$STOPSIG" >> "$prob"
            kill -KILL "${procs[@]}" 2>/dev/null || true
        fi
    else
        echo "valgrind'ed process exited before it was stopped" >> "$prob"
    fi
    wait "$pid" 2>/dev/null || rc=$?
    ((rc == 0)) || echo "exit status $rc after SIG$STOPSIG" >> "$prob"
    $HELP cgrun "$OUT/runs.$p-$mode.jsonl" "$run" "$n" "$OUT/cg.$tag" "${procs[@]}"
    printf '  callgrind  %-5s %-8s run %d: %5d requests, %ds\n' "$mode" "$p" "$run" "$n" $((SECONDS - t0))
}

# top_functions PROXY MODE N1 N2: self Ir per request of each function, run 2
# minus run 1, summed over the processes (master + worker).
top_functions() {
    local p=$1 mode=$2 n1=$3 n2=$4 f
    for run in 1 2; do
        for f in "$OUT"/cg."$p-$mode.$run".[0-9]*; do
            callgrind_annotate --auto=no --threshold=100 --inclusive=no "$f" 2>/dev/null
        done > "$OUT/annot.$p-$mode.$run"
    done
    python3 - "$OUT/annot.$p-$mode.1" "$OUT/annot.$p-$mode.2" "$n1" "$n2" "$TOP" <<'PY'
import re, sys
def load(path):
    # "1,234 ( 5.67%)  file:function [object]": self Ir per function.
    acc = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        # AWS-LC's start-up seeding is left out, as from the totals
        # (helpers.py, SEEDING_FILE).
        if not m or "PROGRAM TOTALS" in line or "jitterentropy" in line:
            continue
        name = re.sub(r" \[[^]]*\]$", "", m.group(2))
        name = name.split(":", 1)[1] if ":" in name else name
        acc[name] = acc.get(name, 0) + int(m.group(1).replace(",", ""))
    return acc
a, b = load(sys.argv[1]), load(sys.argv[2])
n = int(sys.argv[4]) - int(sys.argv[3])
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in set(a) | set(b))
rows.reverse()
total = sum(r for r, _ in rows)
for r, k in rows[:int(sys.argv[5])]:
    print(f"      {r:>10,.0f}  {100 * r / total if total else 0:5.1f}%  {k[:110]}")
PY
}

declare -A MODE_TEXT=([m1]="1 stream at a time, GET / (h2load -c1 -m1)"
                      [m100]="100 streams at a time, GET / (h2load -c1 -m100)"
                      [1m]="1 MiB bodies, 4 streams at a time (h2load -c1 -m4 /1m)")
T0=$SECONDS
for mode in "${CG_MODES[@]}"; do
    [[ -n "${MODE_TEXT[$mode]:-}" ]] || { echo "unknown mode $mode (m1 | m100 | 1m)" >&2; exit 1; }
    n1=$N1; [[ $mode == 1m ]] && n1=$N1_1M
    n2=$((3 * n1))
    log "$mode: ${MODE_TEXT[$mode]}, N1=$n1 N2=$n2"
    for p in "${CG_PROXIES[@]}"; do
        cg_run "$p" "$mode" 1 "$n1"
        cg_run "$p" "$mode" 2 "$n2"
        $HELP cgresult "$RESULTS" "$p" "$mode" "$OUT/runs.$p-$mode.jsonl"
        if [[ $p == forklb ]] && ((TOP > 0)); then
            echo "    top functions (self Ir/request, run 2 - run 1):"
            top_functions "$p" "$mode" "$n1" "$n2" || echo "    (callgrind_annotate failed)"
        fi
        [[ "${KEEP_TMP:-0}" == 1 ]] || rm -f "$OUT"/cg."$p-$mode".[12].[0-9]*
    done
done
log "took $((SECONDS - T0)) s"
echo
echo "Ir/request (user space, all processes of the proxy, one worker/thread):"
python3 - "$RESULTS" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
modes = [m for m in ("m1", "m100", "1m") if any(r["mode"] == m for r in recs)]
procs = [p for p in ("forklb", "nginx", "haproxy") if any(r["proxy"] == p for r in recs)]
print(f"  {'':<6}" + "".join(f"{p:>14}" for p in procs)
      + "".join(f"{'f/' + p:>12}" for p in procs if p != "forklb"))
for m in modes:
    v = {r["proxy"]: r.get("ir_" + m) for r in recs if r["mode"] == m}
    row = f"  {m:<6}" + "".join(f"{v[p]:>14,.0f}" if v.get(p) else f"{'FAILED':>14}" for p in procs)
    f = v.get("forklb")
    for p in procs:
        if p != "forklb":
            row += f"{f / v[p]:>12.2f}" if f and v.get(p) else f"{'':>12}"
    print(row)
PY
