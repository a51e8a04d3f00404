#!/usr/bin/env bash
# bench/run.sh — forklb vs nginx vs HAProxy vs Pingora, on this machine, in one go.
#
#   make bench                 # ROUNDS=3 DURATION=10s IDLE_CONNS=10000 H2_IDLE_CONNS=2000
#   QUICK=1 make bench         # ROUNDS=1 DURATION=3s  IDLE_CONNS=1000  H2_IDLE_CONNS=1000
#                              # (smoke test)
#   ROUNDS=5 DURATION=20s bash bench/run.sh
#   KEEP_TMP=1 ...             # keep the temp dir (configs, logs, raw wrk output)
#   QUIET_WAIT=60              # before each run, wait up to this many seconds for
#                              # other CPU users (compilers, tests) to go quiet
#   NOISE_RETRIES=2            # repeat a run (at most this often) when other processes
#                              # used > 20% of a core during it; the quietest is kept
#   CALLGRIND=0                # skip scenario 8 (callgrind)
#   CG_N1=2000                 # scenario 8: requests of its first run (QUICK: 500)
#   ONLY=callgrind bash bench/run.sh   # scenario 8 alone (= bash bench/callgrind.sh)
#   H2=0                       # skip the HTTP/2 scenarios (10-13)
#   ONLY=h2 bash bench/run.sh  # the HTTP/2 scenarios alone (summary in
#                              # bench/results/latest-h2.txt, not latest.txt)
#   ONLY=tls bash bench/run.sh # the TLS scenarios (5-7, 7r) alone (summary in
#                              # bench/results/latest-tls.txt)
#   ONLY=policy bash bench/run.sh  # scenario 14 alone (bench/results/latest-policy.txt)
#   FORKLB_BIN=/path/to/forklb # measure this binary instead of building target/release
#   PINGORA=0                  # leave Pingora out (no build, no column)
#   PINGORA_BIN=/path/to/pingora-lb  # run this build of bench/pingora instead of building it
#
# Layout: one nginx "backend pair" (two ports, / = "hello\n", /1m = 1 MiB file)
# and four proxies in front of it (forklb, nginx, HAProxy, Pingora), each with
# 2 workers/threads and upstream keep-alive where supported. Every scenario is
# run against the proxies in turn, round after round (interleaved so that
# drift in machine load hits all alike); the median is reported, with ratios
# of forklb to each peer and to the best peer of each row (f/best).
#
# Pingora (bench/pingora/: Pingora's load-balancer quick start, a standalone
# Cargo project with its own Cargo.lock, pingora 0.9 with rustls): built here
# with cargo into bench/pingora/target (kept between runs, so only the first
# run pays its 5-7 minutes on 2 cores; cargo rebuilds when its sources change);
# it needs cmake (zlib-ng, for flate2) and a C compiler (ring, zlib-ng), both
# installed if missing. Peers in scenarios 1-7 and 10-13;
# scenario 8 includes it too (one thread, stopped with SIGTERM). Unlike the
# other proxies it is optional: if it does not build or does not start or
# answer, that is noted in the header and the bench goes on without it.
#
# TLS (scenarios 5-7): a second instance of each proxy, configured the same but
# with a TLS listener (one self-signed ECDSA P-256 certificate, generated at
# start, shared by all; plain HTTP to the backends). Separate instances so
# that a proxy whose TLS does not work only loses its TLS scenarios: an instance
# that fails to start or to answer is reported and skipped, the rest runs.
#
# TLS parameters are kept alike: TLS 1.3 (1.2 allowed), X25519 first, the same
# cipher suite (printed once per proxy in the header, as negotiated with the
# same OpenSSL wrk uses), session tickets on everywhere. Scenario 6 makes wrk
# do a full handshake per connection, scenario 7 lets it resume (see the shim).
#
# Scenario 7r: scenario 6 against a third instance of each proxy whose only
# difference is an RSA-2048 certificate (most certificates in use are RSA, and
# an RSA signature costs the server far more than an ECDSA one). Its instances
# are started, checked and skipped on failure like the TLS ones.
#
# Scenario 8 (bench/callgrind.sh, run last so it does not disturb the timed
# ones): user-space instructions per request, counted by callgrind - exact where
# req/s are noisy, so a small regression shows. Each proxy with one worker/
# thread runs under valgrind --tool=callgrind twice, for N1 and N2 = 3*N1
# requests of a sequential client (one keep-alive connection; and one new
# connection per request), against the same backend pair; Ir/request =
# (Ir(N2) - Ir(N1)) / (N2 - N1) over all its processes (master + worker), so
# start-up and shutdown cancel. Kernel work is not counted.
# Scenario 14 (after 3): forklb against itself: "f-policy", a second forklb
# whose route has bench/common.sh's POLICY_ROUTE (a rate limit that never
# refuses, request and response header rules), and "f-viewer", the
# forklb of scenario 1 while a dashboard viewer (helpers.py viewer) polls its
# /stats?json every 2 s; plus the CPU of one poll, measured alone (viewercost).
# Targets: a policy route costs < 5 % req/s, a viewer < 1 % CPU.
#
# forklb is measured a second time as "f-maxconn", with "maxconn: 100000" on
# its servers (never reached): the column against forklb's is what per-server
# maxconn bookkeeping costs a request (not a peer: left out of f/best); and as
# "f-limit", its route with a limit_req and a limit_conn by source that never
# refuse: what the shared-memory limits cost a request.
#
# Section 9: forklb's accept wake-ups per accepted connection over scenario 2,
# from its own counters (forklb_accept_wakeups_total / forklb_connections_total,
# read from a metrics listener on a separate port).
#
# HTTP/2 (scenarios 10-13): h2load (nghttp2) over TLS, ALPN h2 only, against
# the TLS instances, which offer h2 beside http/1.1 (nginx "listen ... ssl
# http2", HAProxy "alpn h2,http/1.1", forklb's TLS listeners by default;
# wrk and the checks offer no ALPN, so scenarios 5-7 stay HTTP/1.1). h2load
# -t2 -D DURATION, TLS 1.3 suite pinned to the one the TLS scenarios get
# (TLS_AES_256_GCM_SHA384): 10 = small responses, -c8 -m1 (one stream at a time
# per connection); 11 = the same with -m100; 12 = /1m, -c4 -m4. CPU per request
# as above (proxy CPU time / requests). A run with any failed, errored or
# timed-out request, a non-2xx answer, a client that stopped early (h2load does
# not reconnect after a GOAWAY) or another protocol than h2 is FAILED, not a
# number. 13 = memory per idle h2 connection: H2_IDLE_CONNS connections, each
# TLS + preface + SETTINGS + one GET / (body checked), then idle; RSS growth of
# the proxy's processes per connection, as scenario 4. Before all that, each TLS
# instance must serve / over h2 (bench/helpers.py h2check); one that does not
# (no ALPN h2, a broken answer) is reported and skipped, the rest runs; a
# failure of /, /1m, / on one connection is reported but does not skip.
#
# Everything listens on 127.0.0.1, on free ports (below the ephemeral range)
# picked at start; all state is in a mktemp -d directory; every process we
# start is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
HELP="python3 $HERE/helpers.py"
# nginx and haproxy live in /usr/sbin, which is not on an ordinary user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# ---------------------------------------------------------------- parameters
if [[ "${QUICK:-0}" == 1 ]]; then
    : "${ROUNDS:=1}" "${DURATION:=3s}" "${IDLE_CONNS:=1000}" "${H2_IDLE_CONNS:=1000}"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
