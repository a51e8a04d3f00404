//! Status lines and the short bodies of responses forklb generates itself.

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// A response forklb generates itself.
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    /// More header lines, each ending in CRLF.
    pub extra_headers: &'a [u8],
    pub body: &'a [u8],
    pub keep_alive: bool,
    /// The answer to HEAD: the body is omitted (but still counted).
    pub head_only: bool,
}

/// Whether a response forklb makes itself says its Content-Length: not a
/// 204 (RFC 9110 §8.6), nor a 304, whose length would describe a
/// representation forklb does not have. Neither has a body (`return`
/// refuses one at load).
pub fn own_response_has_length(status: u16) -> bool {
    !matches!(status, 204 | 304)
}

/// Appends a complete local response: status line, Server, Date,
/// Content-Type, Content-Length, the extra header lines, Connection, then
/// the body. `date` is an IMF-fixdate (see `date::DateCache`).
pub fn write_response(out: &mut Vec<u8>, r: &Reply, date: &[u8]) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: forklb\r\nDate: ",
        r.status,
        reason(r.status)
    );
    out.extend_from_slice(date);
    let _ = write!(out, "\r\nContent-Type: {}\r\n", r.content_type);
    if own_response_has_length(r.status) {
        let _ = write!(out, "Content-Length: {}\r\n", r.body.len());
    }
    out.extend_from_slice(r.extra_headers);
    out.extend_from_slice(if r.keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !r.head_only {
        out.extend_from_slice(r.body);
    }
}

/// Length of the body `write_error` sends for `status`.
pub fn error_body_len(status: u16) -> usize {
    reason(status).len().min(63) + 1
}

/// Appends a short error page for `status` (its reason phrase and a newline).
pub fn write_error(out: &mut Vec<u8>, status: u16, keep_alive: bool, head_only: bool, date: &[u8]) {
    let mut body = [0u8; 64];
    let text = reason(status).as_bytes();
    let n = text.len().min(body.len() - 1);
    body[..n].copy_from_slice(&text[..n]);
    body[n] = b'\n';
    let reply = Reply {
        status,
        content_type: "text/plain",
        extra_headers: b"",
        body: &body[..=n],
        keep_alive,
        head_only,
    };
    write_response(out, &reply, date);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            502,
            false,
            false,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "HTTP/1.1 502 Bad Gateway\r\nServer: forklb\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        ));
        assert!(s.contains("Content-Length: 12\r\n"));
        assert!(s.contains("Connection: close\r\n\r\nBad Gateway\n"));
    }
}
