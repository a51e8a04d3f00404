#!/usr/bin/env python3
"""Measurement helpers for bench/run.sh (standard library only).

run.sh does the orchestration (install, configs, start/stop of processes);
everything that needs /proc parsing, sockets or arithmetic lives here, as
subcommands:

  freeports N                      print N distinct free TCP ports on 127.0.0.1
  waitport PORT SECONDS            wait until 127.0.0.1:PORT accepts connections
  procs PID                        print PID and its direct children (master + workers)
  check [--tls CAFILE] PORT PATH LENGTH [FILE]
                                   GET http://127.0.0.1:PORT/PATH (https with --tls: SNI
                                   "localhost", certificate verified against CAFILE),
                                   expect 200, LENGTH bytes (and the contents of FILE)
  tlsinfo PORT CAFILE SESSFILE     what a default OpenSSL client negotiates (openssl s_client):
                                   protocol, cipher, key exchange group, certificate; and
                                   whether a second connection resumes the session
  wrk SCEN PROXY ROUND PID RESULTS RAWDIR -- WRK-ARGS...
                                   one measured wrk run: CPU of the proxy before/after,
                                   parse --latency output, append to RESULTS (JSON lines).
                                   With BENCH_WRK_PRELOAD set, wrk (only wrk) runs with
                                   LD_PRELOAD=$BENCH_WRK_PRELOAD (run.sh's TLS handshake
                                   shim, which prints "TLS handshakes: N full, M resumed")
  idle SCEN PROXY PID PORT N RESULTS
                                   open N idle keep-alive connections, measure RSS growth
  h2load SCEN PROXY ROUND PID RESULTS RAWDIR -- H2LOAD-ARGS...
                                   one measured h2load run (its -D duration), like wrk; FAILED
                                   (no number) unless the protocol was h2 and every request
                                   succeeded with a 2xx answer
  viewer PORT PATH INTERVAL MAX_SECONDS
                                   a dashboard viewer: GET PATH and its assets, then PATH?json
                                   every INTERVAL seconds (one keep-alive connection)
  viewercost RESULTS PORT PATH N PID INTERVAL
                                   CPU (schedstat) forklb spends per PATH?json over N polls
                                   back to back; appends a "viewercost" record
  h2check PORT CAFILE PATH,LENGTH[,FILE]...
                                   over one HTTP/2 connection (TLS, ALPN h2 only, SNI and
                                   certificate "localhost"), GET each PATH on its own stream:
                                   expect LENGTH bytes (and the contents of FILE)
  h2idle SCEN PROXY PID PORT N RESULTS CAFILE
                                   open N idle HTTP/2 connections (one GET / each), measure
                                   RSS growth
  summary RESULTS HEADERFILE       medians over rounds + ratio table
  requests PORT N MODE PID         (callgrind scenario) send exactly N "GET /" requests, each
                                   answered 200 "hello\n": MODE ka = over one keep-alive
                                   connection, close = one connection each ("Connection: close",
                                   read to EOF). The first connect is retried (up to 90 s) while
                                   process PID lives: refused connects never reach the proxy
  cgrun FILE PREFIX PIDS...        (callgrind scenario) sum the totals of the callgrind files
                                   PREFIX.* of one run, check that each of PIDS wrote one;
                                   append a JSON line to FILE
  cgresult RESULTS PROXY MODE RUNSFILE
                                   (callgrind scenario) (Ir run 2 - Ir run 1) / (N2 - N1) from
                                   the two runs in RUNSFILE; append a record to RESULTS
  cgtable RESULTS                  the callgrind section of the summary alone
"""

import json
import os
import resource
import select
import socket
import ssl
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def children_of(pid):
    """Direct children of pid (the workers of an nginx/forklb master)."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                st = f.read()
        except OSError:
            continue  # the process went away while we scanned
        # comm (field 2) may contain spaces and ')' -> split after the last ')'.
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:  # field 4 = ppid
            kids.append(int(name))
    return sorted(kids)


def proc_set(pid):
    """The proxy's processes: the master (or single process) and its children."""
    return [pid] + children_of(pid)


def cpu_ticks(pids):
    """utime + stime (fields 14 and 15 of /proc/PID/stat) summed, in clock ticks."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        # after "pid (comm) " the first field is field 3 (state) -> index = field - 3
        total += int(fields[14 - 3]) + int(fields[15 - 3])
    return total


def cpu_ns(pids):
    """Time on CPU in nanoseconds (first field of /proc/PID/schedstat) summed:
    finer than the clock ticks of /proc/PID/stat, for short measurements."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def ticks_by_pid(pids):
    return {p: cpu_ticks([p]) for p in pids}


def system_task_ticks():
    """user + nice + system of all CPUs (first line of /proc/stat), in ticks.

    irq/softirq time is left out on purpose: loopback networking of our own
    traffic is accounted there and belongs to no process.
    """
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return int(v[0]) + int(v[1]) + int(v[2])


def rss_bytes(pids):
    """Sum of VmRSS over the processes, in bytes."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


# --------------------------------------------------------------------------
# small subcommands
# --------------------------------------------------------------------------

def cmd_freeports(n):
    # Ports below the ephemeral range: a port the kernel hands out for bind(0)
    # is also one it hands out to outgoing connections, and the proxies' pooled
    # upstream connections (opened before the last listener binds) could take
    # it ("Address already in use"). Hold all of them at once so that they are
    # distinct, then release them; the small race with other programs is
    # acceptable.
    import random
    n = int(n)
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_low = 0
    socks = []
    if eph_low > 11000:
        candidates = random.sample(range(10000, eph_low), min(eph_low - 10000, 2000))
        for port in candidates:
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
    while len(socks) < n:  # fallback: let the kernel choose
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_waitport(port, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=0.5).close()
            return 0
        except OSError:
            time.sleep(0.05)
    print(f"port {port} did not open within {seconds}s", file=sys.stderr)
    return 1


def cmd_procs(pid):
    print(" ".join(map(str, proc_set(int(pid)))))


def cmd_check(*args):
    import http.client
    cafile = None
    if args and args[0] == "--tls":
        cafile, args = args[1], args[2:]
    port, path, length, expect_file = (list(args) + [None])[:4]
    if cafile:
        import ssl
        ctx = ssl.create_default_context(cafile=cafile)

        class Conn(http.client.HTTPSConnection):
            # Connect to 127.0.0.1 but send SNI "localhost" and check the
            # certificate for that name (the certificate's only name).
            def connect(self):
                sock = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
                self.sock = ctx.wrap_socket(sock, server_hostname="localhost")

        conn = Conn("localhost", int(port), timeout=5, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        print(f"GET {path} on :{port} failed: {e}", file=sys.stderr)
        return 1
    if resp.status != 200 or len(body) != int(length):
        print(f"GET {path} on :{port}: status {resp.status}, {len(body)} bytes "
              f"(want 200, {length} bytes)", file=sys.stderr)
        return 1
    if expect_file and body != open(expect_file, "rb").read():
        print(f"GET {path} on :{port}: body differs from {expect_file}", file=sys.stderr)
        return 1
    return 0


def s_client(port, cafile, sess_arg, sess_file):
    """One openssl s_client connection with SNI localhost and one HTTP/1.1
    request; its output (stdout + stderr), or the error."""
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    # -ign_eof: keep reading after our request until the server closes, so
    # that TLS 1.3 session tickets (sent after the handshake) are received.
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
           "-CAfile", cafile, "-verify_return_error", "-ign_eof", sess_arg, sess_file]
    try:
        out = subprocess.run(cmd, input=req, capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "s_client timed out"
    return (out.stdout + out.stderr).decode(errors="replace")


def cmd_tlsinfo(port, cafile, sess_file):
    first = s_client(port, cafile, "-sess_out", sess_file)
    info = {}
    for line in first.splitlines():
        s = line.strip()
        if s.startswith(("New, ", "Reused, ")):        # "New, TLSv1.3, Cipher is X"
            parts = [x.strip() for x in s.split(",")]
            info["proto"] = parts[1]
            info["cipher"] = parts[2].removeprefix("Cipher is ").strip()
        elif s.startswith(("Server Temp Key:", "Peer Temp Key:")):  # "X25519, 253 bits"
            info["group"] = s.split(":", 1)[1].split(",")[0].strip()
        elif s.startswith("Peer signature type:"):
            info["sig"] = s.split(":", 1)[1].strip()
        elif s.startswith("Verify return code:"):
            info["verify"] = s.split(":", 1)[1].strip()
    if "proto" not in info:
        tail = " | ".join(first.strip().splitlines()[-3:])
        print(f"handshake failed: {tail}")
        return 1
    second = s_client(port, cafile, "-sess_in", sess_file)
    resumed = any(l.startswith("Reused, ") for l in second.splitlines())
    print(f"{info['proto']} {info['cipher']} group {info.get('group', '?')} "
          f"sig {info.get('sig', '?')}, verify {info.get('verify', '?')}, "
          f"resumption {'yes' if resumed else 'NO'}")
    return 0


# --------------------------------------------------------------------------
# wrk runs
# --------------------------------------------------------------------------

UNITS_TIME = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
UNITS_SIZE = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def parse_time_us(tok):
    for unit in ("us", "ms", "s", "m", "h"):  # "ms" before "s"
        if tok.endswith(unit):
            return float(tok[: -len(unit)]) * UNITS_TIME[unit]
    raise ValueError(tok)


def parse_size(tok):
    for unit in ("KB", "MB", "GB", "TB", "B"):
        if tok.endswith(unit):
            return float(tok[: -len(unit)]) * UNITS_SIZE[unit]
    raise ValueError(tok)


def parse_wrk(text):
    """Pull the numbers we need out of wrk's --latency output."""
    r = {"non2xx": 0, "sockerr": "", "p50_us": None, "p99_us": None}
    in_dist = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Latency Distribution"):
            in_dist = True
            continue
        if in_dist and s[:3] in ("50%", "99%"):
            r["p50_us" if s.startswith("50") else "p99_us"] = parse_time_us(s.split()[1])
            continue
        if " requests in " in s:           # "123456 requests in 10.00s, 12.3MB read"
            in_dist = False
            parts = s.split()
            r["requests"] = int(parts[0])
            r["bytes"] = parse_size(parts[4])
            r["seconds"] = parse_time_us(parts[3].rstrip(",")) / 1e6
        elif s.startswith("Requests/sec:"):
            r["rps"] = float(s.split()[1])
        elif s.startswith("Transfer/sec:"):
            r["bps"] = parse_size(s.split()[1])
        elif s.startswith("Non-2xx or 3xx responses:"):
            r["non2xx"] = int(s.split()[-1])
            r["non2xx_line"] = s
        elif s.startswith("Socket errors:"):
            r["sockerr"] = s
        elif s.startswith("TLS handshakes:"):  # from run.sh's shim: "N full, M resumed"
            nums = [int(t) for t in s.replace(",", " ").split() if t.isdigit()]
            r["tls_full"], r["tls_resumed"] = nums[0], nums[1]
    return r


