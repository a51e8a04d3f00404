//! Request heads: parse with httparse, then apply the checks that keep
//! framing unambiguous (no request smuggling): one Host on HTTP/1.1, one
//! plain-digit Content-Length, Transfer-Encoding only as exactly `chunked`
//! and never together with Content-Length, no bare LF line endings; a
//! Host (and an absolute-form authority) that is `uri-host [":" port]`; no
//! upgrade to HTTP/2 (cleartext h2 is prior knowledge only, DESIGN §4.1).

use super::{name_is, parse_content_length, tokens, Framing};
use std::borrow::Cow;

/// Why a request head is refused, and the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestError {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> RequestError {
    RequestError {
        status: 400,
        reason,
    }
}

/// What the proxy needs to know about a request beyond httparse's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    /// Length of the head including the final CRLF CRLF.
    pub head_len: usize,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub framing: Framing,
    /// The client lets the connection stay open after this exchange.
    pub keep_alive: bool,
    pub is_head: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: safe to send twice.
    pub idempotent: bool,
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header naming a protocol
    /// other than HTTP/2 (HTTP/1.1 only).
    pub upgrade: bool,
    /// `Max-Forwards` of a TRACE or OPTIONS request (RFC 9110 §7.6.2; other
    /// methods pass it on untouched).
    pub max_forwards: Option<u64>,
}

/// Result of parsing: a complete head with its facts, "need more bytes",
/// or a request line of `HTTP/1.x` with x > 1.
pub enum Parsed<'h, 'b> {
    Complete(httparse::Request<'h, 'b>, RequestInfo),
    Partial,
    /// RFC 9110 §2.5: a 1.x with a higher minor is handled as the highest
    /// minor we implement. httparse knows only 1.0 and 1.1, so the caller
    /// rewrites the minor digit at this offset to `1` and parses again.
    HigherMinor {
        digit_at: usize,
    },
}

/// Parses and validates the request head at the start of `buf`.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Parsed<'h, 'b>, RequestError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(RequestError {
                status: 431,
                reason: "too many header fields",
            })
        }
        Err(httparse::Error::Version) => {
            return match higher_minor_digit(buf) {
                Some(digit_at) => Ok(Parsed::HigherMinor { digit_at }),
                // httparse judges the version before the line ends.
                None if awaits_line_end(buf) => Ok(Parsed::Partial),
                None => Err(version_error(buf)),
            };
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    if has_bare_lf(&buf[..head_len]) {
        return Err(bad("bare LF in request head"));
    }
    let minor = req.version.unwrap_or(1);
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    check_target(method, path)?;
    let mut facts = HeaderFacts {
        // Max-Forwards only means something to these two methods.
        trace_or_options: method == "TRACE" || method == "OPTIONS",
        ..HeaderFacts::default()
    };
    for h in req.headers.iter() {
        facts.classify(h.name, h.value)?;
    }
    facts.check_framing(minor)?;
    let info = RequestInfo {
        head_len,
        minor,
        framing: facts.framing(),
        keep_alive: facts.keep_alive(minor),
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        expect_continue: facts.expect_continue,
        upgrade: facts.conn_upgrade && facts.has_upgrade && minor >= 1,
        max_forwards: facts.max_forwards,
    };
    Ok(Parsed::Complete(req, info))
}

/// The request target must be in origin form, absolute form with a valid
/// authority, or `*` for OPTIONS.
#[inline]
fn check_target(method: &str, path: &str) -> Result<(), RequestError> {
    if method == "CONNECT" {
        // forklb offers no tunnels, so a CONNECT is never forwarded: a 2xx
        // to it would make the client take the connection for a tunnel
        // nobody opened. As nginx answers: 405 when the target is in
        // origin or absolute form, 400 for anything else (the authority
        // form of RFC 9112 §3.2.3 included).
        let formed = path.starts_with('/') || path == "*" || split_absolute(path).is_some();
        return Err(if formed {
            RequestError {
                status: 405,
                reason: "CONNECT is not supported",
            }
        } else {
            bad("CONNECT target")
        });
    }
    let absolute = split_absolute(path);
    if !(path.starts_with('/') || (path == "*" && method == "OPTIONS") || absolute.is_some()) {
        return Err(bad("request target is neither origin nor absolute form"));
    }
    if let Some((authority, _)) = absolute {
        // The http(s) scheme requires a host (RFC 9110 §4.2.1); userinfo
        // is invalid in a target (§4.2.4), and the grammar rules out the rest.
        if authority.is_empty() || !super::host::is_valid(authority.as_bytes()) {
            return Err(bad("invalid authority in absolute-form target"));
        }
    }
    Ok(())
}