IDLE_CONNS=${IDLE_CONNS:-10000}
H2_IDLE_CONNS=${H2_IDLE_CONNS:-2000}
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"   # wrk wants a unit
[[ "$DURATION" =~ ^[0-9]+s$ ]] || { echo "DURATION must be seconds, e.g. 10s" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 1; }
[[ "$H2_IDLE_CONNS" =~ ^[1-9][0-9]*$ ]] || { echo "H2_IDLE_CONNS must be a positive integer" >&2; exit 1; }

log() { printf '==> %s\n' "$*"; }
# shellcheck source=bench/common.sh
source "$HERE/common.sh"

# What runs: RUN_PLAIN = scenarios 1-4 and 9, RUN_TLS = 5-7 and 7r, RUN_H2 = 10-13;
# CALLGRIND (8) is decided below.
RUN_PLAIN=1 RUN_TLS=1 RUN_H2=1 ONLY_POLICY=0
[[ "${H2:-1}" == 0 ]] && RUN_H2=0
SUMMARY=latest.txt
case "${ONLY:-}" in
    "") ;;
    callgrind) exec bash "$HERE/callgrind.sh" ;;
    h2)
        [[ "${H2:-1}" != 0 ]] || { echo "ONLY=h2 and H2=0 contradict each other" >&2; exit 1; }
        RUN_PLAIN=0 RUN_TLS=0 RUN_H2=1 CALLGRIND=0
        # A partial run: do not overwrite the full run's summary.
        SUMMARY=latest-h2.txt ;;
    tls)
        RUN_PLAIN=0 RUN_TLS=1 RUN_H2=0 CALLGRIND=0
        SUMMARY=latest-tls.txt ;;
    policy)
        RUN_PLAIN=1 RUN_TLS=0 RUN_H2=0 CALLGRIND=0 ONLY_POLICY=1
        SUMMARY=latest-policy.txt ;;
    *) echo "ONLY must be callgrind, h2, tls or policy" >&2; exit 1 ;;
esac

# ---------------------------------------------------------------- tools
# Install only what is missing (a fresh Debian/Ubuntu machine has none of them).
# The TLS handshake shim for wrk (see below) is a few lines of C: cc.
tools=(nginx:nginx-light haproxy:haproxy wrk:wrk python3:python3 openssl:openssl
       "cc:gcc libc6-dev")
[[ "${CALLGRIND:-1}" == 0 ]] || tools+=(valgrind:valgrind)
((RUN_H2)) && tools+=(h2load:nghttp2-client)
# Building Pingora: pingora-core compresses with flate2's zlib-ng backend, whose
# libz-ng-sys builds zlib-ng with cmake (and cc); ring (rustls) needs cc too.
[[ "${PINGORA:-1}" == 0 || -n "${PINGORA_BIN:-}" ]] || tools+=(cmake:cmake)
install_missing "${tools[@]}"

if [[ -z "${FORKLB_BIN:-}" ]]; then
    log "building forklb (cargo build --release)"
    (cd "$ROOT" && cargo build --release)
fi
# The revision the measured binary was built from, read now: the tree may
# move on while the bench runs (it takes half an hour).
if [[ -n "${FORKLB_BIN:-}" ]]; then FORKLB_REV="FORKLB_BIN=$FORKLB_BIN"
else FORKLB_REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty')"
fi

# ---------------------------------------------------------------- temp dir, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/forklb-bench.XXXXXX")
# When run as root, nginx workers run as "nobody": they must be able to reach
# the 1 MiB file in here (mktemp -d makes the directory 0700).
chmod 755 "$TMP"
# Use a private copy of the binary: other people may rebuild target/ meanwhile.
cp "${FORKLB_BIN:-$ROOT/target/release/forklb}" "$TMP/forklb"

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

# Pingora: build bench/pingora (a standalone Cargo project, not part of forklb's
# build) into bench/pingora/target, which stays between runs: the first build
# takes 5-7 minutes on 2 cores, later ones nothing (cargo rebuilds when its
# sources or Cargo.lock change). --locked: the committed Cargo.lock, so every
# run measures the same Pingora. A failure is a note, not the end of the bench.
PINGORA_OK=0
pingora_note() {   # REASON: Pingora is left out of everything
    echo "!! pingora: left out: $1" >&2
    echo "pingora: left out of this run: $1" >> "$TMP/notes.txt"
}
if [[ "${PINGORA:-1}" == 0 ]]; then
    echo "pingora: left out (PINGORA=0)" >> "$TMP/notes.txt"
elif [[ -n "${PINGORA_BIN:-}" ]]; then
    if cp "$PINGORA_BIN" "$TMP/pingora-lb" 2>/dev/null; then PINGORA_OK=1
    else pingora_note "PINGORA_BIN=$PINGORA_BIN cannot be copied"; fi
elif ! command -v cargo >/dev/null; then
    pingora_note "cargo not found, cannot build bench/pingora"
else
    log "building pingora (bench/pingora: cargo build --release --locked; the first time 5-7 min)"
    if (cd "$HERE/pingora" && CARGO_TARGET_DIR="$HERE/pingora/target" \
            cargo build --release --locked) >"$TMP/pingora-build.log" 2>&1; then
        cp "$HERE/pingora/target/release/pingora-lb" "$TMP/pingora-lb" && PINGORA_OK=1
    else
        tail -n 20 "$TMP/pingora-build.log" >&2
        pingora_note "cargo build failed: $(grep -m1 '^error' "$TMP/pingora-build.log" || echo 'see above')"
    fi
fi

# Use the hard limit of open files: 10,000 idle client connections need
# 10,000 fds in the client and at least as many in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if ((NOFILE < IDLE_CONNS + 200)); then
    echo "warning: open files limit is $NOFILE, fewer than IDLE_CONNS=$IDLE_CONNS need;" \
         "the memory scenario will open as many as it can" >&2
fi

# Free ports: backend pair, then one per proxy, then one per proxy's TLS instance.
read -r BE1 BE2 P_FORKLB P_NGINX P_HAPROXY T_FORKLB T_NGINX T_HAPROXY M_FORKLB P_PINGORA T_PINGORA \
    P_POLICY R_FORKLB R_NGINX R_HAPROXY R_PINGORA < <($HELP freeports 16)

# 1 MiB static body for /1m.
mkdir -p "$TMP/www" "$TMP/backend" "$TMP/forklb-conf" "$TMP/forklb-policy" "$TMP/nginx" "$TMP/haproxy" "$TMP/raw" \
         "$TMP/tls" "$TMP/forklb-tls" "$TMP/nginx-tls" "$TMP/haproxy-tls" \
         "$TMP/forklb-rsa" "$TMP/nginx-rsa" "$TMP/haproxy-rsa"