def fmt_ms(us):
    return "n/a" if us is None else f"{us / 1000:.2f}ms"


def append_result(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def wait_quiet(max_wait, threshold_pct=15.0):
    """Between runs our own processes are idle, so CPU use is someone else's
    (a compiler, a test suite). Wait, bounded, until it drops below threshold;
    return the last measured foreign load in % of one core."""
    deadline = time.monotonic() + max_wait
    while True:
        a = system_task_ticks()
        time.sleep(1.0)
        load = (system_task_ticks() - a) / CLK_TCK * 100
        if load < threshold_pct or time.monotonic() >= deadline:
            return load


def measured_run(pid, argv, dur, env=None):
    """Run the load generator argv (given dur + 30 s, then killed, so that a
    wedged proxy cannot hang the benchmark) while measuring the CPU time of
    the proxy whose master (or only) process is pid, and of everyone else."""
    busy_before = wait_quiet(float(os.environ.get("QUIET_WAIT", "60")))
    before_set = proc_set(pid)
    w0 = ticks_by_pid(before_set)
    # Other CPU users on this (shared) machine skew results: measure how much
    # CPU went to anything but the proxy, the backend and the client meanwhile.
    backend = proc_set(int(os.environ["BENCH_BACKEND_PID"])) \
        if os.environ.get("BENCH_BACKEND_PID") else []
    b0, sys0 = cpu_ticks(backend), system_task_ticks()
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=dur + 30, env=env)
        text, rc = out.stdout + out.stderr, out.returncode
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc = f"killed after {dur + 30:.0f}s"
    after_set = proc_set(pid)
    w1 = ticks_by_pid(after_set)
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b1, sys1 = cpu_ticks(backend), system_task_ticks()
    t0, t1 = sum(w0.values()), sum(w1.values())
    client_ticks = (ch1.ru_utime + ch1.ru_stime - ch0.ru_utime - ch0.ru_stime) * CLK_TCK
    elapsed_ticks = max(dur, 1) * CLK_TCK
    other_pct = max(0.0, (sys1 - sys0) - (t1 - t0) - (b1 - b0) - client_ticks) / elapsed_ticks * 100
    # How the proxy's CPU was split over its processes (a worker that got most
    # connections shows up as e.g. 85/15; HAProxy is one process).
    split = "/".join(f"{100 * (w1.get(p, 0) - w0.get(p, 0)) / max(t1 - t0, 1):.0f}"
                     for p in before_set if p != pid)
    return {"text": text, "rc": rc, "cpu_us": (t1 - t0) / CLK_TCK * 1e6, "other_pct": other_pct,
            "split": split, "busy_before": busy_before, "before_set": before_set,
            "after_set": after_set}


def run_line(scen, rnd, proxy, rec, m):
    """The progress line of one measured run (wrk or h2load)."""
    if "rps" not in rec:
        return f"  {scen:<10} round {rnd} {proxy:<8} FAILED"
    if "p50_us" in rec:
        line = (f"  {scen:<10} round {rnd} {proxy:<8} {rec['rps']:>10.0f} req/s  "
                f"p50 {fmt_ms(rec['p50_us']):>8}  p99 {fmt_ms(rec['p99_us']):>8}  "
                f"cpu {rec['cpu_us_per_req']:7.1f} us/req")
    else:  # h2load: mean time per request, no percentiles
        line = (f"  {scen:<10} round {rnd} {proxy:<8} {rec['rps']:>10.0f} req/s  "
                f"mean {fmt_ms(rec['mean_us']):>8}  cpu {rec['cpu_us_per_req']:7.1f} us/req")
    if scen in ("1m", "h2-1m"):
        line += f"  {rec['mibps']:7.1f} MiB/s"
    if rec.get("resumed_pct") is not None and scen != "tls-ka":
        line += f"  resumed {rec['resumed_pct']:.0f}%"
    if m["split"]:
        line += f"  workers {m['split']}%"
    line += f"  other-load {m['other_pct']:.0f}%"
    if m["busy_before"] >= 15:
        line += f" (machine was {m['busy_before']:.0f}% busy before the run)"
    return line


def wrk_attempt(scen, proxy, rnd, attempt, pid, rawdir, wrk_args):
    """One wrk run against the proxy whose master (or only) process is pid."""
    d = next((wrk_args[i + 1] if a == "-d" else a[2:]) for i, a in enumerate(wrk_args)
             if a.startswith("-d"))
    dur = parse_time_us(d if d[-1].isalpha() else d + "s") / 1e6
    env = None
    if os.environ.get("BENCH_WRK_PRELOAD"):
        env = dict(os.environ, LD_PRELOAD=os.environ["BENCH_WRK_PRELOAD"])
    m = measured_run(pid, ["wrk", *wrk_args], dur, env)
    text, rc = m["text"], m["rc"]
    raw = os.path.join(rawdir, f"{scen}-{proxy}-r{rnd}-a{attempt}.txt")
    with open(raw, "w") as f:
        f.write(" ".join(["wrk", *wrk_args]) + "\n" + text)

    w = parse_wrk(text)
    rec = {"scen": scen, "proxy": proxy, "round": int(rnd), "raw": raw,
           "other_cpu_pct": m["other_pct"], "worker_split": m["split"],
           "busy_before_pct": m["busy_before"]}
    problems = []
    if rc != 0 or "requests" not in w or "rps" not in w:
        problems.append(f"wrk exit {rc}, output unparsable (see {raw})")
    else:
        rec.update(rps=w["rps"], p50_us=w["p50_us"], p99_us=w["p99_us"],
                   mibps=w.get("bps", 0) / 1024 ** 2, requests=w["requests"],
                   cpu_us_per_req=m["cpu_us"] / w["requests"] if w["requests"] else None)
    if "tls_full" in w:
        hs = w["tls_full"] + w["tls_resumed"]
        rec.update(tls_full=w["tls_full"], tls_resumed=w["tls_resumed"],
                   resumed_pct=100 * w["tls_resumed"] / hs if hs else None)
        # "fresh" mode must measure full handshakes only; a resumed one means
        # the shim did not work and the numbers are not what they claim.
        if os.environ.get("TLS_SHIM_MODE") == "fresh" and w["tls_resumed"]:
            problems.append(f"{w['tls_resumed']} of {hs} handshakes were resumed "
                            "(this scenario should have full handshakes only)")
    elif os.environ.get("BENCH_WRK_PRELOAD") and "rps" in rec:
        problems.append("the TLS shim reported no handshake counts")
    if w.get("non2xx"):
        problems.append(w["non2xx_line"])
    if w.get("sockerr"):
        problems.append(w["sockerr"])
    # A different process set means a worker died (and was maybe respawned):
    # that is a bug worth reporting, and its CPU time is lost from the sum.
    if m["before_set"] != m["after_set"]:
        problems.append(f"process set changed during the run: {m['before_set']} -> {m['after_set']}")
    rec["problems"] = problems
    print(run_line(scen, rnd, proxy, rec, m), flush=True)
    for p in problems:
        print(f"      !! {proxy}: {p}", flush=True)
    return rec


