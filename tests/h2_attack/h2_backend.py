"""An HTTP/2 origin server for tests/h2_upstreams.rs (forklb's `protocol:
h2` / `h2c` upstreams), built on python3-h2:

    /usr/bin/python3 h2_backend.py NAME PORT LOG [--tls CERT KEY] [--health FILE]

Serves HTTP/2 with prior knowledge (h2c) on 127.0.0.1:PORT (0 = any free
port), or HTTP/2 over TLS with ALPN `h2` when --tls is given. Prints
`port=N` once it listens. Every connection gets its own thread and id
(1, 2, ...); streams on one connection are served concurrently.

Paths:
  /hello        200 "hello from NAME"
  /echo         200 with the request body
  /big?n=BYTES  200 with BYTES bytes of the pattern (byte i = i % 251),
                sent as the flow-control windows allow
  /grpc         gRPC-style: content-type application/grpc, one DATA frame
                (a gRPC message "ok"), then trailers grpc-status: 0 and
                grpc-message: ok
  /stream?n=N&ms=M  N chunks "chunk I\\n", one every M ms (default 10, 100)
  /status/NNN   that status
  /nobody/NNN   status NNN (204, 304) with `content-length: 5` and a DATA
                frame "hello": content a response without any must not
                have (RFC 9113 §8.1.1); a HEAD of /hello gets its body too
  /empty/NNN    status NNN and grpc-status: 3 in one HEADERS frame with
                END_STREAM, no content-length (a gRPC trailers-only error,
                an empty 200)
  /hints        103 (link: </a.css>, content-length: 5), then 200 "hinted"
  /cut          200 without a length, DATA "hello", then RST_STREAM
                INTERNAL_ERROR: a body cut short
  /refuse-once  the first such request of the process: RST_STREAM
                REFUSED_STREAM before anything is processed; then as /hello
  /refuse-always  always RST_STREAM REFUSED_STREAM
  /goaway-once  the first such request of the process: GOAWAY with last
                stream 0 (nothing processed), and the connection closes;
                then as /hello
A refusal is logged as {"event": "refused", "conn": ID, "path": PATH}.
  /health       the status in the --health FILE (200 if absent)
  anything else 404

Each finished request is appended to LOG as one JSON line: name, conn,
stream, method, path, authority, headers (regular fields, [name, value]
pairs), body_len, body_sha256. Each new connection is a line too
({"event": "conn", "conn": ID}), so tests can count connections.
"""

import hashlib
import json
import os
import select
import socket
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

LOG_LOCK = threading.Lock()
# Paths refused once already (/refuse-once, /goaway-once).
REFUSED = set()
REFUSED_LOCK = threading.Lock()


def first_time(path):
    with REFUSED_LOCK:
        if path in REFUSED:
            return False
        REFUSED.add(path)
        return True
CONN_IDS = iter(range(1, 1 << 30))
# A connection idle this long is closed (tests are short; no thread
# outlives its test by much).
IDLE_SECS = 60


def log(path, record):
    line = json.dumps(record, sort_keys=True) + "\n"
    with LOG_LOCK:
        with open(path, "a") as f:
            f.write(line)


def pattern(n):
    block = bytes(i % 251 for i in range(251))
    reps = n // 251 + 1
    return (block * reps)[:n]


class Stream:
    """One request and the steps of its answer."""

    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = headers
        self.body = bytearray()
        self.steps = []  # ("headers", list, end) | ("data", bytes, end) | ("sleep", secs) | ("trailers", list)
        self.wake = None
        # The request ended and its answer is queued in `steps`.
        self.answered = False


