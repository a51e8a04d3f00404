//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a
//! load balancer in front puts at the start of a connection to name the
//! client it accepted, and the one forklb puts in front of its own upstream
//! connections (`send_proxy`). Sans-IO: `parse` reads a header from the
//! first bytes of a connection (peeked, so nothing after the header is
//! consumed), `Header::new` writes one. Every input is a peer's bytes:
//! nothing here panics or reads past what it was given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (12 bytes) that starts every binary header.
pub const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 text header's start.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
/// The largest v2 header accepted: the fixed 16 bytes and up to this many
/// of addresses and TLVs. The spec allows 64 KiB; what real senders put
/// there (addresses, ALPN, authority, SSL facts, cloud endpoint ids) fits
/// easily, and a bound keeps the peek buffer small.
pub const V2_MAX: usize = 4096;
/// Enough bytes to decide any header: what `parse` may need to see.
pub const PEEK_MAX: usize = V2_MAX;

/// The client and the address it connected to, as the header names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// What the first bytes of a connection hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still be arriving: peek again when more bytes come.
    Incomplete,
    /// A complete header of `len` bytes. `addrs`: the client it names, or
    /// None when the real peer stands (v2 LOCAL — the sender's own health
    /// check —, v1 UNKNOWN, v2 UNSPEC or AF_UNIX).
    Header { len: usize, addrs: Option<Addrs> },
}

/// Why the bytes are no acceptable header (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Neither the v1 nor the v2 signature.
    Missing,
    /// A v1 line over 107 bytes without its CRLF.
    V1TooLong,
    /// A v1 line that does not follow the grammar; what was wrong.
    V1(&'static str),
    /// A v2 header longer than `V2_MAX`.
    V2TooLong(usize),
    /// A v2 header that does not follow the format; what was wrong.
    V2(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Missing => f.write_str("no PROXY protocol header"),
            Error::V1TooLong => write!(f, "PROXY v1 header without CRLF in {V1_MAX} bytes"),
            Error::V1(why) => write!(f, "malformed PROXY v1 header: {why}"),
            Error::V2TooLong(n) => write!(f, "PROXY v2 header of {n} bytes (at most {V2_MAX})"),
            Error::V2(why) => write!(f, "malformed PROXY v2 header: {why}"),
        }
    }
}

/// Reads the header at the start of `buf` (all bytes received so far).
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    if starts_like(buf, V2_SIG) {
        if buf.len() < V2_SIG.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(buf);
    }
    if starts_like(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v1(buf);
    }
    Err(Error::Missing)
}

/// `buf` and `sig` agree on their common length (an empty `buf` agrees).
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(Error::V1TooLong);
        }
        // A bare LF or a control byte can never become a valid line.
        if window
            .iter()
            .any(|&b| b == b'\n' || (b < 0x20 && b != b'\r'))
        {
            return Err(Error::V1("control character"));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = &window[V1_PREFIX.len()..cr];
    let len = cr + 2;
    if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err(Error::V1("control character"));
    }
    // Checked printable ASCII just above.
    let line = std::str::from_utf8(line).map_err(|_| Error::V1("not ASCII"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Parsed::Header { len, addrs: None });
    }
    let mut f = line.split(' ');
    let proto = f.next().unwrap_or("");
    let (src, dst, sport, dport) = (f.next(), f.next(), f.next(), f.next());
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (src, dst, sport, dport, f.next())
    else {
        return Err(Error::V1("expected PROTO SRC DST SPORT DPORT"));
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            v1_addr::<Ipv4Addr>(src)?.into(),
            v1_addr::<Ipv4Addr>(dst)?.into(),
        ),
        "TCP6" => (
            v1_addr::<Ipv6Addr>(src)?.into(),
            v1_addr::<Ipv6Addr>(dst)?.into(),
        ),
        _ => return Err(Error::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let addrs = Addrs {
        src: SocketAddr::new(src, v1_port(sport)?),
        dst: SocketAddr::new(dst, v1_port(dport)?),
    };
    Ok(Parsed::Header {
        len,
        addrs: Some(addrs),
    })
}

fn v1_addr<T: std::str::FromStr>(s: &str) -> Result<T, Error> {
    s.parse().map_err(|_| Error::V1("bad address"))
}