def parse_h2load(text):
    """The numbers of h2load's report (nghttp2 1.52), and what went wrong."""
    r = {"proto": None, "tls": [], "early_stops": 0}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Application protocol:"):
            r["proto"] = s.split(":", 1)[1].strip()
        elif s.startswith(("TLS Protocol:", "Cipher:", "Server Temp Key:")):
            r["tls"].append(s.split(":", 1)[1].strip().split(" ")[0])
        elif s.startswith("Process Request Failure"):
            # A client stopped sending: its connection was closed or refused
            # new streams (GOAWAY, e.g. after a max requests per connection).
            # h2load does not reconnect in a timed run.
            r["early_stops"] += 1
        elif s.startswith("finished in "):      # "finished in 2.00s, 42728.50 req/s, 2.93MB/s"
            parts = s.replace(",", " ").split()
            r["seconds"] = parse_time_us(parts[2]) / 1e6
            r["rps"] = float(parts[3])
        elif s.startswith("requests: "):        # "requests: N total, N started, N done, N succeeded, ..."
            nums = {}
            for item in s[len("requests: "):].split(","):
                n, _, what = item.strip().partition(" ")
                nums[what] = int(n)
            r["req"] = nums
            r["req_line"] = s
        elif s.startswith("status codes: "):    # "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
            r["status"] = {what: int(n) for n, what in
                           (i.strip().split() for i in s[len("status codes: "):].split(","))}
            r["status_line"] = s
        elif s.startswith("traffic: ") and s.endswith(" data"):
            # "traffic: 1.00GB (1073...) total, 1.2KB (1234) headers (...), 1.00GB (1048576000) data"
            r["data_bytes"] = int(s.rsplit("(", 1)[1].split(")")[0])
        elif s.startswith("time for request:"):  # min max mean sd +/-sd
            r["mean_us"] = parse_time_us(s.split(":", 1)[1].split()[2])
    return r


def h2load_attempt(scen, proxy, rnd, attempt, pid, rawdir, args):
    """One h2load run (its -D duration) against the proxy whose master is pid.
    A run with any failed, errored or timed-out request, any non-2xx answer,
    a client that stopped early, or a protocol other than h2 is FAILED: no
    number is recorded for it."""
    d = next(args[i + 1] for i, a in enumerate(args) if a == "-D")
    dur = parse_time_us(d if d[-1].isalpha() else d + "s") / 1e6
    m = measured_run(pid, ["h2load", *args], dur)
    text, rc = m["text"], m["rc"]
    raw = os.path.join(rawdir, f"{scen}-{proxy}-r{rnd}-a{attempt}.txt")
    with open(raw, "w") as f:
        f.write(" ".join(["h2load", *args]) + "\n" + text)
    h = parse_h2load(text)
    rec = {"scen": scen, "proxy": proxy, "round": int(rnd), "raw": raw,
           "other_cpu_pct": m["other_pct"], "worker_split": m["split"],
           "busy_before_pct": m["busy_before"], "tls": "/".join(h["tls"]), "proto": h["proto"]}
    problems = []
    req, st = h.get("req", {}), h.get("status", {})
    if h["proto"] != "h2":
        # h2load's own words, if any ("No protocol negotiated. Exiting...",
        # connection errors); else its count of requests.
        said = []
        for l in text.splitlines():
            l = l.strip()
            if l and not l.startswith(("requests:", "TLS Protocol:", "Application protocol:")) \
                    and l not in said and \
                    any(k in l.lower() for k in ("error", "protocol", "refused", "fail", "reset")):
                said.append(l)
        problems.append(f"protocol {h['proto'] or 'not negotiated'}, not h2 ("
                        + ("h2load: " + " | ".join(said[:3]) if said else h.get("req_line", "no output"))
                        + ")")
    elif rc != 0 or "rps" not in h or "succeeded" not in req:
        problems.append(f"h2load exit {rc}, output unparsable (see {raw})")
    else:
        bad = sum(req.get(k, 0) for k in ("failed", "errored", "timeout"))
        non2xx = sum(v for k, v in st.items() if k != "2xx")
        if bad:
            problems.append(h["req_line"])
        if non2xx:
            problems.append(h["status_line"])
        if h["early_stops"]:
            problems.append(f"{h['early_stops']} h2load client(s) stopped early (\"Process Request "
                            "Failure\": connection closed or new streams refused)")
        if not problems and req["succeeded"]:
            rec.update(rps=h["rps"], mean_us=h.get("mean_us"), requests=req["succeeded"],
                       mibps=h.get("data_bytes", 0) / h["seconds"] / 1024 ** 2,
                       cpu_us_per_req=m["cpu_us"] / req["succeeded"])
        elif not problems:
            problems.append(f"no request succeeded: {h['req_line']}")
    if m["before_set"] != m["after_set"]:
        problems.append(f"process set changed during the run: {m['before_set']} -> {m['after_set']}")
    rec["problems"] = problems
    print(run_line(scen, rnd, proxy, rec, m), flush=True)
    for p in problems:
        print(f"      !! {proxy}: {p}", flush=True)
    return rec


NOISY_PCT = 20.0  # other processes using more than this share of a core = noisy run


def repeat_while_noisy(attempt_fn, scen, proxy, rnd, pid, results, rawdir, args):
    """A measured run; repeated (at most NOISE_RETRIES times) while other
    processes on the machine ate more than NOISY_PCT of a core during it. The
    least disturbed attempt is kept; errors seen in any attempt are kept too."""
    retries = int(os.environ.get("NOISE_RETRIES", "2"))
    attempts = []
    for a in range(1 + retries):
        rec = attempt_fn(scen, proxy, rnd, a + 1, int(pid), rawdir, args)
        attempts.append(rec)
        if rec["other_cpu_pct"] <= NOISY_PCT:
            break
        if a < retries:
            print(f"      .. other processes used {rec['other_cpu_pct']:.0f}% of a core: "
                  f"repeating this run", flush=True)
    best = min(attempts, key=lambda r: r["other_cpu_pct"])
    for r in attempts:
        if r is not best:
            best["problems"] += [f"(in a discarded noisy attempt) {p}" for p in r["problems"]]
    best["attempts"] = len(attempts)
    append_result(results, best)
    return 0


def cmd_wrk(scen, proxy, rnd, pid, results, rawdir, *wrk_args):
    return repeat_while_noisy(wrk_attempt, scen, proxy, rnd, pid, results, rawdir, wrk_args)


def cmd_h2load(scen, proxy, rnd, pid, results, rawdir, *args):
    return repeat_while_noisy(h2load_attempt, scen, proxy, rnd, pid, results, rawdir, args)


# --------------------------------------------------------------------------
# idle keep-alive connections and memory
# --------------------------------------------------------------------------

def read_response(sock, deadline):
    """Read one complete response (Content-Length framed); False if closed/timeout.

    Blocking sockets with timeouts rather than select(): select() cannot watch
    file descriptors above 1023, and we hold thousands.
    """
    buf = b""
    while True:
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    clen = int(v.strip())
            if len(body) >= clen:
                return head.split(b"\r\n", 1)[0]
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            return False
        buf += chunk


