//! `help [<command>]` and the answer to an unknown command, as HAProxy
//! 2.6 writes them (`cli_gen_usage_msg`): the usage lines of the commands
//! whose first words match, sorted; for a mistyped word the closest
//! commands by HAProxy's fuzzy word fingerprint; then always `help`,
//! `prompt` and `quit`. Usage lines of commands HAProxy has are its own,
//! byte for byte.

use super::server::Level;

/// A command: its keywords (the words that name it), its usage line and
/// the level it needs.
pub struct Command {
    pub words: &'static [&'static str],
    pub usage: &'static str,
    pub level: Level,
}

const fn cmd(words: &'static [&'static str], usage: &'static str, level: Level) -> Command {
    Command {
        words,
        usage,
        level,
    }
}

/// Every command but `help`, `prompt` and `quit`, which close every list.
pub const COMMANDS: &[Command] = &[
    cmd(
        &["show", "info"],
        "show info [desc|json|typed|float]*      : report information about the running process",
        Level::User,
    ),
    cmd(
        &["show", "version"],
        "show version                            : show version of the current process",
        Level::User,
    ),
    cmd(
        &["show", "proc"],
        "show proc                               : show the master and worker processes",
        Level::User,
    ),
    cmd(
        &["show", "backend"],
        "show backend                            : list backends in the current running config",
        Level::User,
    ),
    cmd(
        &["show", "stat"],
        "show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server",
        Level::User,
    ),
    cmd(
        &["show", "servers", "state"],
        "show servers state [<backend>]          : dump volatile server information (all or for a single backend)",
        Level::User,
    ),
    cmd(
        &["show", "table"],
        "show table <table> [<filter>]*          : report table usage stats or dump this table's contents (filter: data/key)",
        Level::User,
    ),
    cmd(
        &["clear", "table"],
        "clear table <table> [<filter>]*         : remove an entry from a table (filter: data/key)",
        Level::User,
    ),
    cmd(
        &["get", "weight"],
        "get weight <bk>/<srv>                   : report a server's current weight",
        Level::User,
    ),
    cmd(
        &["clear", "counters"],
        "clear counters [all]                    : clear max statistics counters (or all counters)",
        Level::Operator,
    ),
    cmd(
        &["set", "weight"],
        "set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use 'set server' instead)",
        Level::Admin,
    ),
    cmd(
        &["set", "server"],
        "set server <bk>/<srv> [opts]            : change a server's state, weight, address or ssl",
        Level::Admin,
    ),
    cmd(
        &["add", "server"],
        "add server <bk>/<srv>                   : create a new server",
        Level::Admin,
    ),
    cmd(
        &["del", "server"],
        "del server <bk>/<srv>                   : remove a dynamically added server",
        Level::Admin,
    ),
    cmd(
        &["set", "maxconn", "server"],
        "set maxconn server <bk>/<srv>           : change a server's maxconn setting",
        Level::Admin,
    ),
    cmd(
        &["enable", "server"],
        "enable server  (DEPRECATED)             : enable a disabled server (use 'set server' instead)",
        Level::Admin,
    ),
    cmd(
        &["disable", "server"],
        "disable server (DEPRECATED)             : disable a server for maintenance (use 'set server' instead)",
        Level::Admin,
    ),
    cmd(
        &["enable", "health"],
        "enable health                           : enable health checks",
        Level::Admin,
    ),
    cmd(
        &["disable", "health"],
        "disable health                          : disable health checks",
        Level::Admin,
    ),
    cmd(
        &["enable", "frontend"],
        "enable frontend <frontend>              : re-enable specific frontend",
        Level::Admin,
    ),
    cmd(
        &["disable", "frontend"],
        "disable frontend <frontend>             : temporarily disable specific frontend",
        Level::Admin,
    ),
    cmd(
        &["shutdown", "sessions", "server"],
        "shutdown sessions server <bk>/<srv>     : kill sessions on a server",
        Level::Admin,
    ),
    cmd(
        &["reload"],
        "reload                                  : reload the configuration (Success=1 or Success=0 and the errors)",
        Level::Admin,
    ),
];

const ALWAYS: &str =
    "  help [<command>]                        : list matching or all commands\n  \
prompt                                  : toggle interactive mode with prompt\n  \
quit                                    : disconnect\n";

/// HAProxy's `CLI_MAX_MATCHES`: fuzzy suggestions kept at most.
const MAX_MATCHES: usize = 5;
/// HAProxy's `CLI_PREFIX_KW_NB`: words of a command line looked at.
const PREFIX_WORDS: usize = 5;

/// `help [<words>]`.
pub fn help(level: Level, args: &[&str]) -> String {
    usage_message(level, args, true)
}

/// The answer to an unknown command line `args`.
pub fn unknown(level: Level, args: &[&str]) -> String {
    usage_message(level, args, false)
}