/// A decimal port, 0..=65535, no sign, at most 5 digits.
fn v1_port(s: &str) -> Result<u16, Error> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::V1("bad port"));
    }
    s.parse().map_err(|_| Error::V1("bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(&[ver_cmd, fam, hi, lo]) = buf.get(12..16) else {
        // Reject a bad version as soon as its byte is in.
        if buf.get(12).is_some_and(|b| b >> 4 != 2) {
            return Err(Error::V2("version is not 2"));
        }
        return Ok(Parsed::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2("version is not 2"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX {
        return Err(Error::V2TooLong(len));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::V2("command is neither LOCAL nor PROXY")),
    };
    let Some(body) = buf.get(16..len) else {
        return Ok(Parsed::Incomplete);
    };
    // LOCAL: the sender speaks for itself (its health checks); whatever
    // follows is ignored, as the spec says.
    if local {
        return Ok(Parsed::Header { len, addrs: None });
    }
    let addrs = match fam >> 4 {
        // AF_UNSPEC and AF_UNIX: no address to use; the real peer stands.
        0 | 3 => None,
        1 => {
            let Some(a) = body.get(..12) else {
                return Err(Error::V2("IPv4 addresses truncated"));
            };
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            Some(Addrs {
                src: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                dst: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
            })
        }
        2 => {
            let Some(a) = body.get(..36) else {
                return Err(Error::V2("IPv6 addresses truncated"));
            };
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Some(Addrs {
                src: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                dst: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
            })
        }
        _ => return Err(Error::V2("unknown address family")),
    };
    // TLVs after the addresses are accepted and ignored.
    Ok(Parsed::Header { len, addrs })
}

/// Which header `send_proxy` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A header to send, built in place (the longest, v1 over IPv6, is 104
/// bytes): no allocation per upstream connection.
#[derive(Clone)]
pub struct Header {
    buf: [u8; 108],
    len: u8,
}

/// Two headers are equal when they name the same client and address.
impl PartialEq for Header {
    fn eq(&self, other: &Header) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Header {}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) as
/// the IPv4 address it is.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// The address as IPv6 (an IPv4 one mapped).
fn as_v6(a: SocketAddr) -> (Ipv6Addr, u16) {
    match a.ip() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), a.port()),
        IpAddr::V6(v6) => (v6, a.port()),
    }
}

impl Header {
    /// The header naming `src` (the client) connected to `dst` (the
    /// address it reached). Both IPv4: TCP4 / AF_INET; otherwise both as
    /// IPv6 (an IPv4 one mapped), since a header carries one family.
    pub fn new(version: Version, src: SocketAddr, dst: SocketAddr) -> Header {
        let (src, dst) = (unmapped(src), unmapped(dst));
        let mut h = Header {
            buf: [0; 108],
            len: 0,
        };
        let both_v4 = src.is_ipv4() && dst.is_ipv4();
        match version {
            Version::V1 => {
                use std::io::Write;
                let mut w = std::io::Cursor::new(&mut h.buf[..]);
                // At most 104 bytes (TCP6, two full IPv6 addresses, two
                // 5-digit ports): the buffer always has room.
                let _ = if both_v4 {
                    write!(
                        w,
                        "PROXY TCP4 {} {} {} {}\r\n",
                        src.ip(),
                        dst.ip(),
                        src.port(),
                        dst.port()
                    )
                } else {
                    let (s, sp) = as_v6(src);
                    let (d, dp) = as_v6(dst);
                    write!(w, "PROXY TCP6 {s} {d} {sp} {dp}\r\n")
                };
                h.len = w.position() as u8;
            }
            Version::V2 => {
                h.buf[..12].copy_from_slice(V2_SIG);
                h.buf[12] = 0x21; // version 2, PROXY
                let body_len: usize = if both_v4 { 12 } else { 36 };
                h.buf[13] = if both_v4 { 0x11 } else { 0x21 }; // AF_INET(6), STREAM
                h.buf[14..16].copy_from_slice(&(body_len as u16).to_be_bytes());
                let b = &mut h.buf[16..16 + body_len];
                match (src.ip(), dst.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        b[0..4].copy_from_slice(&s.octets());
                        b[4..8].copy_from_slice(&d.octets());
                        b[8..10].copy_from_slice(&src.port().to_be_bytes());
                        b[10..12].copy_from_slice(&dst.port().to_be_bytes());
                    }
                    _ => {
                        let (s, sp) = as_v6(src);
                        let (d, dp) = as_v6(dst);
                        b[0..16].copy_from_slice(&s.octets());
                        b[16..32].copy_from_slice(&d.octets());
                        b[32..34].copy_from_slice(&sp.to_be_bytes());
                        b[34..36].copy_from_slice(&dp.to_be_bytes());
                    }
                }
                h.len = (16 + body_len) as u8;
            }
        }
        h
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// A header on its way out on a fresh upstream connection: written raw
/// on the socket once it is connected, before any TLS record.
#[derive(Debug, Clone)]
pub struct Preface {
    pub header: Header,
    pub pos: usize,
}

impl Preface {
    pub fn new(header: Header) -> Preface {
        Preface { header, pos: 0 }
    }

