//! A route's header rules (`request_headers`, `response_headers`: `set`,
//! `add`, `remove`) and the variables their values may use (`$remote_addr`,
//! `$remote_port`, `$host`, `$scheme`, `$request_id`, `$server_name`,
//! `$ssl_client_s_dn`), checked once at load.
//!
//! Per request, a route with rules expands its values once ([`Applied`]):
//! values without variables are used as loaded, the others are written
//! into one buffer, so a request costs at most one allocation for them.
//! The writers of the upstream request and of the client response then
//! skip the fields a rule replaces or removes and append the rules'
//! fields. Rules apply in a fixed order, as HAProxy's `del-header`,
//! `set-header` and `add-header` would written in that order: `remove`
//! drops every field of the name, `set` replaces every field of the name
//! by one, `add` appends one and keeps the others.
//!
//! Fields that frame or route the message (Content-Length,
//! Transfer-Encoding, Connection and the other hop-by-hop fields, Host) are
//! refused in rules: editing them could make forklb and a peer disagree on
//! where a message ends (request smuggling).

pub use super::request_id::RequestId;
use std::net::SocketAddr;
use std::sync::Arc;

/// A variable of a header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    /// The request's host, lowercase, without port (nginx's `$host`).
    Host,
    Scheme,
    RequestId,
    /// The listener's name (nginx: the name of the server block).
    ServerName,
    /// The verified client certificate's subject (mTLS), empty without one.
    SslClientSDn,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "host" => Var::Host,
            "scheme" => Var::Scheme,
            "request_id" => Var::RequestId,
            "server_name" => Var::ServerName,
            "ssl_client_s_dn" => Var::SslClientSDn,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A header value as written: text and `$name` / `${name}` variables;
/// `$$` is a `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        if let Some(c) = s
            .chars()
            .find(|&c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            return Err(format!("value {s:?} contains the control character {c:?}"));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                text.push('$');
                rest = r;
                continue;
            }
            let (name, after) = if let Some(r) = rest.strip_prefix('{') {
                let end = r
                    .find('}')
                    .ok_or_else(|| format!("value {s:?}: unclosed ${{"))?;
                (&r[..end], &r[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            let var = Var::parse(name).ok_or_else(|| {
                format!(
                    "value {s:?}: unknown variable ${name} (known: $remote_addr, $remote_port, \
                     $host, $scheme, $request_id, $server_name, $ssl_client_s_dn; $$ is a $)"
                )
            })?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(var));
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            parts,
            source: s.to_owned(),
        })
    }

    /// The value as written (for `forklb -T`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value when it has no variable: the same for every request.
    fn fixed(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(b""),
            [Part::Text(t)] => Some(t.as_bytes()),
            _ => None,
        }
    }

    /// Room the expanded value usually takes (a longer one still fits: the
    /// buffer grows).
    fn usual_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Var(Var::RequestId) => 32,
                Part::Var(Var::RemoteAddr) => 39,
                Part::Var(Var::RemotePort) => 5,
                Part::Var(Var::Scheme) => 5,
                Part::Var(Var::Host | Var::ServerName) => 64,
                Part::Var(Var::SslClientSDn) => 128,
            })
            .sum()
    }

    fn expand(&self, v: &Vars, out: &mut Vec<u8>) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(var) => v.push(*var, out),
            }
        }
    }
}

/// What the variables stand for in one request.
pub struct Vars<'a> {
    pub client: SocketAddr,
    pub host: &'a [u8],
    pub scheme: &'a str,
    pub request_id: RequestId,
    pub server_name: &'a str,
    pub ssl_client_s_dn: &'a str,
}

