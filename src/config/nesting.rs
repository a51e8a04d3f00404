//! A bound on how deeply a configuration's YAML may nest, checked before the
//! YAML parser sees the text.
//!
//! The parser (libyaml under serde_norway) needs time that grows with the
//! square of the nesting depth: 100,000 nested `[`, `{a: ` or indented keys
//! keep it busy for tens of seconds — a `forklb -t` that hangs, a reload
//! that stalls the master. The deepest configuration the schema has a use
//! for nests fewer than 10 levels, so one linear pass refuses anything
//! deeper than [`MAX_NESTING`] first, pointing at the line and column where
//! the limit is crossed.
//!
//! The pass knows just enough YAML to count levels: flow collections (`[`,
//! `{`) outside quoted scalars and comments, and block levels by the columns
//! of indentation and of the `- `, `? `, `: ` indicators; block scalars
//! (`|`, `>`) and quoted scalars are skipped, across lines too. It counts
//! a sequence written at its key's indentation together with that key, so
//! block nesting may reach up to twice the limit before it is refused; no
//! configuration comes near either.

/// The most levels of nesting a configuration may use.
pub const MAX_NESTING: usize = 32;

/// Where the nesting first went past the limit (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

/// Checks that `text` nests at most `max` levels.
pub fn check(text: &str, max: usize) -> Result<(), TooDeep> {
    let mut s = Scanner {
        max,
        columns: Vec::new(),
        flow: 0,
        flow_base: 0,
        quote: None,
        block_scalar: None,
        line: 0,
    };
    for (n, line) in text.split('\n').enumerate() {
        s.line = n + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        s.scan_line(line.as_bytes())?;
    }
    Ok(())
}

/// Lines of a block scalar: more indented than the line of its header.
struct BlockScalar {
    header_indent: usize,
    /// The indentation of its first non-blank line, once seen.
    content: Option<usize>,
}

