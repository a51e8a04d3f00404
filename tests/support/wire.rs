//! HTTP/1.1 wire helpers shared by the client, the backends and the TLS helpers.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

pub(crate) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A message head: the start line and the header fields in order.
pub(crate) type Head = (String, Vec<(String, String)>);

/// A stream with a read buffer, for reading HTTP messages one at a time:
/// a TCP socket, or (tests/support/tls.rs) a TLS session over one.
pub(crate) struct Wire<S = TcpStream> {
    pub(crate) stream: S,
    pub(crate) buf: Vec<u8>,
    /// Counts every byte read from the socket (backends: "received nothing").
    pub(crate) counter: Option<Arc<AtomicUsize>>,
}

impl Wire {
    pub(crate) fn new(stream: TcpStream) -> io::Result<Wire> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Wire {
            stream,
            buf: Vec::new(),
            counter: None,
        })
    }
}

impl<S: Read> Wire<S> {
    /// Reads more bytes into the buffer; returns how many (0 at EOF).
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        if let Some(c) = &self.counter {
            c.fetch_add(n, Ordering::SeqCst);
        }
        Ok(n)
    }

    /// Reads one message head (through the empty line). `Ok(None)` when the peer
    /// closed cleanly before sending anything.
    pub(crate) fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return parse_head(&head[..pos]).map(Some);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("message head too large"));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside a message head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    pub(crate) fn read_exact_body(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {n} body bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub(crate) fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a chunked body",
                ));
            }
        }
    }

    /// Reads a chunked body and returns the de-chunked bytes.
    pub(crate) fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    /// Like `read_line`, but returns the line's exact bytes (without CRLF).
    pub(crate) fn read_line_raw(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a chunked body",
                ));
            }
        }
    }

    /// Reads a chunked body; returns (de-chunked bytes, exact wire bytes).
    /// Lenient like many origin servers (the size is trimmed), which makes
    /// a backend built on it a good detector of bodies relayed mis-framed.
    pub(crate) fn read_chunked_raw(&mut self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut body = Vec::new();
        let mut raw = Vec::new();
        loop {
            let line = self.read_line_raw()?;
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
            let text = String::from_utf8_lossy(&line).into_owned();
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let t = self.read_line_raw()?;
                    raw.extend_from_slice(&t);
                    raw.extend_from_slice(b"\r\n");
                    if t.is_empty() {
                        return Ok((body, raw));
                    }
                }
            }
            let data = self.read_exact_body(size)?;
            raw.extend_from_slice(&data);
            body.extend(data);
            let end = self.read_line_raw()?;
            if !end.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
            raw.extend_from_slice(b"\r\n");
        }
    }

    pub(crate) fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads a message body framed by `headers` (request: no body without
    /// Content-Length or chunked; response: until EOF).
    pub(crate) fn read_body(
        &mut self,
        headers: &[(String, String)],
        response: bool,
    ) -> io::Result<Vec<u8>> {
        if has_token(headers, "transfer-encoding", "chunked") {
            self.read_chunked()
        } else if let Some(cl) = header_value(headers, "content-length") {
            let n: usize = cl
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {cl:?}")))?;
            self.read_exact_body(n)
        } else if response {
            self.read_to_eof()
        } else {
            Ok(Vec::new())
        }
    }

    /// Reads the next response head, interim (1xx) or final, as a
    /// `Response` with an empty body; a closed connection is an error.
    pub(crate) fn read_response_head(&mut self) -> io::Result<Response> {
        let (start, headers) = self.read_head()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_owned();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {start:?}")))?;
        let reason = parts.next().unwrap_or("").to_owned();
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads the next final response (1xx skipped); `head_request`: the
    /// request was a HEAD, so the response has no body.
    pub(crate) fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let mut r = self.read_response_head()?;
            if !r.version.starts_with("HTTP/1.") {
                return Err(invalid(format!(
                    "bad status line {:?}",
                    format!("{} {} {}", r.version, r.status, r.reason)
                )));
            }
            if (100..200).contains(&r.status) {
                continue;
            }
            if !(head_request || r.status == 204 || r.status == 304) {
                r.body = self.read_body(&r.headers, true)?;
            }
            return Ok(r);
        }
    }
}

pub(crate) fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((start, headers))
}