/// What the header fields of one request say about its framing and
/// connection, gathered field by field; each field is checked as it comes,
/// their combination afterwards (`check_framing`).
#[derive(Default)]
struct HeaderFacts {
    trace_or_options: bool,
    hosts: usize,
    content_length: Option<u64>,
    chunked: bool,
    has_te: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    has_upgrade: bool,
    expect_continue: bool,
    max_forwards: Option<u64>,
}

impl HeaderFacts {
    /// Takes one header field into account; fields forklb does not judge
    /// pass.
    #[inline]
    fn classify(&mut self, name: &str, value: &[u8]) -> Result<(), RequestError> {
        if name_is(name, "host") {
            self.host(value)
        } else if name_is(name, "content-length") {
            self.content_length(value)
        } else if name_is(name, "transfer-encoding") {
            self.transfer_encoding(value)
        } else if name_is(name, "connection") {
            self.connection(value);
            Ok(())
        } else if name_is(name, "upgrade") {
            self.upgrade(value);
            Ok(())
        } else if self.trace_or_options && name_is(name, "max-forwards") {
            self.max_forwards(value)
        } else if name_is(name, "expect") {
            self.expect(value)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn host(&mut self, value: &[u8]) -> Result<(), RequestError> {
        self.hosts += 1;
        if !super::host::is_valid(super::trim_ows(value)) {
            return Err(bad("invalid Host"));
        }
        Ok(())
    }

    #[inline]
    fn content_length(&mut self, value: &[u8]) -> Result<(), RequestError> {
        if self.content_length.is_some() {
            return Err(bad("more than one Content-Length"));
        }
        self.content_length =
            Some(parse_content_length(value).ok_or(bad("invalid Content-Length"))?);
        Ok(())
    }

    #[inline]
    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), RequestError> {
        self.has_te = true;
        for coding in tokens(value) {
            if self.chunked {
                // Anything after `chunked` (including a second `chunked`)
                // makes the final coding ambiguous.
                return Err(bad("Transfer-Encoding continues after chunked"));
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
            } else {
                return Err(RequestError {
                    status: 501,
                    reason: "unsupported transfer coding",
                });
            }
        }
        Ok(())
    }

    #[inline]
    fn connection(&mut self, value: &[u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.conn_close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.conn_keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.conn_upgrade = true;
            }
        }
    }

    #[inline]
    fn upgrade(&mut self, value: &[u8]) {
        // Only protocols forklb relays count; an HTTP/2 upgrade is
        // ignored (RFC 9110 §7.8 lets a server ignore Upgrade).
        self.has_upgrade |= tokens(value).any(|t| !is_http2_protocol(t));
    }

    #[inline]
    fn max_forwards(&mut self, value: &[u8]) -> Result<(), RequestError> {
        if self.max_forwards.is_some() {
            return Err(bad("more than one Max-Forwards"));
        }
        self.max_forwards = Some(parse_max_forwards(value).ok_or(bad("invalid Max-Forwards"))?);
        Ok(())
    }

    #[inline]
    fn expect(&mut self, value: &[u8]) -> Result<(), RequestError> {
        let value = super::trim_ows(value);
        if value.eq_ignore_ascii_case(b"100-continue") {
            self.expect_continue = true;
            Ok(())
        } else if value.is_empty() {
            // An empty Expect expects nothing (nginx and HAProxy serve it).
            Ok(())
        } else {
            Err(RequestError {
                status: 417,
                reason: "unsupported expectation",
            })
        }
    }

    /// The checks on the fields taken together: one Host (required in
    /// 1.1), and an unambiguous body framing.
    #[inline]
    fn check_framing(&self, minor: u8) -> Result<(), RequestError> {
        if self.hosts > 1 {
            return Err(bad("more than one Host"));
        }
        if self.hosts == 0 && minor == 1 {
            return Err(bad("missing Host"));
        }
        if self.has_te && self.content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if self.has_te && minor == 0 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if self.has_te && !self.chunked {
            return Err(bad("Transfer-Encoding without chunked"));
        }
        Ok(())
    }

