//! A route's `allow` / `deny` lists: CIDR blocks (IPv4 and IPv6; a bare
//! address is a /32 or /128) and the check of a client address against them.
//!
//! The order is nginx's: the `allow` entries, then the `deny` entries, the
//! first that matches decides. What matches none is refused when only
//! `allow` is given ("only those") and let through when `deny` is given
//! ("all but those") — so with both, `allow` carves exceptions out of `deny`:
//! `allow: [10.0.0.5], deny: [10.0.0.0/8]` keeps out 10/8 except 10.0.0.5.

use std::fmt;
use std::net::IpAddr;

/// One CIDR block, its host bits zero (checked at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`, `::1`. An address with
    /// bits set past the prefix is refused (a typo more often than not).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        // An IPv4-mapped block (`::ffff:192.0.2.0/120`) is the IPv4 block
        // it maps: clients are matched with mapped addresses as IPv4 (as
        // nginx does), so as IPv6 it could never match.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let c = Cidr { addr, prefix };
        if c.masked(addr) != addr {
            return Err(format!(
                "{s:?} has bits set past the prefix (the block is {}/{prefix})",
                c.masked(addr)
            ));
        }
        Ok(c)
    }

    /// `ip` with the bits past this block's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A route's access rules (at least one list is non-empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Access {
    /// Whether a client at `ip` may use the route (see the module comment).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return true;
        }
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        !self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(v: &[&str]) -> Vec<Cidr> {
        v.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    #[test]
    fn parse_and_contain() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(c.contains(ip("::ffff:10.1.1.1")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("::1")));
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.3")));
        assert_eq!(one.to_string(), "127.0.0.2");
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "localhost",
            "",
            "1.2.3.4/8/9",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }

    #[test]
    fn ipv4_mapped_blocks_are_the_ipv4_blocks_they_map() {
        let mapped = Cidr::parse("::ffff:192.0.2.0/120").unwrap();
        assert_eq!(mapped.to_string(), "192.0.2.0/24");
        assert!(mapped.contains(ip("::ffff:192.0.2.5")));
        assert!(mapped.contains(ip("192.0.2.5")));
        assert!(!mapped.contains(ip("192.0.3.5")));
        let all_v4 = Cidr::parse("::ffff:0:0/96").unwrap();
        assert!(all_v4.contains(ip("10.0.0.5")) && !all_v4.contains(ip("::1")));
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.5").unwrap().to_string(),
            "10.0.0.5"
        );
        assert!(
            Cidr::parse("::ffff:192.0.2.1/120").is_err(),
            "host bits set"
        );
    }

    #[test]
    fn nginx_order() {
        let only = Access {
            allow: list(&["127.0.0.2", "::1"]),
            deny: vec![],
        };
        assert!(only.permits(ip("127.0.0.2")) && only.permits(ip("::1")));
        assert!(!only.permits(ip("127.0.0.1")));
        let but = Access {
            allow: vec![],
            deny: list(&["127.0.0.3"]),
        };
        assert!(but.permits(ip("127.0.0.1")) && !but.permits(ip("127.0.0.3")));
        let both = Access {
            allow: list(&["10.0.0.5"]),
            deny: list(&["10.0.0.0/8"]),
        };
        assert!(both.permits(ip("10.0.0.5")));
        assert!(!both.permits(ip("10.0.0.6")));
        assert!(both.permits(ip("192.0.2.1")));
    }
}