class Server:
    def __init__(self, sock, cid, args):
        self.sock = sock
        self.cid = cid
        self.args = args
        # No outbound validation: /nobody sends what RFC 9113 forbids.
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.streams = {}
        # A GOAWAY went out: the connection ends once it is flushed.
        self.closing = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        self.conn.initiate_connection()
        # Big windows: MiB uploads should not crawl.
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.conn.increment_flow_control_window((1 << 24))
        self.flush()
        last = time.monotonic()
        while True:
            self.progress()
            self.flush()
            timeout = 1.0
            wakes = [s.wake for s in self.streams.values() if s.wake is not None]
            if wakes:
                timeout = max(0.0, min(min(wakes) - time.monotonic(), 1.0))
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending:
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if not ready:
                    if time.monotonic() - last > IDLE_SECS and not self.streams:
                        return
                    continue
            last = time.monotonic()
            try:
                data = self.sock.recv(1 << 16)
            except ssl.SSLWantReadError:
                continue
            if not data:
                return
            for ev in self.conn.receive_data(data):
                self.on_event(ev)
            if self.closing:
                self.flush()
                return

    def on_event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            path = dict(ev.headers).get(":path")
            refuse = path == "/refuse-always" or (path == "/refuse-once" and first_time(path))
            goaway = path == "/goaway-once" and first_time(path)
            if refuse or goaway:
                log(self.args["log"], {"event": "refused", "conn": self.cid, "path": path})
                if refuse:
                    self.conn.reset_stream(ev.stream_id, error_code=7)
                else:
                    self.conn.close_connection(error_code=0, last_stream_id=0)
                    self.closing = True
                return
            self.streams[ev.stream_id] = Stream(ev.stream_id, ev.headers)
            if ev.stream_ended:
                self.answer(self.streams[ev.stream_id])
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.body += ev.data
            # Reopen the windows at once: the body is kept in memory.
            if ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            s = self.streams.get(ev.stream_id)
            if s is not None and not s.answered:
                self.answer(s)
        elif isinstance(ev, h2.events.StreamReset):
            self.streams.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.TrailersReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.headers = list(s.headers) + [("x-trailer-" + k, v) for k, v in ev.headers]
                if ev.stream_ended and not s.answered:
                    self.answer(s)

    def answer(self, s):
        s.answered = True
        h = dict(s.headers)
        url = urlsplit(h.get(":path", "/"))
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        log(self.args["log"], {
            "name": self.args["name"],
            "conn": self.cid,
            "stream": s.sid,
            "method": h.get(":method"),
            "path": h.get(":path"),
            "authority": h.get(":authority"),
            "headers": [[k, v] for k, v in s.headers if not k.startswith(":")],
            "body_len": len(s.body),
            "body_sha256": hashlib.sha256(bytes(s.body)).hexdigest(),
        })
        name = self.args["name"]
        if path in ("/hello", "/refuse-once", "/goaway-once"):
            self.simple(s, 200, ("hello from %s" % name).encode())
        elif path == "/echo":
            self.simple(s, 200, bytes(s.body), "application/octet-stream")
        elif path == "/big":
            self.simple(s, 200, pattern(int(q.get("n", "0"))), "application/octet-stream")
        elif path == "/grpc":
            msg = b"ok"
            s.steps = [
                ("headers", [(":status", "200"), ("content-type", "application/grpc")], False),
                ("data", b"\x00" + len(msg).to_bytes(4, "big") + msg, False),
                ("trailers", [("grpc-status", "0"), ("grpc-message", "ok")]),
            ]
        elif path == "/stream":
            n, ms = int(q.get("n", "10")), int(q.get("ms", "100"))
            s.steps = [("headers", [(":status", "200"), ("content-type", "text/plain")], False)]
            for i in range(n):
                if i:
                    s.steps.append(("sleep", ms / 1000.0))
                s.steps.append(("data", ("chunk %d\n" % i).encode(), i == n - 1))
            if n == 0:
                s.steps.append(("data", b"", True))
        elif path.startswith("/nobody/"):
            s.steps = [
                ("headers", [(":status", path[len("/nobody/"):]), ("content-length", "5")], False),
                ("data", b"hello", True),
            ]
        elif path.startswith("/empty/"):
            s.steps = [
                ("headers", [(":status", path[len("/empty/"):]), ("grpc-status", "3")], True),
            ]
        elif path == "/cut":
            s.steps = [
                ("headers", [(":status", "200")], False),
                ("data", b"hello", False),
                ("sleep", 0.05),
                ("reset", 2),
            ]
        elif path == "/hints":
            s.steps = [
                ("headers", [(":status", "103"), ("link", "</a.css>"), ("content-length", "5")], False),
                ("headers", [(":status", "200"), ("content-length", "6")], False),
                ("data", b"hinted", True),
            ]
        elif path.startswith("/status/"):
            self.simple(s, int(path[len("/status/"):]), b"status\n")
        elif path == "/health":
            status = 200
            hf = self.args.get("health")
            if hf and os.path.exists(hf):
                with open(hf) as f:
                    status = int(f.read().strip() or "200")
            self.simple(s, status, b"health\n")
        else:
            self.simple(s, 404, b"not found\n")

    def simple(self, s, status, body, ctype="text/plain"):
        s.steps = [
            ("headers", [(":status", str(status)), ("content-type", ctype),
                         ("content-length", str(len(body))), ("x-backend", self.args["name"])],
             False),
            ("data", body, True),
        ]

    def progress(self):
        """Runs every stream's steps as far as time and windows allow."""
        now = time.monotonic()
        for sid in list(self.streams):
            s = self.streams[sid]
            while s.steps:
                step = s.steps[0]
                kind = step[0]
                try:
                    if kind == "headers":
                        self.conn.send_headers(sid, step[1], end_stream=step[2])
                    elif kind == "reset":
                        self.conn.reset_stream(sid, error_code=step[1])
                    elif kind == "trailers":
                        self.conn.send_headers(sid, step[1], end_stream=True)
                    elif kind == "sleep":
                        if s.wake is None:
                            s.wake = now + step[1]
                        if now < s.wake:
                            break
                        s.wake = None
                    elif kind == "data":
                        data, end = step[1], step[2]
                        window = self.conn.local_flow_control_window(sid)
                        chunk = min(window, self.conn.max_outbound_frame_size)
                        if data and chunk <= 0:
                            break
                        part, rest = data[:chunk], data[chunk:]
                        self.conn.send_data(sid, part, end_stream=end and not rest)
                        if rest:
                            s.steps[0] = ("data", rest, end)
                            continue
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    s.steps = []
                    break
                s.steps.pop(0)
            if s.answered and not s.steps:
                del self.streams[sid]