    #[inline]
    fn framing(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            match self.content_length {
                Some(0) | None => Framing::None,
                Some(n) => Framing::Length(n),
            }
        }
    }

    /// 1.1 keeps the connection unless told to close; 1.0 only when asked.
    #[inline]
    fn keep_alive(&self, minor: u8) -> bool {
        if minor >= 1 {
            !self.conn_close
        } else {
            self.conn_keep_alive && !self.conn_close
        }
    }
}

/// httparse only says "bad version": answer 505 for a well-formed
/// `HTTP/x.y` with another major version, 400 for anything else.
fn version_error(buf: &[u8]) -> RequestError {
    let line_end = buf
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(buf.len());
    let line = &buf[..line_end];
    if let Some(pos) = line.iter().rposition(|&b| b == b' ') {
        let v = &line[pos + 1..];
        if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit()
            && v[5] != b'1'
        {
            return RequestError {
                status: 505,
                reason: "unsupported HTTP version",
            };
        }
    }
    bad("malformed request line")
}

/// Where the minor digit of an `HTTP/1.x` version with x in 2..=9 sits
/// in a complete request line, if that is its only defect.
fn higher_minor_digit(buf: &[u8]) -> Option<usize> {
    let line_end = buf.iter().position(|&b| b == b'\r')?;
    let line = &buf[..line_end];
    let v = line.get(line.len().checked_sub(9)?..)?;
    (v.starts_with(b" HTTP/1.") && (b'2'..=b'9').contains(&v[8])).then_some(line_end - 1)
}

/// True if `buf` is a request line still arriving whose last bytes are
/// `HTTP/1.x` (x in 2..=9): its end decides between 1.1 and an error.
fn awaits_line_end(buf: &[u8]) -> bool {
    !buf.contains(&b'\r')
        && buf.len() >= 9
        && buf[buf.len() - 9..].starts_with(b" HTTP/1.")
        && (b'2'..=b'9').contains(&buf[buf.len() - 1])
}

/// Length of the request line (without CRLF), if it is complete in `buf`.
pub fn request_line_len(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|lf| {
        if lf > 0 && buf[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        }
    })
}

/// An Upgrade protocol token naming HTTP/2 (`h2c`, `h2`, `HTTP/2.0`):
/// never an upgrade through forklb.
pub fn is_http2_protocol(token: &[u8]) -> bool {
    let name_end = token.iter().position(|&b| b == b'/').unwrap_or(token.len());
    let (name, version) = token.split_at(name_end);
    name.eq_ignore_ascii_case(b"h2c")
        || name.eq_ignore_ascii_case(b"h2")
        || (name.eq_ignore_ascii_case(b"http") && version.starts_with(b"/2"))
}

/// `Max-Forwards` of a TRACE or OPTIONS request whose fields are already
/// parsed (an HTTP/2 request; HTTP/1.1 heads check it while parsing): None
/// for other methods or without the field; two of them or a value that is
/// not a number is a bad request.
pub fn max_forwards(
    method: &str,
    headers: &[httparse::Header],
) -> Result<Option<u64>, RequestError> {
    if method != "TRACE" && method != "OPTIONS" {
        return Ok(None);
    }
    let mut fields = headers.iter().filter(|h| name_is(h.name, "max-forwards"));
    let Some(first) = fields.next() else {
        return Ok(None);
    };
    if fields.next().is_some() {
        return Err(bad("more than one Max-Forwards"));
    }
    parse_max_forwards(first.value)
        .map(Some)
        .ok_or(bad("invalid Max-Forwards"))
}

/// The `Allow` of forklb's own answer as the final recipient of an
/// OPTIONS or TRACE with `Max-Forwards: 0`.
pub const FINAL_RECIPIENT_ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// forklb's answer as the final recipient (`Max-Forwards: 0`), status and
/// body, with `FINAL_RECIPIENT_ALLOW`: OPTIONS is answered, TRACE refused
/// (echoing a request back exposes its credentials to scripts).
pub fn final_recipient_answer(method: &str) -> (u16, &'static [u8]) {
    if method == "TRACE" {
        (405, b"Method Not Allowed\n")
    } else {
        (200, b"")
    }
}

