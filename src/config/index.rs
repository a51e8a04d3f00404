//! Upstreams and servers by name, for the places that look up many names at
//! once: carrying runtime state over to a new generation and applying a
//! state file. `Upstreams::position` and a scan of `servers` cost a pass over
//! the list per lookup, so one lookup per server grows with the square of the
//! server count (100,000 servers: seconds of master CPU per reload); this
//! index is built in one pass and answers each lookup in constant time.

use super::validated::Config;
use std::collections::HashMap;

/// Positions in `Config::upstreams` and in each upstream's `servers`.
pub struct ServerIndex<'a> {
    upstreams: HashMap<&'a str, (usize, HashMap<&'a str, usize>)>,
}

impl<'a> ServerIndex<'a> {
    /// Indexes a validated configuration (names are unique there).
    pub fn new(cfg: &'a Config) -> ServerIndex<'a> {
        let upstreams = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(u, up)| {
                let servers = up
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(s, srv)| (srv.name.as_str(), s))
                    .collect();
                (up.name.as_str(), (u, servers))
            })
            .collect();
        ServerIndex { upstreams }
    }

    /// The position of upstream `name`.
    pub fn upstream(&self, name: &str) -> Option<usize> {
        self.upstreams.get(name).map(|(u, _)| *u)
    }

    /// The positions of server `server` of upstream `upstream`.
    pub fn server(&self, upstream: &str, server: &str) -> Option<(usize, usize)> {
        let (u, servers) = self.upstreams.get(upstream)?;
        servers.get(server).map(|s| (*u, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn finds_upstreams_and_servers_by_name() {
        let yaml = r#"
listeners:
  - name: web
    bind: ["127.0.0.1:8080"]
    routes: [{upstream: a}]
upstreams:
  a:
    servers:
      - {name: a1, addr: "127.0.0.1:9001"}
      - {name: a2, addr: "127.0.0.1:9002"}
  b:
    servers:
      - {addr: "127.0.0.1:9003"}
"#;
        let cfg = Config::from_yaml_str(yaml, Path::new("/etc/forklb/forklb.yaml")).unwrap();
        let idx = ServerIndex::new(&cfg);
        assert_eq!(idx.upstream("b"), Some(1));
        assert_eq!(idx.upstream("c"), None);
        assert_eq!(idx.server("a", "a2"), Some((0, 1)));
        // A server's name defaults to its address.
        assert_eq!(idx.server("b", "127.0.0.1:9003"), Some((1, 0)));
        assert_eq!(idx.server("b", "a1"), None);
        assert_eq!(idx.server("c", "a1"), None);
    }
}
