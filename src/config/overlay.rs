//! Servers changed over the runtime API (`add server`, `del server`, `set
//! server B/S addr`): the change itself ([`ServerChange`]), how it edits a
//! [`Config`], and the *overlay* — what is different from the file — that
//! the master re-applies over every configuration it loads afterwards (HUP,
//! and with `state_file` a restart or a USR2 upgrade), so a runtime change
//! is not silently undone by a reload. (HAProxy forgets added servers on
//! reload; forklb does not.)
//!
//! The overlay is kept per (upstream, server) name, as the net effect of
//! the commands, not as their history: a server added and then deleted
//! leaves nothing behind; an address changed twice is one entry. When it is
//! re-applied over a newly loaded file:
//! - an added server the file now defines itself: **the file wins** (the
//!   operator wrote it down; the runtime entry is dropped);
//! - a deleted server the file still defines: deleted again;
//! - a changed address: applied again, unless the file no longer defines
//!   the server (then the entry is dropped);
//! - anything in an upstream the file no longer has is dropped.
//!
//! In the state file the overlay is written as comment lines after the
//! `show servers state` rows (`# forklb-server add web/s3 10.0.0.3:80
//! weight 2 backup`), which HAProxy and older forklb readers skip.

use super::{Balance, Config, Server, Upstream};
use std::fmt;
use std::net::SocketAddr;

/// A server as `add server` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// `maxconn N`: requests in flight on the server at most (0 = no limit).
    pub maxconn: Option<u32>,
    /// The id it was given when added (None until then): it keeps it
    /// when the change is applied again over a reloaded file, so that
    /// `#ID` names and `show stat`'s sid stay the same server's.
    pub id: Option<usize>,
}

/// One runtime change of an upstream's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerChange {
    Add {
        upstream: String,
        server: NewServer,
    },
    Delete {
        upstream: String,
        server: String,
    },
    Addr {
        upstream: String,
        server: String,
        addr: SocketAddr,
    },
}

impl ServerChange {
    pub fn upstream(&self) -> &str {
        match self {
            ServerChange::Add { upstream, .. }
            | ServerChange::Delete { upstream, .. }
            | ServerChange::Addr { upstream, .. } => upstream,
        }
    }

    pub fn server(&self) -> &str {
        match self {
            ServerChange::Add { server, .. } => &server.name,
            ServerChange::Delete { server, .. } | ServerChange::Addr { server, .. } => server,
        }
    }
}

/// Why a change does not fit a configuration (the runtime API checks all
/// of these before it asks for a change; a reloaded file may differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    NoUpstream,
    NoServer,
    Exists,
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeError::NoUpstream => "no such upstream",
            ChangeError::NoServer => "no such server",
            ChangeError::Exists => "a server of that name exists",
        })
    }
}

/// Whether an upstream's balancing takes servers added at runtime
/// (HAProxy: not static-rr, nor a map-based hash; forklb's `hash` is
/// consistent hashing, which does).
pub fn takes_dynamic_servers(balance: Balance) -> bool {
    balance != Balance::StaticRr
}

impl NewServer {
    /// The configuration's server for it in `up`: `addr_text` (the Host
    /// sent to a server for clients without one) is the address itself,
    /// and with upstream TLS it is verified (and SNI named) as a
    /// configured `addr: IP:PORT` is — `tls.sni` if set, else its IP.
    fn to_server(&self, up: &Upstream) -> Server {
        let addr_text = self.addr.to_string();
        Server {
            name: self.name.clone(),
            addr: self.addr,
            tls_name: tls_name(up, &addr_text),
            addr_text,
            weight: self.weight,
            backup: self.backup,
            maxconn: self.maxconn.unwrap_or(0),
            id: self
                .id
                .filter(|id| up.servers.iter().all(|s| s.id != *id))
                .unwrap_or_else(|| lowest_free_id(up)),
        }
    }
}

