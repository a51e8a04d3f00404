//! What HAProxy's `typed` and `json` output formats share (`show stat`,
//! `show info`): a field's three tag letters spelled out, and one JSON
//! entry `{"field":…,"processNum":1,"tags":…,"value":…}`.

use std::fmt::Write;

/// Writes the rest of a JSON entry after any leading keys the caller wrote
/// (`show stat`'s objType, proxyId, id): field position and name, the tags
/// (`"MGP"`), the type (`"u32"`) and the value (a JSON string if `ty` is
/// `str`, else the number as written), then the closing brace.
pub fn json_field(out: &mut String, pos: usize, name: &str, tags: &str, ty: &str, value: &str) {
    let mut t = tags.chars();
    let (origin, nature, scope) = (t.next(), t.next(), t.next());
    let _ = write!(out, "\"field\":{{\"pos\":{pos},\"name\":");
    json_string(out, name);
    let _ = write!(
        out,
        "}},\"processNum\":1,\"tags\":{{\"origin\":\"{}\",\"nature\":\"{}\",\"scope\":\"{}\"}},\
         \"value\":{{\"type\":\"{ty}\",\"value\":",
        origin_word(origin),
        nature_word(nature),
        scope_word(scope),
    );
    if ty == "str" {
        json_string(out, value);
    } else {
        out.push_str(value);
    }
    out.push_str("}}");
}

fn origin_word(c: Option<char>) -> &'static str {
    match c {
        Some('K') => "Key",
        Some('C') => "Config",
        Some('S') => "Status",
        Some('P') => "Product",
        _ => "Metric",
    }
}

fn nature_word(c: Option<char>) -> &'static str {
    match c {
        Some('N') => "Name",
        Some('M') => "Max",
        Some('L') => "Limit",
        Some('C') => "Counter",
        Some('R') => "Rate",
        Some('A') => "Age",
        Some('a') => "Avg",
        Some('D') => "Duration",
        Some('O') => "Output",
        Some('T') => "Time",
        _ => "Gauge",
    }
}

fn scope_word(c: Option<char>) -> &'static str {
    match c {
        Some('S') => "Service",
        Some('s') => "System",
        Some('C') => "Cluster",
        _ => "Process",
    }
}

/// `s` as a JSON string.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
