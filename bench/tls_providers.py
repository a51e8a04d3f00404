#!/usr/bin/env python3
"""bench/tls_providers.py — TLS CPU cost matrix: forklb builds (e.g. the ring
and the aws-lc-rs provider) beside nginx and HAProxy, in one interleaved run.

  python3 bench/tls_providers.py ring=/tmp/forklb-ring awslc=target/release/forklb
  ROUNDS=5 DURATION=4 python3 bench/tls_providers.py ...
  CASES=rsa13-full,ecdsa13-full python3 bench/tls_providers.py ...   # a subset

Every proxy gets two TLS listeners, one with a self-signed ECDSA P-256
certificate and one with an RSA-2048 one (plain HTTP to the same nginx
backend pair as bench/run.sh), 2 workers each. Cases (wrk with bench/run.sh's
LD_PRELOAD shim, extended here to pin the client's TLS version and suites):

  {ecdsa,rsa}{13,12}-full   -c50 Connection: close, a full handshake each
  {ecdsa,rsa}13-resumed     -c50 Connection: close, resumed (session ticket)
  bulk-aes256gcm, bulk-chacha20
                            -c10 keep-alive GET /1m, TLS 1.3 with only that suite

The figure is the CPU time (utime + stime of master + workers, from
/proc/PID/stat) per handshake or per MiB: unlike req/s it hardly depends on
what else runs on the (shared) machine. ROUNDS rounds, the proxies
interleaved within each, medians reported, with ratios to nginx and to the
first forklb build named. Nothing is kept but the printed table (and the raw
wrk outputs with KEEP_TMP=1).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import helpers  # noqa: E402  (bench/helpers.py: /proc CPU accounting, wrk parsing)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "3"))

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct ssl_st SSL;
static int (*real_connect)(SSL *);
static int (*in_before)(const SSL *);
static int (*set_session)(SSL *, void *);
static int (*session_reused)(const SSL *);
static long (*ssl_ctrl)(SSL *, int, long, void *);
static int (*set_suites)(SSL *, const char *);
static int (*set_ciphers)(SSL *, const char *);
static int fresh, max12;
static const char *suites, *ciphers;
static unsigned long n_full, n_resumed;
__attribute__((constructor)) static void init(void) {
    const char *m = getenv("TLS_SHIM_MODE");
    fresh = m && strcmp(m, "fresh") == 0;
    m = getenv("TLS_SHIM_MAXVER");
    max12 = m && strcmp(m, "1.2") == 0;
    suites = getenv("TLS_SHIM_SUITES");
    ciphers = getenv("TLS_SHIM_CIPHERS");
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
        ssl_ctrl = dlsym(RTLD_DEFAULT, "SSL_ctrl");
        set_suites = dlsym(RTLD_DEFAULT, "SSL_set_ciphersuites");
        set_ciphers = dlsym(RTLD_DEFAULT, "SSL_set_cipher_list");
        __atomic_store_n(&real_connect, dlsym(RTLD_NEXT, "SSL_connect"), __ATOMIC_RELEASE);
    }
    if (in_before(s)) {
        if (fresh)
            set_session(s, NULL);
        if (max12)
            ssl_ctrl(s, 124 /* SSL_CTRL_SET_MAX_PROTO_VERSION */, 0x0303, NULL);
        if (suites)
            set_suites(s, suites);
        if (ciphers)
            set_ciphers(s, ciphers);
    }
    int r = real_connect(s);
    if (r == 1)
        __atomic_fetch_add(session_reused(s) ? &n_resumed : &n_full, 1, __ATOMIC_RELAXED);
    return r;
}
"""

# name -> (certificate, wrk connections, path, shim environment, unit)
CASES = {
    "ecdsa13-full": ("ecdsa", 50, "/", {"TLS_SHIM_MODE": "fresh"}, "hs"),
    "rsa13-full": ("rsa", 50, "/", {"TLS_SHIM_MODE": "fresh"}, "hs"),
    "ecdsa12-full": ("ecdsa", 50, "/", {"TLS_SHIM_MODE": "fresh", "TLS_SHIM_MAXVER": "1.2"}, "hs"),
    "rsa12-full": ("rsa", 50, "/", {"TLS_SHIM_MODE": "fresh", "TLS_SHIM_MAXVER": "1.2"}, "hs"),
    "ecdsa13-resumed": ("ecdsa", 50, "/", {"TLS_SHIM_MODE": "count"}, "hs"),
    "rsa13-resumed": ("rsa", 50, "/", {"TLS_SHIM_MODE": "count"}, "hs"),
    "bulk-aes256gcm": ("ecdsa", 10, "/1m", {"TLS_SHIM_MODE": "count",
                                            "TLS_SHIM_SUITES": "TLS_AES_256_GCM_SHA384"}, "MiB"),
    "bulk-chacha20": ("ecdsa", 10, "/1m", {"TLS_SHIM_MODE": "count",
                                           "TLS_SHIM_SUITES": "TLS_CHACHA20_POLY1305_SHA256"}, "MiB"),
}


