//! What the access log needs of a request after its head is consumed:
//! method, target, protocol, Referer and User-Agent, back to back in one
//! pooled vector (no allocation per request), taken only while the log is
//! on. A head refused as malformed is recorded by its raw request line, as
//! nginx logs `$request`.

use super::env::Env;
use crate::access_log;
use crate::http;
use std::net::SocketAddr;
use std::time::Instant;

pub struct Record {
    bytes: Vec<u8>,
    /// Where method, target, protocol, Referer and User-Agent end.
    ends: [usize; 5],
    started: Instant,
}

/// The fields of a record, in their order in `Record::bytes`.
const METHOD: usize = 0;
const TARGET: usize = 1;
const PROTOCOL: usize = 2;
const REFERER: usize = 3;
const USER_AGENT: usize = 4;

/// How a request ended, for its log line.
pub struct Outcome {
    pub client: SocketAddr,
    pub status: u16,
    pub body_bytes: u64,
    pub upstream: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub upstream_started: Option<Instant>,
    pub request_id: crate::http::request_id::RequestId,
}

impl Record {
    /// The record of a request, if the access log is on.
    #[inline]
    pub fn capture(
        env: &mut Env,
        method: &str,
        target: &str,
        headers: &[httparse::Header],
        protocol: &'static str,
    ) -> Option<Box<Record>> {
        if !env.access.enabled() {
            return None;
        }
        Some(Record::take_parsed(env, method, target, headers, protocol))
    }

    /// The record of a head refused before it parsed, if the log is on:
    /// its request line as the client sent it (method, target and
    /// protocol split at the first and last space; a line without them is
    /// all "method"), as much of it as came; `-` when none did.
    pub fn capture_raw(env: &mut Env, head: &[u8]) -> Option<Box<Record>> {
        if !env.access.enabled() {
            return None;
        }
        let line = raw_request_line(head).unwrap_or(b"-");
        let (method, rest) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        let (target, protocol) = match rest.iter().rposition(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        Some(Record::take(env, [method, target, protocol, b"", b""]))
    }

    #[inline(never)]
    fn take_parsed(
        env: &mut Env,
        method: &str,
        target: &str,
        headers: &[httparse::Header],
        protocol: &'static str,
    ) -> Box<Record> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| http::name_is(h.name, name))
                .map_or(&[][..], |h| h.value)
        };
        Record::take(
            env,
            [
                method.as_bytes(),
                target.as_bytes(),
                protocol.as_bytes(),
                header("referer"),
                header("user-agent"),
            ],
        )
    }

    fn take(env: &mut Env, fields: [&[u8]; 5]) -> Box<Record> {
        let mut bytes = env.heads.get();
        let mut ends = [0usize; 5];
        for (end, field) in ends.iter_mut().zip(fields) {
            bytes.extend_from_slice(field);
            *end = bytes.len();
        }
        Box::new(Record {
            bytes,
            ends,
            started: env.now,
        })
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..self.ends[i]).unwrap_or(&[])
    }

    /// Writes the log line; the vector goes back to the pool.
    pub fn write(self, env: &mut Env, o: &Outcome) {
        env.access.record(&access_log::Entry {
            client: o.client,
            method: self.field(METHOD),
            target: self.field(TARGET),
            protocol: self.field(PROTOCOL),
            status: o.status,
            body_bytes: o.body_bytes,
            referer: self.field(REFERER),
            user_agent: self.field(USER_AGENT),
            upstream: o.upstream,
            upstream_status: o.upstream_status,
            request_time: env.now.saturating_duration_since(self.started),
            upstream_time: access_log::since(o.upstream_started, env.now),
            request_id: o.request_id,
        });
        env.heads.put(self.bytes);
    }

    /// Drops the record unwritten; the vector goes back to the pool.
    pub fn discard(self, env: &mut Env) {
        env.heads.put(self.bytes);
    }
}

/// The first line of a head (after the empty lines RFC 9112 §2.2 lets a
/// client send first), without its CR — as much of it as came, as nginx
/// logs a client that sent `G` and left as `"G"`; None when nothing but
/// empty lines came.
fn raw_request_line(head: &[u8]) -> Option<&[u8]> {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let head = &head[start..];
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::raw_request_line;

    #[test]
    fn the_raw_line_is_the_first_complete_one() {
        assert_eq!(
            raw_request_line(b"\r\nGET /a b HTTP/1.1\r\nHost: h\r\n"),
            Some(&b"GET /a b HTTP/1.1"[..])
        );
        assert_eq!(raw_request_line(b"GET /nine\n"), Some(&b"GET /nine"[..]));
        assert_eq!(
            raw_request_line(b"GET /partial HTTP/1."),
            Some(&b"GET /partial HTTP/1."[..])
        );
        assert_eq!(raw_request_line(b"\r\n"), None);
    }
}