/// `Max-Forwards = 1*DIGIT`; values beyond u64 saturate.
fn parse_max_forwards(v: &[u8]) -> Option<u64> {
    let v = super::trim_ows(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Splits an absolute-form target (`http://host:port/path?q`) into its
/// authority and origin-form path. RFC 9112 §3.2.2: a server must accept
/// it, and its authority replaces the Host header. An empty path is `/`
/// (RFC 9110 §4.2.3), also before a query (`http://a?q` is `/?q`): the
/// one case that needs a copy.
pub fn split_absolute(target: &str) -> Option<(&str, Cow<'_, str>)> {
    let rest = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = match path.as_bytes().first() {
        None => Cow::Borrowed("/"),
        Some(b'?') => Cow::Owned(format!("/{path}")),
        Some(_) => Cow::Borrowed(path),
    };
    Some((authority, path))
}

/// The origin-form path of a target: itself, or the path part of an
/// absolute-form target.
pub fn origin_path(target: &str) -> Cow<'_, str> {
    split_absolute(target).map_or(Cow::Borrowed(target), |(_, p)| p)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The routing host of a request, lowercased into `out` without a port:
/// the authority of an absolute-form target, else the Host header.
pub fn routing_host<'a>(
    req: &httparse::Request,
    out: &'a mut [u8; 256],
) -> Result<Option<&'a str>, BadHost> {
    match req.path.and_then(split_absolute) {
        Some((authority, _)) => lower_host(authority.as_bytes(), out).map(Some),
        None => host_of(req, out),
    }
}

/// A host no route can be chosen by: longer than a DNS name can be, or
/// with an empty label (`a..b`, `b..`). A 400, as nginx answers: matched
/// against no host instead, it would skip the host routes and their
/// `allow`/`deny` while the backend serves the name it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHost;

/// True if some LF is not preceded by CR (httparse tolerates bare LF).
pub fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The Host header's value, without a port, lowercased into `out`.
pub fn host_of<'a>(
    req: &httparse::Request,
    out: &'a mut [u8; 256],
) -> Result<Option<&'a str>, BadHost> {
    match req.headers.iter().find(|h| name_is(h.name, "host")) {
        Some(h) => lower_host(super::trim_ows(h.value), out).map(Some),
        None => Ok(None),
    }
}

