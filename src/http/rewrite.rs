//! Header rewriting between client and upstream. Hop-by-hop headers
//! (Connection and everything it names, Keep-Alive, Proxy-Connection, TE,
//! Upgrade, Transfer-Encoding) never cross the proxy; forklb adds
//! its own Connection and framing headers and the X-Forwarded-* pair.
//!
//! Each hop speaks its own version (RFC 9110 §2.5): requests go upstream as
//! HTTP/1.1 whatever the client spoke, and responses go to the client as
//! HTTP/1.1 too, within what the client's version allows (an HTTP/1.0
//! client gets no chunked body and no interim response; see `proxy::conn`).

use super::{name_is, tokens, Framing};
use std::io::Write;
use std::net::IpAddr;

/// Headers that describe one hop only (RFC 9110 §7.6.1). `Trailer` is not
/// one of them (RFC 2616 said so, RFC 9110 does not): it announces the
/// trailer fields, which cross the proxy with the body.
const HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP.iter().any(|h| name_is(name, h))
}

/// The header names listed in Connection headers (at most 16 are honoured;
/// more is abuse and the rest simply pass as ordinary headers).
fn connection_named<'b>(headers: &[httparse::Header<'b>]) -> ([&'b [u8]; 16], usize) {
    let mut out: [&[u8]; 16] = [&[]; 16];
    let mut n = 0;
    for h in headers.iter().filter(|h| name_is(h.name, "connection")) {
        for t in tokens(h.value) {
            if n < out.len() {
                out[n] = t;
                n += 1;
            }
        }
    }
    (out, n)
}

/// Whether a field stays on this side of the proxy: hop-by-hop, or named
/// by the message's Connection header — except the fields in
/// `NEVER_NOMINATED`.
fn is_dropped(name: &str, named: &[&[u8]]) -> bool {
    is_hop_by_hop(name)
        || (named
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
            && !NEVER_NOMINATED.iter().any(|n| name_is(name, n)))
}

/// End-to-end fields a Connection header cannot take off a message, as
/// nginx and HAProxy never drop them. Content-Length: the message was framed
/// by it when it was parsed, so the copy we send must say the same length —
/// dropped, the body would follow a head without one, which an upstream
/// reads as a bodiless request and the body as the next request
/// (smuggling), and a client reads a response as ending at close. Host: what
/// the request was routed on (RFC 9110 §7.2). The forwarding fields an edge
/// proxy in front added (`Connection: X-Forwarded-For` from a client would
/// erase the real client's address before an HAProxy-fronted forklb), and
/// the credentials the request carries.
const NEVER_NOMINATED: [&str; 9] = [
    "content-length",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "authorization",
    "cookie",
];

/// The header fields of a message that describe it end to end: neither
/// hop-by-hop ones nor those its Connection header names. They are what
/// an HTTP/2 response may carry (RFC 9113 §8.2.2).
pub fn end_to_end<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
) -> impl Iterator<Item = &'h httparse::Header<'b>> {
    let (named, n) = connection_named(headers);
    headers
        .iter()
        .filter(move |h| !is_dropped(h.name, &named[..n]))
}

/// A 1xx or 204 response must not carry Content-Length (RFC 9110 §8.6);
/// some upstreams send one anyway, and HTTP/2 clients refuse a stream
/// whose 204 says `content-length: 5`. Dropped on the way, as HAProxy and
/// nginx do. (A 304's and a HEAD response's describe the representation and
/// stay.)
pub fn length_forbidden(status: u16) -> bool {
    status < 200 || status == 204
}

/// A field that frames or routes a message rather than describes it: it
/// never travels as a trailer (RFC 9110 §6.5.1) nor crosses a hop.
pub fn is_framing_or_hop(lower_name: &[u8]) -> bool {
    const FRAMING: [&str; 4] = ["content-length", "host", "content-type", "trailer"];
    HOP.iter()
        .chain(&FRAMING)
        .any(|f| f.as_bytes() == lower_name)
}

/// The trailer fields of a chunked body, from `tail`: what follows its
/// last data (maybe the CRLF after it, the last-chunk line `0[;ext]`, then
/// the trailer section ending in an empty line), as the chunked scanner
/// validated it. Names go lower-case; fields that frame or route a message
/// are dropped. Empty when there are none.
pub fn trailer_fields(tail: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tail = tail.strip_prefix(b"\r\n").unwrap_or(tail);
    let section = tail
        .windows(2)
        .position(|w| w == b"\r\n")
        .and_then(|i| tail.get(i + 2..))
        .unwrap_or(&[]);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let fields = match httparse::parse_headers(section, &mut headers) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        _ => &[][..],
    };
    fields
        .iter()
        .map(|h| (h.name.to_ascii_lowercase().into_bytes(), h.value.to_vec()))
        .filter(|(n, _)| !is_framing_or_hop(n))
        .collect()
}

