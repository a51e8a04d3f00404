//! RFC 9113 §8: what a decoded header list must look like before it becomes
//! a request (or, for the client role, a response). Anything malformed is a
//! stream error PROTOCOL_ERROR: the exchange never sees it, so nothing we
//! forward to an HTTP/1.1 upstream can be smuggled (CR/LF/NUL, uppercase
//! or odd names, connection-specific fields, two lengths).
//!
//! CONNECT: accepted in its RFC 9113 §8.5 form (`:method` CONNECT and
//! `:authority` only) as a `RequestHead` with empty `scheme` and `path`;
//! the exchange answers it 405. Extended CONNECT (`:protocol`) is refused
//! as malformed, since we do not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL.

/// Lowercase names, validated values.
pub type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Vec<u8>,
    /// Empty for CONNECT.
    pub scheme: Vec<u8>,
    pub authority: Option<Vec<u8>>,
    /// Empty for CONNECT.
    pub path: Vec<u8>,
    /// Regular fields only, cookie crumbs joined into one `cookie` field at
    /// the place of the first; `host` kept if the client sent it.
    pub headers: HeaderList,
    pub content_length: Option<u64>,
}

/// Why a head is malformed (for a debug log; the peer only sees the code).
pub type Malformed = &'static str;

/// RFC 9113 §8.2.1: no uppercase, no controls, SP, DEL or non-ASCII, and no
/// colon outside pseudo-headers (checked by the caller).
fn check_name(name: &[u8]) -> Result<(), Malformed> {
    if name.is_empty() {
        return Err("empty field name");
    }
    // One pass for the common case; the reason only when something is off.
    if name
        .iter()
        .all(|&b| b > 0x20 && b < 0x7f && b != b':' && !b.is_ascii_uppercase())
    {
        return Ok(());
    }
    if name.iter().any(|&b| b.is_ascii_uppercase()) {
        return Err("uppercase field name");
    }
    Err("invalid character in field name")
}

/// RFC 9113 §8.2.1: no NUL, CR, LF; no leading or trailing SP/HTAB.
fn check_value(value: &[u8]) -> Result<(), Malformed> {
    if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err("CR, LF or NUL in a field value");
    }
    let ws = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if ws(value.first()) || ws(value.last()) {
        return Err("whitespace around a field value");
    }
    Ok(())
}

/// RFC 9113 §8.2.2: hop-by-hop fields have no place in HTTP/2 (`te` only
/// as `trailers`). Received: malformed; sent (client role): dropped.
pub fn check_connection_specific(name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    match name {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => {
            Err("connection-specific field")
        }
        b"te" if !value.eq_ignore_ascii_case(b"trailers") => Err("te other than trailers"),
        _ => Ok(()),
    }
}

fn parse_length(value: &[u8]) -> Result<u64, Malformed> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err("invalid content-length");
    }
    value
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or("content-length too large")
}

/// Regular fields: validated, cookies joined, content-length parsed.
/// Shared by requests, responses and trailers.
struct Regular {
    headers: HeaderList,
    content_length: Option<u64>,
}

fn regular(mut headers: HeaderList) -> Result<Regular, Malformed> {
    let mut cookie: Option<usize> = None;
    let mut content_length = None;
    // Compacted in place: `kept` fields stay, later cookie crumbs are
    // appended to the first.
    let mut kept = 0;
    for i in 0..headers.len() {
        let Some((name, value)) = headers.get(i) else {
            break;
        };
        if name.first() == Some(&b':') {
            return Err("pseudo-header after a regular field");
        }
        check_name(name)?;
        check_value(value)?;
        check_connection_specific(name, value)?;
        if name == b"content-length" {
            if content_length.is_some() {
                return Err("more than one content-length");
            }
            content_length = Some(parse_length(value)?);
        }
        if name == b"cookie" {
            // RFC 9113 §8.2.3: crumbs are rejoined for HTTP/1.1 with "; ".
            if let Some(c) = cookie {
                let crumb = headers
                    .get_mut(i)
                    .map(|(_, v)| std::mem::take(v))
                    .unwrap_or_default();
                if let Some((_, joined)) = headers.get_mut(c) {
                    joined.extend_from_slice(b"; ");
                    joined.extend_from_slice(&crumb);
                }
                continue;
            }
            cookie = Some(kept);
        }
        headers.swap(kept, i);
        kept += 1;
    }
    headers.truncate(kept);
    Ok(Regular {
        headers,
        content_length,
    })
}

/// The number of leading pseudo-headers, refusing duplicates and any not
/// in `allowed`. Values are checked like regular values.
fn pseudo(list: &HeaderList, allowed: &[&[u8]]) -> Result<usize, Malformed> {
    let split = list
        .iter()
        .position(|(n, _)| n.first() != Some(&b':'))
        .unwrap_or(list.len());
    let pseudo = list.get(..split).unwrap_or_default();
    for (i, (name, value)) in pseudo.iter().enumerate() {
        if !allowed.contains(&name.as_slice()) {
            return Err("unknown or misplaced pseudo-header");
        }
        if pseudo
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|(n, _)| n == name)
        {
            return Err("duplicated pseudo-header");
        }
        check_value(value)?;
    }
    Ok(split)
}

