//! A minimal DER reader: enough to walk an OCSP response (RFC 6960), never
//! more. Every length is checked against the bytes that are there, so a
//! truncated or hostile file is an error, never a panic or an
//! out-of-bounds read. Only single-byte tags and definite lengths of up to
//! four bytes exist in DER as OCSP uses it; anything else is refused.

/// Why a DER structure could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerError {
    /// The input ends inside an element.
    Truncated,
    /// A length form DER does not allow (indefinite, over 4 bytes).
    BadLength,
    /// A multi-byte (high-number) tag.
    BadTag,
    /// Another element than the structure requires here.
    Unexpected { wanted: u8, found: u8 },
    /// The structure needs an element here and there is none.
    Missing(u8),
}

impl std::fmt::Display for DerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DerError::Truncated => f.write_str("truncated DER"),
            DerError::BadLength => f.write_str("invalid DER length"),
            DerError::BadTag => f.write_str("unsupported DER tag"),
            DerError::Unexpected { wanted, found } => {
                write!(f, "DER tag 0x{found:02x} where 0x{wanted:02x} was expected")
            }
            DerError::Missing(t) => write!(f, "missing DER element 0x{t:02x}"),
        }
    }
}

pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const ENUMERATED: u8 = 0x0a;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const SEQUENCE: u8 = 0x30;

/// `[n]` EXPLICIT (constructed context-specific) tag.
pub const fn explicit(n: u8) -> u8 {
    0xa0 | n
}

/// One element: its tag and its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// A cursor over consecutive DER elements.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element.
    pub fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let (&tag, after) = self.rest.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::BadTag);
        }
        let (&first, mut after) = after.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            if after.len() < n {
                return Err(DerError::Truncated);
            }
            let (len_bytes, rest) = after.split_at(n);
            after = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if after.len() < len {
            return Err(DerError::Truncated);
        }
        let (value, rest) = after.split_at(len);
        self.rest = rest;
        Ok(Tlv { tag, value })
    }

    /// The contents of the next element, which must have tag `wanted`.
    pub fn expect(&mut self, wanted: u8) -> Result<&'a [u8], DerError> {
        match self.peek_tag() {
            None => Err(DerError::Missing(wanted)),
            Some(found) if found != wanted => Err(DerError::Unexpected { wanted, found }),
            Some(_) => Ok(self.read()?.value),
        }
    }

    /// The contents of the next element if it has tag `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) {
            Ok(Some(self.read()?.value))
        } else {
            Ok(None)
        }
    }
}

/// A GeneralizedTime (`YYYYMMDDHHMMSS[.f]Z`) as seconds since the Unix
/// epoch; `None` when malformed.
pub fn generalized_time(v: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = v.get(r)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |a, &d| a * 10 + i64::from(d - b'0')))
    };
    if v.last() != Some(&b'Z') || v.len() < 15 {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, s) = (digits(8..10)?, digits(10..12)?, digits(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_lengths_and_errors() {
        let mut r = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x81, 0x02, 0xaa, 0xbb]);
        assert_eq!(r.expect(INTEGER).unwrap(), &[5]);
        assert_eq!(r.optional(SEQUENCE).unwrap(), None);
        assert_eq!(r.expect(OCTET_STRING).unwrap(), &[0xaa, 0xbb]);
        assert!(r.is_empty());
        assert_eq!(r.expect(INTEGER), Err(DerError::Missing(INTEGER)));
        for (bytes, err) in [
            (&[0x30][..], DerError::Truncated),
            (&[0x30, 0x05, 1], DerError::Truncated),
            (&[0x30, 0x80, 0, 0], DerError::BadLength),
            (&[0x30, 0x85, 1, 1, 1, 1, 1], DerError::BadLength),
            (&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], DerError::Truncated),
            (&[0x1f, 0x01, 0x00], DerError::BadTag),
        ] {
            assert_eq!(Reader::new(bytes).read(), Err(err), "{bytes:?}");
        }
        assert_eq!(
            Reader::new(&[0x04, 0]).expect(INTEGER),
            Err(DerError::Unexpected {
                wanted: INTEGER,
                found: OCTET_STRING
            })
        );
    }

    #[test]
    fn generalized_times() {
        assert_eq!(generalized_time(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time(b"20000301000000Z"), Some(951_868_800));
        assert_eq!(generalized_time(b"20261130051722.5Z"), Some(1_796_015_842));
        for bad in [
            &b""[..],
            b"2026",
            b"20261330000000Z",
            b"2026113005172xZ",
            b"20261130051722",
        ] {
            assert_eq!(generalized_time(bad), None, "{bad:?}");
        }
    }
}
