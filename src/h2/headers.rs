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

pub use super::fields::HeaderList;
use super::fields::Span;

/// A request's head: its pseudo-headers and regular fields, all in one
/// buffer (see `fields`). Heads are equal when what they say is.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Regular fields only, cookie crumbs joined into one `cookie` field at
    /// the place of the first; `host` kept if the client sent it. Its
    /// buffer holds the pseudo-headers' values too.
    list: HeaderList,
    method: Span,
    /// Empty for CONNECT.
    scheme: Span,
    authority: Option<Span>,
    /// Empty for CONNECT.
    path: Span,
    pub content_length: Option<u64>,
}

impl RequestHead {
    /// A head to send (client role); `headers` are sent as given, less
    /// connection-specific ones (`ClientConn::send_request`).
    pub fn new<'a>(
        method: &[u8],
        scheme: &[u8],
        authority: Option<&[u8]>,
        path: &[u8],
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        content_length: Option<u64>,
    ) -> RequestHead {
        let mut list = HeaderList::new();
        let method = list.store(method);
        let scheme = list.store(scheme);
        let authority = authority.map(|a| list.store(a));
        let path = list.store(path);
        list.extend(headers);
        RequestHead {
            list,
            method,
            scheme,
            authority,
            path,
            content_length,
        }
    }

    pub fn method(&self) -> &[u8] {
        self.list.at(self.method)
    }

    /// Empty for CONNECT.
    pub fn scheme(&self) -> &[u8] {
        self.list.at(self.scheme)
    }

    pub fn authority(&self) -> Option<&[u8]> {
        self.authority.map(|a| self.list.at(a))
    }

    /// Empty for CONNECT.
    pub fn path(&self) -> &[u8] {
        self.list.at(self.path)
    }

    pub fn headers(&self) -> &HeaderList {
        &self.list
    }
}

impl PartialEq for RequestHead {
    fn eq(&self, other: &RequestHead) -> bool {
        self.method() == other.method()
            && self.scheme() == other.scheme()
            && self.authority() == other.authority()
            && self.path() == other.path()
            && self.list == other.list
            && self.content_length == other.content_length
    }
}

impl Eq for RequestHead {}

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