    /// What is still to be written.
    pub fn rest(&self) -> &[u8] {
        self.header.as_bytes().get(self.pos..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(buf: &[u8]) -> (usize, Option<Addrs>) {
        match parse(buf) {
            Ok(Parsed::Header { len, addrs }) => (len, addrs),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let (len, a) = header(h);
        assert_eq!(len, 45);
        let a = a.unwrap();
        assert_eq!(a.src, sa("192.0.2.7:56324"));
        assert_eq!(a.dst, sa("198.51.100.1:443"));
        let (_, a) = header(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(a.unwrap().src, sa("[2001:db8::1]:1"));
        assert_eq!(header(b"PROXY UNKNOWN\r\n"), (15, None));
        assert_eq!(
            header(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n").1,
            None
        );
    }

    #[test]
    fn v1_incomplete_then_bad() {
        for n in 0..45 {
            let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
            assert_eq!(parse(&h[..n]), Ok(Parsed::Incomplete), "{n}");
        }
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
            b"PROXY \r\n",
        ];
        for b in bad {
            assert!(parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(Error::V1TooLong));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"\x16\x03\x01"), Err(Error::Missing));
        assert_eq!(parse(b"PROXX"), Err(Error::Missing));
        assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    }

    #[test]
    fn v2_round_trip_and_tlvs() {
        for (s, d) in [
            ("192.0.2.7:56324", "198.51.100.1:443"),
            ("[2001:db8::1]:1", "[::1]:8080"),
        ] {
            let (s, d) = (sa(s), sa(d));
            for v in [Version::V1, Version::V2] {
                let h = Header::new(v, s, d);
                let (len, a) = header(h.as_bytes());
                assert_eq!(len, h.as_bytes().len());
                assert_eq!(a, Some(Addrs { src: s, dst: d }));
            }
        }
        // Mixed families go out as IPv6, IPv4-mapped ones as IPv4.
        let h = Header::new(Version::V1, sa("[::ffff:10.0.0.1]:5"), sa("10.0.0.2:80"));
        assert_eq!(h.as_bytes(), b"PROXY TCP4 10.0.0.1 10.0.0.2 5 80\r\n");
        let h = Header::new(Version::V1, sa("10.0.0.1:5"), sa("[::1]:80"));
        assert_eq!(h.as_bytes(), b"PROXY TCP6 ::ffff:10.0.0.1 ::1 5 80\r\n");
        // TLVs (here an ALPN and a NOOP) are skipped.
        let mut v2 = Header::new(Version::V2, sa("1.2.3.4:1"), sa("5.6.7.8:2"))
            .as_bytes()
            .to_vec();
        let tlvs = [0x01, 0, 2, b'h', b'2', 0x04, 0, 1, 0];
        v2[15] += tlvs.len() as u8;
        v2.extend_from_slice(&tlvs);
        let (len, a) = header(&[v2.as_slice(), b"rest"].concat());
        assert_eq!(len, 28 + tlvs.len());
        assert_eq!(a.unwrap().src, sa("1.2.3.4:1"));
        for n in 0..v2.len() {
            assert_eq!(parse(&v2[..n]), Ok(Parsed::Incomplete), "{n}");
        }
    }

    #[test]
    fn v2_local_unspec_unix_and_errors() {
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(header(&local), (16, None));
        // LOCAL with addresses: they are ignored.
        let mut v = Header::new(Version::V2, sa("1.2.3.4:1"), sa("5.6.7.8:2"))
            .as_bytes()
            .to_vec();
        v[12] = 0x20;
        assert_eq!(header(&v), (28, None));
        let mut unix = V2_SIG.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
        unix.extend_from_slice(&[0u8; 216]);
        assert_eq!(header(&unix), (232, None));
        // Version 1 in the binary format, an unknown command or family.
        for (i, b) in [(12, 0x11u8), (12, 0x22), (13, 0x41)] {
            let mut x = v.clone();
            x[12] = 0x21;
            x[i] = b;
            assert!(parse(&x).is_err(), "{i} {b:#x}");
        }
        // Addresses shorter than the family needs.
        let mut short = V2_SIG.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(Error::V2("IPv4 addresses truncated")));
        let mut huge = V2_SIG.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(Error::V2TooLong(16 + 65535)));
    }

    /// Random bytes, and random mutations of valid headers: never a panic,
    /// and a header is never longer than the input.
    #[test]
    fn random_inputs_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = [
            Header::new(Version::V1, sa("1.2.3.4:1"), sa("5.6.7.8:2"))
                .as_bytes()
                .to_vec(),
            Header::new(Version::V2, sa("[::1]:1"), sa("[::2]:2"))
                .as_bytes()
                .to_vec(),
        ];
        for i in 0..200_000 {
            let mut buf: Vec<u8> = if i % 2 == 0 {
                let n = (next() % 300) as usize;
                (0..n).map(|_| next() as u8).collect()
            } else {
                let mut b = valid[i % 4 / 2].clone();
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b.truncate((next() as usize) % (b.len() + 1));
                b
            };
            if i % 3 == 0 && !buf.is_empty() {
                // Random bytes behind a valid signature reach the parsers.
                let sig: &[u8] = if i % 2 == 0 { V2_SIG } else { V1_PREFIX };
                buf.splice(0..0, sig.iter().copied());
            }
            if let Ok(Parsed::Header { len, .. }) = parse(&buf) {
                assert!(len <= buf.len());
            }
        }
    }
}