impl Vars<'_> {
    fn push(&self, var: Var, out: &mut Vec<u8>) {
        match var {
            Var::RemoteAddr => super::rewrite::push_ip(out, self.client.ip()),
            Var::RemotePort => super::rewrite::push_decimal(out, u32::from(self.client.port())),
            Var::Host => out.extend_from_slice(self.host),
            Var::Scheme => out.extend_from_slice(self.scheme.as_bytes()),
            Var::RequestId => self.request_id.push_hex(out),
            Var::ServerName => out.extend_from_slice(self.server_name.as_bytes()),
            // A certificate's subject may hold any character: only what a
            // field value may carry goes out.
            Var::SslClientSDn => out.extend(
                self.ssl_client_s_dn
                    .bytes()
                    .filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b)),
            ),
        }
    }
}

/// The rules of one direction, checked: names to drop (lowercase), fields
/// to put (set, then add).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    drop: Vec<String>,
    put: Vec<(String, Template)>,
    /// `put`'s names in lower case (HTTP/2 field names).
    put_lower: Vec<Vec<u8>>,
    /// Room the values with variables usually take, expanded: the
    /// capacity of a request's buffer (0: every value is fixed).
    dynamic_len: usize,
    /// As written, for `forklb -T`.
    pub set: Vec<(String, Template)>,
    pub add: Vec<(String, Template)>,
    pub remove: Vec<String>,
}

/// Whether a rule may not touch the field: the hop-by-hop ones (framing
/// and the connection's own, `rewrite::is_hop_by_hop`), Content-Length,
/// and Host (routing).
fn forbidden(name: &str) -> bool {
    super::rewrite::is_hop_by_hop(name)
        || super::name_is(name, "content-length")
        || super::name_is(name, "host")
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(super::is_token_byte) {
        return Err(format!("{name:?} is not a header field name"));
    }
    if forbidden(name) {
        return Err(format!(
            "{name} frames or routes the message and cannot be changed by a rule"
        ));
    }
    Ok(())
}

impl Edits {
    /// Checks the rules of one direction.
    pub fn new(
        set: Vec<(String, String)>,
        add: Vec<(String, String)>,
        remove: Vec<String>,
    ) -> Result<Edits, String> {
        let mut e = Edits::default();
        for (kind, list) in [("set", set), ("add", add)] {
            for (name, value) in list {
                check_name(&name).map_err(|m| format!("{kind}: {m}"))?;
                let t = Template::parse(&value).map_err(|m| format!("{kind}.{name}: {m}"))?;
                if kind == "set" {
                    e.drop.push(name.to_ascii_lowercase());
                    e.set.push((name.clone(), t.clone()));
                } else {
                    e.add.push((name.clone(), t.clone()));
                }
                e.put_lower.push(name.to_ascii_lowercase().into_bytes());
                e.put.push((name, t));
            }
        }
        for name in remove {
            check_name(&name).map_err(|m| format!("remove: {m}"))?;
            e.drop.push(name.to_ascii_lowercase());
            e.remove.push(name);
        }
        e.dynamic_len = e
            .put
            .iter()
            .filter(|(_, t)| t.fixed().is_none())
            .map(|(_, t)| LEN_PREFIX + t.usual_len())
            .sum();
        Ok(e)
    }

    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.put.is_empty()
    }

    /// Whether a field named `name` from the peer is left out.
    #[inline]
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A route's rules, both directions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteHeaders {
    pub request: Edits,
    pub response: Edits,
}

/// The bytes before each expanded value in [`Applied`]'s buffers: its
/// length (u32, little-endian).
const LEN_PREFIX: usize = 4;