head -c 1048576 /dev/urandom > "$TMP/www/1m"

# ---------------------------------------------------------------- TLS certificate
# One self-signed ECDSA P-256 certificate for "localhost", used by all the
# proxies (HAProxy wants certificate and key in one PEM file).
CERT=$TMP/tls/cert.pem KEY=$TMP/tls/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 2 \
    -keyout "$KEY" -out "$CERT" 2>"$TMP/tls/openssl.log" \
    || { cat "$TMP/tls/openssl.log" >&2; echo "openssl req failed" >&2; exit 1; }
cat "$CERT" "$KEY" > "$TMP/tls/haproxy.pem"
chmod 600 "$TMP/tls/haproxy.pem"
# Scenario 7r's certificate: RSA-2048, otherwise the same.
RSA_CERT=$TMP/tls/rsa-cert.pem RSA_KEY=$TMP/tls/rsa-key.pem
openssl req -x509 -newkey rsa:2048 -nodes \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 2 \
    -keyout "$RSA_KEY" -out "$RSA_CERT" 2>"$TMP/tls/openssl.log" \
    || { cat "$TMP/tls/openssl.log" >&2; echo "openssl req (RSA) failed" >&2; exit 1; }
cat "$RSA_CERT" "$RSA_KEY" > "$TMP/tls/haproxy-rsa.pem"
chmod 600 "$TMP/tls/haproxy-rsa.pem"

# wrk reuses one SSL object per connection slot, and OpenSSL's SSL_clear()
# keeps the last session: every reconnect offers the session ticket the server
# sent, so "wrk -H 'Connection: close' https://..." measures *resumed*
# handshakes (abbreviated: no certificate, no signature). This LD_PRELOAD shim,
# given to wrk only, wraps SSL_connect: with TLS_SHIM_MODE=fresh it drops the
# session before each new handshake (so every handshake is a full one), and in
# any mode it counts full and resumed handshakes and prints them when wrk exits;
# helpers.py checks that count.
cat > "$TMP/tls/shim.c" <<'SHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_st SSL;
/* Looked up at run time: no link-time dependency on libssl. */
static int (*real_connect)(SSL *);
static int (*in_before)(const SSL *);
static int (*set_session)(SSL *, void *);
static int (*session_reused)(const SSL *);
static int fresh;
static unsigned long n_full, n_resumed;

__attribute__((constructor)) static void init(void) {
    const char *m = getenv("TLS_SHIM_MODE");
    fresh = m && strcmp(m, "fresh") == 0;
}

__attribute__((destructor)) static void fini(void) {
    if (real_connect)
        fprintf(stderr, "TLS handshakes: %lu full, %lu resumed\n",
                __atomic_load_n(&n_full, __ATOMIC_RELAXED),
                __atomic_load_n(&n_resumed, __ATOMIC_RELAXED));
}

int SSL_connect(SSL *s) {
    if (!__atomic_load_n(&real_connect, __ATOMIC_ACQUIRE)) {
        in_before = dlsym(RTLD_DEFAULT, "SSL_in_before");
        set_session = dlsym(RTLD_DEFAULT, "SSL_set_session");
        session_reused = dlsym(RTLD_DEFAULT, "SSL_session_reused");
        __atomic_store_n(&real_connect, dlsym(RTLD_NEXT, "SSL_connect"), __ATOMIC_RELEASE);
    }
    /* Only before the first flight: a non-blocking handshake calls SSL_connect again. */
    if (fresh && in_before(s))
        set_session(s, NULL);
    int r = real_connect(s);
    if (r == 1)
        __atomic_fetch_add(session_reused(s) ? &n_resumed : &n_full, 1, __ATOMIC_RELAXED);
    return r;
}
SHIM
cc -O2 -shared -fPIC -o "$TMP/tls/shim.so" "$TMP/tls/shim.c" -ldl \
    || { echo "cannot compile the TLS shim for wrk" >&2; exit 1; }

# ---------------------------------------------------------------- backend pair (nginx)
write_backend_conf "$TMP/backend" "$BE1" "$BE2" "$TMP/www"

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
  # Its own port, so the measured listener's routes stay as they are: the
  # accept wake-up counters are read from here around scenario 2, and the
  # dashboard's viewer of scenario 14 polls /stats here.
  - name: metrics
    bind: ["127.0.0.1:$M_FORKLB"]
    routes:
      - {path: /metrics, metrics: prometheus}
      - {path: /stats, stats: {}}
upstreams:
  be:
    keepalive: 32
    servers:
      - {addr: "127.0.0.1:$BE1"}
      - {addr: "127.0.0.1:$BE2"}
EOF
# A forklb without the dashboard (FORKLB_BIN of an older build) runs scenario
# 14 without its viewer.
VIEWER=1
if ! "$TMP/forklb" -t -c "$TMP/forklb-conf/forklb.yaml" >/dev/null 2>&1; then
    sed -i '/stats: {}}/d' "$TMP/forklb-conf/forklb.yaml"
    VIEWER=0
    echo "forklb: no dashboard (its config test refused a stats route): scenario 14 runs without f-viewer" \
        >> "$TMP/notes.txt"
fi
# Scenario 14's f-policy: the same, its one route with POLICY_ROUTE (common.sh).
sed -e "s|$TMP/forklb-conf/|$TMP/forklb-policy/|g" -e "s|127.0.0.1:$P_FORKLB\"|127.0.0.1:$P_POLICY\"|" \
    -e "s|routes: \[{upstream: be}\]|routes: [$POLICY_ROUTE]|" \
    -e "/- name: metrics/,/metrics: prometheus}/d" -e "/stats: {}}/d" \
    "$TMP/forklb-conf/forklb.yaml" > "$TMP/forklb-policy/forklb.yaml"
grep -q "limit_req" "$TMP/forklb-policy/forklb.yaml" && ! grep -q "metrics" "$TMP/forklb-policy/forklb.yaml" \
    || { echo "could not derive the f-policy config" >&2; exit 1; }

# The TLS instances keep more idle upstream connections (per worker, forklb
# and nginx; HAProxy's idle pool has no cap): scenario 11 has 800 requests in
# flight (-c8 -m100), and with a pool of 32 per worker most of them would
# open and close an upstream connection, which measures that, not HTTP/2.
# Scenarios 5-7 (50 connections) never fill either pool.
TLS_KEEPALIVE=512

# The TLS instance: the same, with a TLS listener. rustls (ring provider):
# TLS 1.2 and 1.3, key exchange X25519 first (then P-256, P-384), the client's
# cipher suite order; session tickets (key shared by the workers). ALPN h2 and
# http/1.1 once HTTP/2 has landed (listener key "http2", true by default; not
# written here, so that a forklb without it still runs the TLS scenarios).
cat > "$TMP/forklb-tls/forklb.yaml" <<EOF
version: 1
workers: 2
log_level: warn
error_log: $TMP/forklb-tls/error.log
pid_file: $TMP/forklb-tls/forklb.pid
listeners:
  - name: tls
    bind: ["127.0.0.1:$T_FORKLB"]
    tls:
      certificates:
        - {cert: $CERT, key: $KEY}
    routes: [{upstream: be}]
