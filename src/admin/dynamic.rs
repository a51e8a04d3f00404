//! Dynamic servers over the runtime API, with HAProxy 2.6's syntax and
//! answers: `add server B/S ADDR [weight W] [backup] [maxconn N]`, `del
//! server B/S`, `set server B/S addr IP [port P]`.
//!
//! The commands only check and answer here (against the master's current
//! configuration and shared state); the change itself is returned as an
//! [`Effect::Servers`] for the master, which applies it to its
//! configuration, records it in the runtime overlay and starts a new worker
//! generation with it (see `master::servers`).
//!
//! Some of HAProxy's answers end without an empty line (its `add server`
//! and `del server` errors): those texts have no `\n` of their own here,
//! the session adds the one line end HAProxy sends.
//!
//! Where HAProxy 2.6 accepts nonsense forklb refuses it, with an answer of
//! its own: a host name for an address (HAProxy registers an unresolved
//! server; forklb does not resolve names at runtime), a missing or zero
//! port, a port above 65535 (HAProxy wraps it), `weight x` or `maxconn x`
//! (HAProxy reads 0).

use super::commands::{text, Effect, Outcome};
use super::server::Reply;
use super::view::View;
use crate::config::overlay::{takes_dynamic_servers, NewServer, ServerChange};
use crate::shm::{AdminState, MAX_WEIGHT};
use std::net::{IpAddr, SocketAddr};

const REQUIRE: &str = "Require 'backend/server'.";

fn change(reply: &str, c: ServerChange) -> Outcome {
    Outcome {
        reply: Reply::Text(reply.to_owned()),
        effect: Effect::Servers(c),
    }
}

/// `backend/server`, both parts non-empty.
fn split_target(target: Option<&&str>) -> Option<(String, String)> {
    let (b, s) = target?.split_once('/')?;
    (!b.is_empty() && !s.is_empty()).then(|| (b.to_owned(), s.to_owned()))
}

/// `add server B/S ADDR [weight W] [backup] [maxconn N]`.
pub fn add_server(v: &View, args: &[&str]) -> Outcome {
    let Some((b, s)) = split_target(args.first()) else {
        return text(REQUIRE);
    };
    let Some(u) = v.config.upstreams.position(&b) else {
        return text("No such backend.");
    };
    if !takes_dynamic_servers(v.config.upstreams[u].balance) {
        return text("Backend must use a dynamic load balancing to support dynamic servers.");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return text(format!(
            "character '{c}' is not permitted in server name '{s}'.\n"
        ));
    }
    let Some(addr) = args.get(1) else {
        return text("'server' expects <name> and <addr>[:<port>] as arguments.\n");
    };
    let addr = match parse_server_addr(addr) {
        Ok(a) => a,
        Err(e) => return text(e),
    };
    let mut server = NewServer {
        name: s,
        addr,
        weight: 1,
        backup: false,
        maxconn: None,
        id: None,
    };
    let mut opts = args[2..].iter();
    while let Some(&k) = opts.next() {
        match k {
            "backup" => server.backup = true,
            "weight" => {
                let Some(w) = opts.next().and_then(|w| w.parse::<i64>().ok()) else {
                    return text("'weight' expects an integer argument.\n");
                };
                match u32::try_from(w) {
                    Ok(w) if w <= MAX_WEIGHT => server.weight = w,
                    _ => {
                        return text(format!(
                            "weight of server {} is not within 0 and {MAX_WEIGHT} ({w})..\n",
                            server.name
                        ))
                    }
                }
            }
            "maxconn" => match opts.next().and_then(|m| m.parse::<u32>().ok()) {
                Some(m) => server.maxconn = Some(m),
                None => return text("'maxconn' expects a positive integer argument.\n"),
            },
            other => return text(format!("unknown keyword '{other}'.\n")),
        }
    }
    if v.config.upstreams[u]
        .servers
        .iter()
        .any(|x| x.name == server.name)
    {
        return text("Already exists a server with the same name in backend.\n");
    }
    log::warn!(
        "server {b}/{} added at {} (in maintenance until enabled) over the admin socket",
        server.name,
        server.addr
    );
    change(
        "New server registered.\n",
        ServerChange::Add {
            upstream: b,
            server,
        },
    )
}