/// A route's rules with their values expanded for one request.
#[derive(Debug)]
pub struct Applied {
    rules: Arc<RouteHeaders>,
    /// The values with variables of each direction, in `put` order, each
    /// after its length ([`LEN_PREFIX`]); empty when all are fixed.
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Applied {
    pub fn new(rules: &Arc<RouteHeaders>, vars: &Vars) -> Applied {
        Applied {
            request: Self::expand(&rules.request, vars),
            response: Self::expand(&rules.response, vars),
            rules: Arc::clone(rules),
        }
    }

    fn expand(e: &Edits, vars: &Vars) -> Vec<u8> {
        if e.dynamic_len == 0 {
            return Vec::new();
        }
        let mut buf = Vec::with_capacity(e.dynamic_len);
        for (_, t) in e.put.iter().filter(|(_, t)| t.fixed().is_none()) {
            let at = buf.len();
            buf.extend_from_slice(&[0; LEN_PREFIX]);
            t.expand(vars, &mut buf);
            // A value over 4 GiB cannot come from a head of bounded size.
            let len = u32::try_from(buf.len() - at - LEN_PREFIX).unwrap_or(u32::MAX);
            buf[at..at + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
        }
        buf
    }

    pub fn request(&self) -> Side<'_> {
        Side {
            edits: &self.rules.request,
            values: &self.request,
        }
    }

    pub fn response(&self) -> Side<'_> {
        Side {
            edits: &self.rules.response,
            values: &self.response,
        }
    }
}

/// One direction's rules of a request, ready for a writer.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    edits: &'a Edits,
    /// The expanded values with variables (see [`Applied`]).
    values: &'a [u8],
}

impl<'a> Side<'a> {
    /// Whether the peer's field `name` is left out.
    #[inline]
    pub fn drops(&self, name: &[u8]) -> bool {
        self.edits.drops(name)
    }

    /// The values of the fields to append, in `put` order: a fixed one as
    /// loaded, the others from the request's buffer.
    fn values(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.values;
        self.edits.put.iter().map(move |(_, t)| {
            if let Some(v) = t.fixed() {
                return v;
            }
            let Some((len, tail)) = rest.split_first_chunk::<LEN_PREFIX>() else {
                return &[][..];
            };
            let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
            let (v, tail) = tail.split_at_checked(len).unwrap_or((tail, &[]));
            rest = tail;
            v
        })
    }