struct Scanner {
    max: usize,
    /// Columns of the open block nodes, innermost last.
    columns: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    /// Block levels around the outermost open flow collection.
    flow_base: usize,
    /// In a quoted scalar (`'` or `"`) that goes on past the line's end.
    quote: Option<u8>,
    block_scalar: Option<BlockScalar>,
    /// The line being scanned (1-based), for the error.
    line: usize,
}

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl Scanner {
    fn too_deep(&self, index: usize) -> TooDeep {
        TooDeep {
            line: self.line,
            column: index + 1,
        }
    }

    fn scan_line(&mut self, b: &[u8]) -> Result<(), TooDeep> {
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        let blank = b[indent..].iter().all(|&c| is_space(c));
        if let Some(bs) = &mut self.block_scalar {
            if blank {
                return Ok(());
            }
            let content = *bs.content.get_or_insert(indent);
            if content > bs.header_indent && indent >= content {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if let Some(q) = self.quote {
            let Some(after) = close_quote(b, 0, q) else {
                return Ok(());
            };
            self.quote = None;
            return if self.flow > 0 {
                self.flow_scan(b, after)
            } else {
                self.after_node(b, after, indent)
            };
        }
        if self.flow > 0 {
            return self.flow_scan(b, 0);
        }
        if blank || b[indent] == b'#' {
            return Ok(());
        }
        let mut col = indent;
        if indent == 0 && b[0] == b'%' {
            return Ok(()); // a directive
        }
        let marker = b.starts_with(b"---") || b.starts_with(b"...");
        if indent == 0 && marker && (b.len() == 3 || is_space(b[3])) {
            // A new document starts from nothing.
            self.columns.clear();
            col = skip_spaces(b, 3);
            if col >= b.len() || b[col] == b'#' {
                return Ok(());
            }
        }
        self.open(col)?;
        // `- `, `? ` and `: ` put their content one level deeper.
        while matches!(b[col], b'-' | b'?' | b':') && (col + 1 == b.len() || is_space(b[col + 1])) {
            col = skip_spaces(b, col + 1);
            if col >= b.len() || b[col] == b'#' {
                return Ok(()); // the content is on the next lines
            }
            self.open(col)?;
        }
        self.node(b, col, 0, indent)
    }

    /// A block node starts at column `col`: closes the deeper ones, opens it.
    fn open(&mut self, col: usize) -> Result<(), TooDeep> {
        while self.columns.last().is_some_and(|&top| top > col) {
            self.columns.pop();
        }
        if self.columns.last() != Some(&col) {
            self.columns.push(col);
            if self.columns.len() > self.max {
                return Err(self.too_deep(col));
            }
        }
        Ok(())
    }

    /// A node starts at `i` in block context, `extra` levels below the
    /// innermost open column (1 for a value after its key).
    fn node(&mut self, b: &[u8], i: usize, extra: usize, indent: usize) -> Result<(), TooDeep> {
        let i = skip_properties(b, i);
        let Some(&c) = b.get(i) else {
            return Ok(());
        };
        match c {
            b'[' | b'{' => {
                self.flow_base = self.columns.len() + extra;
                self.flow_scan(b, i)
            }
            b'"' | b'\'' => match close_quote(b, i + 1, c) {
                Some(after) => self.after_node(b, after, indent),
                None => {
                    self.quote = Some(c);
                    Ok(())
                }
            },
            b'|' | b'>' if is_block_scalar_header(&b[i..]) => {
                self.block_scalar = Some(BlockScalar {
                    header_indent: indent,
                    content: None,
                });
                Ok(())
            }
            b'#' => Ok(()),
            _ if extra > 0 => Ok(()), // a plain value: the rest of the line is text
            _ => match key_separator(b, i) {
                Some(sep) => self.value(b, sep + 1, indent),
                None => Ok(()),
            },
        }
    }

    /// After a quoted scalar or flow collection in block context: it may
    /// have been a key.
    fn after_node(&mut self, b: &[u8], i: usize, indent: usize) -> Result<(), TooDeep> {
        let j = skip_spaces(b, i);
        if b.get(j) == Some(&b':') && (j + 1 == b.len() || is_space(b[j + 1])) {
            return self.value(b, j + 1, indent);
        }
        Ok(())
    }

    fn value(&mut self, b: &[u8], i: usize, indent: usize) -> Result<(), TooDeep> {
        let i = skip_spaces(b, i);
        self.node(b, i, 1, indent)
    }

    /// Scans flow context from `i`; back in block context after the
    /// outermost collection closes.
    fn flow_scan(&mut self, b: &[u8], i: usize) -> Result<(), TooDeep> {
        let mut j = i;
        // At the start of a token, where a quoted scalar may begin (inside
        // a plain scalar, `'` is just a character: `[it's]`).
        let mut token_start = true;
        while j < b.len() {
            let c = b[j];
            match c {
                b'[' | b'{' => {
                    self.flow += 1;
                    if self.flow_base + self.flow > self.max {
                        return Err(self.too_deep(j));
                    }
                    token_start = true;
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    if self.flow == 0 {
                        let indent = b.iter().take_while(|&&c| c == b' ').count();
                        return self.after_node(b, j + 1, indent);
                    }
                    token_start = false;
                }
                b'"' | b'\'' if token_start => match close_quote(b, j + 1, c) {
                    Some(after) => {
                        j = after;
                        token_start = false;
                        continue;
                    }
                    None => {
                        self.quote = Some(c);
                        return Ok(());
                    }
                },
                b'#' if j == 0 || is_space(b[j - 1]) => return Ok(()),
                b',' | b':' | b'?' | b' ' | b'\t' => token_start = true,
                _ => token_start = false,
            }
            j += 1;
        }
        Ok(())
    }
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    i
}

/// Skips anchors (`&a`) and tags (`!t`) before a node.
fn skip_properties(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b'&' || b[i] == b'!') {
        while i < b.len() && !is_space(b[i]) {
            i += 1;
        }
        i = skip_spaces(b, i);
    }
    i
}

/// The index after the quote that closes a scalar opened before `start`,
/// or None if it goes on past this line.
fn close_quote(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut j = start;
    while j < b.len() {
        match (quote, b[j]) {
            (b'\'', b'\'') if b.get(j + 1) == Some(&b'\'') => j += 2, // '' is a quote
            (b'"', b'\\') => j += 2,                                  // an escape
            (q, c) if c == q => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// `|`, `>`, with optional indentation and chomping indicators, then
/// nothing but a comment.
fn is_block_scalar_header(b: &[u8]) -> bool {
    let mut i = 1;
    while i < b.len() && i <= 2 && (b[i].is_ascii_digit() || b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    i == b.len() || is_space(b[i])
}

/// Where a plain key starting at `i` ends: its `:` followed by a space or
/// the line's end (None if the line is a plain scalar, or a comment comes
/// first).
fn key_separator(b: &[u8], i: usize) -> Option<usize> {
    for j in i..b.len() {
        match b[j] {
            b'#' if j > i && is_space(b[j - 1]) => return None,
            b':' if j + 1 == b.len() || is_space(b[j + 1]) => return Some(j),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        check(text, max).is_ok()
    }

    /// The smallest limit `text` passes.
    fn depth(text: &str) -> usize {
        (0..100).find(|&m| depth_ok(text, m)).unwrap()
    }

    #[test]
    fn a_real_configuration_is_shallow() {
        let yaml = r#"
# comment: [[[[
workers: 2
listeners:
  - name: web
    bind: ["127.0.0.1:8080"]
    routes:
      - path: /healthz
        return: {status: 200, body: "ok\n"}
      - path: /x
        request_headers: {set: {X-Env: prod}, add: {X-Id: "$request_id"}}
      - upstream: web
upstreams:
  web:
    servers:
      - {name: web1, addr: "127.0.0.1:9001", weight: 1}
"#;
        let d = depth(yaml);
        assert!((5..=9).contains(&d), "depth {d}");
    }

    #[test]
    fn flow_nesting_is_counted_exactly() {
        assert_eq!(depth("a: [[[1]]]\n"), 1 + 1 + 3);
        assert_eq!(depth("[[[]]]"), 4);
        assert_eq!(depth("a: {b: {c: [1, 2]}}\n"), 5);
        // Across lines, and back in block context afterwards.
        assert_eq!(depth("a: [\n  [\n    [1]\n  ]\n]\nb: 1\n"), 5);
    }

    #[test]
    fn block_nesting_counts_indentation_and_indicators() {
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("- - - x\n"), 4);
        assert_eq!(depth("a:\n  - b: 1\n    c: 2\n  - d\n"), 3);
        // Back out and in again: the depth is the deepest point.
        assert_eq!(depth("a:\n  b:\n    c: 1\nd:\n  e: 1\n"), 3);
    }

    #[test]
    fn brackets_in_text_are_not_nesting() {
        let t = "a: '[[[[[['\nb: \"{{{{{{\\\"[[[[\"\nc: x[[[[[\nd: 1 # [[[[[[\ne: [\"]]]\", 'x''[[[[']\n";
        assert_eq!(depth(t), 3, "{t}");
        // A quoted scalar over several lines.
        assert_eq!(depth("a: \"[[[[\n  [[[[\"\nb: [1]\n"), 3);
        // A block scalar's lines are text, however indented.
        let t = "a: |\n  [[[[[[\n      b:\n        c:\n          d:\nb: >-\n  {{{{\nc: 1\n";
        assert_eq!(depth(t), 1, "{t}");
        // An apostrophe inside a plain scalar opens no quote.
        assert_eq!(depth("a: [it's, [[x]]]\n"), 5);
        assert_eq!(depth("a: it's\nb: [[[1]]]\n"), 5);
    }

    #[test]
    fn deep_input_is_refused_at_the_crossing_point() {
        let flow = format!(
            "listeners: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            check(&flow, MAX_NESTING),
            Err(TooDeep {
                line: 1,
                column: 12 + MAX_NESTING - 2
            })
        );
        let map = format!(
            "listeners: {}1{}\n",
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(check(&map, MAX_NESTING).is_err());
        // (Nesting by indentation grows the file with the square of the
        // depth: 2,000 levels are 2 MB.)
        let block: String = (0..2000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        assert_eq!(
            check(&block, MAX_NESTING).unwrap_err().line,
            MAX_NESTING + 1
        );
        let seq: String = (0..2000)
            .map(|i| format!("{}- \n", " ".repeat(i)))
            .collect();
        assert!(check(&seq, MAX_NESTING).is_err());
        let one_line = format!("a:\n  {}x\n", "- ".repeat(100_000));
        assert_eq!(
            check(&one_line, MAX_NESTING),
            Err(TooDeep {
                line: 2,
                column: 3 + 2 * (MAX_NESTING - 1)
            })
        );
        // A sequence at its key's indentation counts half: still refused.
        let stair: String = (0..1000)
            .map(|i| format!("{}- a:\n", " ".repeat(2 * i)))
            .collect();
        assert!(check(&stair, MAX_NESTING).is_err());
    }

    #[test]
    fn documents_and_properties() {
        assert_eq!(depth("---\na:\n  b: 1\n---\nc: 1\n"), 2);
        assert_eq!(depth("a: &x [[1]]\nb: !!seq [1]\n"), 4);
    }
}