/// What the upstream request needs besides the client's head.
pub struct UpstreamRequest<'a> {
    pub client_ip: IpAddr,
    /// `http` or `https`: the scheme the client used.
    pub proto: &'static str,
    /// Replaces the client's Host (`host_header`).
    pub host_override: Option<&'a str>,
    /// Used when the client sent no Host (HTTP/1.0): HTTP/1.1, which we
    /// speak upstream, requires one.
    pub default_host: &'a str,
    /// Ask the upstream to keep the connection open afterwards.
    pub keep_alive: bool,
    /// The client asked to switch protocols: forward Upgrade and
    /// `Connection: upgrade`.
    pub upgrade: bool,
    /// Body framing to announce upstream.
    pub framing: Framing,
    /// The decremented `Max-Forwards` of a TRACE or OPTIONS request, sent
    /// in place of the client's.
    pub max_forwards: Option<u64>,
    /// The route's `request_headers` rules, values expanded.
    pub rules: Option<super::header_rules::Side<'a>>,
}

/// Writes the request head to send upstream.
pub fn write_upstream_request(out: &mut Vec<u8>, req: &httparse::Request, u: &UpstreamRequest) {
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    // An absolute-form target goes upstream in origin form, and its
    // authority becomes the Host (RFC 9112 §3.2.2).
    let (authority, path) = match super::request::split_absolute(target) {
        Some((a, p)) => (Some(a), p),
        None => (None, std::borrow::Cow::Borrowed(target)),
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    // Our version, not the client's: an HTTP/1.0 client's request goes
    // upstream as HTTP/1.1 too, so its upstream connection can be pooled.
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let (named, n) = connection_named(req.headers);
    let named = &named[..n];
    let mut saw_host = false;
    let mut saw_xff = false;
    for h in req.headers.iter() {
        // Expect is answered by forklb itself (it reads the body anyway);
        // HTTP2-Settings only means something with an h2c upgrade, which
        // forklb never relays.
        if is_dropped(h.name, named)
            || name_is(h.name, "x-forwarded-proto")
            || name_is(h.name, "expect")
            || name_is(h.name, "http2-settings")
            || (u.framing != Framing::Chunked && name_is(h.name, "trailer"))
            || (u.max_forwards.is_some() && name_is(h.name, "max-forwards"))
            || u.rules.is_some_and(|r| r.drops(h.name.as_bytes()))
        {
            continue;
        }
        if name_is(h.name, "x-forwarded-for") {
            saw_xff = true;
            continue;
        }
        if name_is(h.name, "host") {
            saw_host = true;
            if u.host_override.is_some() || authority.is_some() {
                continue;
            }
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // A route's rule on these fields wins over forklb's own.
    let ruled = |name: &[u8]| u.rules.is_some_and(|r| r.drops(name));
    if !ruled(b"x-forwarded-for") {
        out.extend_from_slice(b"X-Forwarded-For: ");
        if saw_xff {
            forwarded_for(out, req.headers, u.client_ip);
        } else {
            push_ip(out, u.client_ip);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !ruled(b"x-forwarded-proto") {
        out.extend_from_slice(b"X-Forwarded-Proto: ");
        out.extend_from_slice(u.proto.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = u.max_forwards {
        let _ = write!(out, "Max-Forwards: {n}\r\n");
    }
    if u.upgrade {
        write_upgrade(out, req.headers);
    }
    let host = match u.host_override.or(authority) {
        Some(h) => Some(h),
        None if !saw_host => Some(u.default_host),
        None => None,
    };
    if let Some(h) = host {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(r) = u.rules {
        r.write_h1(out);
    }
    if u.framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(if u.upgrade {
        &b"Connection: upgrade\r\n\r\n"[..]
    } else if u.keep_alive {
        &b"\r\n"[..]
    } else {
        &b"Connection: close\r\n\r\n"[..]
    });
}

/// Every X-Forwarded-For value merged into one list, the client's address
/// last.
fn forwarded_for(out: &mut Vec<u8>, headers: &[httparse::Header], client_ip: IpAddr) {
    for h in headers
        .iter()
        .filter(|h| name_is(h.name, "x-forwarded-for"))
    {
        out.extend_from_slice(super::trim_ows(h.value));
        out.extend_from_slice(b", ");
    }
    push_ip(out, client_ip);
}

/// Writes `ip` as text. An IPv4 address, the common case, digit by digit:
/// `write!` through `Display` costs some 900 instructions per request
/// (callgrind), this a tenth of it.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u32::from(octet));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Writes `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Header fields as owned (name, value) pairs.
pub type FieldList = Vec<(Vec<u8>, Vec<u8>)>;

/// A request bound for an HTTP/2 upstream: its authority (the Host the
/// HTTP/1.1 head would carry) and its fields, named in lower case, with
/// what `write_upstream_request` adds and drops. `te: trailers` stays
/// (gRPC needs it); nothing hop-by-hop does.
pub fn upstream_fields(req: &httparse::Request, u: &UpstreamRequest) -> (Vec<u8>, FieldList) {
    let (named, n) = connection_named(req.headers);
    let named = &named[..n];
    let mut authority: Option<Vec<u8>> = u.host_override.map(|h| h.as_bytes().to_vec());
    let mut fields = Vec::with_capacity(req.headers.len() + 2);
    for h in req.headers.iter() {
        if name_is(h.name, "host") {
            authority.get_or_insert_with(|| h.value.to_vec());
            continue;
        }
        let te_trailers = name_is(h.name, "te") && super::trim_ows(h.value) == b"trailers";
        if (!te_trailers && is_dropped(h.name, named))
            || name_is(h.name, "x-forwarded-proto")
            || name_is(h.name, "x-forwarded-for")
            || name_is(h.name, "expect")
            || name_is(h.name, "http2-settings")
            || (u.max_forwards.is_some() && name_is(h.name, "max-forwards"))
        {
            continue;
        }
        fields.push((h.name.to_ascii_lowercase().into_bytes(), h.value.to_vec()));
    }
    let mut xff = Vec::new();
    forwarded_for(&mut xff, req.headers, u.client_ip);
    fields.push((b"x-forwarded-for".to_vec(), xff));
    fields.push((b"x-forwarded-proto".to_vec(), u.proto.as_bytes().to_vec()));
    if let Some(n) = u.max_forwards {
        fields.push((b"max-forwards".to_vec(), n.to_string().into_bytes()));
    }
    if let Some(r) = u.rules {
        r.edit_list(&mut fields);
    }
    let authority = authority.unwrap_or_else(|| u.default_host.as_bytes().to_vec());
    (authority, fields)
}

/// A Content-Length value that is a list repeating one number (`2, 2`):
/// that number, to send instead. None for a plain value (sent as it came).
pub fn repeated_length(v: &[u8]) -> Option<u64> {
    match super::parse_content_length(v) {
        Some(_) => None,
        None => super::content_length_list(v),
    }
}

/// The client's Upgrade protocols as one header, without HTTP/2 ones
/// (never an upgrade through forklb).
fn write_upgrade(out: &mut Vec<u8>, headers: &[httparse::Header]) {
    out.extend_from_slice(b"Upgrade: ");
    let mut first = true;
    for h in headers.iter().filter(|h| name_is(h.name, "upgrade")) {
        for t in tokens(h.value).filter(|t| !super::request::is_http2_protocol(t)) {
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(t);
            first = false;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response head is passed on to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// A 1xx interim response: no Connection header of ours.
    Interim,
    /// `101 Switching Protocols`: Upgrade kept, `Connection: upgrade`.
    Upgrade,
    /// A body relayed as chunked (Transfer-Encoding kept as sent).
    Chunked { keep_alive: bool },
    /// Anything else (Content-Length, no body, or until close).
    Plain { keep_alive: bool },
}

/// Writes the response head to send to the client. A final response (or a
/// `101`, as nginx does) without `Date` gets `date` (an IMF-fixdate, see
/// `date::DateCache`): a recipient with a clock adds the field (RFC 9110
/// §6.6.1); one the upstream sent is kept as it is.
pub fn write_client_response(
    out: &mut Vec<u8>,
    resp: &httparse::Response,
    mode: ResponseMode,
    client_minor: u8,
    date: &[u8],
    rules: Option<super::header_rules::Side>,
) {
    let status = resp.code.unwrap_or(502);
    let reason = resp.reason.unwrap_or("");
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u32::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let (named, n) = connection_named(resp.headers);
    let named = &named[..n];
    let mut saw_date = false;
    let mut saw_length = false;
    for h in resp.headers.iter() {
        saw_date |= name_is(h.name, "date");
        if name_is(h.name, "content-length") && !length_forbidden(status) {
            // Once, as one number (`response::parse` took `2, 2` or two
            // fields saying 2 as one value and refused anything else).
            if std::mem::replace(&mut saw_length, true) {
                continue;
            }
            if let Some(n) = repeated_length(h.value) {
                let _ = write!(out, "{}: {n}\r\n", h.name);
                continue;
            }
        }
        // A 426 must say which protocols it wants (RFC 9110 §15.5.22): its
        // Upgrade is kept, as nginx and HAProxy keep it.
        let keep = match mode {
            ResponseMode::Chunked { .. } => name_is(h.name, "transfer-encoding"),
            ResponseMode::Upgrade => name_is(h.name, "upgrade"),
            _ => false,
        } || (status == 426 && name_is(h.name, "upgrade"));
        if length_forbidden(status) && name_is(h.name, "content-length") {
            continue;
        }
        // Trailer announces trailer fields, which only a chunked body
        // carries on to the client.
        let no_trailers =
            !matches!(mode, ResponseMode::Chunked { .. }) && name_is(h.name, "trailer");
        if (!keep && is_dropped(h.name, named))
            || no_trailers
            || rules.is_some_and(|r| r.drops(h.name.as_bytes()))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // Interim responses (100, 103) are not stored or shown: they go out as
    // they came, a final response follows with its Date.
    if !saw_date && mode != ResponseMode::Interim {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(r) = rules {
        r.write_h1(out);
    }
    match mode {
        ResponseMode::Interim => {}
        ResponseMode::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
        ResponseMode::Chunked { keep_alive } | ResponseMode::Plain { keep_alive } => {
            if !keep_alive {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if client_minor == 0 {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_rewrite() {
        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 1.1.1.1\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        let mut out = Vec::new();
        let u = UpstreamRequest {
            client_ip: "127.0.0.1".parse().unwrap(),
            proto: "http",
            host_override: Some("one.one.one.one"),
            default_host: "ignored",
            keep_alive: false,
            upgrade: false,
            framing: Framing::None,
            max_forwards: None,
            rules: None,
        };
        write_upstream_request(&mut out, &req, &u);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "GET /x HTTP/1.1\r\nAccept: */*\r\nX-Forwarded-For: 1.1.1.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\nHost: one.one.one.one\r\nConnection: close\r\n\r\n"
        );
    }

    /// An HTTP/1.0 request goes upstream as HTTP/1.1: with the Host it
    /// lacks and, when the pool is on, no `Connection` (1.1 keeps alive).
    #[test]
    fn http10_request_goes_up_as_http11() {
        let raw = b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        let mut out = Vec::new();
        let u = UpstreamRequest {
            client_ip: "127.0.0.1".parse().unwrap(),
            proto: "http",
            host_override: None,
            default_host: "10.0.0.1:80",
            keep_alive: true,
            upgrade: false,
            framing: Framing::None,
            max_forwards: None,
            rules: None,
        };
        write_upstream_request(&mut out, &req, &u);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /old HTTP/1.1\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nHost: 10.0.0.1:80\r\n\r\n"
        );
    }

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn rewrite_response(raw: &[u8], mode: ResponseMode, client_minor: u8) -> String {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(raw).unwrap();
        let mut out = Vec::new();
        write_client_response(&mut out, &resp, mode, client_minor, DATE, None);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            rewrite_response(raw, ResponseMode::Plain { keep_alive: false }, 1),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn upstream_date_is_kept() {
        let raw =
            b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            rewrite_response(raw, ResponseMode::Plain { keep_alive: true }, 1),
            "HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\n\r\n"
        );
        // Interim responses get none of ours.
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n";
        assert_eq!(
            rewrite_response(raw, ResponseMode::Interim, 1),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        );
    }

    /// A chunked response for an HTTP/1.0 client goes out in `Plain` mode:
    /// Transfer-Encoding and Trailer are gone, and keep-alive is echoed only
    /// when the connection stays.
    #[test]
    fn http10_client_gets_no_chunked_header() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
        assert_eq!(
            rewrite_response(raw, ResponseMode::Plain { keep_alive: false }, 0),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n"
        );
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            rewrite_response(raw, ResponseMode::Plain { keep_alive: true }, 0),
            "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn ip_and_decimal_writers_match_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
        for n in [0u32, 7, 10, 99, 100, 204, 599, 65_535, u32::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
