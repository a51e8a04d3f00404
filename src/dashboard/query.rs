//! The query string of a dashboard request: `key=value` pairs joined by
//! `&`, percent-decoded (`+` is a space, as forms and `URLSearchParams`
//! write it). A pair that does not decode to UTF-8 is dropped.

pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// The query of an origin-form target (`/stats?json` → `json`).
    pub fn of_target(target: &str) -> Query {
        let q = target.split_once('?').map_or("", |(_, q)| q);
        // A fragment never reaches a server; if one does, it is not query.
        let q = q.split_once('#').map_or(q, |(q, _)| q);
        let pairs = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((decode(k)?, decode(v)?))
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = b.get(i + 1).copied().and_then(hex)?;
                let lo = b.get(i + 2).copied().and_then(hex)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        let q = Query::of_target("/s?action=state&server=api%2Fweb%201&value=maint&json");
        assert_eq!(q.get("action"), Some("state"));
        assert_eq!(q.get("server"), Some("api/web 1"));
        assert_eq!(q.get("json"), Some(""));
        assert_eq!(q.get("x"), None);
        assert!(Query::of_target("/s").pairs.is_empty());
        assert!(Query::of_target("/s?").pairs.is_empty());
        // Bad escapes and non-UTF-8 drop the pair.
        let q = Query::of_target("/s?a=%zz&b=%ff&c=1+2");
        assert_eq!(
            (q.get("a"), q.get("b"), q.get("c")),
            (None, None, Some("1 2"))
        );
    }
}
