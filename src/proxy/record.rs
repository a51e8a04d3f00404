//! What the access log needs of a request after its head is consumed:
//! method, target, Referer and User-Agent, back to back in one pooled
//! vector (no allocation per request), taken only while the log is on.

use super::env::Env;
use crate::access_log;
use crate::http;
use std::net::SocketAddr;
use std::time::Instant;

pub struct Record {
    bytes: Vec<u8>,
    ends: [usize; 4],
    protocol: &'static str,
    started: Instant,
}

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
        Some(Record::take(env, method, target, headers, protocol))
    }

    #[inline(never)]
    fn take(
        env: &mut Env,
        method: &str,
        target: &str,
        headers: &[httparse::Header],
        protocol: &'static str,
    ) -> Box<Record> {
        let mut bytes = env.heads.get();
        let mut ends = [0usize; 4];
        bytes.extend_from_slice(method.as_bytes());
        ends[0] = bytes.len();
        bytes.extend_from_slice(target.as_bytes());
        ends[1] = bytes.len();
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| http::name_is(h.name, name))
                .map_or(&[][..], |h| h.value)
        };
        bytes.extend_from_slice(header("referer"));
        ends[2] = bytes.len();
        bytes.extend_from_slice(header("user-agent"));
        ends[3] = bytes.len();
        Box::new(Record {
            bytes,
            ends,
            protocol,
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
            method: self.field(0),
            target: self.field(1),
            protocol: self.protocol,
            status: o.status,
            body_bytes: o.body_bytes,
            referer: self.field(2),
            user_agent: self.field(3),
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