fn usage_message(level: Level, args: &[&str], is_help: bool) -> String {
    let visible = || COMMANDS.iter().filter(|c| level >= c.level);
    // How many leading words some command matches exactly.
    let length = visible()
        .map(|c| matching_words(c.words, args))
        .max()
        .unwrap_or(0);
    let mut out = String::from(if is_help {
        "The following commands are valid at this level:\n"
    } else if length == 0 && args.is_empty() {
        "Unknown command. Please enter one of the following commands only:\n"
    } else {
        "Unknown command, but maybe one of the following ones is a better match:\n"
    });
    // The best fuzzy matches on the words after the exact ones.
    let mut matches: Vec<(&Command, usize)> = Vec::new();
    if let Some(rest) = args.get(length..).filter(|r| !r.is_empty()) {
        let rest = &rest[..rest.len().min(PREFIX_WORDS.saturating_sub(length))];
        let typed = fingerprint(rest);
        let typed_len: usize = rest.iter().map(|w| w.len()).sum();
        for c in visible().filter(|c| matching_words(c.words, args) >= length) {
            let theirs = c.words.get(length..).unwrap_or(&[]);
            let total = typed_len + theirs.iter().map(|w| w.len()).sum::<usize>();
            let dist = distance(&typed, &fingerprint(theirs));
            // Kept in order, at most MAX_MATCHES, as HAProxy's insertion does
            // (equal distances keep the earlier command first).
            if dist < 5 * total / 2
                && (matches.len() < MAX_MATCHES || matches.last().is_some_and(|m| dist < m.1))
            {
                let at = matches.partition_point(|m| m.1 <= dist);
                matches.insert(at, (c, dist));
                matches.truncate(MAX_MATCHES);
            }
        }
    }
    let mut entries: Vec<&Command> = match matches.first() {
        Some(&(_, best)) => matches
            .iter()
            .take_while(|m| m.1 <= 5 * best / 2)
            .map(|m| m.0)
            .collect(),
        None => visible()
            .filter(|c| matching_words(c.words, args) >= length)
            .collect(),
    };
    entries.sort_by(|a, b| a.usage.cmp(b.usage));
    for e in entries {
        out.push_str("  ");
        out.push_str(e.usage);
        out.push('\n');
    }
    out.push_str(ALWAYS);
    out
}

/// How many of `args`' first words are `words`' first words.
fn matching_words(words: &[&str], args: &[&str]) -> usize {
    words
        .iter()
        .zip(args)
        .take(PREFIX_WORDS)
        .take_while(|(w, a)| w == a)
        .count()
}

/// HAProxy's word fingerprint (`update_word_fingerprint`): counts of
/// transitions between character classes (1..26 letters, 27 digits, 28
/// anything else and the word's ends) at `32 * from + to`, and at `to`
/// alone the presence of each class.
fn fingerprint(words: &[&str]) -> [u8; 1024] {
    let mut fp = [0u8; 1024];
    for word in words {
        let mut from = 28;
        for b in word.bytes() {
            let to = match b.to_ascii_lowercase() {
                c @ b'a'..=b'z' => usize::from(c - b'a') + 1,
                b'0'..=b'9' => 27,
                _ => 28,
            };
            fp[to] = 1;
            fp[32 * from + to] = fp[32 * from + to].wrapping_add(1);
            from = to;
        }
        fp[32 * from + 28] = fp[32 * from + 28].wrapping_add(1);
    }
    fp
}

fn distance(a: &[u8; 1024], b: &[u8; 1024]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| usize::from(x.abs_diff(*y)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_word_suggests_the_closest_commands() {
        let out = unknown(Level::Admin, &["show", "stats"]);
        assert!(out.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ));
        assert!(out.contains("  show stat [desc|json|no-maint|typed|up]*: report counters"));
        assert!(!out.contains("clear counters"), "{out}");
        assert!(out.ends_with(ALWAYS));
    }

    #[test]
    fn help_lists_what_the_level_may_use_sorted() {
        let all = help(Level::User, &[]);
        assert!(all.starts_with("The following commands are valid at this level:\n"));
        assert!(all.contains("  show stat "));
        assert!(!all.contains("set server"), "admin only: {all}");
        let lines: Vec<&str> = all.lines().skip(1).collect();
        let listed = &lines[..lines.len() - 3];
        let mut sorted = listed.to_vec();
        sorted.sort();
        assert_eq!(listed, &sorted[..]);
        // help <words>: the commands starting with them.
        let show = help(Level::Admin, &["show"]);
        assert!(
            show.lines()
                .skip(1)
                .take_while(|l| !l.starts_with("  help"))
                .all(|l| l.starts_with("  show ")),
            "{show}"
        );
    }

    #[test]
    fn the_fingerprint_is_haproxys() {
        // "ab": begin→a, a→b, b→end, and the presence of a and b.
        let fp = fingerprint(&["ab"]);
        assert_eq!(fp[32 * 28 + 1], 1);
        assert_eq!(fp[32 + 2], 1);
        assert_eq!(fp[32 * 2 + 28], 1);
        assert_eq!((fp[1], fp[2]), (1, 1));
        assert_eq!(fp.iter().map(|&x| usize::from(x)).sum::<usize>(), 5);
        assert_eq!(distance(&fp, &fingerprint(&["ab"])), 0);
    }
}
