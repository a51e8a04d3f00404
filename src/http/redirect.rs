//! Redirect targets with nginx's variables: `https://$host$request_uri`
//! sends a client to the same place over HTTPS.

/// A parsed `redirect.to`: literal text and the variables between it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// The request's host, lowercase, without the port.
    Host,
    /// The request target as the client sent it (path and query).
    RequestUri,
}

const VARIABLES: [(&str, Part); 2] = [("$host", Part::Host), ("$request_uri", Part::RequestUri)];

impl Template {
    /// Splits `to` at its variables; an unknown `$name` is an error.
    pub fn parse(to: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = to;
        while let Some(dollar) = rest.find('$') {
            text.push_str(&rest[..dollar]);
            rest = &rest[dollar..];
            // Longest name first: `$host` must not match `$hostname`.
            let name_len = 1 + rest[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - 1);
            let name = &rest[..name_len];
            let Some((_, part)) = VARIABLES.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "unknown variable {name} in {to:?} (known: $host, $request_uri)"
                ));
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part.clone());
            rest = &rest[name_len..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The Location for a request; None if a variable it needs is missing
    /// or unsafe to echo (a host with characters no host name has).
    pub fn expand(&self, host: Option<&str>, request_uri: &str) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Host => {
                    let h = host.filter(|h| !h.is_empty() && h.bytes().all(host_byte))?;
                    out.push_str(h);
                }
                Part::RequestUri => out.push_str(request_uri),
            }
        }
        Some(out)
    }
}

/// The text `parse` read: literal text never holds a `$` (an unknown or
/// empty variable name is an error), so this is exact.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            f.write_str(match part {
                Part::Text(t) => t,
                Part::Host => "$host",
                Part::RequestUri => "$request_uri",
            })?;
        }
        Ok(())
    }
}

fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_substituted() {
        let t = Template::parse("https://$host$request_uri").unwrap();
        assert_eq!(
            t.expand(Some("a.test"), "/x?y=1").as_deref(),
            Some("https://a.test/x?y=1")
        );
        let t = Template::parse("https://$host:8443/new$request_uri").unwrap();
        assert_eq!(
            t.expand(Some("a.test"), "/p").as_deref(),
            Some("https://a.test:8443/new/p")
        );
        assert_eq!(t.to_string(), "https://$host:8443/new$request_uri");
        let t = Template::parse("https://example.com/").unwrap();
        assert_eq!(
            t.expand(None, "/p").as_deref(),
            Some("https://example.com/")
        );
    }

    #[test]
    fn unknown_variables_and_bad_hosts_are_refused() {
        assert!(Template::parse("https://$hostname/").is_err());
        assert!(Template::parse("https://$/").is_err());
        let t = Template::parse("https://$host/").unwrap();
        assert_eq!(t.expand(None, "/"), None);
        assert_eq!(t.expand(Some("a\"b"), "/"), None);
        assert_eq!(t.expand(Some(""), "/"), None);
    }
}
