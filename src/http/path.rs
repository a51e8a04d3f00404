//! The path routes are matched on: the request's path normalized the way
//! nginx matches `location`s, so that no spelling of a path can reach a
//! different route than its plain form (`/x/../admin/`, `/%61dmin/`,
//! `//admin/` and `/admin/./` all match a route for `/admin/`).
//!
//! Normalization (RFC 3986 §6.2.2, with nginx's choices where the RFC
//! leaves room):
//! - the query (from the first `?`) is not part of the path;
//! - every `%XX` is decoded, including `%2F` (it becomes a `/` and so a
//!   segment separator, as nginx does) and `%2E` (so encoded dot segments
//!   are removed too); `%25` decodes to a literal `%` that is not decoded
//!   again;
//! - a `%` not followed by two hex digits, or an encoded NUL (`%00`), makes
//!   the request a 400: a backend could read them in more than one way;
//! - repeated slashes are merged (`//a///b` is `/a/b`, nginx's
//!   `merge_slashes on`);
//! - `.` segments are removed and `..` removes the segment before it
//!   (RFC 3986 §5.2.4); a `..` above the root is a 400.
//!
//! The normalized path is only used to choose the route; the request goes
//! upstream with the bytes the client sent (see `rewrite`), because they can
//! carry meaning forklb must not change (`%2F` inside an API identifier,
//! signed URLs).

use std::borrow::Cow;

/// Why a path cannot be normalized; each is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    InvalidPercent,
    /// `%00`.
    EncodedNul,
    /// A `..` segment above the root.
    AboveRoot,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::InvalidPercent => "invalid percent-encoding in the path",
            PathError::EncodedNul => "encoded NUL in the path",
            PathError::AboveRoot => "path climbs above the root",
        }
    }
}

/// The path part of an origin-form target (`/a/b?q` → `/a/b`).
pub fn without_query(target: &[u8]) -> &[u8] {
    match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => &target[..end],
        None => target,
    }
}

/// The path routes match for an origin-form target or `*`: normalized
/// (`normalize`); `OPTIONS *` asks about the server as a whole and takes
/// the route of `/`.
pub fn route_path(origin: &str) -> Result<Cow<'_, [u8]>, PathError> {
    if origin == "*" {
        return Ok(Cow::Borrowed(&b"/"[..]));
    }
    normalize(origin.as_bytes())
}

/// Normalizes an origin-form path (starting with `/`; a query is cut off).
/// Borrowed when the path is already normal, which is the common case and
/// costs one scan.
pub fn normalize(target: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    let path = without_query(target);
    if is_plain(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = percent_decode(path)?;
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// True if normalizing cannot change `path`: no `%`, no `//`, no segment
/// starting with a dot.
fn is_plain(path: &[u8]) -> bool {
    !path.contains(&b'%')
        && !path
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::InvalidPercent);
        };
        let decoded = hi << 4 | lo;
        if decoded == 0 {
            return Err(PathError::EncodedNul);
        }
        out.push(decoded);
        i += 3;
    }
    Ok(out)
}

/// Merges slashes and resolves `.` and `..` segments; the result starts
/// with `/` and keeps a trailing `/` (also the one a final `.` or `..`
/// implies: `/a/b/..` is `/a/`).
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    out.push(b'/');
    let body = path.strip_prefix(b"/").unwrap_or(path);
    let mut segments = body.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            b"" | b"." => {}
            b".." => {
                // `out` ends with '/': drop the segment before it.
                if out.len() == 1 {
                    return Err(PathError::AboveRoot);
                }
                out.pop();
                let keep = out.iter().rposition(|&b| b == b'/').map_or(0, |p| p + 1);
                out.truncate(keep);
            }
            _ => {
                out.extend_from_slice(seg);
                if !last {
                    out.push(b'/');
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p.as_bytes()).map(|c| String::from_utf8_lossy(&c).into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c.d", "/a/b?x=/../"] {
            assert!(
                matches!(normalize(p.as_bytes()), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
        assert_eq!(norm("/a/b?x=/../").unwrap(), "/a/b");
    }

    #[test]
    fn spellings_of_admin() {
        for p in [
            "/admin/secret",
            "/x/../admin/secret",
            "/./admin/secret",
            "/%61dmin/secret",
            "/x/%2e%2e/admin/secret",
            "/x/%2E%2E/admin/secret",
            "//admin//secret",
            "/admin/./secret",
            "/admin%2Fsecret",
            "/x%2F..%2Fadmin/secret",
            "/a/b/../../admin/secret",
        ] {
            assert_eq!(norm(p).unwrap(), "/admin/secret", "{p}");
        }
    }

    #[test]
    fn trailing_slashes() {
        assert_eq!(norm("/admin/.").unwrap(), "/admin/");
        assert_eq!(norm("/admin/x/..").unwrap(), "/admin/");
        assert_eq!(norm("/admin/").unwrap(), "/admin/");
        assert_eq!(norm("/admin//").unwrap(), "/admin/");
        assert_eq!(norm("/..a/.b/").unwrap(), "/..a/.b/");
        assert_eq!(norm("/x/..").unwrap(), "/");
        assert_eq!(norm("/.").unwrap(), "/");
    }

    #[test]
    fn percent_literal_is_not_decoded_twice() {
        assert_eq!(norm("/%252e%252e/a").unwrap(), "/%2e%2e/a");
    }

    #[test]
    fn errors() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/../admin"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../admin"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/admin"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%zz"), Err(PathError::InvalidPercent));
        assert_eq!(norm("/a%2"), Err(PathError::InvalidPercent));
        assert_eq!(norm("/a%"), Err(PathError::InvalidPercent));
        assert_eq!(norm("/a%00b"), Err(PathError::EncodedNul));
    }
}