/// HAProxy's id for a server added to `up`: the lowest one no server
/// has (after `del server`, the deleted one's).
fn lowest_free_id(up: &Upstream) -> usize {
    let mut taken: Vec<usize> = up.servers.iter().map(|s| s.id).collect();
    taken.sort_unstable();
    let mut id = 1;
    for t in taken {
        if t == id {
            id += 1;
        } else if t > id {
            break;
        }
    }
    id
}

/// What a server of `up` at `addr_text` is verified against (none
/// without upstream TLS), as the configuration's build step names it.
fn tls_name(up: &Upstream, addr_text: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    up.tls.as_ref()?;
    let sni = up.tls_settings.as_ref().and_then(|t| t.sni.as_deref());
    crate::tls::client::server_name(sni, addr_text)
}

/// `set server B/S addr`: where the server lives changes, not who it is.
/// A server configured by host name keeps that name for its Host default
/// and its TLS identity (its certificate names the host, not the new IP);
/// one configured by IP address is now known by the new one.
fn move_server(up: &mut Upstream, i: usize, addr: SocketAddr) {
    let by_ip = up.servers[i].addr_text.parse::<SocketAddr>().is_ok();
    let tls_name = by_ip.then(|| tls_name(up, &addr.to_string()));
    let s = &mut up.servers[i];
    s.addr = addr;
    if let Some(name) = tls_name {
        s.addr_text = addr.to_string();
        s.tls_name = name;
    }
}

/// Applies `change` to `cfg`. Servers are appended at the end of their
/// upstream and deleted ones removed, so positions of the others keep
/// their order.
pub fn apply(cfg: &mut Config, change: &ServerChange) -> Result<(), ChangeError> {
    let up = cfg
        .upstreams
        .0
        .iter_mut()
        .find(|u| u.name == change.upstream())
        .ok_or(ChangeError::NoUpstream)?;
    let pos = up.servers.iter().position(|s| s.name == change.server());
    match (change, pos) {
        (ServerChange::Add { server, .. }, None) => {
            let s = server.to_server(up);
            up.servers.push(s);
        }
        (ServerChange::Add { .. }, Some(_)) => return Err(ChangeError::Exists),
        (ServerChange::Delete { .. }, Some(i)) => {
            up.servers.remove(i);
        }
        (ServerChange::Addr { addr, .. }, Some(i)) => move_server(up, i, *addr),
        (ServerChange::Delete { .. } | ServerChange::Addr { .. }, None) => {
            return Err(ChangeError::NoServer)
        }
    }
    Ok(())
}

/// What is different from the file for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Added(NewServer),
    Deleted,
    Moved(SocketAddr),
}