def sh(*argv, **kw):
    subprocess.run(argv, check=True, **kw)


def wait_port(port, seconds=15):
    return helpers.cmd_waitport(port, seconds) == 0


def main(argv):
    builds = [a.split("=", 1) for a in argv]
    if not builds or any(len(b) != 2 for b in builds):
        print(__doc__)
        return 2
    cases = os.environ.get("CASES", ",".join(CASES)).split(",")
    tmp = tempfile.mkdtemp(prefix="forklb-tlsprov.")
    os.chmod(tmp, 0o755)
    procs = []
    try:
        return run(builds, cases, tmp, procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("KEEP_TMP") == "1":
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(builds, cases, tmp, procs):
    names = [n for n, _ in builds] + ["nginx", "haproxy"]
    ports = iter(int(p) for p in subprocess.run(
        ["python3", f"{HERE}/helpers.py", "freeports", str(2 + 2 * len(names))],
        capture_output=True, text=True, check=True).stdout.split())
    be1, be2 = next(ports), next(ports)
    port = {(n, c): next(ports) for n in names for c in ("ecdsa", "rsa")}
    os.makedirs(f"{tmp}/www")
    with open(f"{tmp}/www/1m", "wb") as f:
        f.write(os.urandom(1 << 20))
    cert = {}
    for kind, args in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
                       ("rsa", ["-newkey", "rsa:2048"])):
        c, k = f"{tmp}/{kind}.pem", f"{tmp}/{kind}.key"
        sh("openssl", "req", "-x509", *args, "-nodes", "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost", "-days", "2", "-keyout", k, "-out", c,
           stderr=subprocess.DEVNULL)
        with open(f"{tmp}/{kind}-haproxy.pem", "w") as f:
            f.write(open(c).read() + open(k).read())
        cert[kind] = (c, k)
    sh("cc", "-O2", "-shared", "-fPIC", "-o", f"{tmp}/shim.so", "-x", "c", "-", "-ldl",
       input=SHIM.encode())

    os.makedirs(f"{tmp}/backend")
    sh("bash", "-c", f'log() {{ :; }}; source "{HERE}/common.sh"; '
       f'write_backend_conf "{tmp}/backend" {be1} {be2} "{tmp}/www"')
    pid = {}

    def start(name, argv, check_port):
        p = subprocess.Popen(argv, stdout=open(f"{tmp}/{name}.out", "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        if not wait_port(check_port):
            raise SystemExit(f"{name} did not start: {open(f'{tmp}/{name}.out').read()[-2000:]}")
        pid[name] = p.pid

    start("backend", ["nginx", "-p", f"{tmp}/backend/", "-c", f"{tmp}/backend/nginx.conf",
                      "-e", f"{tmp}/backend/error.log"], be2)
    os.environ["BENCH_BACKEND_PID"] = str(pid["backend"])

    for name, binary in builds:
        d = f"{tmp}/{name}"
        os.makedirs(d)
        shutil.copy(binary, f"{d}/forklb")
        listeners = "".join(f"""
  - name: {kind}
    bind: ["127.0.0.1:{port[(name, kind)]}"]
    tls:
      certificates:
        - {{cert: {cert[kind][0]}, key: {cert[kind][1]}}}
    routes: [{{upstream: be}}]""" for kind in ("ecdsa", "rsa"))
        with open(f"{d}/forklb.yaml", "w") as f:
            f.write(f"""version: 1
workers: 2
log_level: warn
error_log: {d}/error.log
pid_file: {d}/forklb.pid
listeners:{listeners}
upstreams:
  be:
    keepalive: 32
    servers:
      - {{addr: "127.0.0.1:{be1}"}}
      - {{addr: "127.0.0.1:{be2}"}}
""")
        start(name, [f"{d}/forklb", "-c", f"{d}/forklb.yaml"], port[(name, "rsa")])
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{d}/forklb.pid") and time.monotonic() < deadline:
            time.sleep(0.1)

    # nginx and HAProxy as bench/run.sh's TLS instances: TLS 1.2-1.3, X25519
    # first, client's suite order (nginx), tickets on, no session cache (nginx).
    os.makedirs(f"{tmp}/nginx")
    servers = "".join(f"""
    server {{
        listen 127.0.0.1:{port[("nginx", kind)]} ssl backlog=4096;
        ssl_certificate {cert[kind][0]};
        ssl_certificate_key {cert[kind][1]};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_prefer_server_ciphers off;
        ssl_session_tickets on;
        ssl_session_cache none;
        location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}""" for kind in ("ecdsa", "rsa"))
    with open(f"{tmp}/nginx/nginx.conf", "w") as f:
        f.write(f"""daemon off;
worker_processes 2;
pid {tmp}/nginx/nginx.pid;
error_log {tmp}/nginx/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    upstream be {{ server 127.0.0.1:{be1}; server 127.0.0.1:{be2}; keepalive 32; }}{servers}
}}
""")
    start("nginx", ["nginx", "-p", f"{tmp}/nginx/", "-c", f"{tmp}/nginx/nginx.conf",
                    "-e", f"{tmp}/nginx/error.log"], port[("nginx", "rsa")])
    os.makedirs(f"{tmp}/haproxy")
    binds = "".join(f"""
frontend fe_{kind}
    bind 127.0.0.1:{port[("haproxy", kind)]} ssl crt {tmp}/{kind}-haproxy.pem ssl-min-ver TLSv1.2 curves X25519:P-256:P-384
    default_backend be""" for kind in ("ecdsa", "rsa"))
    with open(f"{tmp}/haproxy/haproxy.cfg", "w") as f:
        f.write(f"""global
    nbthread 2
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
{binds}
backend be
    balance roundrobin
    server be1 127.0.0.1:{be1}
    server be2 127.0.0.1:{be2}
""")
    start("haproxy", ["haproxy", "-db", "-f", f"{tmp}/haproxy/haproxy.cfg"], port[("haproxy", "rsa")])

    # What each negotiates (by default: TLS 1.3, the client's group order).
    for n in names:
        for kind in ("ecdsa", "rsa"):
            out = subprocess.run(["python3", f"{HERE}/helpers.py", "tlsinfo", str(port[(n, kind)]),
                                  cert[kind][0], f"{tmp}/sess-{n}-{kind}.pem"],
                                 capture_output=True, text=True)
            print(f"  {n:<8} {kind:<6} {out.stdout.strip()}", flush=True)

    recs = []
    for n in names:  # warm-up
        subprocess.run(["wrk", "-t2", "-c20", "-d1s", f"https://localhost:{port[(n, 'ecdsa')]}/"],
                       capture_output=True)
    for r in range(1, ROUNDS + 1):
        for case in cases:
            kind, conns, path, shim_env, unit = CASES[case]
            for n in names:
                env = dict(os.environ, LD_PRELOAD=f"{tmp}/shim.so", **shim_env)
                argv = ["wrk", "-t2", f"-c{conns}", f"-d{DURATION}s"]
                if path == "/":
                    argv += ["-H", "Connection: close"] if "full" in case or "resumed" in case else []
                argv.append(f"https://localhost:{port[(n, kind)]}{path}")
                m = helpers.measured_run(pid[n], argv, DURATION, env)
                w = helpers.parse_wrk(m["text"])
                rec = {"case": case, "proxy": n, "round": r, "other": m["other_pct"]}
                if "requests" not in w or not w.get("requests"):
                    rec["error"] = m["text"][-300:]
                else:
                    full, res = w.get("tls_full", 0), w.get("tls_resumed", 0)
                    rec.update(requests=w["requests"], full=full, resumed=res)
                    if unit == "hs":
                        # Resumed: each of wrk's connection slots starts with one
                        # full handshake (no ticket yet); they are in the figure.
                        rec["cpu"] = m["cpu_us"] / (full + res) if full + res else None
                        if (full > conns) if "resumed" in case else res > 0:
                            rec["error"] = f"{full} full, {res} resumed handshakes"
                    else:
                        rec["cpu"] = m["cpu_us"] / (w["bytes"] / 2 ** 20)
                    if w.get("non2xx") or w.get("sockerr"):
                        rec["error"] = f"{w.get('non2xx_line', '')} {w.get('sockerr', '')}"
                recs.append(rec)
                print(f"  r{r} {case:<16} {n:<8} cpu {rec.get('cpu') or 0:8.1f} us/{unit}  "
                      f"other {m['other_pct']:3.0f}%  {rec.get('error', '')}", flush=True)
    with open(f"{tmp}/results.jsonl", "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in recs)

    base = builds[0][0]
    print(f"\nCPU time of the proxy's processes (us per handshake / per MiB), medians of {ROUNDS} "
          f"rounds, DURATION={DURATION}s; ratios x/nginx, and forklb builds to {base}")
    head = f"  {'case':<16}" + "".join(f"{n:>10}" for n in names)
    head += "".join(f"{n + '/nginx':>14}" for n in names if n != "nginx")
    head += "".join(f"{n + '/' + base:>14}" for n, _ in builds[1:])
    print(head)
    for case in cases:
        med = {}
        for n in names:
            v = [x["cpu"] for x in recs if x["case"] == case and x["proxy"] == n
                 and x.get("cpu") and not x.get("error")]
            med[n] = statistics.median(v) if v else None
        row = f"  {case:<16}" + "".join(f"{med[n]:>10.1f}" if med[n] else f"{'n/a':>10}" for n in names)
        row += "".join(f"{helpers.ratio(med[n], med['nginx']):>14}" for n in names if n != "nginx")
        row += "".join(f"{helpers.ratio(med[n], med[base]):>14}" for n, _ in builds[1:])
        print(row)
    errs = [x for x in recs if x.get("error")]
    for x in errs:
        print(f"  !! r{x['round']} {x['case']} {x['proxy']}: {x['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