def still_open(sock):
    """An idle keep-alive socket is still open if reading would block (no EOF, no RST)."""
    sock.setblocking(False)  # a socket with a timeout would wait for data
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def idle_measure(scen, proxy, pid, n, results, open_one, is_open):
    """Open n idle connections, one at a time, with open_one(i) (returns the
    connection and a note, None if all is well; raises OSError if it could not
    open one, which stops the opening); then the RSS growth of the proxy's
    processes per connection, and how many are still open (is_open(conn))."""
    # Each client connection is one fd: raise our soft limit to the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    procs = proc_set(pid)
    time.sleep(0.5)
    base = rss_bytes(procs)

    conns, note = [], ""
    t_start = time.monotonic()
    overall = time.monotonic() + 180  # bounded: never more than 3 minutes
    for i in range(n):
        if time.monotonic() > overall:
            note = "stopped after 180s"
            break
        try:
            c, bad = open_one(i)
        except OSError as e:
            note = f"connection {i + 1}: {e}"
            break
        if bad and not note:
            note = f"connection {i + 1}: {bad}"
        conns.append(c)
    opened = len(conns)
    open_secs = time.monotonic() - t_start
    time.sleep(1.0)  # let the proxy settle (buffers shrink, timers armed)
    after_procs = proc_set(pid)
    after = rss_bytes(after_procs)
    alive = sum(1 for c in conns if is_open(c))
    per_conn = (after - base) / opened if opened else None
    problems = []
    if opened < n:
        problems.append(f"only {opened} of {n} connections opened: {note}")
    elif note:
        problems.append(note)
    if alive < opened:
        problems.append(f"{opened - alive} of {opened} idle connections were closed by the proxy")
    if procs != after_procs:
        problems.append(f"process set changed: {procs} -> {after_procs}")
    rec = {"scen": scen, "proxy": proxy, "round": 1, "opened": opened, "alive": alive,
           "rss_before": base, "rss_after": after, "bytes_per_conn": per_conn,
           "problems": problems}
    append_result(results, rec)
    for c in conns:
        c.close()
    bpc = "n/a" if per_conn is None else f"{per_conn:,.0f} B/conn"
    print(f"  {scen:<10}         {proxy:<8} {opened} open ({alive} alive): RSS "
          f"{base / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB = {bpc}  "
          f"(opened in {open_secs:.1f}s)", flush=True)
    for p in problems:
        print(f"      !! {proxy}: {p}", flush=True)
    return 0


def cmd_idle(scen, proxy, pid, port, n, results):
    """Idle HTTP/1.1 keep-alive connections, each after one request."""
    port = int(port)
    req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Connection: keep-alive\r\n\r\n").encode()

    def open_one(i):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(req)
            status = read_response(s, time.monotonic() + 5)
        except OSError:
            s.close()
            raise
        if status is False:
            s.close()
            raise OSError("no complete response (closed or 5s timeout)")
        if b" 200 " not in status + b" ":
            return s, status.decode(errors="replace")
        return s, None

    return idle_measure(scen, proxy, int(pid), int(n), results, open_one, still_open)


# --------------------------------------------------------------------------
# HTTP/2 over TLS: a minimal client (sanity check, idle connections)
# --------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_RST_STREAM, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW_UPDATE = \
    0, 1, 3, 4, 6, 7, 8
H2_END_STREAM, H2_ACK, H2_END_HEADERS, H2_PADDED = 0x1, 0x1, 0x4, 0x8


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_get_headers(path):
    """HPACK block of "GET https://localhost<path>": static-table entries and
    literals without indexing and without Huffman coding (RFC 7541), so no
    dynamic table state is involved."""
    def literal(name_index, value):   # literal without indexing, indexed name
        v = value.encode()
        assert len(v) < 127
        return bytes([name_index, len(v)]) + v
    # :method GET (2), :scheme https (7), :path / (4) or literal, :authority (1)
    return b"\x82\x87" + (b"\x84" if path == "/" else literal(4, path)) + literal(1, "localhost")


class H2Conn:
    """One HTTP/2 connection over TLS (ALPN h2) to 127.0.0.1:port, SNI and
    certificate name "localhost". TLS runs in an ssl.SSLObject over memory
    BIOs, so the TCP socket stays a plain blocking socket with timeouts (no
    select(): it cannot watch fds above 1023, and we hold thousands), which
    is_open() can peek at."""

    def __init__(self, port, ctx, timeout=5.0):
        deadline = time.monotonic() + timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.buf = bytearray()   # decrypted bytes not yet parsed into frames
        self.next_stream = 1
        try:
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    self._fill(deadline)
            self._flush()
            self.alpn = self.tls.selected_alpn_protocol()
            if self.alpn != "h2":
                raise OSError(f"ALPN: the server chose {self.alpn or 'no protocol'}, not h2")
            # Our SETTINGS: none changed (the defaults: 65,535-byte windows).
            self._send(H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0))
        except (OSError, ssl.SSLError):
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("timeout")
        self.sock.settimeout(left)
        chunk = self.sock.recv(262144)
        if not chunk:
            raise OSError("connection closed by the proxy")
        self.inc.write(chunk)

    def _send(self, data):
        self.tls.write(data)
        self._flush()

    def _frame(self, deadline):
        """The next frame: (type, flags, stream, payload)."""
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    f = bytes(self.buf[:9 + n])
                    del self.buf[:9 + n]
                    return f[3], f[4], int.from_bytes(f[5:9], "big") & 0x7FFFFFFF, f[9:]
            try:
                self.buf += self.tls.read(262144)
            except ssl.SSLWantReadError:
                self._fill(deadline)
            except ssl.SSLZeroReturnError:
                raise OSError("TLS close_notify from the proxy") from None
            self._flush()  # e.g. a TLS key update answer

    def _control(self, ftype, flags, stream, payload):
        """Handle a connection-level frame; raise on GOAWAY."""
        if ftype == H2_SETTINGS and not flags & H2_ACK:
            self._send(h2_frame(H2_SETTINGS, H2_ACK, 0))
        elif ftype == H2_PING and not flags & H2_ACK:
            self._send(h2_frame(H2_PING, H2_ACK, 0, payload))
        elif ftype == H2_GOAWAY:
            code = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else "?"
            debug = payload[8:].decode(errors="replace")
            raise OSError(f"GOAWAY error code {code}" + (f" ({debug})" if debug else ""))

    def get(self, path, timeout=5.0):
        """GET path on a new stream: (got a HEADERS frame, body). The status
        is not decoded (that needs HPACK's Huffman table); callers check the
        body. Flow control: every DATA frame is given back at once."""
        deadline = time.monotonic() + timeout
        sid = self.next_stream
        self.next_stream += 2
        self._send(h2_frame(H2_HEADERS, H2_END_STREAM | H2_END_HEADERS, sid, h2_get_headers(path)))
        body, headers = bytearray(), False
        while True:
            ftype, flags, stream, payload = self._frame(deadline)
            if stream == 0:
                self._control(ftype, flags, stream, payload)
                continue
            if stream != sid:
                continue
            if ftype == H2_RST_STREAM:
                raise OSError(f"RST_STREAM error code {int.from_bytes(payload[:4], 'big')}")
            if ftype == H2_HEADERS:
                headers = True
            elif ftype == H2_DATA:
                data = payload
                if flags & H2_PADDED:
                    data = payload[1:len(payload) - payload[0]]
                body += data
                if payload and not flags & H2_END_STREAM:
                    inc = len(payload).to_bytes(4, "big")
                    self._send(h2_frame(H2_WINDOW_UPDATE, 0, 0, inc)
                               + h2_frame(H2_WINDOW_UPDATE, 0, sid, inc))
                elif payload:
                    self._send(h2_frame(H2_WINDOW_UPDATE, 0, 0, len(payload).to_bytes(4, "big")))
            if ftype in (H2_HEADERS, H2_DATA) and flags & H2_END_STREAM:
                return headers, bytes(body)

    def is_open(self):
        """Still open: no EOF, no reset, no GOAWAY among what arrived while idle."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self.inc.write(chunk)
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            while True:
                self.buf += self.tls.read(65536)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError):
            return False
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            if self.buf[3] == H2_GOAWAY:
                return False
            del self.buf[:9 + n]
        return True


def h2_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def cmd_h2check(port, cafile, *checks):
    """h2check PORT CAFILE PATH,LENGTH[,FILE]...: one connection, one stream
    per check (in turn); each answer must have a HEADERS frame and a body of
    LENGTH bytes (equal to FILE's, if given). Prints what was negotiated, or
    the error."""
    items = []
    for spec in checks:
        path, length, expect = (spec.split(",", 2) + [None])[:3]
        items.append((path, int(length), expect))
    try:
        c = H2Conn(int(port), h2_context(cafile))
    except (OSError, ssl.SSLError) as e:
        print(f"h2 connection failed: {e}")
        return 1
    try:
        for path, length, expect in items:
            headers, body = c.get(path, timeout=10)
            if not headers or len(body) != length \
                    or (expect and body != open(expect, "rb").read()):
                print(f"GET {path} over h2: {'a' if headers else 'no'} HEADERS frame, "
                      f"{len(body)} bytes (want {length}"
                      + (f", the contents of {expect}" if expect else "") + ")")
                return 1
        version, cipher = c.tls.version(), c.tls.cipher()[0]
    except (OSError, ssl.SSLError) as e:
        print(f"GET {path} over h2: {e}")
        return 1
    finally:
        c.close()
    print(f"ALPN h2 ({version} {cipher}, Python's OpenSSL client); "
          f"{', '.join(p for p, _, _ in items)} on one connection")
    return 0


def cmd_h2idle(scen, proxy, pid, port, n, results, cafile):
    """Idle HTTP/2 connections over TLS, each after one request (GET /, its
    body checked): the preface, our SETTINGS, the server's acknowledged."""
    port, ctx = int(port), h2_context(cafile)

    def open_one(i):
        c = H2Conn(port, ctx)
        try:
            headers, body = c.get("/")
        except (OSError, ssl.SSLError) as e:
            c.close()
            raise OSError(f"GET / over h2: {e}") from None
        if not headers or body != CG_BODY:
            return c, f"GET / over h2: unexpected answer ({len(body)} bytes {body[:40]!r})"
        return c, None

    return idle_measure(scen, proxy, int(pid), int(n), results, open_one, H2Conn.is_open)


# --------------------------------------------------------------------------
# callgrind: instructions per request (scenario 8)
# --------------------------------------------------------------------------

CG_BODY = b"hello\n"  # what the backend pair answers for /


def proc_alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2:].split()[0] != "Z"


