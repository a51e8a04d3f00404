"""Well-formed HTTP/2 requests the command-line clients cannot make
(tests/h2_clients.rs, tests/h2_drain.rs):

    /usr/bin/python3 client.py tls|h2c HOST PORT CASE

CASEs:
  parallel   GET /slow/a on stream 1, then GET /fast/b on stream 3, on one
             connection: when each ended (a_end=, b_end=, seconds).
  headers    GET /headers with :authority `mapped.test:8443` and the cookie
             split in crumbs (`a=1`, `b=2`): the status.
  many_headers  GET /headers with :authority `mapped.test:8443`, a `host`
             field `Mapped.Test:8443` (the same host) beside it, 60 fields
             `x-f-N: vN` and cookie crumbs `a=1`, `b=2`, `c=3` among them:
             the status.
  other_host GET /headers with :authority `mapped.test` and a `host` field
             `other.test`: the status (or `reset=CODE`).
  trailers   GET /trailers with `te: trailers`: the response's header blocks
             (`blocks=`) and its trailer fields (`trailer_NAME=VALUE`).
  req_trailers  POST /echo: DATA `hello`, then trailers `x-req-trailer: yes`.
  hints      GET /hints: the response's header blocks (`blocks=`), the
             status and Link of the first (`first_status=`, `first_link=`),
             the status of the last (`final_status=`) and the body.
  grpc       POST /grpc as a gRPC client does (content-type application/grpc,
             te: trailers, one length-prefixed message `ping`): the status,
             header blocks, body length and the trailer fields (`trailer_NAME=`).
  authority  four GETs of /headers on one connection: stream 1 with no
             :authority and no host, 3 with two host fields and no
             :authority, 5 with an empty :authority, 7 with one host field
             `named.test` and no :authority: each stream's status or reset
             (`s1=`, `s3=`, ...), and `status=` (stream 7's).
  drain      GET /slow/drain, and waits (20 s at most) for it to end: the
             status, body length, GOAWAY.
  drain_between  GET /slow/drain on stream 1; once the first GOAWAY of a
             graceful shutdown arrives, GET /fast/between on stream 3 before
             answering the server's PING: both streams' status and end
             (`a_status`, `b_status`, `b_rst`), every GOAWAY's last stream
             (`goaways=`, comma-separated).
  client_goaway  GET /slow/a on stream 1 and GET /fast/b on stream 3, then
             the client's GOAWAY(NO_ERROR) once 3 ended: stream 1's status
             (`a_status`), the server's GOAWAY (`goaways=`, its last stream,
             or `none`) and whether it came before the close
             (`goaway_before_close=yes|no`), whether it closed (`closed=`).
  owed_body  POST /owed without END_STREAM and no DATA: the status and
             when it came (`status=`, `after=` seconds).
Prints key=value lines.
"""

import sys
import time

from h2util import *


def ended(c, stream):
    return stream in c.ended or stream in c.rst


