"""Shared pieces of the HTTP/2 test clients (tests/h2_attack/*.py).

Run with Debian's /usr/bin/python3 (python3-h2: `make test-deps` installs it).
Everything here speaks raw frames, so the attack clients can send what no
well-behaved library would; HPACK comes from the `hpack` module (a dependency
of `h2`). Every wait is bounded by a deadline.
"""

import socket
import ssl
import struct
import sys
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

SETTINGS_HEADER_TABLE_SIZE = 1
SETTINGS_ENABLE_PUSH = 2
SETTINGS_MAX_CONCURRENT_STREAMS = 3
SETTINGS_INITIAL_WINDOW_SIZE = 4
SETTINGS_MAX_FRAME_SIZE = 5

ERRORS = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, kind, flags, stream & 0x7FFFFFFF) + payload


def settings(pairs=(), ack=False):
    body = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return frame(SETTINGS, ACK if ack else 0, 0, body)


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def rst_stream(stream, code=8):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def ping(data=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def goaway(last_stream, code=0, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream & 0x7FFFFFFF, code) + debug)


def priority(stream, dep=0, weight=15):
    return frame(PRIORITY, 0, stream, struct.pack(">IB", dep, weight))


class TlsSocket:
    """TLS over a plain socket, safe to use from two threads at once: Conn's
    reader thread receives while the main thread sends.

    Python's SSLSocket is one OpenSSL SSL object, which must not be used by
    two threads at once, and `_ssl` does not serialize them: SSL_read and
    SSL_write run side by side without the GIL and share the object's state.
    A write could then make the concurrent read report SSL_ERROR_SYSCALL,
    which looked exactly like the server closing the connection a few
    milliseconds after the handshake (no frame received), or make the client
    send records the server cannot decrypt. Here the SSL object only works
    on memory buffers, under `ssl_lock`, held for no I/O at all; the socket
    is read and written outside it. `send_lock` keeps records going out in
    the order they were made, and a sender blocked on a full socket holds
    only it, so the reader keeps reading, as it did before."""

    def __init__(self, raw, ctx, server_hostname):
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.ssl_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self._handshake()

    def _handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._send_pending()
                return
            except ssl.SSLWantReadError:
                self._send_pending()
                data = self.raw.recv(65536)
                if not data:
                    raise ssl.SSLEOFError("the server closed during the handshake")
                self.incoming.write(data)

    def _send_pending(self):
        """Sends the records the SSL object made (caller holds no lock)."""
        with self.send_lock:
            with self.ssl_lock:
                out = self.outgoing.read()
            if out:
                self.raw.sendall(out)

    def selected_alpn_protocol(self):
        return self.obj.selected_alpn_protocol()

    def sendall(self, b):
        with self.send_lock:
            with self.ssl_lock:
                self.obj.write(b)
                out = self.outgoing.read()
            self.raw.sendall(out)

    def recv(self, n):
        """Up to n bytes of plaintext; b"" at close_notify or EOF. Raises
        socket.timeout as a plain socket does."""
        while True:
            with self.ssl_lock:
                try:
                    data = self.obj.read(n)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:
                    data = b""
                reply = self.outgoing.pending
            if reply:
                # TLS 1.3 may answer what it read (a KeyUpdate).
                self._send_pending()
            if data is not None:
                return data
            raw = self.raw.recv(65536)
            if not raw:
                return b""
            with self.ssl_lock:
                self.incoming.write(raw)

    def getsockname(self):
        return self.raw.getsockname()

    def settimeout(self, t):
        self.raw.settimeout(t)

    def shutdown(self, how):
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()