/// The runtime changes to re-apply over a newly loaded configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// (upstream, server, entry), in the order servers were added.
    entries: Vec<(String, String, Entry)>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The latest entry of a server (a file server deleted and added
    /// again at runtime has two: `Deleted`, then `Added`).
    fn find(&self, upstream: &str, server: &str) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|(u, s, _)| u == upstream && s == server)
    }

    /// Whether an operator set this server's address (`set server addr`,
    /// or `add server`): DNS re-resolution leaves such a server alone.
    pub fn sets_addr(&self, upstream: &str, server: &str) -> bool {
        self.find(upstream, server)
            .is_some_and(|i| matches!(self.entries[i].2, Entry::Moved(_) | Entry::Added(_)))
    }

    /// Records a change that was applied to the running configuration.
    pub fn record(&mut self, change: &ServerChange) {
        let (u, s) = (change.upstream(), change.server());
        let at = self.find(u, s);
        let entry = at.map(|i| &mut self.entries[i].2);
        match (change, entry) {
            // A name is added only when no server has it. After a file
            // server of that name was deleted, its `Deleted` stays before
            // the new entry: the file's server goes, then the runtime one
            // comes, and deleting that one later leaves the file's deleted.
            (ServerChange::Add { server, .. }, _) => {
                self.entries
                    .push((u.to_owned(), s.to_owned(), Entry::Added(server.clone())));
            }
            (ServerChange::Delete { .. }, Some(Entry::Added(_))) => {
                if let Some(i) = at {
                    self.entries.remove(i);
                }
            }
            (ServerChange::Delete { .. }, Some(e)) => *e = Entry::Deleted,
            (ServerChange::Delete { .. }, None) => {
                self.entries
                    .push((u.to_owned(), s.to_owned(), Entry::Deleted));
            }
            (ServerChange::Addr { addr, .. }, Some(Entry::Added(n))) => n.addr = *addr,
            (ServerChange::Addr { addr, .. }, Some(e)) => *e = Entry::Moved(*addr),
            (ServerChange::Addr { addr, .. }, None) => {
                self.entries
                    .push((u.to_owned(), s.to_owned(), Entry::Moved(*addr)));
            }
        }
    }

    /// Re-applies the overlay over a freshly loaded `cfg` (see the module
    /// documentation for who wins); entries that no longer apply are
    /// dropped. Returns one line per dropped entry, for the log.
    pub fn reapply(&mut self, cfg: &mut Config) -> Vec<String> {
        let mut notes = Vec::new();
        self.entries.retain(|(u, s, entry)| {
            let change = match entry {
                Entry::Added(n) => ServerChange::Add {
                    upstream: u.clone(),
                    server: n.clone(),
                },
                Entry::Deleted => ServerChange::Delete {
                    upstream: u.clone(),
                    server: s.clone(),
                },
                Entry::Moved(addr) => ServerChange::Addr {
                    upstream: u.clone(),
                    server: s.clone(),
                    addr: *addr,
                },
            };
            match apply(cfg, &change) {
                Ok(()) => true,
                Err(e) => {
                    let what = match (entry, e) {
                        (Entry::Added(_), ChangeError::Exists) => {
                            "added at runtime, now defined in the file: the file's definition wins"
                        }
                        (_, ChangeError::NoUpstream) => {
                            "changed at runtime: its upstream is no longer configured"
                        }
                        _ => "changed at runtime: no longer configured",
                    };
                    notes.push(format!("server {u}/{s} {what}"));
                    false
                }
            }
        });
        notes
    }

    /// The overlay as state-file comment lines (see [`Overlay::parse`]).
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        if self.entries.is_empty() {
            return out;
        }
        out.push_str("# forklb runtime servers (re-applied at start):\n");
        for (u, s, entry) in &self.entries {
            let line = match entry {
                Entry::Added(n) => {
                    let mut l = format!("add {u}/{s} {} weight {}", n.addr, n.weight);
                    if n.backup {
                        l.push_str(" backup");
                    }
                    if let Some(m) = n.maxconn {
                        l.push_str(&format!(" maxconn {m}"));
                    }
                    if let Some(id) = n.id {
                        l.push_str(&format!(" id {id}"));
                    }
                    l
                }
                Entry::Deleted => format!("del {u}/{s}"),
                Entry::Moved(addr) => format!("addr {u}/{s} {addr}"),
            };
            out.push_str(PREFIX);
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Reads the lines [`to_lines`](Overlay::to_lines) wrote out of a state
    /// file's text; other lines (the `show servers state` rows) are not its
    /// business. A line it cannot read is skipped (returned, for the log).
    pub fn parse(text: &str) -> (Overlay, Vec<String>) {
        let mut overlay = Overlay::default();
        let mut bad = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix(PREFIX) else {
                continue;
            };
            match parse_line(rest) {
                Some(change) => overlay.record(&change),
                None => bad.push(line.to_owned()),
            }
        }
        (overlay, bad)
    }
}

/// What starts an overlay line in the state file.
const PREFIX: &str = "# forklb-server ";

