//! Validating a Host header value or the authority of an absolute-form
//! target as `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
//! request with any other value is a 400, never forwarded, because the
//! proxy and the backend could read it as different hosts (`a b`, `x/y`,
//! `t@alt.test`, `alt.test, t`).

/// True if `v` (whitespace already trimmed) is `uri-host [":" port]`.
/// Empty is valid: RFC 9112 §3.2 has clients send an empty Host when the
/// target has no authority.
pub fn is_valid(v: &[u8]) -> bool {
    // The common case in one pass: a plain name, then an optional port.
    if let Some(valid) = plain_name_and_port(v) {
        return valid;
    }
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        if !is_ip_literal(&rest[..end]) {
            return false;
        }
        match &rest[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b""[..], Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(colon) => (&v[..colon], Some(&v[colon + 1..])),
            None => (v, None),
        }
    };
    is_reg_name(host) && port.is_none_or(is_port)
}

/// `name[:digits]` with only plain reg-name bytes (no `%`, no `[`):
/// Some(valid). None when the slow path must decide.
fn plain_name_and_port(v: &[u8]) -> Option<bool> {
    let mut i = 0;
    while i < v.len() && REG_NAME_CHAR[usize::from(v[i])] {
        i += 1;
    }
    match v.get(i) {
        None => Some(true),
        Some(b':') => Some(is_port(&v[i + 1..])),
        Some(_) => None,
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, without the
/// comma: Host is a singleton field (RFC 9110 §7.2), and a comma is how two
/// Host lines look once a recipient joins them.
fn is_reg_name(h: &[u8]) -> bool {
    // Checked on every request: a table lookup per byte, and the `%`
    // escapes (rare) only when the fast scan meets one.
    if h.iter().all(|&b| REG_NAME_CHAR[usize::from(b)]) {
        return true;
    }
    let mut i = 0;
    while i < h.len() {
        if h[i] == b'%' {
            let pair = h.get(i + 1..i + 3);
            if !pair.is_some_and(|p| p.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if REG_NAME_CHAR[usize::from(h[i])] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// unreserved and sub-delims except `,` (see `is_reg_name`).
const REG_NAME_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            );
        b += 1;
    }
    t
};

/// `port = *DIGIT`, at most 65535 (an empty port is allowed by the grammar).
fn is_port(p: &[u8]) -> bool {
    p.len() <= 5
        && p.iter().all(u8::is_ascii_digit)
        && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// The inside of `[...]`: an IPv6 address or `IPvFuture`.
fn is_ip_literal(lit: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = lit {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            // unreserved / sub-delims / ":": the reg-name set, whose one
            // exclusion (`,`, see `is_reg_name`) does not apply here.
            && tail
                .iter()
                .all(|&b| REG_NAME_CHAR[usize::from(b)] || b == b',' || b == b':');
    }
    std::str::from_utf8(lit)
        .ok()
        .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn valid_hosts() {
        for h in [
            "",
            "example.com",
            "Example.COM:8080",
            "a-b_c~d.test:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::1]:65535",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%41b",
        ] {
            assert!(is_valid(h.as_bytes()), "{h:?} should be valid");
        }
    }

    #[test]
    fn invalid_hosts() {
        for h in [
            "a b",
            "x/y",
            "t@alt.test",
            "alt.test, t",
            "alt.test,t",
            "a:b:c",
            "a:99999",
            "a:123456",
            "a:8x",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[zz]",
            "[v.x]",
            "a\tb",
            "a%4",
            "a%zz",
            "a?b",
            "a#b",
            "a\\b",
            "a\"b",
        ] {
            assert!(!is_valid(h.as_bytes()), "{h:?} should be invalid");
        }
    }
}