def parse_response(data):
    """(status code, body, bytes after it) of the Content-Length framed
    response at the start of data, or None if data holds less than that."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    clen = None
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v.strip())
    if clen is None or len(body) < clen:
        return None
    parts = lines[0].split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body[:clen], body[clen:]


def cmd_requests(port, n, mode, pid):
    """Exactly n requests, one at a time, every answer checked. Deterministic on
    purpose: the same bytes in the same order in every run, so that the proxy's
    instruction count grows by the same amount per request."""
    port, n, pid = int(port), int(n), int(pid)
    if mode not in ("ka", "close"):
        print(f"unknown mode {mode!r} (ka | close)", file=sys.stderr)
        return 2
    # A fixed Host (not the port, which differs between runs).
    req = (b"GET / HTTP/1.1\r\nHost: localhost\r\n"
           + (b"Connection: close\r\n" if mode == "close" else b"") + b"\r\n")
    t0 = time.monotonic()

    def connect(first):
        # Under valgrind the proxy takes seconds to listen. A refused connect is
        # answered by the kernel: the proxy's user space never sees it.
        deadline = time.monotonic() + 90
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except ConnectionRefusedError:
                if not first or not proc_alive(pid):
                    raise
                if time.monotonic() > deadline:
                    raise OSError(f"port {port} refused connections for 90 s")
                time.sleep(0.1)

    def recv_until(sock, done, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while not done(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(f"no complete response within {timeout:.0f} s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                if mode == "close":
                    break
                raise OSError("connection closed by the proxy")
            buf += chunk
        return buf

    sock = None
    i = 0
    try:
        for i in range(n):
            # The first answer may take long (a worker starting under valgrind).
            timeout = 90 if i == 0 else 30
            if sock is None:
                sock = connect(i == 0)
            sock.sendall(req)
            if mode == "ka":
                buf = recv_until(sock, lambda b: parse_response(b) is not None, timeout)
            else:
                buf = recv_until(sock, lambda b: False, timeout)  # to EOF
                sock.close()
                sock = None
            r = parse_response(buf)
            if r is None or r[0] != 200 or r[1] != CG_BODY or r[2]:
                raise OSError(f"unexpected answer {buf[:200]!r}")
    except OSError as e:
        print(f"request {i + 1} of {n} ({mode}) on :{port}: {e}", file=sys.stderr)
        return 1
    finally:
        if sock is not None:
            sock.close()
    print(f"{n} requests ({mode}) in {time.monotonic() - t0:.1f}s")
    return 0


# AWS-LC seeds its random generator from CPU jitter (jitterentropy) once per
# process: hundreds of millions of instructions under valgrind, and a number
# that depends on timing, so it differs between two runs by more than a
# thousand requests cost. It is start-up work, not per request: left out.
SEEDING_FILE = "jitterentropy"


def callgrind_total(path):
    """Instructions (Ir) in one callgrind output file: the sum of its "totals:"
    lines (one per dump part), or of its "summary:" lines if it has none,
    less the instructions spent in AWS-LC's jitter-entropy seeding (the
    inclusive cost of every call from outside its source files into them)."""
    totals, summary = [], []
    seeding = 0
    names = {}  # callgrind's file name compression: "(id) name", then "(id)"

    def file_name(spec):
        spec = spec.strip()
        if spec.startswith("("):
            end = spec.find(")")
            ident, rest = spec[1:end], spec[end + 1:].strip()
            if rest:
                names[ident] = rest
            return names.get(ident, "")
        return spec

    current = callee = ""
    after_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            if after_calls:
                # The line after calls=: position, then the call's inclusive cost.
                after_calls = False
                parts = line.split()
                if (SEEDING_FILE in callee and SEEDING_FILE not in current
                        and len(parts) > 1 and parts[1].isdigit()):
                    seeding += int(parts[1])
                callee = ""
                continue
            if line.startswith(("fl=", "fi=", "fe=")):
                current = file_name(line[3:])
            elif line.startswith(("cfi=", "cfl=")):
                callee = file_name(line[4:])
            elif line.startswith("calls="):
                callee = callee or current
                after_calls = True
            elif line.startswith("totals:"):
                totals.append(int(line.split()[1]))
            elif line.startswith("summary:"):
                summary.append(int(line.split()[1]))
    if totals:
        return sum(totals) - seeding
    if summary:
        return sum(summary) - seeding
    return None


def cmd_cgrun(runsfile, run, n, prefix, *pids):
    """One run under callgrind is done: sum the files PREFIX.<pid>. Problems
    that run.sh/callgrind.sh saw are in PREFIX.problems, one per line."""
    import glob
    problems = []
    if os.path.exists(prefix + ".problems"):
        problems += [l.strip() for l in open(prefix + ".problems") if l.strip()]
    files = {}
    for path in sorted(glob.glob(glob.escape(prefix) + ".*")):
        suffix = path[len(prefix) + 1:]
        if not suffix.isdigit():
            continue
        ir = callgrind_total(path)
        if ir is None:
            problems.append(f"{os.path.basename(path)} has no totals (process killed?)")
        files[suffix] = ir
    for pid in pids:
        if pid not in files:
            problems.append(f"process {pid} wrote no callgrind file (killed, or did not exit)")
    if not files:
        problems.append("no callgrind files at all")
    rec = {"run": int(run), "n": int(n), "prefix": os.path.basename(prefix),
           "pids": list(pids), "files": files,
           "ir": sum(v for v in files.values() if v is not None), "problems": problems}
    append_result(runsfile, rec)
    return 0


def cmd_cgresult(results, proxy, mode, runsfile):
    runs = {}
    if os.path.exists(runsfile):
        for l in open(runsfile):
            if l.strip():
                r = json.loads(l)
                runs[r["run"]] = r
    problems = []
    for k in (1, 2):
        if k not in runs:
            problems.append(f"run {k}: did not complete")
        else:
            problems += [f"run {k} ({runs[k]['n']} requests): {p}" for p in runs[k]["problems"]]
    rec = {"scen": "callgrind", "proxy": proxy, "round": 1, "mode": mode, "problems": problems}
    if 1 in runs and 2 in runs:
        r1, r2 = runs[1], runs[2]
        rec.update(n1=r1["n"], n2=r2["n"], ir1=r1["ir"], ir2=r2["ir"],
                   files1=len(r1["files"]), files2=len(r2["files"]))
        # Any problem (a failed request, a missing file) makes the difference
        # meaningless: report none rather than a wrong one.
        if not problems and r2["n"] > r1["n"]:
            rec["ir_" + mode] = (r2["ir"] - r1["ir"]) / (r2["n"] - r1["n"])
    append_result(results, rec)
    v = rec.get("ir_" + mode)
    print(f"  callgrind  {mode:<6}   {proxy:<8} "
          + (f"{v:>12,.0f} Ir/request" if v is not None else "FAILED")
          + (f"  (runs: {rec['n1']} requests {rec['ir1']:,} Ir, {rec['n2']} requests "
             f"{rec['ir2']:,} Ir)" if "ir1" in rec else ""), flush=True)
    for p in problems:
        print(f"      !! {proxy}: {p}", flush=True)
    return 0


CG_ROWS = [("ka", "keep-alive"), ("close", "new conn/req")]


def medians(rs, cols, key):
    """{proxy: median of `key` over its records in rs, or None}, for each of cols."""
    med = {}
    for p in cols:
        vals = [r[key] for r in rs if r["proxy"] == p and r.get(key) is not None]
        med[p] = statistics.median(vals) if vals else None
    return med


def errors_row(rs, cols):
    """The "runs w/ errors" row: per proxy, runs with problems / runs."""
    row = f"  {'runs w/ errors':<16}"
    for p in cols:
        pr = [r for r in rs if r["proxy"] == p]
        row += (f"{sum(1 for r in pr if r['problems'])}/{len(pr)}" if pr else "not run").rjust(12)
    return row


def callgrind_section(recs):
    """Lines of section 8 and its problems, from the "callgrind" records."""
    rs = [r for r in recs if r["scen"] == "callgrind"]
    if not rs:
        return [], []
    cols = shown_proxies(rs)
    ns = sorted({(r["n1"], r["n2"]) for r in rs if "n1" in r})
    ntxt = ", ".join(f"N1={a}, N2={b}" for a, b in ns) or "N1, N2"
    out = ["", f"8. user-space instructions per request (callgrind; {ntxt} requests)",
           "   Instructions (Ir) of all the proxy's processes (master + 1 worker/thread), counted by",
           "   callgrind in user space only: kernel work (syscalls, TCP/IP, copies) is NOT included.",
           "   Each proxy runs twice under valgrind, for N1 and for N2 requests of one sequential",
           "   client (GET /, backend as above); Ir/request = (Ir(N2) - Ir(N1)) / (N2 - N1), so",
           "   start-up and shutdown cancel (AWS-LC's timing-dependent seeding is left out). The work",
           "   per request is the same in every run; only the number of event-loop wake-ups depends",
           "   on timing: two runs of forklb agreed within 0.01% (keep-alive) and 0.1% (new",
           "   connection per request). < 1: forklb executes fewer.",
           f"  {'Ir/request':<16}" + table_head(cols)]
    problems = []
    for mode, label in CG_ROWS:
        mrs = [r for r in rs if r.get("mode") == mode]
        if not mrs:
            continue
        med = medians(mrs, cols, "ir_" + mode)
        out.append(f"  {label:<16}" + "".join(f"{fmt(med[p], '{:,.0f}'):>12}" for p in cols)
                   + ratio_cells(med, cols, higher_is_better=False))
    out.append(errors_row(rs, cols))
    problems += [f"  [callgrind] {p}: not run" for p in cols if not any(r["proxy"] == p for r in rs)]
    for r in rs:
        for prob in r["problems"]:
            problems.append(f"  [callgrind {r.get('mode', '?')}] {r['proxy']}: {prob}")
    return out, problems


def callgrind_detail(r):
    v = r.get("ir_" + r.get("mode", ""))
    d = f"{r.get('mode', '?'):<6}"
    if "ir1" in r:
        d += (f" {r['n1']} req {r['ir1']:,} Ir ({r['files1']} files), "
              f"{r['n2']} req {r['ir2']:,} Ir ({r['files2']} files)")
    return d + (f" -> {v:,.0f} Ir/req" if v is not None else "  FAILED")


def cmd_cgtable(results):
    recs = [json.loads(l) for l in open(results) if l.strip()] if os.path.exists(results) else []
    out, problems = callgrind_section(recs)
    if not out:
        print("no callgrind results")
        return 1
    out += ["", "Problems:" if problems else "Problems: none"] + problems
    out += ["", "Per-run detail:"]
    out += [f"  callgrind  {r['proxy']:<8} {callgrind_detail(r)}"
            for r in recs if r["scen"] == "callgrind"]
    print("\n".join(out[1:]))
    return 0


# --------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------

# The proxies, in column order: forklb, then its peers. nginx and HAProxy always
# have a column; another peer (Pingora, which may be left out: PINGORA=0, or a
# failed build) only when it has records.
PROXIES = ["forklb", "f-maxconn", "f-limit", "f-policy", "f-viewer", "nginx", "haproxy", "pingora"]
# forklb itself, configured or loaded otherwise: f-maxconn has "maxconn" on its
# servers, f-limit a limit_req and a limit_conn on its route (callgrind only),
# f-policy the limits and header rules of bench/common.sh's POLICY_ROUTE
# (callgrind and scenario 14), f-viewer is forklb while a dashboard viewer polls
# it (scenario 14). Compared with forklb, never a peer to beat: no column in
# the peers' tables, not in f/best.
SELF_VARIANTS = ("f-maxconn", "f-limit", "f-policy", "f-viewer")
ALWAYS_SHOWN = ("forklb", "nginx", "haproxy")
# Metrics where more is better (the best peer is the highest); for all others
# (CPU, latency, bytes/conn, Ir/request) the best peer is the lowest.
HIGHER_IS_BETTER = ("rps", "mibps")
SCENARIOS = [
    ("keepalive", "1. small responses, keep-alive   (wrk -t2 -c50 /)"),
    ("close", "2. new connection per request   (wrk -t2 -c50 -H 'Connection: close' /)"),
    ("1m", "3. 1 MiB bodies, keep-alive      (wrk -t2 -c10 /1m)"),
    ("idle", "4. memory of idle keep-alive connections"),
    ("tls-ka", "5. TLS, small responses, keep-alive   (wrk -t2 -c50 https://localhost/)"),
    ("tls-new", "6. TLS, new connection + full handshake per request\n"
                "   (wrk -t2 -c50 -H 'Connection: close' https://localhost/, session reuse off)"),
    ("tls-resume", "7. TLS, new connection + resumed handshake per request\n"
                   "   (as 6, but wrk offers the last session ticket, as it does by default)"),
    ("tls-rsa", "7r. TLS with an RSA-2048 certificate, new connection + full handshake per request\n"
                "   (as 6, against the RSA instances: same settings, only the certificate differs)"),
]
# metric key, label, format, lower_is_better
METRICS = {
    "keepalive": [("rps", "req/s", "{:,.0f}"), ("cpu_us_per_req", "CPU us/req", "{:.1f}"),
                  ("p50_us", "p50 ms", "ms"), ("p99_us", "p99 ms", "ms")],
    "1m": [("rps", "req/s", "{:,.0f}"), ("mibps", "MiB/s", "{:,.1f}"),
           ("cpu_us_per_req", "CPU us/req", "{:.1f}"), ("p50_us", "p50 ms", "ms"),
           ("p99_us", "p99 ms", "ms")],
    "idle": [("opened", "connections", "{:,.0f}"), ("bytes_per_conn", "bytes/conn", "{:,.0f}"),
             ("rss_before", "RSS before MiB", "mib"), ("rss_after", "RSS after MiB", "mib")],
}
METRICS["close"] = METRICS["keepalive"]
METRICS["tls-ka"] = METRICS["keepalive"]
METRICS["tls-new"] = [("rps", "handshakes/s", "{:,.0f}"), ("cpu_us_per_req", "CPU us/hshake", "{:.1f}"),
                      ("p50_us", "p50 ms", "ms"), ("p99_us", "p99 ms", "ms"),
                      ("resumed_pct", "resumed %", "{:.0f}")]
METRICS["tls-resume"] = METRICS["tls-new"]
METRICS["tls-rsa"] = METRICS["tls-new"]
METRICS["h2-m1"] = [("rps", "req/s", "{:,.0f}"), ("cpu_us_per_req", "CPU us/req", "{:.1f}"),
                    ("mean_us", "mean ms", "ms")]
METRICS["h2-m100"] = METRICS["h2-m1"]
METRICS["h2-1m"] = [("rps", "req/s", "{:,.0f}"), ("mibps", "MiB/s", "{:,.1f}"),
                    ("cpu_us_per_req", "CPU us/req", "{:.1f}"), ("mean_us", "mean ms", "ms")]
METRICS["h2-idle"] = METRICS["idle"]
# Printed after sections 8 and 9 (they are numbered on from there).
H2_SCENARIOS = [
    ("h2-m1", "10. HTTP/2, small responses, 1 stream per connection   (h2load -c8 -m1 https://localhost/)"),
    ("h2-m100", "11. HTTP/2, small responses, 100 streams per connection (h2load -c8 -m100 https://localhost/)"),
    ("h2-1m", "12. HTTP/2, 1 MiB bodies   (h2load -c4 -m4 https://localhost/1m)"),
    ("h2-idle", "13. memory of idle HTTP/2 connections (TLS, ALPN h2, one request each, then idle)"),
]
NO_RATIO = ("opened", "rss_before", "rss_after", "resumed_pct")


def fmt(v, f):
    if v is None:
        return "n/a"
    if f == "ms":
        return f"{v / 1000:.2f}"
    if f == "mib":
        return f"{v / 2**20:.1f}"
    return f.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def shown_proxies(recs):
    """The proxies that get a column: the usual three, and any other with records."""
    have = {r["proxy"] for r in recs}
    return [p for p in PROXIES if p in ALWAYS_SHOWN or p in have]


def ratio_heads(cols):
    """(header, width) of the ratio columns: forklb to each peer, then to the best one."""
    return [(f"f/{p}", max(10, len(p) + 4)) for p in cols if p != "forklb"] + [("f/best", 9)]


def table_head(cols):
    return "".join(f"{p:>12}" for p in cols) + "".join(f"{h:>{w}}" for h, w in ratio_heads(cols))


def blank_ratios(cols):
    return "".join(f"{'':>{w}}" for _, w in ratio_heads(cols))


def ratio_cells(med, cols, higher_is_better):
    """forklb/peer for each peer, then forklb/best peer (the highest value of the
    peers that have one when more is better, else the lowest)."""
    heads = ratio_heads(cols)
    peers = [p for p in cols if p != "forklb"]
    cells = [ratio(med.get("forklb"), med.get(p)) for p in peers]
    vals = [med[p] for p in peers if med.get(p) is not None and p not in SELF_VARIANTS]
    best = (max(vals) if higher_is_better else min(vals)) if vals else None
    cells.append(ratio(med.get("forklb"), best))
    return "".join(f"{c:>{w}}" for c, (_, w) in zip(cells, heads))


def cmd_scrape(port):
    """Prints forklb's "accept_wakeups connections" totals from /metrics."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    vals = {}
    for line in data.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("forklb_accept_wakeups_total",
                                            "forklb_connections_total"):
            vals[parts[0]] = int(float(parts[1]))
    print(vals.get("forklb_accept_wakeups_total", ""), vals.get("forklb_connections_total", ""))
    return 0