/// A request head from a decoded HEADERS block (RFC 9113 §8.3.1).
pub fn request(list: HeaderList) -> Result<RequestHead, Malformed> {
    let mut list = list;
    let n = pseudo(&list, &[b":method", b":scheme", b":authority", b":path"])?;
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    for (name, value) in list.drain(..n) {
        match name.as_slice() {
            b":method" => method = Some(value),
            b":scheme" => scheme = Some(value),
            b":authority" => authority = Some(value),
            _ => path = Some(value),
        }
    }
    let method = method.ok_or("missing :method")?;
    if method.is_empty() || method.iter().any(|&b| b <= 0x20 || b >= 0x7f) {
        return Err("invalid :method");
    }
    let (scheme, path) = if method == b"CONNECT" {
        if scheme.is_some() || path.is_some() || authority.is_none() {
            return Err("CONNECT with :scheme or :path, or without :authority");
        }
        (Vec::new(), Vec::new())
    } else {
        let scheme = scheme.filter(|s| !s.is_empty()).ok_or("missing :scheme")?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or("missing or empty :path")?;
        if path.first() != Some(&b'/') && !(path == b"*" && method == b"OPTIONS") {
            return Err(":path neither absolute nor * for OPTIONS");
        }
        if path.iter().any(|&b| b <= 0x20 || b == 0x7f) {
            return Err("invalid character in :path");
        }
        (scheme, path)
    };
    let reg = regular(list)?;
    Ok(RequestHead {
        method,
        scheme,
        authority,
        path,
        headers: reg.headers,
        content_length: reg.content_length,
    })
}

/// A response head (client role): `:status` and regular fields.
pub fn response(list: HeaderList) -> Result<(u16, HeaderList, Option<u64>), Malformed> {
    let mut list = list;
    let n = pseudo(&list, &[b":status"])?;
    let status = list
        .drain(..n)
        .next()
        .map(|(_, v)| v)
        .ok_or("missing :status")?;
    let status = match status.as_slice() {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err("invalid :status"),
    };
    if status < 100 {
        return Err("invalid :status");
    }
    let reg = regular(list)?;
    Ok((status, reg.headers, reg.content_length))
}

/// Trailers: regular fields only (RFC 9113 §8.1).
pub fn trailers(list: HeaderList) -> Result<HeaderList, Malformed> {
    if list.iter().any(|(n, _)| n.first() == Some(&b':')) {
        return Err("pseudo-header in trailers");
    }
    Ok(regular(list)?.headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[(&str, &str)]) -> HeaderList {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn get(extra: &[(&str, &str)]) -> HeaderList {
        let mut l = list(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "a.example"),
        ]);
        l.extend(list(extra));
        l
    }

    #[test]
    fn h2_headers_valid_request() {
        let h = request(get(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
            ("content-length", "12"),
            ("te", "trailers"),
        ]))
        .unwrap();
        assert_eq!(h.method, b"GET");
        assert_eq!(h.authority.as_deref(), Some(&b"a.example"[..]));
        assert_eq!(h.content_length, Some(12));
        assert_eq!(h.headers[0], (b"cookie".to_vec(), b"a=1; b=2".to_vec()));
        assert_eq!(h.headers.len(), 4);
    }

    #[test]
    fn h2_headers_smuggling_vectors_are_malformed() {
        let bad: &[&[(&str, &str)]] = &[
            &[("Host", "x")],
            &[("x-a", "a\r\nb: c")],
            &[("x-a", "a\nb")],
            &[("x-a", "a\0b")],
            &[("x-a", " a")],
            &[("x-a", "a\t")],
            &[("connection", "keep-alive")],
            &[("keep-alive", "5")],
            &[("proxy-connection", "x")],
            &[("transfer-encoding", "chunked")],
            &[("upgrade", "h2c")],
            &[("te", "gzip")],
            &[("content-length", "1"), ("content-length", "1")],
            &[("content-length", "1,1")],
            &[("content-length", "-1")],
            &[("content-length", "99999999999999999999999")],
            &[("x a", "b")],
            &[("x:a", "b")],
            &[("", "b")],
            &[(":method", "GET")],
        ];
        for extra in bad {
            assert!(request(get(extra)).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn h2_headers_bad_pseudo_headers() {
        let bad: &[&[(&str, &str)]] = &[
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":method", "GET"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":status", "200"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":foo", "x"),
            ],
            &[(":method", "GET"), (":scheme", "https"), (":path", "")],
            &[(":method", "GET"), (":scheme", "https")],
            &[(":method", "GET"), (":path", "/")],
            &[(":scheme", "https"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "https"), (":path", "x")],
            &[(":method", "GET"), (":scheme", "https"), (":path", "/ x")],
            &[
                (":method", "CONNECT"),
                (":authority", "a:443"),
                (":protocol", "websocket"),
            ],
            &[
                (":method", "CONNECT"),
                (":scheme", "https"),
                (":path", "/"),
                (":authority", "a"),
            ],
            &[(":method", "CONNECT")],
        ];
        for l in bad {
            assert!(request(list(l)).is_err(), "{l:?}");
        }
        let c = request(list(&[(":method", "CONNECT"), (":authority", "a:443")])).unwrap();
        assert!(c.path.is_empty() && c.scheme.is_empty());
        assert!(request(list(&[
            (":method", "OPTIONS"),
            (":scheme", "http"),
            (":path", "*")
        ]))
        .is_ok());
    }

    #[test]
    fn h2_headers_trailers_and_response() {
        assert!(trailers(list(&[("grpc-status", "0")])).is_ok());
        assert!(trailers(list(&[(":status", "200")])).is_err());
        assert!(trailers(list(&[("x", "a\rb")])).is_err());
        let (s, h, cl) = response(list(&[
            (":status", "204"),
            ("server", "x"),
            ("content-length", "0"),
        ]))
        .unwrap();
        assert_eq!((s, h.len(), cl), (204, 2, Some(0)));
        assert!(response(list(&[(":status", "20")])).is_err());
        assert!(response(list(&[(":path", "/")])).is_err());
    }
}