    /// The fields to append: (name as written, value). A value that
    /// expanded to nothing (`$host` of a request without one) adds no
    /// field, as nginx's `add_header` and `proxy_set_header` leave out an
    /// empty value (a `set` then only removes).
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.edits
            .put
            .iter()
            .map(|(n, _)| n.as_str())
            .zip(self.values())
            .filter(|(_, v)| !v.is_empty())
    }

    /// An HTTP/1.1 head's lines for the fields.
    pub fn write_h1(&self, out: &mut Vec<u8>) {
        for (n, v) in self.fields() {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Applies the rules to an HTTP/2 field list (names in lower case).
    pub fn edit_list(&self, fields: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        fields.retain(|(n, _)| !self.drops(n));
        for (n, v) in self.lower_fields() {
            fields.push((n.to_vec(), v.to_vec()));
        }
    }

    /// Applies the rules to borrowed fields (names in lower case), as a
    /// response head goes to an HTTP/2 client.
    pub fn edit_borrowed<'f>(&self, fields: &mut Vec<(&'f [u8], &'f [u8])>)
    where
        'a: 'f,
    {
        fields.retain(|(n, _)| !self.drops(n));
        fields.extend(self.lower_fields());
    }

    fn lower_fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.edits
            .put_lower
            .iter()
            .map(Vec::as_slice)
            .zip(self.values())
            .filter(|(_, v)| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            client: "10.1.2.3:4567".parse().expect("addr"),
            host: b"example.com",
            scheme: "https",
            request_id: RequestId {
                process: 0xab,
                seq: 7,
            },
            server_name: "web",
            ssl_client_s_dn: "CN=client,O=Org\r\nX: y",
        }
    }

    fn expand(s: &str) -> String {
        let t = Template::parse(s).expect("template");
        let mut out = Vec::new();
        t.expand(&vars(), &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn templates_expand_variables() {
        assert_eq!(expand("plain"), "plain");
        assert_eq!(expand("$remote_addr:$remote_port"), "10.1.2.3:4567");
        assert_eq!(expand("${scheme}://$host/x"), "https://example.com/x");
        assert_eq!(
            expand("id=$request_id"),
            "id=00000000000000ab0000000000000007"
        );
        assert_eq!(expand("$$5 $server_name"), "$5 web");
        assert_eq!(expand("$ssl_client_s_dn"), "CN=client,O=OrgX: y");
        assert_eq!(expand(""), "");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("$nope").is_err());
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("a\r\nb").is_err());
        assert!(Template::parse("a\0").is_err());
    }

    #[test]
    fn framing_fields_cannot_be_edited() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Host",
            "TE",
            "Upgrade",
        ] {
            assert!(
                Edits::new(vec![(name.into(), "1".into())], vec![], vec![]).is_err(),
                "{name}"
            );
            assert!(
                Edits::new(vec![], vec![], vec![name.into()]).is_err(),
                "{name}"
            );
        }
        assert!(Edits::new(vec![("Bad Name".into(), "1".into())], vec![], vec![]).is_err());
    }

    #[test]
    fn fixed_and_expanded_values_keep_their_order() {
        let e = Edits::new(
            vec![
                ("A".into(), "$remote_addr".into()),
                ("B".into(), "fixed".into()),
                ("C".into(), "".into()),
            ],
            vec![
                ("D".into(), "${host}:$remote_port".into()),
                ("E".into(), "$ssl_client_s_dn".into()),
            ],
            vec![],
        )
        .expect("edits");
        let rules = Arc::new(RouteHeaders {
            request: Edits::default(),
            response: e,
        });
        let a = Applied::new(&rules, &vars());
        assert!(a.request.is_empty(), "no rules, no buffer");
        let got: Vec<(&str, &[u8])> = a.response().fields().collect();
        assert_eq!(
            got,
            [
                ("A", &b"10.1.2.3"[..]),
                ("B", b"fixed"),
                // C, empty, adds no field.
                ("D", b"example.com:4567"),
                ("E", b"CN=client,O=OrgX: y"),
            ]
        );
        let mut list = Vec::new();
        a.response().edit_list(&mut list);
        assert_eq!(list[2], (b"d".to_vec(), b"example.com:4567".to_vec()));
    }

    #[test]
    fn set_replaces_add_appends_remove_drops() {
        let e = Edits::new(
            vec![("X-Env".into(), "prod".into())],
            vec![("X-Id".into(), "$request_id".into())],
            vec!["X-Debug".into()],
        )
        .expect("edits");
        let rules = Arc::new(RouteHeaders {
            request: e,
            response: Edits::default(),
        });
        let a = Applied::new(&rules, &vars());
        let side = a.request();
        assert!(side.drops(b"x-env") && side.drops(b"X-DEBUG") && !side.drops(b"x-id"));
        let mut out = Vec::new();
        side.write_h1(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "X-Env: prod\r\nX-Id: 00000000000000ab0000000000000007\r\n"
        );
        let mut list = vec![
            (b"x-env".to_vec(), b"dev".to_vec()),
            (b"x-id".to_vec(), b"mine".to_vec()),
            (b"x-debug".to_vec(), b"1".to_vec()),
        ];
        side.edit_list(&mut list);
        let names: Vec<&[u8]> = list.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"x-id"[..], b"x-env", b"x-id"]);
    }

    #[test]
    fn a_value_that_expands_to_nothing_adds_no_field() {
        let e = Edits::new(
            vec![("X-Host".into(), "$host".into())],
            vec![("X-Dn".into(), "$ssl_client_s_dn".into())],
            vec![],
        )
        .expect("edits");
        let rules = Arc::new(RouteHeaders {
            request: e,
            response: Edits::default(),
        });
        let mut v = vars();
        v.host = b"";
        v.ssl_client_s_dn = "";
        let a = Applied::new(&rules, &v);
        let side = a.request();
        let mut out = Vec::new();
        side.write_h1(&mut out);
        assert_eq!(out, b"", "no `X-Host: ` line");
        // `set` still removes the client's field.
        assert!(side.drops(b"x-host"));
        let mut list = vec![(b"x-host".to_vec(), b"theirs".to_vec())];
        side.edit_list(&mut list);
        assert!(list.is_empty(), "{list:?}");
    }
}
