//! A header list stored compactly: every name and value in one byte buffer,
//! each field a pair of spans into it. A decoded request costs two
//! allocations however many fields it has, where a `Vec` per name and per
//! value cost two per field (about a tenth of the instructions of an HTTP/2
//! request went to malloc and free).

use std::fmt;

/// Where some bytes lie in a list's buffer. u32: a list is bounded by
/// SETTINGS_MAX_HEADER_LIST_SIZE (and by the frame sizes we accept), far
/// below 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    name: Span,
    value: Span,
}

/// Header fields in order; names as received (lowercase once validated).
/// Two lists are equal when their fields are, however their bytes lie.
#[derive(Clone, Default)]
pub struct HeaderList {
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

impl HeaderList {
    pub fn new() -> HeaderList {
        HeaderList::default()
    }

    /// Room for `fields` fields of `bytes` octets in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> HeaderList {
        HeaderList {
            bytes: Vec::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let name = self.store(name);
        let value = self.store(value);
        self.fields.push(Field { name, value });
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.fields
            .get(i)
            .map(|f| (self.at(f.name), self.at(f.value)))
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            fields: self.fields.iter(),
        }
    }

    /// Copies `b` into the buffer. Past u32 (never, see `Span`) the span
    /// saturates and reads back short rather than wrapping.
    pub(super) fn store(&mut self, b: &[u8]) -> Span {
        let start = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(b);
        Span {
            start,
            len: u32::try_from(b.len()).unwrap_or(u32::MAX),
        }
    }

    /// The bytes of a span this list stored; empty for a foreign one.
    pub(super) fn at(&self, s: Span) -> &[u8] {
        let start = s.start as usize;
        self.bytes
            .get(start..start.saturating_add(s.len as usize))
            .unwrap_or_default()
    }

    /// Field `i`'s name and value spans.
    pub(super) fn spans(&self, i: usize) -> Option<(Span, Span)> {
        self.fields.get(i).map(|f| (f.name, f.value))
    }

    /// Appends `sep` and field `from`'s value to field `into`'s value
    /// (cookie crumbs joined). The value moves to the end of the buffer
    /// unless it is there already (as it is after the first join).
    pub(super) fn join_value(&mut self, into: usize, sep: &[u8], from: usize) {
        let (Some(f), Some(src)) = (
            self.fields.get(into).copied(),
            self.fields.get(from).copied(),
        ) else {
            return;
        };
        let end = (f.value.start as usize).saturating_add(f.value.len as usize);
        let start = if end == self.bytes.len() {
            f.value.start
        } else {
            self.store_within(f.value).start
        };
        self.bytes.extend_from_slice(sep);
        self.store_within(src.value);
        let len = u32::try_from(self.bytes.len() - start as usize).unwrap_or(u32::MAX);
        if let Some(f) = self.fields.get_mut(into) {
            f.value = Span { start, len };
        }
    }

    /// Copies a span of this list to the end of its buffer.
    fn store_within(&mut self, s: Span) -> Span {
        let start = s.start as usize;
        let range = start..start.saturating_add(s.len as usize);
        let new = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        if range.end <= self.bytes.len() {
            self.bytes.extend_from_within(range);
        }
        Span {
            start: new,
            len: s.len,
        }
    }

    /// Keeps the fields for which `keep(index, name)` is true, in order
    /// (their bytes stay in the buffer, unreferenced).
    pub(super) fn retain_fields(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) {
        let bytes = &self.bytes;
        let mut i = 0;
        self.fields.retain(|f| {
            let start = f.name.start as usize;
            let name = bytes
                .get(start..start.saturating_add(f.name.len as usize))
                .unwrap_or_default();
            let k = keep(i, name);
            i += 1;
            k
        });
    }
}

impl PartialEq for HeaderList {
    fn eq(&self, other: &HeaderList) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderList {}

impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

pub struct Iter<'a> {
    list: &'a HeaderList,
    fields: std::slice::Iter<'a, Field>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.fields.next()?;
        Some((self.list.at(f.name), self.list.at(f.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.fields.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> HeaderList {
        let mut list = HeaderList::new();
        list.extend(iter);
        list
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> Extend<(N, V)> for HeaderList {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.push(n.as_ref(), v.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_and_bytes() {
        let mut l: HeaderList = [("a", "1"), ("bb", ""), ("", "ccc")].into_iter().collect();
        l.push(b"d", b"4");
        let got: Vec<(&[u8], &[u8])> = l.iter().collect();
        assert_eq!(
            got,
            [
                (&b"a"[..], &b"1"[..]),
                (b"bb", b""),
                (b"", b"ccc"),
                (b"d", b"4")
            ]
        );
        assert_eq!((l.len(), l.iter().len()), (4, 4));
        assert_eq!(l.get(2), Some((&b""[..], &b"ccc"[..])));
        assert_eq!(l.get(4), None);
        assert_eq!(
            format!("{l:?}"),
            r#"[("a", "1"), ("bb", ""), ("", "ccc"), ("d", "4")]"#
        );
    }

    #[test]
    fn joined_values_extend_in_place_or_move_to_the_end() {
        let mut l: HeaderList = [("cookie", "a=1"), ("x", "y"), ("cookie2", "z")]
            .into_iter()
            .collect();
        l.push(b"cookie", b"b=2");
        l.push(b"cookie", b"c=3");
        // The last bytes ("c=3"): extended where they are.
        l.join_value(4, b"", 1);
        // Not the last bytes: copied to the end, then extended.
        l.join_value(0, b"; ", 3);
        l.join_value(0, b"; ", 4);
        l.join_value(9, b"; ", 0);
        l.join_value(0, b"; ", 9);
        let got: Vec<(&[u8], &[u8])> = l.iter().collect();
        assert_eq!(
            got,
            [
                (&b"cookie"[..], &b"a=1; b=2; c=3y"[..]),
                (b"x", b"y"),
                (b"cookie2", b"z"),
                (b"cookie", b"b=2"),
                (b"cookie", b"c=3y"),
            ]
        );
        l.retain_fields(|i, name| i != 1 && name != b"cookie2");
        let names: Vec<&[u8]> = l.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"cookie"[..], b"cookie", b"cookie"]);
    }

    #[test]
    fn lists_with_the_same_fields_are_equal_whatever_their_layout() {
        let plain: HeaderList = [("cookie", "a=1; b=2"), ("x", "y")].into_iter().collect();
        let mut joined: HeaderList = [("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")]
            .into_iter()
            .collect();
        joined.join_value(0, b"; ", 2);
        assert_ne!(plain, joined);
        joined.retain_fields(|i, _| i != 2);
        assert_eq!(plain, joined);
        assert_ne!(plain, HeaderList::new());
    }

    #[test]
    fn a_foreign_span_reads_as_empty() {
        let l: HeaderList = [("a", "1")].into_iter().collect();
        assert_eq!(l.at(Span { start: 100, len: 4 }), b"");
        assert_eq!(l.at(Span { start: 1, len: 9 }), b"");
    }
}
