//! Upstream response heads: parse, validate framing the same strict way as
//! requests (a response we cannot frame unambiguously becomes a 502 and its
//! connection is never reused), and decide how the body is delimited.

use super::{name_is, tokens, Framing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseError {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    pub head_len: usize,
    pub status: u16,
    pub minor: u8,
    pub framing: Framing,
    /// The upstream allows reusing the connection after this response.
    pub keep_alive: bool,
}

pub enum Parsed<'h, 'b> {
    Complete(httparse::Response<'h, 'b>, ResponseInfo),
    Partial,
}

/// RFC 9110 §2.5: a status line of a higher 1.x minor (`HTTP/1.2 200`) is
/// read as the highest minor we implement, as nginx and HAProxy read it;
/// httparse knows only 1.0 and 1.1, so the digit becomes `1` in place (the
/// client gets forklb's own status line either way).
pub fn read_higher_minor_as_1_1(buf: &mut [u8]) {
    if buf.len() > 8
        && buf.starts_with(b"HTTP/1.")
        && (b'2'..=b'9').contains(&buf[7])
        && buf[8] == b' '
    {
        buf[7] = b'1';
    }
}

/// Parses the response head at the start of `buf`; `request_was_head`
/// decides whether a body follows.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    request_was_head: bool,
) -> Result<Parsed<'h, 'b>, ResponseError> {
    let mut resp = httparse::Response::new(headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => {
            return Err(ResponseError {
                reason: "malformed response head",
            })
        }
    };
    if super::request::has_bare_lf(&buf[..head_len]) {
        return Err(ResponseError {
            reason: "bare LF in response head",
        });
    }
    let status = resp.code.unwrap_or(0);
    // httparse takes any three digits; under 100 is no status code at all
    // (RFC 9110 §15), and would go out as fewer digits ("099" as "99").
    if status < 100 {
        return Err(ResponseError {
            reason: "status code below 100",
        });
    }
    let minor = resp.version.unwrap_or(1);
    let mut content_length: Option<u64> = None;
    let mut has_te = false;
    // The transfer codings over all Transfer-Encoding lines, and whether
    // each was `chunked`.
    let mut codings = 0usize;
    let mut only_chunked = true;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for h in resp.headers.iter() {
        if name_is(h.name, "content-length") {
            // One value, maybe repeated (`2, 2`, two fields saying 2): the
            // writers send it once (`rewrite::repeated_length`).
            let n = crate::http::content_length_list(h.value).ok_or(ResponseError {
                reason: "invalid Content-Length",
            })?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ResponseError {
                    reason: "more than one Content-Length",
                });
            }
            content_length = Some(n);
        } else if name_is(h.name, "transfer-encoding") {
            has_te = true;
            for coding in tokens(h.value) {
                codings += 1;
                only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name_is(h.name, "connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        }
    }
    if has_te && content_length.is_some() {
        return Err(ResponseError {
            reason: "both Content-Length and Transfer-Encoding",
        });
    }
    let bodyless = request_was_head || super::status_has_no_body(status);
    // A body coded with anything but chunked alone (`gzip, chunked`,
    // `chunked, gzip`, chunked twice) cannot reach the client as it came:
    // HTTP/1.1 clients never asked for the coding (we do not pass their
    // TE on), HTTP/1.0 and HTTP/2 ones cannot take transfer codings, and
    // dropping the header would hand them coded bytes as the content. A
    // 502, as HAProxy answers.
    if has_te && !bodyless && !(codings == 1 && only_chunked) {
        return Err(ResponseError {
            reason: "a transfer coding other than chunked",
        });
    }
    let framing = if bodyless {
        Framing::None
    } else if has_te {
        Framing::Chunked
    } else {
        match content_length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // An HTTP/1.0 message with Transfer-Encoding has faulty framing: the
    // connection closes after it (RFC 9112 §6.1), whatever it says.
    let keep_alive = framing != Framing::UntilClose
        && !(has_te && minor == 0)
        && if minor >= 1 {
            !conn_close
        } else {
            conn_keep_alive && !conn_close
        };
    Ok(Parsed::Complete(
        resp,
        ResponseInfo {
            head_len,
            status,
            minor,
            framing,
            keep_alive,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(raw: &[u8], head: bool) -> Result<ResponseInfo, ResponseError> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        match parse(raw, &mut headers, head)? {
            Parsed::Complete(_, i) => Ok(i),
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn status_codes_under_100_are_refused() {
        for line in ["000", "001", "010", "099"] {
            let head = format!("HTTP/1.1 {line} X\r\nContent-Length: 0\r\n\r\n");
            assert!(info(head.as_bytes(), false).is_err(), "{line}");
        }
        for line in ["100 Continue", "599 X", "200 OK"] {
            let head = format!("HTTP/1.1 {line}\r\nContent-Length: 0\r\n\r\n");
            assert!(info(head.as_bytes(), false).is_ok(), "{line}");
        }
    }

    #[test]
    fn framings() {
        assert_eq!(
            info(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false)
                .unwrap()
                .framing,
            Framing::Length(5)
        );
        assert_eq!(
            info(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
                .unwrap()
                .framing,
            Framing::None
        );
        assert_eq!(
            info(b"HTTP/1.1 204 No Content\r\n\r\n", false)
                .unwrap()
                .framing,
            Framing::None
        );
        assert_eq!(
            info(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .unwrap()
            .framing,
            Framing::Chunked
        );
        let close = info(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(close.framing, Framing::UntilClose);
        assert!(!close.keep_alive);
        assert!(info(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .is_err());
        assert!(info(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false
        )
        .is_err());
    }

    #[test]
    fn a_higher_minor_is_read_as_1_1() {
        let mut head = b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        read_higher_minor_as_1_1(&mut head);
        let i = info(&head, false).unwrap();
        assert_eq!((i.status, i.minor, i.framing), (200, 1, Framing::Length(2)));
        for line in [&b"HTTP/2.0 200 OK\r\n\r\n"[..], b"HTTP/1.10 200 OK\r\n\r\n"] {
            let mut head = line.to_vec();
            read_higher_minor_as_1_1(&mut head);
            assert_eq!(head, line, "left as it is");
            assert!(info(&head, false).is_err());
        }
    }

    #[test]
    fn only_chunked_alone_frames_a_body() {
        for te in [
            "gzip, chunked",
            "chunked, gzip",
            "gzip",
            "chunked, chunked",
            "chunked\r\nTransfer-Encoding: chunked",
            "",
        ] {
            let head = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(info(head.as_bytes(), false).is_err(), "{te:?}");
        }
        // Bodyless responses carry no body whatever their codings say.
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(info(head, true).unwrap().framing, Framing::None);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(info(chunked, false).unwrap().framing, Framing::Chunked);
    }

    #[test]
    fn an_http_1_0_response_with_transfer_encoding_closes_its_connection() {
        let head =
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
        let i = info(head, false).unwrap();
        assert_eq!(i.framing, Framing::Chunked);
        assert!(!i.keep_alive);
        let length = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n";
        assert!(info(length, false).unwrap().keep_alive);
    }
}
