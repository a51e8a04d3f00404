//! Header rewriting between client and upstream. Hop-by-hop headers
//! (Connection and everything it names, Keep-Alive, Proxy-Connection, TE,
//! Trailer, Upgrade, Transfer-Encoding) never cross the proxy; forklb adds
//! its own Connection and framing headers and the X-Forwarded-* pair.

use super::{name_is, tokens, Framing};
use std::io::Write;
use std::net::IpAddr;

/// Headers that describe one hop only (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ];
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

fn is_dropped(name: &str, named: &[&[u8]]) -> bool {
    is_hop_by_hop(name)
        || named
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
}

/// What the upstream request needs besides the client's head.
pub struct UpstreamRequest<'a> {
    pub client_ip: IpAddr,
    /// `http` or `https`: the scheme the client used.
    pub proto: &'static str,
    /// Replaces the client's Host (`host_header`).
    pub host_override: Option<&'a str>,
    /// Used when the client sent no Host (HTTP/1.0).
    pub default_host: &'a str,
    /// Ask the upstream to keep the connection open afterwards.
    pub keep_alive: bool,
    /// The client asked to switch protocols: forward Upgrade and
    /// `Connection: upgrade`.
    pub upgrade: bool,
    /// Speak HTTP/1.0 upstream (for HTTP/1.0 clients, so that the response
    /// never comes back chunked).
    pub http10: bool,
    /// Body framing to announce upstream.
    pub framing: Framing,
    /// The decremented `Max-Forwards` of a TRACE or OPTIONS request, sent
    /// in place of the client's.
    pub max_forwards: Option<u64>,
}

/// Writes the request head to send upstream.
pub fn write_upstream_request(out: &mut Vec<u8>, req: &httparse::Request, u: &UpstreamRequest) {
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    // An absolute-form target goes upstream in origin form, and its
    // authority becomes the Host (RFC 9112 §3.2.2).
    let (authority, path) = match super::request::split_absolute(target) {
        Some((a, p)) => (Some(a), p),
        None => (None, target),
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(if u.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

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
            || (u.max_forwards.is_some() && name_is(h.name, "max-forwards"))
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
    // Every X-Forwarded-For merged into one list, the client's address last.
    out.extend_from_slice(b"X-Forwarded-For: ");
    if saw_xff {
        for h in req
            .headers
            .iter()
            .filter(|h| name_is(h.name, "x-forwarded-for"))
        {
            out.extend_from_slice(super::trim_ows(h.value));
            out.extend_from_slice(b", ");
        }
    }
    let _ = write!(out, "{}\r\n", u.client_ip);
    let _ = write!(out, "X-Forwarded-Proto: {}\r\n", u.proto);
    if let Some(n) = u.max_forwards {
        let _ = write!(out, "Max-Forwards: {n}\r\n");
    }
    if u.upgrade {
        write_upgrade(out, req.headers);
    }
    match u.host_override.or(authority) {
        Some(h) => {
            let _ = write!(out, "Host: {h}\r\n");
        }
        None if !saw_host => {
            let _ = write!(out, "Host: {}\r\n", u.default_host);
        }
        None => {}
    }
    if u.framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(if u.upgrade {
        &b"Connection: upgrade\r\n\r\n"[..]
    } else if u.keep_alive {
        if u.http10 {
            &b"Connection: keep-alive\r\n\r\n"[..]
        } else {
            &b"\r\n"[..]
        }
    } else {
        &b"Connection: close\r\n\r\n"[..]
    });
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

/// Writes the response head to send to the client.
pub fn write_client_response(
    out: &mut Vec<u8>,
    resp: &httparse::Response,
    mode: ResponseMode,
    client_minor: u8,
) {
    let status = resp.code.unwrap_or(502);
    let reason = resp.reason.unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    let (named, n) = connection_named(resp.headers);
    let named = &named[..n];
    for h in resp.headers.iter() {
        let keep = match mode {
            ResponseMode::Chunked { .. } => name_is(h.name, "transfer-encoding"),
            ResponseMode::Upgrade => name_is(h.name, "upgrade"),
            _ => false,
        };
        if !keep && is_dropped(h.name, named) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
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
            http10: false,
            framing: Framing::None,
            max_forwards: None,
        };
        write_upstream_request(&mut out, &req, &u);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "GET /x HTTP/1.1\r\nAccept: */*\r\nX-Forwarded-For: 1.1.1.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\nHost: one.one.one.one\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nhi";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(raw).unwrap();
        let mut out = Vec::new();
        write_client_response(
            &mut out,
            &resp,
            ResponseMode::Plain { keep_alive: false },
            1,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }
}