/// `ADDR` of `add server`: `IPv4:PORT`, `[IPv6]:PORT` or `IPv6:PORT` (the
/// last colon separates the port, as in HAProxy), with HAProxy's errors
/// for a bad port.
fn parse_server_addr(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None => (rest.trim_end_matches(']'), None),
        },
        None => match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        },
    };
    let not_ip = || {
        format!(
            "Invalid address '{text}': an IP address and a port are expected \
             (forklb does not resolve host names at runtime).\n"
        )
    };
    let ip: IpAddr = host.parse().map_err(|_| not_ip())?;
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Err(format!(
            "Missing port in '{text}' (forklb servers need one).\n"
        ));
    };
    if let Some((i, c)) = port.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        if c == '-' && i > 0 {
            return Err(format!("port range not permitted here in '{text}'\n"));
        }
        return Err(format!(
            "invalid character '{c}' in port number '{port}' in '{text}'\n\n"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(SocketAddr::new(ip, p)),
        _ => Err(format!("invalid port '{port}'\n")),
    }
}

/// `del server B/S`: only a server in maintenance with nothing in flight
/// and nothing waiting for it alone (HAProxy's pending connections), in
/// this generation or a draining one.
pub fn del_server(v: &View, args: &[&str]) -> Outcome {
    let Some((b, s)) = split_target(args.first()) else {
        return text(REQUIRE);
    };
    let Some(u) = v.config.upstreams.position(&b) else {
        return text("No such backend.");
    };
    let Some(i) = v.config.upstreams[u]
        .servers
        .iter()
        .position(|x| x.name == s)
    else {
        return text("No such server.");
    };
    if v.shm.server(u, i).admin() != AdminState::Maint {
        return text("Only servers in maintenance mode can be deleted.");
    }
    let sh = v.shm.server(u, i);
    if sh.active() + sh.queued() > 0 || v.draining_attached(&b, &s) > 0 {
        return text("Server still has connections attached to it, cannot remove it.");
    }
    log::warn!("server {b}/{s} deleted over the admin socket");
    change(
        "Server deleted.",
        ServerChange::Delete {
            upstream: b,
            server: s,
        },
    )
}

/// `set server B/S addr IP [port P]`, answered as HAProxy words it: what
/// changed of the address and of the port, `by 'stats socket command'`.
/// As in HAProxy, a good IP address with a bad port changes the address.
pub fn set_addr(v: &View, u: usize, s: usize, args: &[&str]) -> Outcome {
    let Some(&given) = args.first() else {
        return text("set server <b>/<s> addr requires an address and optionally a port.\n");
    };
    const BY: &str = " by 'stats socket command'\n";
    let bare = given
        .strip_prefix('[')
        .and_then(|g| g.strip_suffix(']'))
        .unwrap_or(given);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return text(format!("Invalid addr '{given}'{BY}"));
    };
    let up = &v.config.upstreams[u];
    let old = up.servers[s].addr;
    let mut new = old;
    let mut parts = Vec::new();
    if ip == old.ip() {
        parts.push("no need to change the addr".to_owned());
    } else {
        parts.push(format!("IP changed from '{}' to '{given}'", old.ip()));
        new.set_ip(ip);
    }
    if args.get(1) == Some(&"port") {
        let p = args.get(2).copied().unwrap_or("");
        match p.parse::<u16>() {
            Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {
                if port == old.port() {
                    parts.push("no need to change the port".to_owned());
                } else {
                    parts.push(format!("port changed from '{}' to '{port}'", old.port()));
                    new.set_port(port);
                }
            }
            _ => parts.push(format!("problem converting port '{p}' to an int")),
        }
    }
    let reply = format!("{}{BY}", parts.join(", "));
    if new == old {
        return text(reply);
    }
    log::warn!(
        "server {}/{} address changed from {old} to {new} over the admin socket",
        up.name,
        up.servers[s].name
    );
    change(
        &reply,
        ServerChange::Addr {
            upstream: up.name.clone(),
            server: up.servers[s].name.clone(),
            addr: new,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let ok = |t: &str| parse_server_addr(t).expect(t).to_string();
        assert_eq!(ok("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(ok("[::1]:80"), "[::1]:80");
        assert_eq!(ok("::1:80"), "[::1]:80");
        let err = |t: &str| parse_server_addr(t).expect_err(t);
        assert_eq!(
            err("127.0.0.1:abc"),
            "invalid character 'a' in port number 'abc' in '127.0.0.1:abc'\n\n"
        );
        assert_eq!(
            err("127.0.0.1:1-5"),
            "port range not permitted here in '127.0.0.1:1-5'\n"
        );
        assert_eq!(err("127.0.0.1:99999"), "invalid port '99999'\n");
        assert!(err("127.0.0.1").starts_with("Missing port"));
        assert!(err("example.com:80").starts_with("Invalid address"));
    }
}