upstreams:
  be:
    keepalive: $TLS_KEEPALIVE
    servers:
      - {addr: "127.0.0.1:$BE1"}
      - {addr: "127.0.0.1:$BE2"}
EOF

# The RSA instance (scenario 7r): the TLS instance with the RSA certificate.
sed -e "s|$TMP/forklb-tls/|$TMP/forklb-rsa/|g" -e "s|127.0.0.1:$T_FORKLB|127.0.0.1:$R_FORKLB|" \
    -e "s|{cert: $CERT, key: $KEY}|{cert: $RSA_CERT, key: $RSA_KEY}|" \
    "$TMP/forklb-tls/forklb.yaml" > "$TMP/forklb-rsa/forklb.yaml"
grep -q "{cert: $RSA_CERT, key: $RSA_KEY}" "$TMP/forklb-rsa/forklb.yaml" \
    && grep -q "127.0.0.1:$R_FORKLB" "$TMP/forklb-rsa/forklb.yaml" \
    || { echo "could not derive the forklb RSA config" >&2; exit 1; }

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

# The TLS instance. Made comparable to forklb/rustls: nginx 1.22's default
# ssl_protocols lacks TLSv1.3, so list it; X25519 first, as rustls. Cipher suite:
# the client's order (ssl_prefer_server_ciphers off, the default). Session
# resumption: nginx defaults, stated - tickets on (key generated once, shared
# by the workers), no server-side session cache (ssl_session_cache none).
# HTTP/2 via ALPN ("listen ... ssl http2", nginx 1.22's syntax). Since 1.19.7
# keepalive_requests also caps the streams of an h2 connection (then GOAWAY,
# and h2load does not reconnect): raised far above what a run sends.
sed -e "s|^pid .*|pid $TMP/nginx-tls/nginx.pid;|" \
    -e "s|^error_log .*|error_log $TMP/nginx-tls/error.log warn;|" \
    -e "s|^    keepalive_requests 100000;|    keepalive_requests 100000000;|" \
    -e "s|^        keepalive 32;|        keepalive $TLS_KEEPALIVE;|" \
    -e "s|listen 127.0.0.1:$P_NGINX backlog=4096;|listen 127.0.0.1:$T_NGINX ssl http2 backlog=4096;\\
        ssl_certificate $CERT;\\
        ssl_certificate_key $KEY;\\
        ssl_protocols TLSv1.2 TLSv1.3;\\
        ssl_ecdh_curve X25519:prime256v1:secp384r1;\\
        ssl_prefer_server_ciphers off;\\
        ssl_session_tickets on;\\
        ssl_session_cache none;|" \
    "$TMP/nginx/nginx.conf" > "$TMP/nginx-tls/nginx.conf"
grep -q "listen 127.0.0.1:$T_NGINX ssl http2" "$TMP/nginx-tls/nginx.conf" \
    && grep -q "keepalive_requests 100000000;" "$TMP/nginx-tls/nginx.conf" \
    && grep -q "keepalive $TLS_KEEPALIVE;" "$TMP/nginx-tls/nginx.conf" \
    || { echo "could not derive the nginx TLS config" >&2; exit 1; }
# The RSA instance (scenario 7r): the TLS instance with the RSA certificate.
sed -e "s|$TMP/nginx-tls/|$TMP/nginx-rsa/|g" \
    -e "s|listen 127.0.0.1:$T_NGINX ssl http2|listen 127.0.0.1:$R_NGINX ssl http2|" \
    -e "s|ssl_certificate $CERT;|ssl_certificate $RSA_CERT;|" \
    -e "s|ssl_certificate_key $KEY;|ssl_certificate_key $RSA_KEY;|" \
    "$TMP/nginx-tls/nginx.conf" > "$TMP/nginx-rsa/nginx.conf"
grep -q "listen 127.0.0.1:$R_NGINX ssl http2" "$TMP/nginx-rsa/nginx.conf" \
    && grep -q "ssl_certificate_key $RSA_KEY;" "$TMP/nginx-rsa/nginx.conf" \
    || { echo "could not derive the nginx RSA config" >&2; exit 1; }

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

# The TLS instance: same settings; TLS 1.2-1.3 (HAProxy 2.6's default), same
# groups as the others, HAProxy's defaults otherwise (server cipher order, whose
# first TLS 1.3 suite is OpenSSL's and the client's first too; session tickets on);
# ALPN h2 and http/1.1. Far fewer connections than the plain instance need: a
# smaller maxconn (enough for scenario 13's idle h2 connections).
HAPROXY_TLS_MAXCONN=$((H2_IDLE_CONNS + 500 > 4096 ? H2_IDLE_CONNS + 500 : 4096))
((HAPROXY_TLS_MAXCONN <= (NOFILE - 64) / 2)) || HAPROXY_TLS_MAXCONN=$(((NOFILE - 64) / 2))
sed -e "s|^    maxconn .*|    maxconn $HAPROXY_TLS_MAXCONN|" \
    -e "s|^    pidfile .*|    pidfile $TMP/haproxy-tls/haproxy.pid|" \
    -e "s|^    bind 127.0.0.1:$P_HAPROXY\$|    bind 127.0.0.1:$T_HAPROXY ssl crt $TMP/tls/haproxy.pem ssl-min-ver TLSv1.2 curves X25519:P-256:P-384 alpn h2,http/1.1|" \
    "$TMP/haproxy/haproxy.cfg" > "$TMP/haproxy-tls/haproxy.cfg"
grep -q "bind 127.0.0.1:$T_HAPROXY ssl.* alpn h2,http/1.1\$" "$TMP/haproxy-tls/haproxy.cfg" \
    || { echo "could not derive the HAProxy TLS config" >&2; exit 1; }
# The RSA instance (scenario 7r): the TLS instance with the RSA certificate.
sed -e "s|$TMP/haproxy-tls/|$TMP/haproxy-rsa/|g" \
    -e "s|bind 127.0.0.1:$T_HAPROXY ssl crt $TMP/tls/haproxy.pem |bind 127.0.0.1:$R_HAPROXY ssl crt $TMP/tls/haproxy-rsa.pem |" \
    "$TMP/haproxy-tls/haproxy.cfg" > "$TMP/haproxy-rsa/haproxy.cfg"
grep -q "bind 127.0.0.1:$R_HAPROXY ssl crt $TMP/tls/haproxy-rsa.pem " "$TMP/haproxy-rsa/haproxy.cfg" \
    || { echo "could not derive the HAProxy RSA config" >&2; exit 1; }

