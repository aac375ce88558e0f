//! The members of an object in JSON text that was checked already ([`super::raw::split`]
//! scans every item with serde_json before it is kept): a walk over its bytes that finds
//! each member's name and its value's text, and checks nothing again. Anything it does
//! not expect ends the walk with `None` (the caller then parses the item into a tree).

use std::borrow::Cow;

/// Calls `member` with each name (escapes decoded) and value text of the object `text`,
/// in order; `None` when `text` is not an object as expected.
pub fn members<'a>(text: &'a str, mut member: impl FnMut(&str, &'a str)) -> Option<()> {
    let mut s = Scan {
        b: text.as_bytes(),
        at: 0,
    };
    s.space();
    s.expect(b'{')?;
    s.space();
    if s.peek()? == b'}' {
        return Some(());
    }
    loop {
        let from = s.at;
        let escaped = s.string()?;
        let quoted = text.get(from..s.at)?;
        let name: Cow<str> = if escaped {
            Cow::Owned(serde_json::from_str::<String>(quoted).ok()?)
        } else {
            Cow::Borrowed(quoted.get(1..quoted.len().checked_sub(1)?)?)
        };
        s.space();
        s.expect(b':')?;
        s.space();
        let from = s.at;
        s.value()?;
        member(&name, text.get(from..s.at)?);
        s.space();
        match s.peek()? {
            b',' => {
                s.bump();
                s.space();
            }
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// Whether checked JSON text is exactly what serde_json writes for its tree, so that it
/// can be copied instead of parsed and written again: no space outside strings, no
/// escape (serde_json writes some anew: `\u00e9` as `é`), no exponent written `E` (it
/// writes `e`), no name repeated in an object
/// (the tree keeps the last), at most 32 names in the objects open at once.
pub fn canonical(text: &str) -> bool {
    let b = text.as_bytes();
    if b.contains(&b'\\') {
        return false;
    }
    // The names of the objects open (where each starts and ends), each with the depth
    // of its object.
    let mut names: [(u32, u32, u32); 32] = [(0, 0, 0); 32];
    let mut open = 0usize;
    let mut depth = 0u32;
    let mut at = 0usize;
    while let Some(&c) = b.get(at) {
        match c {
            b'"' => {
                let Some(len) = b
                    .get(at.saturating_add(1)..)
                    .and_then(|r| memchr::memchr(b'"', r))
                else {
                    return false;
                };
                let end = at.saturating_add(1).saturating_add(len);
                if b.get(end.saturating_add(1)) == Some(&b':') {
                    let from = at.saturating_add(1);
                    let name = b.get(from..end).unwrap_or_default();
                    let same = names.iter().take(open).any(|&(f, t, d)| {
                        d == depth && b.get(f as usize..t as usize) == Some(name)
                    });
                    let (Some(slot), Ok(from), Ok(end)) =
                        (names.get_mut(open), u32::try_from(from), u32::try_from(end))
                    else {
                        return false;
                    };
                    if same {
                        return false;
                    }
                    *slot = (from, end, depth);
                    open = open.saturating_add(1);
                }
                at = end;
            }
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => {
                while open > 0
                    && names
                        .get(open.saturating_sub(1))
                        .is_some_and(|&(_, _, d)| d == depth)
                {
                    open = open.saturating_sub(1);
                }
                depth = depth.saturating_sub(1);
            }
            // serde_json writes an exponent's `E` as `e`.
            b' ' | b'\n' | b'\r' | b'\t' | b'E' => return false,
            _ => {}
        }
        at = at.saturating_add(1);
    }
    true
}

struct Scan<'a> {
    b: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn bump(&mut self) {
        self.at = self.at.saturating_add(1);
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.bump())
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.bump();
        }
    }

    /// Past the string that starts here; whether it holds an escape.
    fn string(&mut self) -> Option<bool> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.at..)?;
            let next = memchr::memchr2(b'"', b'\\', rest)?;
            self.at = self.at.checked_add(next)?;
            if self.peek()? == b'"' {
                self.bump();
                return Some(escaped);
            }
            // A backslash and the character it escapes.
            escaped = true;
            self.at = self.at.checked_add(2)?;
        }
    }

    /// Past the value that starts here.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let rest = self.b.get(self.at..)?;
                    let next = rest
                        .iter()
                        .position(|&c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'))?;
                    self.at = self.at.checked_add(next)?;
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth = depth.checked_add(1)?;
                            self.bump();
                        }
                        _ => {
                            depth = depth.checked_sub(1)?;
                            self.bump();
                            if depth == 0 {
                                return Some(());
                            }
                        }
                    }
                }
            }
            _ => {
                // A number, `true`, `false` or `null`: up to what follows it.
                let rest = self.b.get(self.at..)?;
                let len = rest
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                    .unwrap_or(rest.len());
                self.at = self.at.checked_add(len)?;
                Some(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::{canonical, members};

    fn all(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(text, |n, v| out.push((n.to_string(), v.to_string())))?;
        Some(out)
    }

    #[test]
    fn names_and_value_texts_in_order() {
        let text = r#" { "a" : 1 , "b\"c":"x\\\"}" ,"\u0064":{"e":[1,{"f":"]}"}]},"g":[ ],"h":-1.5e3,"i":null,"j":true}"#;
        let got = all(text).unwrap();
        let want = [
            ("a", "1"),
            ("b\"c", r#""x\\\"}""#),
            ("d", r#"{"e":[1,{"f":"]}"}]}"#),
            ("g", "[ ]"),
            ("h", "-1.5e3"),
            ("i", "null"),
            ("j", "true"),
        ];
        assert_eq!(got.len(), want.len());
        for ((n, v), (wn, wv)) in got.iter().zip(want) {
            assert_eq!((n.as_str(), v.as_str()), (wn, wv));
        }
        assert_eq!(all("{}").unwrap(), vec![]);
        assert_eq!(all(" {\n}\n").unwrap(), vec![]);
    }

    /// Canonical text is what serde_json writes for the tree parsed from it.
    #[test]
    fn canonical_text_is_what_the_tree_writes() {
        for text in [
            "{}",
            "[]",
            "1",
            "-0",
            "1E+2",
            "\"é ü\"",
            "{\"a\":{\"a\":1},\"b\":[{\"a\":2},{\"a\":3}]}",
            "[{\"x\":1,\"y\":[]},{\"x\":2}]",
            "{\"a\":\"{\\\"\"}",
            "{\"a\":1,\"a\":2}",
            "{ \"a\":1}",
            "[1, 2]",
            "\"a\\u00e9\"",
            "{\"a\":\"x y\"}",
            "{\"a:\":1,\"a\":2}",
        ] {
            let tree: serde_json::Value = serde_json::from_str(text).unwrap();
            let written = serde_json::to_string(&tree).unwrap();
            if canonical(text) {
                assert_eq!(written, text, "{text} is not canonical");
            }
        }
        assert!(canonical("{\"a\":{\"a\":1},\"b\":[{\"a\":2},{\"a\":3}]}"));
        assert!(canonical("{\"a\":\"x y\"}"));
        assert!(!canonical("{\"a\":1,\"a\":2}"));
        assert!(!canonical("[1, 2]"));
        assert!(!canonical("\"a\\u00e9\""));
    }

    #[test]
    fn what_is_not_an_object_is_none() {
        for text in [
            "[1]",
            "1",
            "\"a\"",
            "",
            "{",
            "{\"a\"",
            "{\"a\":1",
            "{\"a\" 1}",
            "{1:2}",
        ] {
            assert!(all(text).is_none(), "{text}");
        }
    }
}