def main():
    tls, host, port, rest = parse_target(sys.argv[1:])
    case = rest[0]
    c = Conn(host, port, tls)
    extra = {}
    if case == "parallel":
        c.get(1, "/slow/a")
        time.sleep(0.05)
        c.get(3, "/fast/b")
        c.wait(lambda: ended(c, 1) and ended(c, 3), 10)
        for s, n in ((1, "a"), (3, "b")):
            extra[n + "_status"] = c.status(s) or "none"
            extra[n + "_end"] = "%.3f" % (c.ended[s] - c.start) if s in c.ended else "none"
            extra[n + "_body"] = len(c.data.get(s, b""))
    elif case == "headers":
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.request_block(
            "/headers", authority="mapped.test:8443",
            extra=[("cookie", "a=1"), ("user-agent", "h2test"), ("cookie", "b=2")])))
        c.wait(lambda: ended(c, 1), 5)
        extra["status"] = c.status(1) or "none"
    elif case == "many_headers":
        fields = [("host", "Mapped.Test:8443"), ("cookie", "a=1")]
        for i in range(60):
            fields.append(("x-f-%d" % i, "v%d" % i))
            if i == 20:
                fields.append(("cookie", "b=2"))
        fields.append(("cookie", "c=3"))
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.request_block(
            "/headers", authority="mapped.test:8443", extra=fields)))
        c.wait(lambda: ended(c, 1), 5)
        extra["status"] = c.status(1) or "none"
    elif case == "other_host":
        c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.request_block(
            "/headers", authority="mapped.test", extra=[("host", "other.test")])))
        c.wait(lambda: ended(c, 1), 5)
        extra["status"] = c.status(1) or "none"
    elif case == "trailers":
        c.get(1, "/trailers", extra=[("te", "trailers")])
        c.wait(lambda: ended(c, 1), 5)
        blocks = c.headers.get(1, [])
        extra["status"] = c.status(1) or "none"
        extra["blocks"] = len(blocks)
        extra["body"] = c.data.get(1, b"").decode("latin-1")
        if len(blocks) > 1:
            for k, v in blocks[-1]:
                extra["trailer_" + k] = v
    elif case == "hints":
        c.get(1, "/hints")
        c.wait(lambda: ended(c, 1), 5)
        blocks = c.headers.get(1, [])
        extra["blocks"] = len(blocks)
        extra["body"] = c.data.get(1, b"").decode("latin-1")
        if blocks:
            first = dict(blocks[0])
            extra["first_status"] = first.get(":status", "none")
            extra["first_link"] = first.get("link", "none")
            extra["final_status"] = dict(blocks[-1]).get(":status", "none")
    elif case == "req_trailers":
        c.sendall(frame(HEADERS, END_HEADERS, 1, c.request_block("/echo", "POST"))
                  + frame(DATA, 0, 1, b"hello")
                  + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                          c.enc.encode([("x-req-trailer", "yes")])))
        c.wait(lambda: ended(c, 1), 5)
        extra["status"] = c.status(1) or "none"
        extra["body"] = c.data.get(1, b"").decode("latin-1")
    elif case == "grpc":
        msg = b"ping"
        c.sendall(frame(HEADERS, END_HEADERS, 1, c.request_block(
            "/grpc", "POST", extra=[("content-type", "application/grpc"), ("te", "trailers")]))
                  + frame(DATA, END_STREAM, 1, b"\x00" + len(msg).to_bytes(4, "big") + msg))
        c.wait(lambda: ended(c, 1), 10)
        blocks = c.headers.get(1, [])
        extra["status"] = c.status(1) or "none"
        extra["blocks"] = len(blocks)
        extra["body_len"] = len(c.data.get(1, b""))
        extra["body_hex"] = c.data.get(1, b"").hex()
        extra["rst"] = c.rst.get(1, "none")
        if blocks:
            for k, v in blocks[0]:
                extra["header_" + k] = v
        if len(blocks) > 1:
            for k, v in blocks[-1]:
                extra["trailer_" + k] = v
    elif case == "drain_between":
        c.auto_ping_ack = False
        c.get(1, "/slow/drain")
        print("sent=1")
        sys.stdout.flush()
        c.wait(lambda: c.goaway is not None, 20)
        if c.goaway is not None:
            c.get(3, "/fast/between")
            time.sleep(0.2)
            c.ack_pings()
        c.wait(lambda: ended(c, 1) and ended(c, 3), 20)
        extra["a_status"] = c.status(1) or "none"
        extra["b_status"] = c.status(3) or "none"
        extra["b_rst"] = c.rst.get(3, "none")
        extra["goaways"] = ",".join(str(g) for g in c.goaways) or "none"
    elif case == "authority":
        base = [(":method", "GET"), (":scheme", c.scheme), (":path", "/headers")]
        blocks = {
            1: base,
            3: base + [("host", "b.test"), ("host", "a.test")],
            5: base + [(":authority", "")],
            7: base + [("host", "named.test")],
        }
        for sid in (1, 3, 5, 7):
            fields = blocks[sid]
            # Pseudo-headers first, whatever the list above says.
            fields = [f for f in fields if f[0].startswith(":")] + [f for f in fields if not f[0].startswith(":")]
            c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, c.enc.encode(fields)))
        c.wait(lambda: all(ended(c, s) for s in (1, 3, 5, 7)), 5)
        for sid in (1, 3, 5, 7):
            extra["s%d" % sid] = c.rst.get(sid) or c.status(sid) or "none"
        extra["status"] = c.status(7) or "none"
    elif case == "client_goaway":
        c.get(1, "/slow/a")
        c.get(3, "/fast/b")
        c.wait(lambda: ended(c, 3), 10)
        c.sendall(goaway(0))
        c.wait(lambda: ended(c, 1) and (c.closed_at is not None or not c.reader.is_alive()), 10)
        extra["a_status"] = c.status(1) or "none"
        extra["goaways"] = ",".join(str(g) for g in c.goaways) or "none"
        extra["goaway_before_close"] = "yes" if c.goaway_at is not None else "no"
        extra["closed"] = "yes" if c.closed_at is not None else "no"
    elif case == "owed_body":
        c.sendall(frame(HEADERS, END_HEADERS, 1, c.request_block("/owed", "POST")))
        c.wait(lambda: ended(c, 1), 20)
        extra["status"] = c.status(1) or c.rst.get(1) or "none"
        extra["after"] = "%.3f" % (time.monotonic() - c.start)
    elif case == "drain":
        c.get(1, "/slow/drain")
        print("sent=1")
        sys.stdout.flush()
        c.wait(lambda: ended(c, 1), 20)
        extra["status"] = c.status(1) or "none"
        extra["body_len"] = len(c.data.get(1, b""))
        extra["rst"] = c.rst.get(1, "none")
        extra["ended"] = "yes" if 1 in c.ended else "no"
        # A graceful GOAWAY may come before the stream ends or after it.
        c.wait(lambda: c.goaway is not None or c.closed_at is not None, 5)
    else:
        raise SystemExit("unknown case %r" % case)
    c.report(**extra)
    c.close()


if __name__ == "__main__":
    main()