fn parse_line(line: &str) -> Option<ServerChange> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (op, target, rest) = match words.as_slice() {
        [op, target, rest @ ..] => (*op, *target, rest),
        _ => return None,
    };
    let (u, s) = target.split_once('/')?;
    let (upstream, name) = (u.to_owned(), s.to_owned());
    match (op, rest) {
        ("del", []) => Some(ServerChange::Delete {
            upstream,
            server: name,
        }),
        ("addr", [addr]) => Some(ServerChange::Addr {
            upstream,
            server: name,
            addr: addr.parse().ok()?,
        }),
        ("add", [addr, opts @ ..]) => {
            let mut n = NewServer {
                name,
                addr: addr.parse().ok()?,
                weight: 1,
                backup: false,
                maxconn: None,
                id: None,
            };
            let mut it = opts.iter();
            while let Some(&k) = it.next() {
                match k {
                    "weight" => n.weight = it.next()?.parse().ok()?,
                    "maxconn" => n.maxconn = Some(it.next()?.parse().ok()?),
                    "id" => n.id = Some(it.next()?.parse().ok()?),
                    "backup" => n.backup = true,
                    _ => return None,
                }
            }
            Some(ServerChange::Add {
                upstream,
                server: n,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> Config {
        Config::from_yaml_str(
            "listeners:\n  - name: web\n    bind: ['127.0.0.1:8080']\n    routes:\n      - upstream: web\n\
             upstreams:\n  web:\n    servers:\n      - {name: a, addr: '127.0.0.1:9001'}\n      - {name: b, addr: '127.0.0.1:9002'}\n",
            Path::new("/tmp/x.yaml"),
        )
        .expect("test config")
    }

    fn names(c: &Config) -> Vec<String> {
        c.upstreams[0]
            .servers
            .iter()
            .map(|s| format!("{}={}", s.name, s.addr))
            .collect()
    }

    fn add(name: &str, addr: &str) -> ServerChange {
        ServerChange::Add {
            upstream: "web".into(),
            server: NewServer {
                name: name.into(),
                addr: addr.parse().expect("addr"),
                weight: 2,
                backup: true,
                maxconn: Some(7),
                id: None,
            },
        }
    }

    fn del(name: &str) -> ServerChange {
        ServerChange::Delete {
            upstream: "web".into(),
            server: name.into(),
        }
    }

    fn moved(name: &str, addr: &str) -> ServerChange {
        ServerChange::Addr {
            upstream: "web".into(),
            server: name.into(),
            addr: addr.parse().expect("addr"),
        }
    }

    #[test]
    fn changes_edit_the_configuration() {
        let mut c = cfg();
        apply(&mut c, &add("c", "127.0.0.1:9003")).expect("add");
        assert_eq!(
            apply(&mut c, &add("c", "127.0.0.1:9003")),
            Err(ChangeError::Exists)
        );
        apply(&mut c, &del("a")).expect("del");
        assert_eq!(apply(&mut c, &del("a")), Err(ChangeError::NoServer));
        apply(&mut c, &moved("b", "127.0.0.2:80")).expect("addr");
        assert_eq!(names(&c), ["b=127.0.0.2:80", "c=127.0.0.1:9003"]);
        let added = &c.upstreams[0].servers[1];
        assert_eq!((added.weight, added.backup, added.maxconn), (2, true, 7));
        assert_eq!(added.addr_text, "127.0.0.1:9003");
        // Ids stay: b is still 2; an added server takes the lowest free
        // one (c took 3 while a had 1; d gets a's 1 now).
        apply(&mut c, &add("d", "127.0.0.1:9004")).expect("add");
        let ids: Vec<usize> = c.upstreams[0].servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, [2, 3, 1]);
    }

    #[test]
    fn a_host_named_server_keeps_its_name_when_it_moves() {
        let mut c = cfg();
        c.upstreams.0[0].servers[0].addr_text = "api.internal:9001".into();
        apply(&mut c, &moved("a", "127.0.0.9:9009")).expect("addr");
        apply(&mut c, &moved("b", "127.0.0.8:9008")).expect("addr");
        let s = &c.upstreams[0].servers;
        assert_eq!(s[0].addr_text, "api.internal:9001");
        assert_eq!(s[0].addr.to_string(), "127.0.0.9:9009");
        assert_eq!(s[1].addr_text, "127.0.0.8:9008");
    }

    #[test]
    fn overlay_keeps_the_net_effect_and_reapplies_it() {
        let mut o = Overlay::default();
        for ch in [
            add("c", "127.0.0.1:9003"),
            add("d", "127.0.0.1:9004"),
            del("d"),
            moved("c", "127.0.0.1:9005"),
            del("a"),
            moved("b", "127.0.0.2:80"),
        ] {
            o.record(&ch);
        }
        let mut c = cfg();
        assert!(o.reapply(&mut c).is_empty());
        assert_eq!(names(&c), ["b=127.0.0.2:80", "c=127.0.0.1:9005"]);
        // Through the state file and back: the same overlay.
        let (back, bad) = Overlay::parse(&format!("1\n# be_id ...\n{}", o.to_lines()));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, o);
    }

    #[test]
    fn a_file_server_deleted_stays_deleted_after_its_name_comes_and_goes() {
        let mut o = Overlay::default();
        for ch in [del("b"), add("b", "127.0.0.1:9004"), del("b")] {
            o.record(&ch);
        }
        let mut c = cfg();
        assert!(o.reapply(&mut c).is_empty());
        assert_eq!(names(&c), ["a=127.0.0.1:9001"]);
        // Added again and moved: the runtime one, at its new address.
        o.record(&add("b", "127.0.0.1:9004"));
        o.record(&moved("b", "127.0.0.1:9006"));
        let mut c = cfg();
        assert!(o.reapply(&mut c).is_empty());
        assert_eq!(names(&c), ["a=127.0.0.1:9001", "b=127.0.0.1:9006"]);
        let (back, bad) = Overlay::parse(&format!("1\n# be_id ...\n{}", o.to_lines()));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, o);
    }

    #[test]
    fn added_servers_keep_the_ids_they_were_given() {
        let with_id = |name: &str, addr: &str, id: usize| {
            let mut ch = add(name, addr);
            if let ServerChange::Add { server, .. } = &mut ch {
                server.id = Some(id);
            }
            ch
        };
        // Added as 4 then 3 (3 was free again after a deletion).
        let mut o = Overlay::default();
        o.record(&with_id("x", "127.0.0.1:9004", 4));
        o.record(&with_id("y", "127.0.0.1:9003", 3));
        let mut c = cfg();
        assert!(o.reapply(&mut c).is_empty());
        let ids: Vec<(String, usize)> = c.upstreams[0]
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.id))
            .collect();
        assert_eq!(
            ids,
            [
                ("a".into(), 1),
                ("b".into(), 2),
                ("x".into(), 4),
                ("y".into(), 3)
            ]
        );
        let (back, bad) = Overlay::parse(&format!("1\n# be_id ...\n{}", o.to_lines()));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, o);
    }

    #[test]
    fn the_file_wins_over_an_added_server_of_the_same_name() {
        let mut o = Overlay::default();
        o.record(&add("b", "127.0.0.1:9999"));
        let mut c = cfg();
        let notes = o.reapply(&mut c);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(o.is_empty());
        assert_eq!(names(&c), ["a=127.0.0.1:9001", "b=127.0.0.1:9002"]);
    }

    #[test]
    fn unreadable_lines_are_reported_not_applied() {
        let (o, bad) = Overlay::parse(
            "# forklb-server add web/x nope\n# forklb-server frob web/x\n# other comment\n",
        );
        assert!(o.is_empty());
        assert_eq!(bad.len(), 2);
    }
}