def connect(host, port, tls, timeout=5.0):
    """A TCP (or TLS with ALPN h2) connection to the server; the preface is not sent."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = TlsSocket(sock, ctx, "localhost")
        if sock.selected_alpn_protocol() != "h2":
            raise SystemExit("ALPN did not select h2: %r" % sock.selected_alpn_protocol())
    return sock


class Conn:
    """A raw HTTP/2 client connection: frames out, a reader thread collecting
    what the server sends (GOAWAY, RST_STREAM, responses) and whether it closed."""

    def __init__(self, host, port, tls, client_settings=(), timeout=5.0, auto_window=True):
        self.auto_window = auto_window
        self.sock = connect(host, port, tls, timeout)
        self.local = "%s:%d" % self.sock.getsockname()[:2]
        self.start = time.monotonic()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 1 << 16
        self.lock = threading.Lock()
        self.closed_at = None
        self.goaway = None  # (last_stream_id, error name, debug)
        self.goaway_at = None
        self.goaways = []  # every GOAWAY's last stream id, in order
        # False: PINGs are not answered but kept in `pings` (payloads), for
        # the caller to answer with `ack_pings()`.
        self.auto_ping_ack = True
        self.pings = []
        self.rst = {}  # stream -> error name
        self.headers = {}  # stream -> [list of header lists] (response head, trailers)
        self.data = {}  # stream -> bytes received
        self.ended = {}  # stream -> time END_STREAM arrived
        self.frames_in = 0
        self.send_error = None
        self.reader_error = None
        self.authority = "%s:%d" % (host, port)
        self.scheme = "https" if tls else "http"
        self.sendall(PREFACE + settings(client_settings))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def sendall(self, b):
        try:
            with self.lock:
                self.sock.sendall(b)
            return True
        except socket.timeout as e:
            # The server stopped reading (its buffers are full): not a close.
            if self.send_error is None:
                self.send_error = "timeout"
            return False
        except (OSError, ssl.SSLError) as e:
            if self.send_error is None:
                self.send_error = repr(e)
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            return False

    def _recv_exact(self, n, buf):
        while len(buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _read(self):
        buf = b""
        block = {}
        self.sock.settimeout(1.0)
        try:
            while True:
                try:
                    buf = self._recv_exact(9, buf)
                except socket.timeout:
                    if time.monotonic() - self.start > 120:
                        break
                    continue
                n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
                kind, flags = buf[3], buf[4]
                stream = struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF
                while True:
                    try:
                        buf = self._recv_exact(9 + n, buf)
                        break
                    except socket.timeout:
                        continue
                payload, buf = buf[9:9 + n], buf[9 + n:]
                self.frames_in += 1
                self._on_frame(kind, flags, stream, payload, block)
        except (EOFError, OSError, ssl.SSLError):
            pass
        except Exception as e:  # a bug here must show, not look like a close
            self.reader_error = repr(e)
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def _on_frame(self, kind, flags, stream, payload, block):
        now = time.monotonic()
        if kind == SETTINGS and not flags & ACK:
            self.sendall(settings(ack=True))
        elif kind == PING and not flags & ACK:
            if self.auto_ping_ack:
                self.sendall(ping(payload, ack=True))
            else:
                self.pings.append(payload)
        elif kind == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, ERRORS.get(code, str(code)), payload[8:].decode("latin-1"))
            self.goaway_at = now
            self.goaways.append(last & 0x7FFFFFFF)
        elif kind == RST_STREAM:
            self.rst[stream] = ERRORS.get(struct.unpack(">I", payload)[0], "?")
            self.ended.setdefault(stream, now)
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                if flags & PADDED:
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                if flags & PRIO_FLAG:
                    payload = payload[5:]
                block[stream] = (payload, flags)
            else:
                prev, f0 = block.get(stream, (b"", 0))
                block[stream] = (prev + payload, f0)
            if flags & END_HEADERS:
                raw, f0 = block.pop(stream)
                fields = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                          for k, v in self.dec.decode(raw)]
                self.headers.setdefault(stream, []).append(fields)
                if f0 & END_STREAM:
                    self.ended[stream] = now
        elif kind == DATA:
            n = len(payload)
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            self.data[stream] = self.data.get(stream, b"") + payload
            # Give back what the frame took (flow control), unless told not to.
            if self.auto_window and n > 0:
                self.sendall(window_update(0, n) + window_update(stream, n))
            if flags & END_STREAM:
                self.ended[stream] = now

    def request_block(self, path, method="GET", extra=(), authority=None):
        fields = [(":method", method), (":scheme", self.scheme),
                  (":authority", authority or self.authority), (":path", path)]
        fields += list(extra)
        return self.enc.encode(fields)

    def get(self, stream, path, extra=(), end_stream=True):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return self.sendall(frame(HEADERS, flags, stream, self.request_block(path, extra=extra)))

    def status(self, stream):
        for fields in self.headers.get(stream, []):
            for k, v in fields:
                if k == ":status":
                    return int(v)
        return None

    def wait(self, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.01)
        return cond()

    def wait_ended(self, timeout):
        """Waits until the server sent GOAWAY or closed; returns True if it did."""
        return self.wait(lambda: self.goaway is not None or self.closed_at is not None
                         and not self.reader.is_alive(), timeout)

    def ack_pings(self):
        """Answers the PINGs held back (auto_ping_ack False)."""
        held, self.pings = self.pings, []
        for p in held:
            self.sendall(ping(p, ack=True))

    def close(self):
        """Shuts the socket down and waits for the reader before closing it.
        A reader still in recv() works on the fd number: closed under it,
        that number goes to the next connection this process opens, whose
        bytes the old reader would then take (forklb once saw decrypt
        errors, and the next handshake got a decode_error alert)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.reader is not threading.current_thread():
            self.reader.join(5)
        try:
            self.sock.close()
        except OSError:
            pass

    def report(self, **extra):
        """key=value lines for the Rust side."""
        out = {
            "local": self.local,
            "goaway": self.goaway[1] if self.goaway else "none",
            "goaway_last_stream": self.goaway[0] if self.goaway else -1,
            "goaway_after": "%.3f" % (self.goaway_at - self.start) if self.goaway_at else "none",
            "closed": "yes" if self.closed_at is not None else "no",
            "closed_after": "%.3f" % (self.closed_at - self.start) if self.closed_at else "none",
            "rst_count": len(self.rst),
            "send_error": self.send_error or "none",
            "reader_error": self.reader_error or "none",
        }
        out.update(extra)
        for k, v in out.items():
            print("%s=%s" % (k, v))
        sys.stdout.flush()


def parse_target(argv):
    """`tls|h2c HOST PORT` at the start of argv."""
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode not in ("tls", "h2c"):
        raise SystemExit("mode must be tls or h2c")
    return mode == "tls", host, port, argv[3:]