def cmd_accept(results, before, after):
    """Records forklb's accept wake-ups per accepted connection between two scrapes."""
    rec = {"scen": "accept", "proxy": "forklb", "round": 1, "problems": []}
    try:
        (w0, c0), (w1, c1) = [tuple(int(x) for x in s.split()) for s in (before, after)]
        rec.update(wakeups=w1 - w0, conns=c1 - c0,
                   per_conn=(w1 - w0) / (c1 - c0) if c1 > c0 else None)
    except ValueError:
        rec["problems"].append(f"could not read forklb's /metrics (before {before!r}, after {after!r})")
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return 0


def accept_section(recs):
    rs = [r for r in recs if r["scen"] == "accept"]
    if not rs:
        return [], []
    r = rs[-1]
    out = ["", "9. accept wake-ups per accepted connection (forklb, over scenario 2)",
           "   forklb_accept_wakeups_total / forklb_connections_total: how often a worker woke",
           "   for a listener per connection it got. <= 1: no thundering herd."]
    if r.get("per_conn") is not None:
        out.append(f"  wake-ups/conn      {r['per_conn']:.2f}   "
                   f"({r['wakeups']:,} wake-ups, {r['conns']:,} connections)")
    else:
        out.append("  wake-ups/conn      n/a")
    return out, [f"  [accept] {p}" for p in r["problems"]]


