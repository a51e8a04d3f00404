//! Where an HTTP/1.x message ends in the bytes one end of a scripted
//! exchange has collected, and the message cut into head and body. Only
//! what the tests need: the body is kept as it was on the wire (a chunked
//! body stays chunked), so a test can check exactly what was relayed.

/// One request or response, as received.
#[derive(Debug, Clone)]
pub struct Message {
    /// The head, request or status line included, up to and with its blank line.
    pub head: String,
    /// The body bytes as they were on the wire.
    pub body: Vec<u8>,
    /// The status code (responses only; 0 for a request).
    pub status: u16,
    /// `(name, value)` of each header field, in order.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// The value of the first `name` field (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first line (`GET / HTTP/1.1`, `HTTP/1.1 200 OK`).
    pub fn start_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Which message a buffer holds; a response's body depends on the request
/// (HEAD) and on its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    ResponseToHead,
}

/// The message at the start of `buf`, and its length, if it is complete.
/// `closed`: the sender has closed, so a body delimited by the close ends
/// at the end of `buf`.
pub fn parse(buf: &[u8], kind: Kind, closed: bool) -> Option<(Message, usize)> {
    let head_len = find(buf, b"\r\n\r\n")? + 4;
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let (status, raw_headers): (u16, &[httparse::Header]) = if kind == Kind::Request {
        let mut req = httparse::Request::new(&mut fields);
        // Not a request a test can make sense of: let the caller time out
        // and show the bytes.
        req.parse(&buf[..head_len]).ok()?;
        (0, req.headers)
    } else {
        let mut resp = httparse::Response::new(&mut fields);
        resp.parse(&buf[..head_len]).ok()?;
        (resp.code.unwrap_or(0), resp.headers)
    };
    let headers: Vec<(String, String)> = raw_headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let has_token = |name: &str, token: &str| {
        headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case(name)
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let rest = &buf[head_len..];
    let no_body = match kind {
        Kind::Request => false,
        Kind::Response => status < 200 || status == 204 || status == 304,
        Kind::ResponseToHead => true,
    };
    let body_len = if no_body {
        0
    } else if has_token("transfer-encoding", "chunked") {
        chunked_len(rest)?
    } else if let Some(n) = length {
        (rest.len() >= n).then_some(n)?
    } else if kind == Kind::Request {
        0
    } else if closed {
        rest.len()
    } else {
        return None;
    };
    let message = Message {
        head: String::from_utf8_lossy(&buf[..head_len]).into_owned(),
        body: rest[..body_len].to_vec(),
        status,
        headers,
    };
    Some((message, head_len + body_len))
}

/// The length of the complete chunked body at the start of `buf`
/// (chunks, last chunk and trailer section), if it is all there.
fn chunked_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer fields, then the blank line.
            loop {
                let end = pos + find(&buf[pos..], b"\r\n")?;
                let blank = end == pos;
                pos = end + 2;
                if blank {
                    return Some(pos);
                }
            }
        }
        pos += size + 2;
        if pos > buf.len() {
            return None;
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_by_length_chunks_and_close() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1";
        let (m, n) = parse(r, Kind::Response, false).expect("complete");
        assert_eq!((m.status, m.body.as_slice(), n), (200, &b"hi"[..], 40));
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\nhi\r\n0\r\nT: 1\r\n\r\n";
        let (m, n) = parse(c, Kind::Response, false).expect("complete");
        assert_eq!((m.body.len(), n), (22, c.len()));
        assert!(parse(&c[..c.len() - 1], Kind::Response, false).is_none());
        let e = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert!(parse(e, Kind::Response, false).is_none());
        assert_eq!(
            parse(e, Kind::Response, true).expect("closed").0.body_str(),
            "until close"
        );
        let q = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(q, Kind::Request, false).expect("request").1, q.len());
    }
}
