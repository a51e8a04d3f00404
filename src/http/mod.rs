//! HTTP/1.1 heads: parsing and validating requests and upstream responses
//! (httparse underneath), deciding body framing, rewriting headers for the
//! other side, and the short error pages forklb answers itself.

pub mod chunked;
pub mod date;
pub mod errors;
pub mod header_rules;
pub mod host;
pub mod path;
pub mod redirect;
pub mod request;
pub mod request_id;
pub mod response;
pub mod rewrite;

/// A `tchar` of RFC 9110 §5.6.2: what field names and other tokens are
/// made of.
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Most headers accepted in one head; more gives 431 (requests) or 502.
pub const MAX_HEADERS: usize = 100;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Case-insensitive comparison of a header name with a lowercase literal.
#[inline]
pub fn name_is(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && name.eq_ignore_ascii_case(lower)
}

/// Iterates the comma-separated tokens of a header value, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Whether the Upgrade protocol `chosen` (a `101`'s) is the `offered` one
/// (a request's), RFC 9110 §7.8's `protocol-name ["/" protocol-version]`:
/// the names compare case-insensitively; a version on both sides must be
/// the same (also ignoring case), and a side without one names the
/// protocol in any version.
pub fn upgrade_protocol_matches(offered: &[u8], chosen: &[u8]) -> bool {
    fn split(p: &[u8]) -> (&[u8], Option<&[u8]>) {
        match p.iter().position(|&b| b == b'/') {
            Some(i) => (&p[..i], p.get(i + 1..)),
            None => (p, None),
        }
    }
    let (offered_name, offered_version) = split(offered);
    let (chosen_name, chosen_version) = split(chosen);
    offered_name.eq_ignore_ascii_case(chosen_name)
        && match (offered_version, chosen_version) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        }
}

/// Trims optional whitespace (SP / HTAB) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a Content-Length value: ASCII digits only, no sign, no overflow.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = trim_ows(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// A response of this status never has content (RFC 9110 §6.4.1): 1xx,
/// 204, 304 — whatever its fields say.
pub fn status_has_no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// A response's Content-Length that repeats one value (`2, 2`, or the
/// value of an earlier field again): RFC 9110 §8.6 lets a recipient take it
/// as that one value, as HAProxy does. Different values are None.
pub fn content_length_list(v: &[u8]) -> Option<u64> {
    let mut values = v.split(|&b| b == b',').map(parse_content_length);
    let first = values.next()??;
    values.all(|n| n == Some(first)).then_some(first)
}

/// Writes `name: value` lines (header or trailer fields) in HTTP/1.1 form.
pub fn write_fields<'f>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>) {
    for (name, value) in fields {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_content_lengths_are_one_value() {
        assert_eq!(content_length_list(b"2"), Some(2));
        assert_eq!(content_length_list(b"2, 2"), Some(2));
        assert_eq!(content_length_list(b"2,2 ,2"), Some(2));
        assert_eq!(content_length_list(b"2, 3"), None);
        assert_eq!(content_length_list(b"2,"), None);
        assert_eq!(content_length_list(b""), None);
    }

    #[test]
    fn content_length() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"+1"), None);
        assert_eq!(parse_content_length(b"1,1"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
        assert_eq!(parse_content_length(b"0x10"), None);
    }

    #[test]
    fn token_lists() {
        let v: Vec<&[u8]> = tokens(b" close , Upgrade,,x").collect();
        assert_eq!(v, vec![&b"close"[..], b"Upgrade", b"x"]);
    }

    #[test]
    fn upgrade_protocols_match_by_name_and_version() {
        assert!(upgrade_protocol_matches(b"websocket", b"WebSocket"));
        assert!(upgrade_protocol_matches(b"IRC/6.9", b"irc/6.9"));
        // A side without a version names the protocol in any version.
        assert!(upgrade_protocol_matches(b"foo", b"foo/2"));
        assert!(upgrade_protocol_matches(b"foo/2", b"foo"));
        assert!(!upgrade_protocol_matches(b"foo/1", b"foo/2"));
        assert!(!upgrade_protocol_matches(b"websocket", b"foo"));
        assert!(!upgrade_protocol_matches(b"websocket", b"websocketx"));
    }
}
