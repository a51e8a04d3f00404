//! A small JSON writer: objects, arrays, strings (escaped), numbers. The
//! dashboard's document is built with it, with no intermediate tree.

use std::fmt::Write;

pub struct JsonWriter {
    out: String,
    /// The next value or key needs no comma before it (first in its
    /// container, or right after a key).
    fresh: bool,
}

impl JsonWriter {
    pub fn with_capacity(n: usize) -> JsonWriter {
        JsonWriter {
            out: String::with_capacity(n),
            fresh: true,
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Empties the writer for reuse.
    pub fn clear(&mut self) {
        self.out.clear();
        self.fresh = true;
    }

    /// The values another writer wrote (at its top level, comma
    /// separated), as items of the container open here.
    pub fn raw_items(&mut self, items: &JsonWriter) {
        if !items.out.is_empty() {
            self.sep();
            self.out.push_str(&items.out);
        }
    }

    fn sep(&mut self) {
        if !self.fresh {
            self.out.push(',');
        }
        self.fresh = false;
    }

    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push('{');
        self.fresh = true;
    }

    pub fn end_object(&mut self) {
        self.out.push('}');
        self.fresh = false;
    }

    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push('[');
        self.fresh = true;
    }

    pub fn end_array(&mut self) {
        self.out.push(']');
        self.fresh = false;
    }

    /// An object key; its value follows.
    pub fn key(&mut self, k: &str) {
        self.sep();
        escape_into(&mut self.out, k);
        self.out.push(':');
        self.fresh = true;
    }

    pub fn string(&mut self, v: &str) {
        self.sep();
        escape_into(&mut self.out, v);
    }

    pub fn uint(&mut self, v: u64) {
        self.sep();
        let _ = write!(self.out, "{v}");
    }

    pub fn int(&mut self, v: i64) {
        self.sep();
        let _ = write!(self.out, "{v}");
    }

    pub fn boolean(&mut self, v: bool) {
        self.sep();
        self.out.push_str(if v { "true" } else { "false" });
    }

    pub fn null(&mut self) {
        self.sep();
        self.out.push_str("null");
    }

    pub fn uints(&mut self, vs: &[u64]) {
        self.begin_array();
        for &v in vs {
            self.uint(v);
        }
        self.end_array();
    }

    /// `"k":"v"`.
    pub fn field_str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v);
    }

    /// `"k":n`.
    pub fn field_uint(&mut self, k: &str, v: u64) {
        self.key(k);
        self.uint(v);
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters
/// escaped (names in the configuration may hold any of them).
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Line and paragraph separators are valid JSON but not valid
            // in older JavaScript string literals; escaped to be safe.
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_escapes() {
        let mut w = JsonWriter::with_capacity(64);
        w.begin_object();
        w.field_str("a\"b", "x\\y\u{1}\n");
        w.key("l");
        w.begin_array();
        w.uint(1);
        w.int(-2);
        w.begin_object();
        w.end_object();
        w.null();
        w.end_array();
        w.key("t");
        w.boolean(true);
        w.end_object();
        assert_eq!(
            w.finish(),
            r#"{"a\"b":"x\\y\u0001\n","l":[1,-2,{},null],"t":true}"#
        );
    }
}
