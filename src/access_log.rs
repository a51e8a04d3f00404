//! The access log: one line per request, in nginx's `combined` format
//! extended with the upstream's address, status and timings, or as JSON.
//!
//! Each worker formats into its own buffer and writes it with one
//! `write(2)` on an `O_APPEND` descriptor when it grows past a threshold, at
//! least every second, and at exit — so lines from several workers never
//! interleave and a request costs no syscall of its own. USR1 reopens the
//! file (logrotate).

use crate::config::AccessLogFormat;
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Flush when the buffer holds this much.
const FLUSH_BYTES: usize = 32 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What is known about one request when it is logged.
pub struct Entry<'a> {
    pub client: SocketAddr,
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`, as the client spoke; for a
    /// head refused as malformed, what its request line said (maybe empty).
    pub protocol: &'a [u8],
    pub status: u16,
    pub body_bytes: u64,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    pub upstream: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
    /// `$request_id`.
    pub request_id: crate::http::request_id::RequestId,
}

pub struct AccessLog {
    sink: Option<(PathBuf, File)>,
    format: AccessLogFormat,
    buf: Vec<u8>,
    /// The formatted time of the current second, reused within it.
    time_cache: (u64, String),
}

pub fn open(path: &Path) -> io::Result<File> {
    crate::log::open_append(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open access log {}: {e}", path.display()),
        )
    })
}

impl AccessLog {
    pub fn disabled() -> AccessLog {
        AccessLog {
            sink: None,
            format: AccessLogFormat::Combined,
            buf: Vec::new(),
            time_cache: (u64::MAX, String::new()),
        }
    }

    pub fn new(path: PathBuf, file: File, format: AccessLogFormat) -> AccessLog {
        AccessLog {
            sink: Some((path, file)),
            format,
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            time_cache: (u64::MAX, String::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn record(&mut self, e: &Entry) {
        if self.sink.is_none() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.time_cache.0 != now {
            self.time_cache = (now, format_time(now, self.format));
        }
        let time = &self.time_cache.1;
        let buf = &mut self.buf;
        match self.format {
            AccessLogFormat::Combined => write_combined(buf, e, time),
            AccessLogFormat::Json => write_json(buf, e, time),
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Writes the buffered lines. Errors are reported once per flush in the
    /// error log; the lines are dropped rather than grow without bound.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some((path, file)) = self.sink.as_mut() {
            if let Err(e) = file.write_all(&self.buf) {
                log::error!("cannot write access log {}: {e}", path.display());
            }
        }
        self.buf.clear();
    }

    /// Flushes, then re-opens the file by path (after logrotate moved it).
    pub fn reopen(&mut self) {
        self.flush();
        if let Some((path, file)) = self.sink.as_mut() {
            match open(path) {
                Ok(f) => *file = f,
                Err(e) => log::error!("{e}"),
            }
        }
    }
}

/// One line in nginx's `combined` format plus the upstream fields:
/// $remote_addr - - [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent" upstream=...
#[inline]
fn write_combined(buf: &mut Vec<u8>, e: &Entry, time: &str) {
    let _ = write!(buf, "{} - - [{time}] \"", e.client.ip());
    // `$request`: a malformed line may lack a target or a protocol.
    push_escaped(buf, e.method);
    for part in [e.target, e.protocol] {
        if !part.is_empty() {
            buf.push(b' ');
            push_escaped(buf, part);
        }
    }
    // `{:03}`: a request cut with no status at all is nginx's `000`.
    let _ = write!(buf, "\" {:03} {} \"", e.status, e.body_bytes);
    push_or_dash(buf, e.referer);
    buf.extend_from_slice(b"\" \"");
    push_or_dash(buf, e.user_agent);
    buf.extend_from_slice(b"\" upstream=");
    match e.upstream {
        Some(a) => {
            let _ = write!(buf, "{a}");
        }
        None => buf.push(b'-'),
    }
    buf.extend_from_slice(b" upstream_status=");
    match e.upstream_status {
        Some(s) => {
            let _ = write!(buf, "{s}");
        }
        None => buf.push(b'-'),
    }
    let _ = write!(
        buf,
        " request_time={:.3} upstream_response_time=",
        e.request_time.as_secs_f64()
    );
    match e.upstream_time {
        Some(t) => {
            let _ = write!(buf, "{:.3}", t.as_secs_f64());
        }
        None => buf.push(b'-'),
    }
    buf.extend_from_slice(b" request_id=");
    e.request_id.push_hex(buf);
    buf.push(b'\n');
}

/// One JSON object per line; absent upstream fields are `null`.
#[inline]
fn write_json(buf: &mut Vec<u8>, e: &Entry, time: &str) {
    let _ = write!(
        buf,
        "{{\"time\":\"{time}\",\"remote_addr\":\"{}\",\"method\":\"",
        e.client.ip()
    );
    push_json(buf, e.method);
    buf.extend_from_slice(b"\",\"uri\":\"");
    push_json(buf, e.target);
    buf.extend_from_slice(b"\",\"protocol\":\"");
    push_json(buf, e.protocol);
    let _ = write!(
        buf,
        "\",\"status\":{},\"body_bytes_sent\":{},\"referer\":\"",
        e.status, e.body_bytes
    );
    push_json(buf, e.referer);
    buf.extend_from_slice(b"\",\"user_agent\":\"");
    push_json(buf, e.user_agent);
    buf.extend_from_slice(b"\",\"upstream_addr\":");
    match e.upstream {
        Some(a) => {
            let _ = write!(buf, "\"{a}\"");
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"upstream_status\":");
    match e.upstream_status {
        Some(s) => {
            let _ = write!(buf, "{s}");
        }
        None => buf.extend_from_slice(b"null"),
    }
    let _ = write!(
        buf,
        ",\"request_time\":{:.3},\"upstream_response_time\":",
        e.request_time.as_secs_f64()
    );
    match e.upstream_time {
        Some(t) => {
            let _ = write!(buf, "{:.3}", t.as_secs_f64());
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"request_id\":\"");
    e.request_id.push_hex(buf);
    buf.extend_from_slice(b"\"}\n");
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Bytes from the request as nginx logs them: printable ASCII as is,
/// `"` and `\` and everything else as `\xHH`.
fn push_escaped(buf: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            buf.push(b);
        } else {
            let _ = write!(buf, "\\x{b:02X}");
        }
    }
}