def scenario_table(recs, scen, title, all_problems):
    """The lines of one scenario's table (medians, ratios); its problems are
    appended to all_problems."""
    rs = [r for r in recs if r["scen"] == scen]
    if not rs:
        return []
    cols = [p for p in shown_proxies(recs) if p not in SELF_VARIANTS]
    out = ["", title]
    out.append(f"  {'':<16}" + table_head(cols))
    for key, label, f in METRICS[scen]:
        med = medians(rs, cols, key)
        row = f"  {label:<16}" + "".join(f"{fmt(med[p], f):>12}" for p in cols)
        if key in NO_RATIO:
            row = (row + blank_ratios(cols)).rstrip()
        else:
            row += ratio_cells(med, cols, key in HIGHER_IS_BETTER)
        out.append(row)
    if scen in ("idle", "h2-idle"):
        for p in cols:
            if not any(r["proxy"] == p for r in rs):
                all_problems.append(f"  [{scen}] {p}: not run (see the notes at the top)")
    else:
        row = f"  {'other load %':<16}"
        for p in cols:
            vals = [r["other_cpu_pct"] for r in rs
                    if r["proxy"] == p and r.get("other_cpu_pct") is not None]
            row += (f"{statistics.median(vals):.0f}" if vals else "n/a").rjust(12)
        out.append(row)
        out.append(errors_row(rs, cols))
        all_problems += [f"  [{scen}] {p}: not run (see the notes at the top)"
                         for p in cols if not any(r["proxy"] == p for r in rs)]
    # What h2load negotiated, per proxy (the TLS scenarios' is in the header).
    tls = {}
    for r in rs:
        if r.get("tls"):
            tls.setdefault(r["proxy"], set()).add(r["tls"])
    if tls:
        out.append("  negotiated      " + ", ".join(f"{p} {' '.join(sorted(tls[p]))}"
                                                  for p in cols if p in tls))
    for r in rs:
        for prob in r["problems"]:
            all_problems.append(f"  [{scen}] round {r['round']} {r['proxy']}: {prob}")
    return out


def cmd_summary(results, headerfile):
    recs = [json.loads(l) for l in open(results) if l.strip()]
    out = [open(headerfile).read().rstrip("\n"), ""]
    peers = [p for p in shown_proxies(recs) if p != "forklb" and p not in SELF_VARIANTS]
    out.append("Medians over the rounds. Ratios are forklb/" + ", forklb/".join(peers)
               + " and f/best = forklb/the best")
    out.append("  peer of the row (the highest req/s, MiB/s; the lowest CPU, latency, bytes/conn, Ir):")
    out.append("  req/s, MiB/s: > 1 means forklb is faster;  CPU, p50, p99, bytes/conn: < 1 means forklb")
    out.append("  uses less. The load generator, the backend nginx and the proxy share the same 2 cores.")
    out.append("  TLS (5-7): one request per handshake in 6 and 7, so req/s = handshakes/s and CPU/req =")
    out.append("  CPU per handshake (+ its request); \"resumed %\" is counted on the client side.")
    out.append("  7r is 6 with an RSA-2048 certificate (RSA signatures cost far more than ECDSA ones).")
    if any(r["scen"].startswith("h2-") for r in recs):
        out.append("  HTTP/2 (10-13): h2load -t2 over TLS, ALPN h2 only, to the TLS instances; \"mean ms\" is")
        out.append("  h2load's mean time per request (it has no percentiles). A run with any failed, errored or")
        out.append("  timed-out request, a non-2xx answer or a client stopped early is FAILED, not a number.")
    all_problems = []
    for scen, title in SCENARIOS:
        out += scenario_table(recs, scen, title, all_problems)
    cg_lines, cg_problems = callgrind_section(recs)
    out += cg_lines
    all_problems += cg_problems
    acc_lines, acc_problems = accept_section(recs)
    out += acc_lines
    all_problems += acc_problems
    for scen, title in H2_SCENARIOS:
        out += scenario_table(recs, scen, title, all_problems)
    out += policy_section(recs, all_problems)
    out += ["", "Problems:" if all_problems else "Problems: none (no non-2xx responses, "
            "no socket errors, no worker restarts)"]
    out += all_problems
    timed = [r for r in recs if r["scen"] not in ("callgrind", "accept")]
    noisy = [r for r in timed if (r.get("other_cpu_pct") or 0) > NOISY_PCT]
    retried = sum(1 for r in timed if r.get("attempts", 1) > 1)
    if noisy or retried:
        out += ["", f"Noise: {retried} of {len(timed)} runs were repeated because other processes "
                f"used > {NOISY_PCT:.0f}% of a core meanwhile; {len(noisy)} kept runs are still "
                "noisy (\"other load\") and less reliable."]
    out += ["", "Per-run detail (workers = share of the proxy's CPU per worker process):"]
    for r in recs:
        if "rps" in r and "p50_us" in r:
            d = (f"{r['rps']:>9,.0f} req/s  p50 {fmt(r['p50_us'], 'ms'):>6}ms  "
                 f"p99 {fmt(r['p99_us'], 'ms'):>7}ms  cpu {r['cpu_us_per_req']:6.1f} us/req")
        elif "rps" in r:  # h2load
            d = (f"{r['rps']:>9,.0f} req/s  mean {fmt(r.get('mean_us'), 'ms'):>6}ms  "
                 f"cpu {r['cpu_us_per_req']:6.1f} us/req")
        if "rps" in r:
            if r["scen"] in ("1m", "h2-1m"):
                d += f"  {r['mibps']:7.1f} MiB/s"
            if r.get("resumed_pct") is not None and r["scen"] != "tls-ka":
                d += f"  resumed {r['resumed_pct']:.0f}%"
            if r.get("worker_split"):
                d += f"  workers {r['worker_split']}%"
            d += f"  other {r.get('other_cpu_pct', 0):.0f}%"
            if r.get("attempts", 1) > 1:
                d += f" (best of {r['attempts']} attempts)"
        elif r["scen"] == "callgrind":
            d = callgrind_detail(r)
        elif r["scen"] == "accept":
            continue
        elif r["scen"] in ("idle", "h2-idle"):
            bpc = r.get("bytes_per_conn")
            d = (f"{r['opened']:>6} conns ({r['alive']} alive)  "
                 f"{'n/a' if bpc is None else f'{bpc:,.0f}'} bytes/conn")
        else:
            d = "FAILED"
        out.append(f"  {r['scen']:<10} r{r['round']} {r['proxy']:<8} {d}")
    print("\n".join(out))
    return 0


