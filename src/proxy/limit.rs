//! A matched route's `limit_req` and `limit_conn`, applied to a request
//! head before anything else is done for it (nginx's preaccess phase). The
//! state is in shared memory (`shm::LimitTable`), so a limit holds across
//! all workers.

use super::env::Env;
use crate::config::limits::LimitKey;
use crate::config::Route;
use crate::shm::{ConnHold, Verdict};
use std::net::IpAddr;

/// What the limits say of a request.
#[derive(Debug)]
pub enum Admit {
    /// Go on; a `limit_conn` hold, if any, lives as long as the request.
    Pass(Option<ConnHold>),
    /// Answer with this status.
    Reject(u16),
}

/// Applies `route`'s limits to a request from `peer` with `headers`
/// (callers check `Route::has_limits` first, so that a route without
/// limits costs one test).
pub fn admit(env: &Env, route: &Route, peer: IpAddr, headers: &[httparse::Header]) -> Admit {
    let mut ip_buf = [0u8; 48];
    if let Some(l) = &route.limit_req {
        if let (Some(table), Some(key)) = (
            env.shm.limit(l.table),
            key_of(&l.spec.key, peer, headers, &mut ip_buf),
        ) {
            let rate = l.spec.rate.millis_per_sec();
            match table.take_request(key, env.now, rate, u64::from(l.spec.burst)) {
                Verdict::Pass => {}
                Verdict::Excess | Verdict::Full => {
                    log::info!("limit_req {}: request from {peer} rejected", l.table_name);
                    return Admit::Reject(l.spec.status);
                }
            }
        }
    }
    let mut hold = None;
    if let Some(l) = &route.limit_conn {
        if let (Some(table), Some(key)) = (
            env.shm.limit(l.table),
            key_of(&l.spec.key, peer, headers, &mut ip_buf),
        ) {
            match table.take_conn(key, env.now, l.spec.max) {
                (Verdict::Pass, index, fp) => hold = Some(ConnHold::new(table.clone(), index, fp)),
                (Verdict::Excess, _, _) => {
                    log::info!("limit_conn {}: request from {peer} rejected", l.table_name);
                    return Admit::Reject(l.spec.status);
                }
                (Verdict::Full, _, _) => {
                    log::warn!(
                        "limit_conn {}: no room for another key, request from {peer} rejected",
                        l.table_name
                    );
                    return Admit::Reject(l.spec.status);
                }
            }
        }
    }
    Admit::Pass(hold)
}

/// The key of a request: the client's address (its bytes), a header's value,
/// a cookie's value. None (no such header or cookie, or an empty value):
/// not limited, as nginx does not account an empty key.
fn key_of<'a>(
    key: &LimitKey,
    peer: IpAddr,
    headers: &'a [httparse::Header<'a>],
    ip_buf: &'a mut [u8; 48],
) -> Option<&'a [u8]> {
    let found = match key {
        // The address's bytes (4 or 16), not its text: formatting costs
        // more than the whole table lookup. `show table` prints them as an
        // address (`admin::table`).
        LimitKey::Source => {
            // An IPv4 client of an IPv6 socket counts as its IPv4 address.
            let peer = match peer {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
                v4 => v4,
            };
            let n = match peer {
                IpAddr::V4(v4) => {
                    ip_buf[..4].copy_from_slice(&v4.octets());
                    4
                }
                IpAddr::V6(v6) => {
                    ip_buf[..16].copy_from_slice(&v6.octets());
                    16
                }
            };
            return Some(&ip_buf[..n]);
        }
        LimitKey::Header(name) => headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value),
        LimitKey::Cookie(name) => headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .find_map(|h| cookie_value(h.value, name.as_bytes())),
    };
    found.filter(|v| !v.is_empty())
}

/// The value of cookie `name` in a `Cookie` header's value.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        assert_eq!(
            cookie_value(b"a=1; sid=xyz; b=2", b"sid"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_value(b"sid=", b"sid"), Some(&b""[..]));
        assert_eq!(cookie_value(b"xsid=1", b"sid"), None);
        assert_eq!(cookie_value(b"garbage", b"sid"), None);
    }

    #[test]
    fn keys() {
        let headers = [
            httparse::Header {
                name: "X-Key",
                value: b"alice",
            },
            httparse::Header {
                name: "Cookie",
                value: b"sid=s1",
            },
        ];
        let peer: IpAddr = "127.0.0.2".parse().unwrap();
        let mut buf = [0u8; 48];
        assert_eq!(
            key_of(&LimitKey::Source, peer, &headers, &mut buf),
            Some(&[127, 0, 0, 2][..])
        );
        let mut buf = [0u8; 48];
        assert_eq!(
            key_of(&LimitKey::Header("x-key".into()), peer, &headers, &mut buf),
            Some(&b"alice"[..])
        );
        let mut buf = [0u8; 48];
        assert_eq!(
            key_of(&LimitKey::Cookie("sid".into()), peer, &headers, &mut buf),
            Some(&b"s1"[..])
        );
        let mut buf = [0u8; 48];
        assert_eq!(
            key_of(&LimitKey::Header("x-none".into()), peer, &headers, &mut buf),
            None
        );
    }
}