fn push_or_dash(buf: &mut Vec<u8>, s: &[u8]) {
    if s.is_empty() {
        buf.push(b'-');
    } else {
        push_escaped(buf, s);
    }
}

/// A JSON string body: `"`, `\` and control characters escaped; valid
/// UTF-8 (a URI's `café`, a browser's User-Agent) as it is, as nginx's
/// `escape=json`; a byte that is not part of valid UTF-8 as the text `\xHH`
/// (JSON `\\xHH`), so it cannot be read as the character U+00HH and the
/// line is always valid JSON.
fn push_json(buf: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => buf.extend_from_slice(b"\\\""),
                '\\' => buf.extend_from_slice(b"\\\\"),
                '\u{20}'..='\u{7e}' => buf.push(c as u8),
                c if c.is_control() => {
                    let _ = write!(buf, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        for b in chunk.invalid() {
            let _ = write!(buf, "\\\\x{b:02x}");
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `21/Nov/2026:13:40:00 +0000` (combined) or `2026-11-21T13:40:00+00:00` (JSON), UTC.
fn format_time(secs: u64, format: AccessLogFormat) -> String {
    let (y, mo, d) = crate::log::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    match format {
        AccessLogFormat::Combined => format!(
            "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
            MONTHS[(mo as usize).saturating_sub(1) % 12]
        ),
        AccessLogFormat::Json => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00"),
    }
}

/// Instant arithmetic for timings that may not have started.
pub fn since(start: Option<Instant>, now: Instant) -> Option<Duration> {
    start.map(|s| now.saturating_duration_since(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "127.0.0.1:5555".parse().unwrap(),
            method: b"GET",
            target: b"/a\"b",
            protocol: b"HTTP/1.1",
            status: 200,
            body_bytes: 5,
            referer: b"",
            user_agent: b"curl/8",
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            upstream_status: Some(200),
            request_time: Duration::from_millis(12),
            upstream_time: Some(Duration::from_millis(10)),
            request_id: crate::http::request_id::RequestId {
                process: 0x0123_4567_89ab_cdef,
                seq: 42,
            },
        }
    }

    fn render(format: AccessLogFormat) -> String {
        let mut log = AccessLog::disabled();
        log.format = format;
        // Pretend to be enabled without a file: format only.
        log.sink = Some((
            PathBuf::from("/dev/null"),
            open(Path::new("/dev/null")).unwrap(),
        ));
        log.record(&entry());
        let s = String::from_utf8(log.buf.clone()).unwrap();
        log.buf.clear();
        s
    }

    #[test]
    fn combined_line() {
        let s = render(AccessLogFormat::Combined);
        assert!(s.starts_with("127.0.0.1 - - ["), "{s}");
        assert!(
            s.ends_with("] \"GET /a\\x22b HTTP/1.1\" 200 5 \"-\" \"curl/8\" upstream=127.0.0.1:9001 upstream_status=200 request_time=0.012 upstream_response_time=0.010 request_id=0123456789abcdef000000000000002a\n"),
            "{s}"
        );
    }

    #[test]
    fn json_line() {
        let s = render(AccessLogFormat::Json);
        assert!(s.contains("\"uri\":\"/a\\\"b\""), "{s}");
        assert!(s.contains("\"status\":200,\"body_bytes_sent\":5"), "{s}");
        assert!(
            s.ends_with("\"request_time\":0.012,\"upstream_response_time\":0.010,\"request_id\":\"0123456789abcdef000000000000002a\"}\n"),
            "{s}"
        );
    }

    /// UTF-8 goes as it is; other bytes as `\\xHH` text, never as the
    /// Latin-1 character of the same number.
    #[test]
    fn json_strings_keep_utf8_and_mark_other_bytes() {
        let mut buf = Vec::new();
        push_json(&mut buf, "caf\u{e9} \u{1f600}\t\"".as_bytes());
        push_json(&mut buf, b"\xff\xc3");
        let s = String::from_utf8(buf).expect("valid UTF-8 out");
        assert_eq!(s, "caf\u{e9} \u{1f600}\\u0009\\\"\\\\xff\\\\xc3");
    }

    #[test]
    fn time_formats() {
        let t = 1_795_219_200 + 13 * 3600 + 40 * 60;
        assert_eq!(
            format_time(t, AccessLogFormat::Combined),
            "21/Nov/2026:13:40:00 +0000"
        );
        assert_eq!(
            format_time(t, AccessLogFormat::Json),
            "2026-11-21T13:40:00+00:00"
        );
    }
}