# ---------------------------------------------------------------- start everything
# try_start NAME PORT CMD... : run CMD in the background, remember its pid, wait
# (bounded) for its port; on failure show its output and return 1.
try_start() {
    local name=$1 port=$2; shift 2
    "$@" >"$TMP/$name.stdout" 2>&1 &
    local pid=$! _
    PIDS+=("$pid")
    # Up to 15 s for the port, but give up as soon as the process has exited.
    for _ in $(seq 30); do
        $HELP waitport "$port" 0.5 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
    done
    if ! $HELP waitport "$port" 0.2 || ! kill -0 "$pid" 2>/dev/null; then
        echo "$name did not start; its output:" >&2
        tail -n 30 "$TMP/$name.stdout" >&2 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        return 1
    fi
    eval "PID_$name=$pid"
}
# start NAME PORT CMD... : the same, but a failure stops the benchmark.
start() {
    try_start "$@" || { tail -n 30 "$TMP"/*/error.log >&2 2>/dev/null || true; exit 1; }
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

log "starting forklb with a policy route (scenario 14) on :$P_POLICY"
"$TMP/forklb" -t -c "$TMP/forklb-policy/forklb.yaml" >/dev/null
start forklb_policy "$P_POLICY" "$TMP/forklb" -c "$TMP/forklb-policy/forklb.yaml"
$HELP check "$P_POLICY" / 6 || { echo "forklb (policy route) does not proxy correctly" >&2; exit 1; }

log "starting nginx proxy on :$P_NGINX"
start nginx "$P_NGINX" nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"

log "starting haproxy on :$P_HAPROXY"
start haproxy "$P_HAPROXY" haproxy -db -f "$TMP/haproxy/haproxy.cfg"

declare -A PORT=([forklb]=$P_FORKLB [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [pingora]=$P_PINGORA)
declare -A PID=([forklb]=$PID_forklb [nginx]=$PID_nginx [haproxy]=$PID_haproxy)
# PROXIES: the plain instances that run (scenarios 1-4); ALL_PROXIES: every
# proxy of this run, whose TLS instances are tried (scenarios 5-7, 10-13).
PROXIES=(forklb nginx haproxy)
ALL_PROXIES=(forklb nginx haproxy)

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

# Pingora: one process (its threads are the workers), so PID is all of it.
# Its plain instance is optional, like the TLS instances: if it does not start
# or proxy correctly it is noted and skipped, and its TLS instance still tried.
# RUST_LOG: Pingora logs (env_logger) to its stdout file; warnings and errors only.
# --pool: idle upstream connections kept per thread, $TLS_KEEPALIVE as forklb's and
# nginx's TLS instances per worker (Pingora's default 128; see bench/pingora/src/main.rs).
PINGORA_ARGS=(--upstream "127.0.0.1:$BE1" --upstream "127.0.0.1:$BE2" --threads 2 --pool "$TLS_KEEPALIVE")
if ((PINGORA_OK)); then
    ALL_PROXIES+=(pingora)
    log "starting pingora on :$P_PINGORA"
    if ! RUST_LOG=warn try_start pingora "$P_PINGORA" \
            "$TMP/pingora-lb" --listen "127.0.0.1:$P_PINGORA" "${PINGORA_ARGS[@]}"; then
        echo "pingora: plain scenarios skipped: did not start (see above)" >> "$TMP/notes.txt"
    elif ! { $HELP check "$P_PINGORA" / 6 && $HELP check "$P_PINGORA" /1m 1048576 "$TMP/www/1m"; }; then
        echo "!! pingora does not proxy correctly: plain scenarios skipped" >&2
        echo "pingora: plain scenarios skipped: does not proxy correctly" >> "$TMP/notes.txt"
        kill -TERM "$PID_pingora" 2>/dev/null || true
    else
        PID[pingora]=$PID_pingora
        PROXIES+=(pingora)
        log "pingora: processes $($HELP procs "$PID_pingora") (threads: $(ls /proc/"$PID_pingora"/task | wc -l))"
    fi
fi

# ---------------------------------------------------------------- TLS instances
# Unlike the plain instances, a TLS instance that fails is skipped, not fatal.
declare -A TLS_PORT=([forklb]=$T_FORKLB [nginx]=$T_NGINX [haproxy]=$T_HAPROXY [pingora]=$T_PINGORA)
declare -A TLS_PID=()
TLS_PROXIES=()
tls_skip() {   # PROXY REASON
    echo "!! $1: TLS scenarios skipped: $2" >&2
    echo "$1: TLS scenarios skipped: $2" >> "$TMP/notes.txt"
}
log "starting the TLS instances on :$T_FORKLB (forklb), :$T_NGINX (nginx), :$T_HAPROXY (haproxy)$( \
    ((PINGORA_OK)) && echo ", :$T_PINGORA (pingora)")"
if ! "$TMP/forklb" -t -c "$TMP/forklb-tls/forklb.yaml" >"$TMP/forklb-tls/configtest.txt" 2>&1; then
    sed 's/^/   /' "$TMP/forklb-tls/configtest.txt" >&2
    tls_skip forklb "config test failed: $(grep -m1 . "$TMP/forklb-tls/configtest.txt")"
elif ! try_start forklb_tls "$T_FORKLB" "$TMP/forklb" -c "$TMP/forklb-tls/forklb.yaml"; then
    tail -n 10 "$TMP/forklb-tls/error.log" >&2 2>/dev/null || true
    tls_skip forklb "did not start (see above)"
else
    for _ in $(seq 100); do [[ -s "$TMP/forklb-tls/forklb.pid" ]] && break; sleep 0.1; done
    if [[ -s "$TMP/forklb-tls/forklb.pid" ]]; then
        TLS_PID[forklb]=$PID_forklb_tls
    else
        kill -TERM "$PID_forklb_tls" 2>/dev/null || true
        tls_skip forklb "wrote no pid file"
    fi
fi
if try_start nginx_tls "$T_NGINX" nginx -p "$TMP/nginx-tls/" -c "$TMP/nginx-tls/nginx.conf" \
        -e "$TMP/nginx-tls/error.log"; then
    TLS_PID[nginx]=$PID_nginx_tls
else
    tail -n 10 "$TMP/nginx-tls/error.log" >&2 2>/dev/null || true
    tls_skip nginx "did not start (see above)"
fi
if try_start haproxy_tls "$T_HAPROXY" haproxy -db -f "$TMP/haproxy-tls/haproxy.cfg"; then
    TLS_PID[haproxy]=$PID_haproxy_tls
else
    tls_skip haproxy "did not start (see above)"
fi
# Pingora's TLS instance: rustls (ring), Pingora's defaults: TLS 1.2 and 1.3,
# rustls' groups (X25519 first) and the client's cipher suite order; session
# resumption is rustls' default (a server-side session cache of 256 sessions
# per process, TLS 1.3 tickets that name its entries; no ticket key).
# enable_h2(): ALPN h2 and http/1.1.
if ((PINGORA_OK)); then
    if RUST_LOG=warn try_start pingora_tls "$T_PINGORA" "$TMP/pingora-lb" \
            --tls-listen "127.0.0.1:$T_PINGORA" --cert "$CERT" --key "$KEY" "${PINGORA_ARGS[@]}"; then
        TLS_PID[pingora]=$PID_pingora_tls
    else
        tls_skip pingora "did not start (see above)"
    fi
fi
# Each started TLS instance must serve / and /1m (certificate verified for
# "localhost"); the negotiated parameters are recorded for the header.
for p in "${ALL_PROXIES[@]}"; do
    [[ -n "${TLS_PID[$p]:-}" ]] || continue
    if $HELP check --tls "$CERT" "${TLS_PORT[$p]}" / 6 \
        && $HELP check --tls "$CERT" "${TLS_PORT[$p]}" /1m 1048576 "$TMP/www/1m"; then
        if info=$($HELP tlsinfo "${TLS_PORT[$p]}" "$CERT" "$TMP/tls/session-$p.pem"); then
            TLS_PROXIES+=("$p")
            printf '  %-8s %s\n' "$p" "$info" >> "$TMP/tls/negotiated.txt"
            log "$p TLS: processes $($HELP procs "${TLS_PID[$p]}"); $info"
        else
            tls_skip "$p" "openssl s_client: $info"
        fi
    else
        tls_skip "$p" "does not proxy correctly over TLS (see above)"
    fi
done

# The RSA instances (scenario 7r only): started and checked like the TLS ones;
# one that fails loses scenario 7r alone.
declare -A RSA_PORT=([forklb]=$R_FORKLB [nginx]=$R_NGINX [haproxy]=$R_HAPROXY [pingora]=$R_PINGORA)
declare -A RSA_PID=()
RSA_PROXIES=()
rsa_skip() {   # PROXY REASON
    echo "!! $1: RSA scenario (7r) skipped: $2" >&2
    echo "$1: RSA scenario (7r) skipped: $2" >> "$TMP/notes.txt"
}
if ((RUN_TLS)); then
    log "starting the RSA instances on :$R_FORKLB (forklb), :$R_NGINX (nginx), :$R_HAPROXY (haproxy)$( \
        ((PINGORA_OK)) && echo ", :$R_PINGORA (pingora)")"
    if ! "$TMP/forklb" -t -c "$TMP/forklb-rsa/forklb.yaml" >"$TMP/forklb-rsa/configtest.txt" 2>&1; then
        sed 's/^/   /' "$TMP/forklb-rsa/configtest.txt" >&2
        rsa_skip forklb "config test failed: $(grep -m1 . "$TMP/forklb-rsa/configtest.txt")"
    elif try_start forklb_rsa "$R_FORKLB" "$TMP/forklb" -c "$TMP/forklb-rsa/forklb.yaml"; then
        for _ in $(seq 100); do [[ -s "$TMP/forklb-rsa/forklb.pid" ]] && break; sleep 0.1; done
        RSA_PID[forklb]=$PID_forklb_rsa
    else
        rsa_skip forklb "did not start (see above)"
    fi
    if try_start nginx_rsa "$R_NGINX" nginx -p "$TMP/nginx-rsa/" -c "$TMP/nginx-rsa/nginx.conf" \
            -e "$TMP/nginx-rsa/error.log"; then
        RSA_PID[nginx]=$PID_nginx_rsa
    else
        rsa_skip nginx "did not start (see above)"
    fi
    if try_start haproxy_rsa "$R_HAPROXY" haproxy -db -f "$TMP/haproxy-rsa/haproxy.cfg"; then
        RSA_PID[haproxy]=$PID_haproxy_rsa
    else
        rsa_skip haproxy "did not start (see above)"
    fi
    if ((PINGORA_OK)); then
        if RUST_LOG=warn try_start pingora_rsa "$R_PINGORA" "$TMP/pingora-lb" \
                --tls-listen "127.0.0.1:$R_PINGORA" --cert "$RSA_CERT" --key "$RSA_KEY" "${PINGORA_ARGS[@]}"; then
            RSA_PID[pingora]=$PID_pingora_rsa
        else
            rsa_skip pingora "did not start (see above)"
        fi
    fi
    for p in "${ALL_PROXIES[@]}"; do
        [[ -n "${RSA_PID[$p]:-}" ]] || continue
        if ! $HELP check --tls "$RSA_CERT" "${RSA_PORT[$p]}" / 6; then
            rsa_skip "$p" "does not proxy correctly over TLS (see above)"
        elif info=$($HELP tlsinfo "${RSA_PORT[$p]}" "$RSA_CERT" "$TMP/tls/session-rsa-$p.pem"); then
            RSA_PROXIES+=("$p")
            printf '  %-8s %s\n' "$p" "$info" >> "$TMP/tls/negotiated-rsa.txt"
            log "$p RSA: processes $($HELP procs "${RSA_PID[$p]}"); $info"
        else
            rsa_skip "$p" "openssl s_client: $info"
        fi
    done
fi

# HTTP/2: each working TLS instance must negotiate h2 (ALPN, h2 only offered)
# and serve / on it; else its h2 scenarios are skipped, and the reason is in
# the header. /1m and / again on the same connection (two more streams) only
# warn: the h2load runs then show what fails.
H2_PROXIES=()
if ((RUN_H2)); then
    for p in "${ALL_PROXIES[@]}"; do
        if [[ -z "${TLS_PID[$p]:-}" ]]; then
            echo "$p: HTTP/2 scenarios skipped: no TLS instance" >> "$TMP/notes.txt"
        elif ! info=$($HELP h2check "${TLS_PORT[$p]}" "$CERT" /,6); then
            echo "!! $p: HTTP/2 scenarios skipped: $info" >&2
            echo "$p: HTTP/2 scenarios skipped: $info" >> "$TMP/notes.txt"
        else
            H2_PROXIES+=("$p")
            if ! info=$($HELP h2check "${TLS_PORT[$p]}" "$CERT" /,6 "/1m,1048576,$TMP/www/1m" /,6); then
                echo "!! $p: HTTP/2 check of /, /1m, / on one connection failed: $info" >&2
                echo "$p: HTTP/2 check of /, /1m, / on one connection failed (runs go on): $info" \
                    >> "$TMP/notes.txt"
                info="ALPN h2, GET / ok; /, /1m, / on one connection FAILED"
            fi
            printf '  %-8s %s\n' "$p" "$info" >> "$TMP/tls/h2.txt"
            log "$p HTTP/2: $info"
        fi
    done
fi

# ---------------------------------------------------------------- run header
# Pingora's version: the one its Cargo.lock pins (what was built).
if [[ -n "${PINGORA_BIN:-}" ]]; then PINGORA_VERSION="pingora (PINGORA_BIN=$PINGORA_BIN)"
else
    PINGORA_VERSION="pingora $(awk '/^name = "pingora"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' \
        "$HERE/pingora/Cargo.lock" 2>/dev/null || true) (bench/pingora, rustls)"
fi
RESULTS="$TMP/results.jsonl"
HEADER="$TMP/header.txt"
{
    echo "forklb benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
    echo "ROUNDS=$ROUNDS DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS$([[ ${QUICK:-0} == 1 ]] && echo ' (QUICK)')"
    echo "$("$TMP/forklb" -V 2>&1 | head -n1) ($FORKLB_REV), $(nginx -v 2>&1), $(haproxy -v 2>&1 | head -n1 | cut -d' ' -f1-3)$( ((PINGORA_OK)) && echo ", $PINGORA_VERSION"), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)$( ((RUN_H2)) && echo ", $(h2load --version 2>&1 | head -n1)")"
    if ((ONLY_POLICY)); then echo "ONLY=policy: scenario 14 alone"
    elif [[ "${ONLY:-}" == tls ]]; then echo "ONLY=tls: scenarios 1-4 and 8-14 not run"
    elif ! ((RUN_PLAIN && RUN_TLS)); then echo "ONLY=$ONLY: scenarios 1-9 not run"; fi
    if [[ -s "$TMP/tls/negotiated.txt" ]]; then
        echo "TLS: one ECDSA P-256 certificate; what $(openssl version | cut -d' ' -f1-2) (as in wrk) negotiates:"
        cat "$TMP/tls/negotiated.txt"
        # Comparable only if everyone negotiated the same protocol, suite and group.
        if (($(cut -c12- "$TMP/tls/negotiated.txt" | sed 's/ sig .*//' | sort -u | wc -l) > 1)); then
            echo "  note: the proxies negotiated different TLS parameters; TLS ratios compare unlike work"
        fi
    fi
    if [[ -s "$TMP/tls/negotiated-rsa.txt" ]]; then
        echo "TLS, scenario 7r: one RSA-2048 certificate; what the same OpenSSL negotiates:"
        cat "$TMP/tls/negotiated-rsa.txt"
        if (($(cut -c12- "$TMP/tls/negotiated-rsa.txt" | sed 's/, verify .*//' | sort -u | wc -l) > 1)); then
            echo "  note: the proxies negotiated different TLS parameters; 7r ratios compare unlike work"
        fi
    fi
    if [[ -s "$TMP/tls/h2.txt" ]]; then
        echo "HTTP/2 (h2load, H2_IDLE_CONNS=$H2_IDLE_CONNS): the sanity check (GET /, /1m, / on one h2 connection):"
        cat "$TMP/tls/h2.txt"
    fi
    cat "$TMP/notes.txt" 2>/dev/null || true
} > "$HEADER"
cat "$HEADER"

# Warm-up: one short keep-alive run per proxy (page cache, allocator, pools).
log "warm-up (2s per proxy, not measured)"
if ((RUN_PLAIN)); then
    for p in "${PROXIES[@]}"; do
        timeout 30 wrk -t2 -c50 -d2s "http://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1 || true
    done
fi
if ((RUN_TLS)); then
    for p in "${TLS_PROXIES[@]}"; do
        timeout 30 wrk -t2 -c50 -d2s "https://localhost:${TLS_PORT[$p]}/" >/dev/null 2>&1 || true
    done
    for p in "${RSA_PROXIES[@]}"; do
        timeout 30 wrk -t2 -c50 -d2s "https://localhost:${RSA_PORT[$p]}/" >/dev/null 2>&1 || true
    done
fi
for p in "${H2_PROXIES[@]}"; do
    timeout 30 h2load -t2 -c8 -m10 -D 2 -N 5s --npn-list=h2 "https://localhost:${TLS_PORT[$p]}/" \
        >/dev/null 2>&1 || true
done

# run_scenario NAME PATH WRK-ARGS...: ROUNDS rounds, each over the proxies.
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

# run_tls_scenario NAME SHIM-MODE PATH WRK-ARGS...: the same over the TLS
# instances that work (the RSA ones for scenario 7r, tls-rsa), wrk with the
# handshake shim. The URL names "localhost" (the certificate's name, sent as
# SNI); wrk drops addresses that refuse connections (e.g. ::1), so it
# connects to 127.0.0.1.
run_tls_scenario() {
    local scen=$1 mode=$2 path=$3; shift 3
    local r p
    local set=TLS
    [[ "$scen" != tls-rsa ]] || set=RSA
    local -n inst_port=${set}_PORT inst_pid=${set}_PID inst_list=${set}_PROXIES
    if ((${#inst_list[@]} == 0)); then
        echo "      !! no instance works: $scen skipped"
        return 0
    fi
    for r in $(seq "$ROUNDS"); do
        for p in "${inst_list[@]}"; do
            BENCH_WRK_PRELOAD="$TMP/tls/shim.so" TLS_SHIM_MODE=$mode \
            $HELP wrk "$scen" "$p" "$r" "${inst_pid[$p]}" "$RESULTS" "$TMP/raw" -- \
                "$@" -d "$DURATION" --latency "https://localhost:${inst_port[$p]}$path"
        done
    done
}

# run_h2_scenario NAME PATH H2LOAD-ARGS...: the same over the TLS instances that
# speak h2, with h2load: ALPN h2 only (so that no run silently falls back to
# HTTP/1.1), the TLS 1.3 suite of the TLS scenarios (h2load would prefer
# AES-128, which forklb and nginx take and HAProxy, with its own order, not).
# -N 5s: a connection silent for 5 s is given up, else h2load waits for a
# server that never answers (until the helper kills it, 30 s after -D).
run_h2_scenario() {
    local scen=$1 path=$2; shift 2
    local r p
    if ((${#H2_PROXIES[@]} == 0)); then
        echo "      !! no TLS instance speaks h2: $scen skipped"
        return 0
    fi
    for r in $(seq "$ROUNDS"); do
        for p in "${H2_PROXIES[@]}"; do
            $HELP h2load "$scen" "$p" "$r" "${TLS_PID[$p]}" "$RESULTS" "$TMP/raw" -- \
                "$@" -D "$DURATION" -N 5s --npn-list=h2 --tls13-ciphers=TLS_AES_256_GCM_SHA384 \
                "https://localhost:${TLS_PORT[$p]}$path"
        done
    done
}

# Scenario 4 is measured first, on freshly warmed-up proxies: the
# "Connection: close" scenario leaves tens of thousands of TIME_WAIT sockets on
# the proxies' ports, and a new client connection whose port collides with one
# of them waits a 1 s SYN retransmission - 10,000 sequential connects would then
# take minutes and measure the kernel, not the proxy.
if ((RUN_PLAIN && !ONLY_POLICY)); then
    log "scenario 4 (run first): RSS of $IDLE_CONNS idle keep-alive connections"
    for p in "${PROXIES[@]}"; do
        # The helper stops by itself after 180 s; timeout is the outer bound.
        timeout 300 $HELP idle idle "$p" "${PID[$p]}" "${PORT[$p]}" "$IDLE_CONNS" "$RESULTS" \
            || echo "      !! $p: idle-connection helper failed (exit $?)"
    done
fi

# Scenario 13 early too, for the same reason: scenarios 6 and 7 leave the TLS
# instances' ports with as many TIME_WAIT sockets.
if ((RUN_H2)); then
    log "scenario 13: RSS of $H2_IDLE_CONNS idle HTTP/2 connections (TLS, one GET / each)"
    if ((${#H2_PROXIES[@]} == 0)); then echo "      !! no TLS instance speaks h2: skipped"; fi
    for p in "${H2_PROXIES[@]}"; do
        timeout 300 $HELP h2idle h2-idle "$p" "${TLS_PID[$p]}" "${TLS_PORT[$p]}" "$H2_IDLE_CONNS" \
            "$RESULTS" "$CERT" || echo "      !! $p: idle h2 connection helper failed (exit $?)"
    done
fi

if ((RUN_PLAIN && !ONLY_POLICY)); then
    log "scenario 1: small responses, keep-alive (wrk -t2 -c50)"
    run_scenario keepalive / -t2 -c50

    log "scenario 2: new connection per request (wrk -t2 -c50 -H 'Connection: close')"
    ACCEPT_BEFORE=$($HELP scrape "$M_FORKLB" || echo "")
    run_scenario close / -t2 -c50 -H "Connection: close"
    # forklb's accept wake-ups per accepted connection over scenario 2 (its
    # counters; nginx and HAProxy have none to compare with).
    $HELP accept "$RESULTS" "$ACCEPT_BEFORE" "$($HELP scrape "$M_FORKLB" || echo "")"

    log "scenario 3: 1 MiB bodies (wrk -t2 -c10 /1m)"
    run_scenario 1m /1m -t2 -c10
fi

if ((RUN_PLAIN)); then
    # Scenario 14: forklb (as in 1), f-policy (its route with POLICY_ROUTE) and
    # f-viewer (forklb while a dashboard viewer polls it every 2 s), interleaved.
    log "scenario 14: what a policy route and a dashboard viewer cost (wrk -t2 -c50 /)"
    for r in $(seq "$ROUNDS"); do
        $HELP wrk policy forklb "$r" "$PID_forklb" "$RESULTS" "$TMP/raw" -- \
            -t2 -c50 -d "$DURATION" --latency "http://127.0.0.1:$P_FORKLB/"
        $HELP wrk policy f-policy "$r" "$PID_forklb_policy" "$RESULTS" "$TMP/raw" -- \
            -t2 -c50 -d "$DURATION" --latency "http://127.0.0.1:$P_POLICY/"
        ((VIEWER)) || continue
        $HELP viewer "$M_FORKLB" /stats 2 600 2>>"$TMP/viewer.log" &
        VIEWER_PID=$!
        $HELP wrk policy f-viewer "$r" "$PID_forklb" "$RESULTS" "$TMP/raw" -- \
            -t2 -c50 -d "$DURATION" --latency "http://127.0.0.1:$P_FORKLB/"
        kill "$VIEWER_PID" 2>/dev/null || true
        wait "$VIEWER_PID" 2>/dev/null || true
    done
    if [[ -s "$TMP/viewer.log" ]]; then sed 's/^/      !! /' "$TMP/viewer.log"; fi
    # And what one poll costs, on the idle instance (2,000 polls back to back).
    if ((VIEWER)); then $HELP viewercost "$RESULTS" "$M_FORKLB" /stats 2000 "$PID_forklb" 2; fi
fi

if ((RUN_TLS)); then
    log "scenario 5: TLS, small responses, keep-alive (wrk -t2 -c50 https://localhost/)"
    run_tls_scenario tls-ka count / -t2 -c50

    log "scenario 6: TLS, new connection + full handshake per request (-H 'Connection: close', no session reuse)"
    run_tls_scenario tls-new fresh / -t2 -c50 -H "Connection: close"

    log "scenario 7: TLS, new connection + resumed handshake per request (-H 'Connection: close', session tickets)"
    run_tls_scenario tls-resume count / -t2 -c50 -H "Connection: close"

    log "scenario 7r: TLS with an RSA-2048 certificate, new connection + full handshake per request"
    run_tls_scenario tls-rsa fresh / -t2 -c50 -H "Connection: close"
fi

if ((RUN_H2)); then
    log "scenario 10: HTTP/2, small responses, 1 stream per connection (h2load -t2 -c8 -m1 https://localhost/)"
    run_h2_scenario h2-m1 / -t2 -c8 -m1

    log "scenario 11: HTTP/2, small responses, 100 streams per connection (h2load -t2 -c8 -m100)"
    run_h2_scenario h2-m100 / -t2 -c8 -m100

    log "scenario 12: HTTP/2, 1 MiB bodies (h2load -t2 -c4 -m4 https://localhost/1m)"
    run_h2_scenario h2-1m /1m -t2 -c4 -m4
fi

# Scenario 8 last: it runs its own instances (one worker each) under valgrind,
# against the same backend. In the background + wait, so that an interrupt
# reaches cleanup at once (which then stops callgrind.sh, and it its processes).
if [[ "${CALLGRIND:-1}" != 0 ]]; then
    CG_BACKEND="$BE1 $BE2" CG_RESULTS="$RESULTS" CG_DIR="$TMP/callgrind" FORKLB_BIN="$TMP/forklb" \
        PINGORA_BIN="$( ((PINGORA_OK)) && echo "$TMP/pingora-lb")" bash "$HERE/callgrind.sh" &
    CG_PID=$!
    PIDS+=("$CG_PID")
    wait "$CG_PID" || echo "      !! callgrind scenario failed (exit $?)"
fi

# Anything forklb logged at warn or above during the run is worth seeing.
for f in "$TMP/forklb-conf/error.log" "$TMP/forklb-tls/error.log" "$TMP/forklb-rsa/error.log"; do
    if [[ -s "$f" ]]; then
        {
            echo "forklb error_log $(basename "$(dirname "$f")")/ ($(wc -l < "$f") lines), last 10:"
            tail -n 10 "$f" | sed 's/^/  /'
        } >> "$HEADER.log"
    fi
done
# And Pingora's log (warnings and errors, on its stdout/stderr). It logs an
# ERROR "Fail to proxy: Downstream ..." for every request whose client went
# away, which wrk and h2load do to the requests in flight at the end of each
# timed run, and over HTTP/2 often a second one, "failed to send error response
# to downstream" (the error response it then tries on that stream):
# those are counted, not shown; the last 5 other lines are.
GONE='Fail to proxy: Downstream|failed to send error response to downstream'
for f in "$TMP/pingora.stdout" "$TMP/pingora_tls.stdout" "$TMP/pingora_rsa.stdout"; do
    if [[ -s "$f" ]]; then
        n_gone=$(grep -cE "$GONE" "$f" || true)
        {
            echo "pingora log $(basename "$f" .stdout): $(wc -l < "$f") lines, $n_gone of them about" \
                "requests whose client closed while they were in flight$( \
                grep -qvE "$GONE" "$f" && echo "; the last 5 others:")"
            { grep -vE "$GONE" "$f" || true; } | tail -n 5 | cut -c1-300 | sed 's/^/  /'
        } >> "$HEADER.log"
    fi
done

# ---------------------------------------------------------------- summary
mkdir -p "$HERE/results"
echo
$HELP summary "$RESULTS" "$HEADER" | tee "$HERE/results/$SUMMARY"
if [[ -s "$HEADER.log" ]]; then
    echo | tee -a "$HERE/results/$SUMMARY"
    tee -a "$HERE/results/$SUMMARY" < "$HEADER.log"
fi
echo
echo "summary written to bench/results/$SUMMARY"