def serve(sock, cid, args):
    try:
        if args.get("tls"):
            sock = args["tls"].wrap_socket(sock, server_side=True)
            if args.get("alpn", True) and sock.selected_alpn_protocol() != "h2":
                sock.close()
                return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Server(sock, cid, args).run()
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    argv = sys.argv[1:]
    args = {"name": argv[0], "log": argv[2], "tls": None, "health": None}
    port = int(argv[1])
    rest = argv[3:]
    while rest:
        if rest[0] == "--tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(rest[1], rest[2])
            args["tls"] = ctx
            rest = rest[3:]
        elif rest[0] == "--no-alpn":
            # HTTP/2 over TLS without agreeing on it by ALPN (a
            # misconfigured server): proxies must not speak HTTP/2 to it.
            args["alpn"] = False
            rest = rest[1:]
        elif rest[0] == "--health":
            args["health"] = rest[1]
            rest = rest[2:]
        else:
            raise SystemExit("unknown argument %r" % rest[0])
    if args["tls"] and args.get("alpn", True):
        args["tls"].set_alpn_protocols(["h2"])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(512)
    print("port=%d" % lsock.getsockname()[1])
    sys.stdout.flush()
    while True:
        sock, _ = lsock.accept()
        cid = next(CONN_IDS)
        log(args["log"], {"event": "conn", "conn": cid, "name": args["name"]})
        threading.Thread(target=serve, args=(sock, cid, args), daemon=True).start()


if __name__ == "__main__":
    main()