/// RFC 9113 §8.2.1: no NUL, CR, LF; no leading or trailing SP/HTAB. And
/// no other control character (RFC 9110 §5.5 field-value: HTAB, SP, VCHAR,
/// obs-text): the same values the HTTP/1.1 parser takes, so a field that
/// HTTP/1.1 would refuse cannot reach an HTTP/1.1 upstream through HTTP/2
/// (where a parser might read it another way).
fn check_value(value: &[u8]) -> Result<(), Malformed> {
    // One pass for all of them (NUL, CR and LF are control characters too).
    if let Some(&b) = value
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(match b {
            0 | b'\r' | b'\n' => "CR, LF or NUL in a field value",
            _ => "control character in a field value",
        });
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

/// The regular fields of `list`, from field `from` on: validated, cookie
/// crumbs joined, content-length parsed. Fields before `from` (the
/// pseudo-headers, already read) are dropped from the list. Shared by
/// requests, responses and trailers.
fn regular(list: &mut HeaderList, from: usize) -> Result<Option<u64>, Malformed> {
    let mut cookie: Option<usize> = None;
    let mut content_length = None;
    for i in from..list.len() {
        let Some((name, value)) = list.get(i) else {
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
            match cookie {
                Some(first) => list.join_value(first, b"; ", i),
                None => cookie = Some(i),
            }
        }
    }
    // Every cookie field but the first is a crumb now joined into it.
    list.retain_fields(|i, name| i >= from && (name != b"cookie" || Some(i) == cookie));
    Ok(content_length)
}

/// The number of leading pseudo-headers, refusing duplicates and any not
/// in `allowed` (at most 32). Values are checked like regular values.
fn pseudo(list: &HeaderList, allowed: &[&[u8]]) -> Result<usize, Malformed> {
    let mut seen = 0u32;
    let mut n = 0;
    for (name, value) in list.iter() {
        if name.first() != Some(&b':') {
            break;
        }
        let Some(k) = allowed.iter().position(|a| *a == name) else {
            return Err("unknown or misplaced pseudo-header");
        };
        let bit = 1u32.checked_shl(k as u32).unwrap_or(0);
        if seen & bit != 0 {
            return Err("duplicated pseudo-header");
        }
        seen |= bit;
        check_value(value)?;
        n += 1;
    }
    Ok(n)
}

/// An `http` or `https` request names its host (RFC 9113 §8.3.1): by a
/// non-empty `:authority`, else by exactly one non-empty `host` field (RFC
/// 9110 §4.2.1 refuses an empty host, RFC 9112 §3.2 more than one Host).
/// Forwarded without one, the request would reach the upstream with a Host
/// made up for it (the upstream's address) or an empty one; with two, the
/// upstream might read another than the one forklb routed on. nginx
/// refuses all three.
///
/// `list` holds the regular fields only (after `regular`); the spans
/// still point into its buffer.
fn check_authority(
    list: &HeaderList,
    scheme: Span,
    authority: Option<Span>,
) -> Result<(), Malformed> {
    let s = list.at(scheme);
    if !(s.eq_ignore_ascii_case(b"http") || s.eq_ignore_ascii_case(b"https")) {
        return Ok(());
    }
    if let Some(a) = authority {
        return if list.at(a).is_empty() {
            Err("empty :authority")
        } else {
            Ok(())
        };
    }
    let mut hosts = list.iter().filter(|(name, _)| *name == b"host");
    match (hosts.next(), hosts.next()) {
        (Some((_, v)), None) if !v.is_empty() => Ok(()),
        (Some(_), Some(_)) => Err("more than one host field"),
        _ => Err("no :authority and no host"),
    }
}

/// A request head from a decoded HEADERS block (RFC 9113 §8.3.1).
pub fn request(mut list: HeaderList) -> Result<RequestHead, Malformed> {
    let n = pseudo(&list, &[b":method", b":scheme", b":authority", b":path"])?;
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    for i in 0..n {
        let Some((name, value)) = list.spans(i) else {
            break;
        };
        match list.at(name) {
            b":method" => method = Some(value),
            b":scheme" => scheme = Some(value),
            b":authority" => authority = Some(value),
            _ => path = Some(value),
        }
    }
    let method = method.ok_or("missing :method")?;
    let m = list.at(method);
    if m.is_empty() || m.iter().any(|&b| b <= 0x20 || b >= 0x7f) {
        return Err("invalid :method");
    }
    let (scheme, path) = if m == b"CONNECT" {
        if scheme.is_some() || path.is_some() || authority.is_none() {
            return Err("CONNECT with :scheme or :path, or without :authority");
        }
        (Span::default(), Span::default())
    } else {
        let scheme = scheme
            .filter(|&s| !list.at(s).is_empty())
            .ok_or("missing :scheme")?;
        let path = path
            .filter(|&p| !list.at(p).is_empty())
            .ok_or("missing or empty :path")?;
        let p = list.at(path);
        if p.first() != Some(&b'/') && !(p == b"*" && m == b"OPTIONS") {
            return Err(":path neither absolute nor * for OPTIONS");
        }
        if p.iter().any(|&b| b <= 0x20 || b == 0x7f) {
            return Err("invalid character in :path");
        }
        (scheme, path)
    };
    let connect = m == b"CONNECT";
    let content_length = regular(&mut list, n)?;
    if !connect {
        check_authority(&list, scheme, authority)?;
    }
    Ok(RequestHead {
        list,
        method,
        scheme,
        authority,
        path,
        content_length,
    })
}

/// A response head (client role): `:status` and regular fields.
pub fn response(mut list: HeaderList) -> Result<(u16, HeaderList, Option<u64>), Malformed> {
    let n = pseudo(&list, &[b":status"])?;
    let status = match list.get(0).filter(|_| n == 1).map(|(_, v)| v) {
        Some([a, b, c]) if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        Some(_) => return Err("invalid :status"),
        None => return Err("missing :status"),
    };
    if status < 100 {
        return Err("invalid :status");
    }
    let content_length = regular(&mut list, n)?;
    Ok((status, list, content_length))
}

/// Trailers: regular fields only (RFC 9113 §8.1).
pub fn trailers(mut list: HeaderList) -> Result<HeaderList, Malformed> {
    if list.iter().any(|(n, _)| n.first() == Some(&b':')) {
        return Err("pseudo-header in trailers");
    }
    regular(&mut list, 0)?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[(&str, &str)]) -> HeaderList {
        fields.iter().copied().collect()
    }

    fn get(extra: &[(&str, &str)]) -> HeaderList {
        let mut l = list(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "a.example"),
        ]);
        l.extend(list(extra).iter());
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
        assert_eq!(h.method(), b"GET");
        assert_eq!((h.scheme(), h.path()), (&b"https"[..], &b"/"[..]));
        assert_eq!(h.authority(), Some(&b"a.example"[..]));
        assert_eq!(h.content_length, Some(12));
        assert_eq!(
            format!("{:?}", h.headers()),
            r#"[("cookie", "a=1; b=2"), ("accept", "*/*"), ("content-length", "12"), ("te", "trailers")]"#
        );
    }

    /// A decoded head equals one built with `new` from the same parts,
    /// though their buffers differ (the decoded one keeps the pseudo-header
    /// names and the crumbs).
    #[test]
    fn h2_headers_heads_compare_by_what_they_say() {
        let decoded = request(get(&[("cookie", "a=1"), ("cookie", "b=2")])).unwrap();
        let built = RequestHead::new(
            b"GET",
            b"https",
            Some(b"a.example"),
            b"/",
            [(&b"cookie"[..], &b"a=1; b=2"[..])],
            None,
        );
        assert_eq!(decoded, built);
        let other = RequestHead::new(b"GET", b"https", None, b"/", [], None);
        assert_ne!(decoded, other);
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
        assert!(c.path().is_empty() && c.scheme().is_empty());
        assert_eq!(c.authority(), Some(&b"a:443"[..]));
        assert!(request(list(&[
            (":method", "OPTIONS"),
            (":scheme", "http"),
            (":path", "*"),
            (":authority", "a")
        ]))
        .is_ok());
    }

    /// An http(s) request names its host once: a non-empty :authority, or
    /// else one non-empty host field.
    #[test]
    fn h2_headers_requests_name_their_host_once() {
        let base = [(":method", "GET"), (":scheme", "https"), (":path", "/")];
        let with = |extra: &[(&str, &str)]| {
            let mut l: Vec<(&str, &str)> = base.to_vec();
            l.extend_from_slice(extra);
            request(list(&l))
        };
        assert_eq!(with(&[]).err(), Some("no :authority and no host"));
        assert_eq!(with(&[(":authority", "")]).err(), Some("empty :authority"));
        assert_eq!(
            with(&[(":authority", ""), ("host", "x.test")]).err(),
            Some("empty :authority")
        );
        assert_eq!(
            with(&[("host", "b.test"), ("host", "a.test")]).err(),
            Some("more than one host field")
        );
        assert_eq!(
            with(&[("host", "")]).err(),
            Some("no :authority and no host")
        );
        assert!(with(&[("host", "a.test")]).is_ok());
        assert!(with(&[(":authority", "a.test")]).is_ok());
        assert!(with(&[(":authority", "a.test"), ("host", "a.test")]).is_ok());
        // Other schemes need no authority.
        assert!(request(list(&[
            (":method", "GET"),
            (":scheme", "foo"),
            (":path", "/")
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