/// `host[:port]` → lowercase host without the port (IPv6 literals kept
/// whole) and without one trailing dot: `example.com.` is the same DNS
/// name as `example.com` and is routed as it, as nginx does.
pub fn lower_host<'a>(v: &[u8], out: &'a mut [u8; 256]) -> Result<&'a str, BadHost> {
    // Strip ":port", keeping IPv6 literals ("[::1]:80") intact.
    let host = if v.first() == Some(&b'[') {
        match v.iter().position(|&b| b == b']') {
            Some(end) => &v[..=end],
            None => v,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(colon) => &v[..colon],
            None => v,
        }
    };
    let host = match host {
        [rest @ .., b'.'] if !rest.is_empty() && host[0] != b'[' => rest,
        _ => host,
    };
    if host.len() > out.len() || host.ends_with(b".") || host.windows(2).any(|w| w == b"..") {
        return Err(BadHost);
    }
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(&out[..host.len()]).map_err(|_| BadHost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8]) -> Result<RequestInfo, RequestError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        match parse(raw, &mut headers)? {
            Parsed::Complete(_, info) => Ok(info),
            Parsed::Partial => panic!("partial"),
            Parsed::HigherMinor { .. } => panic!("higher minor"),
        }
    }

    #[test]
    fn simple_get() {
        let info = check(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::None);
        assert!(info.keep_alive);
        assert!(info.idempotent);
    }

    /// `100-continue` is met, an empty Expect expects nothing, any other
    /// expectation is a 417 (RFC 9110 §10.1.1).
    #[test]
    fn expectations() {
        let expect = |v: &str| {
            check(
                format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: {v}\r\n\r\n")
                    .as_bytes(),
            )
            .map(|i| i.expect_continue)
            .map_err(|e| e.status)
        };
        assert_eq!(expect("100-Continue"), Ok(true));
        assert_eq!(expect(""), Ok(false));
        assert_eq!(expect("foo"), Err(417));
    }

    #[test]
    fn partial() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHo", &mut headers),
            Ok(Parsed::Partial)
        ));
    }

    #[test]
    fn smuggling_vectors() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let got = check(raw).map(|_| 200).unwrap_or_else(|e| e.status);
            assert_eq!(got, *status, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn host_values() {
        for host in ["a b", "x/y", "t@alt.test", "alt.test, t", "a:b:c", "[::1"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(check(raw.as_bytes()).unwrap_err().status, 400, "{host}");
        }
        // In a target, `/` ends the authority and a space ends the target.
        for authority in ["t@alt.test", "a:b:c", "[::1", "a,b", "a%zz", "a:99999"] {
            let raw = format!("GET http://{authority}/ HTTP/1.1\r\nHost: ok\r\n\r\n");
            assert_eq!(
                check(raw.as_bytes()).unwrap_err().status,
                400,
                "{authority}"
            );
        }
        assert!(check(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").is_ok());
        assert!(check(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").is_ok());
        assert!(check(b"GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
    }

    #[test]
    fn http2_upgrades_are_not_upgrades() {
        let up = |v: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {v}\r\n\r\n");
            check(raw.as_bytes()).unwrap().upgrade
        };
        assert!(!up("h2c"));
        assert!(!up("H2C"));
        assert!(!up("h2"));
        assert!(!up("HTTP/2.0"));
        assert!(up("websocket"));
        assert!(up("h2c, websocket"));
    }

    #[test]
    fn max_forwards_of_trace_and_options() {
        let mf = |m: &str, v: &str| {
            let raw = format!("{m} / HTTP/1.1\r\nHost: x\r\nMax-Forwards: {v}\r\n\r\n");
            check(raw.as_bytes()).map(|i| i.max_forwards)
        };
        assert_eq!(mf("TRACE", "0"), Ok(Some(0)));
        assert_eq!(mf("OPTIONS", " 7 "), Ok(Some(7)));
        assert_eq!(mf("GET", "0"), Ok(None));
        assert_eq!(mf("GET", "x"), Ok(None));
        assert_eq!(mf("OPTIONS", "99999999999999999999999"), Ok(Some(u64::MAX)));
        assert_eq!(mf("TRACE", "-1").unwrap_err().status, 400);
        assert_eq!(mf("TRACE", "").unwrap_err().status, 400);
    }

    #[test]
    fn higher_minor_versions() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        match parse(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", &mut headers) {
            Ok(Parsed::HigherMinor { digit_at }) => assert_eq!(digit_at, 13),
            _ => panic!("HTTP/1.2 not recognized"),
        }
        let mut headers = [httparse::EMPTY_HEADER; 8];
        assert!(matches!(
            parse(b"GET / HTTP/1.9", &mut headers),
            Ok(Parsed::Partial)
        ));
        assert_eq!(
            check(b"GET / HTTP/1.10\r\nHost: x\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            check(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n")
                .unwrap_err()
                .status,
            505
        );
        assert_eq!(request_line_len(b"GET / HTTP/1.1\r\n"), Some(14));
        assert_eq!(request_line_len(b"GET /aaaa"), None);
    }

    #[test]
    fn http10_keepalive() {
        assert!(!check(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            check(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !check(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn absolute_form() {
        let split = |t| split_absolute(t).map(|(a, p)| (a, p.into_owned()));
        assert_eq!(
            split("http://a.b:8080/x?y"),
            Some(("a.b:8080", "/x?y".to_owned()))
        );
        assert_eq!(split("HTTPS://a.b"), Some(("a.b", "/".to_owned())));
        assert_eq!(split("http://a.b?q"), Some(("a.b", "/?q".to_owned())));
        assert_eq!(split("/x"), None);
        assert_eq!(origin_path("https://a.b?q=1"), "/?q=1");
        assert_eq!(origin_path("/y?z"), "/y?z");
        assert!(check(b"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n").is_ok());
        assert_eq!(
            check(b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            check(b"GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            check(b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn host_without_port() {
        let raw = b"GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        let mut buf = [0u8; 256];
        assert_eq!(host_of(&req, &mut buf), Ok(Some("example.com")));
    }

    #[test]
    fn routing_hosts_lose_one_trailing_dot_and_refuse_what_names_no_host() {
        let mut buf = [0u8; 256];
        for (v, want) in [
            (&b"Admin.Example.com."[..], Ok("admin.example.com")),
            (b"admin.example.com.:80", Ok("admin.example.com")),
            (b"[::1]:80", Ok("[::1]")),
            (b"localhost", Ok("localhost")),
            (b"a..example.com", Err(BadHost)),
            (b"admin.example.com..", Err(BadHost)),
            (b".", Err(BadHost)),
        ] {
            assert_eq!(
                lower_host(v, &mut buf),
                want,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        let long = format!("{}.example.com", "a".repeat(250));
        assert_eq!(lower_host(long.as_bytes(), &mut buf), Err(BadHost));
    }
}