# --------------------------------------------------------------------------
# scenario 14: what a policy route and a dashboard viewer cost
# --------------------------------------------------------------------------

# The targets of the issues that asked for them (18: a route with a rate limit
# and header rules costs < 5 % req/s; 19: a viewer polling the dashboard adds
# < 1 % CPU under the keep-alive load).
POLICY_TARGET_PCT = 5.0
VIEWER_TARGET_PCT = 1.0


def policy_section(recs, all_problems):
    """Section 14: forklb, f-policy and f-viewer under scenario 1's load."""
    rs = [r for r in recs if r["scen"] == "policy"]
    if not rs:
        return []
    cols = ["forklb", "f-policy", "f-viewer"]
    out = ["", "14. what a policy route and a dashboard viewer cost   (wrk -t2 -c50 /, as 1; forklb only)",
           "   f-policy: a second forklb whose route has bench/common.sh's POLICY_ROUTE (a limit_req by",
           "   source, never refusing; request header rules with $request_id; HSTS set, Server removed).",
           "   f-viewer: the forklb of 1 while a viewer polls its dashboard (the page",
           "   and its assets once, then ?json every 2 s on one keep-alive connection, as the page does).",
           "   Rounds interleave the three. Ratios: the variant / forklb.",
           f"  {'':<16}" + "".join(f"{p:>12}" for p in cols) + f"{'policy/f':>10}{'viewer/f':>10}"]
    med = {}
    for key, label, f in METRICS["keepalive"]:
        m = medians(rs, cols, key)
        med[key] = m
        out.append(f"  {label:<16}" + "".join(f"{fmt(m[p], f):>12}" for p in cols)
                   + f"{ratio(m['f-policy'], m['forklb']):>10}{ratio(m['f-viewer'], m['forklb']):>10}")
    out.append(errors_row(rs, cols))
    rps = med["rps"]
    if rps.get("forklb") and rps.get("f-policy"):
        cost = 100 * (1 - rps["f-policy"] / rps["forklb"])
        out.append(f"  policy route: costs {cost:+.1f} % req/s against the plain route (negative: "
                   f"it did better, i.e. noise; target < {POLICY_TARGET_PCT:.0f} %: "
                   f"{'met' if cost < POLICY_TARGET_PCT else 'NOT met'})")
    cpu = med["cpu_us_per_req"]
    if cpu.get("forklb") and cpu.get("f-viewer"):
        out.append(f"  viewer, measured under load: {100 * (cpu['f-viewer'] / cpu['forklb'] - 1):+.1f} % CPU "
                   "per request (the same instance as forklb's column: what differs beyond the")
        out.append("    viewer's computed cost below is the runs' noise, several per cent)")
    vc = [r for r in recs if r["scen"] == "viewercost"]
    if vc and vc[-1].get("us_per_poll") is not None and rps.get("forklb") and cpu.get("forklb"):
        v = vc[-1]
        # CPU the viewer costs per second, against forklb's CPU per second of scenario 1.
        busy_us_per_s = rps["forklb"] * cpu["forklb"]
        share = 100 * v["us_per_poll"] / v["interval_s"] / busy_us_per_s
        out.append(f"  viewer, computed: one ?json poll costs forklb {v['us_per_poll']:,.0f} us of CPU "
                   f"({v['polls']} polls, {v['bytes']:,} bytes each);")
        out.append(f"    every {v['interval_s']:g} s that is {share:.3f} % of forklb's CPU under scenario 1's load "
                   f"(target < {VIEWER_TARGET_PCT:.0f} %: {'met' if share < VIEWER_TARGET_PCT else 'NOT met'})")
    for r in rs + vc:
        for prob in r.get("problems", []):
            all_problems.append(f"  [{r['scen']}] round {r.get('round', 1)} {r['proxy']}: {prob}")
    return out


def http_get(sock, path, deadline):
    """GET path on a keep-alive socket; (status, body) of the answer."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    buf = b""
    while True:
        r = parse_response(buf)
        if r is not None:
            return r[0], r[1]
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError(f"no answer to GET {path}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError(f"connection closed during GET {path}")
        buf += chunk


def dashboard_paths(path):
    """What a browser fetches when it opens the dashboard at path."""
    return [path, f"{path}?asset=app.css", f"{path}?asset=app.js"]


def cmd_viewer(port, path, interval, max_seconds):
    """A dashboard viewer: the page and its assets once, then path?json every
    interval seconds on one keep-alive connection, as the page does, until
    killed or max_seconds have passed. Any failure is printed and ends it."""
    port, interval, stop = int(port), float(interval), time.monotonic() + float(max_seconds)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            for p in dashboard_paths(path):
                st, _ = http_get(s, p, time.monotonic() + 5)
                if st != 200:
                    raise OSError(f"GET {p}: status {st}")
            while time.monotonic() < stop:
                st, body = http_get(s, f"{path}?json", time.monotonic() + 5)
                if st != 200 or not body.startswith(b"{"):
                    raise OSError(f"GET {path}?json: status {st}, {body[:80]!r}")
                time.sleep(interval)
    except OSError as e:
        print(f"viewer of :{port}{path}: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_viewercost(results, port, path, n, pid, interval):
    """CPU forklb spends per ?json poll: n polls back to back on an otherwise
    idle instance, its processes' CPU time over them / n."""
    port, n, pid = int(port), int(n), int(pid)
    rec = {"scen": "viewercost", "proxy": "forklb", "round": 1, "problems": [],
           "interval_s": float(interval)}
    try:
        wait_quiet(float(os.environ.get("QUIET_WAIT", "60")))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            st, body = http_get(s, f"{path}?json", time.monotonic() + 5)
            if st != 200:
                raise OSError(f"GET {path}?json: status {st}")
            procs = proc_set(pid)
            t0 = cpu_ns(procs)
            for _ in range(n):
                http_get(s, f"{path}?json", time.monotonic() + 5)
            t1 = cpu_ns(procs)
        rec.update(polls=n, bytes=len(body), us_per_poll=(t1 - t0) / 1e3 / n)
        print(f"  viewercost  {n} polls of {len(body):,} bytes: {rec['us_per_poll']:,.0f} us CPU each",
              flush=True)
    except OSError as e:
        rec["problems"].append(f"dashboard polls failed: {e}")
        print(f"      !! viewercost: {e}", flush=True)
    append_result(results, rec)
    return 0


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "wrk":
        sep = args.index("--")
        return cmd_wrk(*args[:sep], *args[sep + 1:])
    if cmd == "h2load":
        sep = args.index("--")
        return cmd_h2load(*args[:sep], *args[sep + 1:])
    fn = {"freeports": cmd_freeports, "waitport": cmd_waitport, "procs": cmd_procs,
          "check": cmd_check, "tlsinfo": cmd_tlsinfo, "idle": cmd_idle,
          "summary": cmd_summary, "requests": cmd_requests, "cgrun": cmd_cgrun,
          "cgresult": cmd_cgresult, "cgtable": cmd_cgtable,
          "scrape": cmd_scrape, "accept": cmd_accept,
          "h2check": cmd_h2check, "h2idle": cmd_h2idle,
          "viewer": cmd_viewer, "viewercost": cmd_viewercost}[cmd]
    return fn(*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
