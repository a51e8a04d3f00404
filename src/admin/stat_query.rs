//! The arguments of `show stat`, as HAProxy 2.6 takes them:
//! `show stat [{<iid>|<proxy>} <type> <sid>] [typed|json] [desc] [up|no-maint]`.
//! `<type>` is a mask (1 frontends, 2 backends, 4 servers, -1 all), `<sid>`
//! a server id (-1 all). Unlike HAProxy, which ignores words it does not
//! know and reads a non-number as 0, an argument that is not one of these
//! is an error: a script with a typo gets told, not handed the whole table.

/// Which proxy a filter selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySel {
    /// `-1`.
    All,
    /// A numeric id (`iid`).
    Id(i64),
    /// A listener or upstream name (both, if a listener and an upstream
    /// share it).
    Name(String),
}

/// The three-argument filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub proxy: ProxySel,
    /// Bit mask of row kinds: 1 FRONTEND, 2 BACKEND, 4 server.
    pub types: i64,
    /// Server id; -1 for every server. FRONTEND and BACKEND rows are not
    /// filtered by it, as in HAProxy.
    pub sid: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Typed,
    Json,
}

/// Server rows left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hide {
    Nothing,
    /// `no-maint`: servers in maintenance.
    Maint,
    /// `up`: servers that are not up (DOWN or in maintenance).
    NotUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatQuery {
    pub scope: Option<Scope>,
    pub format: Format,
    /// `desc`: field descriptions in the typed format.
    pub desc: bool,
    pub hide: Hide,
}

const USAGE: &str = "show stat [{<iid>|<proxy>} <type> <sid>] [typed|json] [desc] [up|no-maint]";

const OPTIONS: [&str; 5] = ["typed", "json", "desc", "up", "no-maint"];

impl StatQuery {
    /// Parses the words after `show stat`; `is_proxy` tells whether a
    /// listener or upstream has that name. Errors are the answer to send.
    pub fn parse(args: &[&str], is_proxy: impl Fn(&str) -> bool) -> Result<StatQuery, String> {
        let mut q = StatQuery {
            scope: None,
            format: Format::Csv,
            desc: false,
            hide: Hide::Nothing,
        };
        let mut rest = args;
        if let [proxy, types, sid, tail @ ..] = args {
            if !OPTIONS.contains(proxy) {
                q.scope = Some(Scope {
                    proxy: parse_proxy(proxy, &is_proxy)?,
                    types: number(types, "<type>")?,
                    sid: number(sid, "<sid>")?,
                });
                rest = tail;
            }
        }
        for word in rest {
            match *word {
                "typed" => q.format = Format::Typed,
                "json" => q.format = Format::Json,
                "desc" => q.desc = true,
                // HAProxy's flags add up: `up` already hides what
                // `no-maint` does, in either order.
                "no-maint" if q.hide == Hide::Nothing => q.hide = Hide::Maint,
                "no-maint" => {}
                "up" => q.hide = Hide::NotUp,
                other => {
                    return Err(format!(
                        "Unknown argument '{other}' to show stat. Usage: {USAGE}\n"
                    ))
                }
            }
        }
        Ok(q)
    }
}

fn parse_proxy(word: &str, is_proxy: impl Fn(&str) -> bool) -> Result<ProxySel, String> {
    if is_proxy(word) {
        return Ok(ProxySel::Name(word.to_owned()));
    }
    match word.parse::<i64>() {
        Ok(-1) => Ok(ProxySel::All),
        Ok(id) if id != 0 => Ok(ProxySel::Id(id)),
        _ => Err("No such proxy.\n".to_owned()),
    }
}

fn number(word: &str, what: &str) -> Result<i64, String> {
    word.parse::<i64>().map_err(|_| {
        format!("show stat: {what} must be a number (-1 for all), not '{word}'. Usage: {USAGE}\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<StatQuery, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        StatQuery::parse(&words, |n| n == "be" || n == "web")
    }

    #[test]
    fn no_arguments_is_the_whole_csv() {
        let q = parse("").unwrap();
        assert_eq!(q.scope, None);
        assert_eq!(q.format, Format::Csv);
        assert_eq!(q.hide, Hide::Nothing);
        assert!(!q.desc);
    }

    #[test]
    fn filters_take_names_ids_and_minus_one() {
        let q = parse("-1 4 -1 typed").unwrap();
        let s = q.scope.unwrap();
        assert_eq!(s.proxy, ProxySel::All);
        assert_eq!((s.types, s.sid), (4, -1));
        assert_eq!(q.format, Format::Typed);
        let s = parse("be 6 1").unwrap().scope.unwrap();
        assert_eq!(s.proxy, ProxySel::Name("be".into()));
        let s = parse("3 -1 -1 json").unwrap().scope.unwrap();
        assert_eq!(s.proxy, ProxySel::Id(3));
    }

    #[test]
    fn options_in_any_order() {
        let q = parse("desc typed no-maint").unwrap();
        assert_eq!(
            (q.format, q.desc, q.hide),
            (Format::Typed, true, Hide::Maint)
        );
        assert_eq!(parse("up json").unwrap().hide, Hide::NotUp);
        // `up` hides maintenance too, whichever comes first.
        assert_eq!(parse("up no-maint").unwrap().hide, Hide::NotUp);
        assert_eq!(parse("no-maint up").unwrap().hide, Hide::NotUp);
    }

    #[test]
    fn unknown_words_are_errors_not_ignored() {
        for bad in [
            "foo",
            "typed foo",
            "1 2",
            "be 4 -1 csv",
            "be x -1",
            "be 4 y",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("show stat"), "{bad}: {e}");
            assert!(e.ends_with('\n'));
        }
        // HAProxy's own answer for a proxy that does not exist.
        assert_eq!(parse("nope 4 -1").unwrap_err(), "No such proxy.\n");
        assert_eq!(parse("0 4 -1").unwrap_err(), "No such proxy.\n");
    }
}
