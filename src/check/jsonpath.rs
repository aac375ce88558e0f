//! JSONPath at check time: plain paths (`$.a.b[0]`) read directly, every other one
//! compiled with jsonpath-rust, whose syntax errors are labelled at the offset inside the
//! path the library reports.

use super::{Code, Ctx, JsonPath, PathStep};
use crate::syntax::Span;

impl<'e> Ctx<'e> {
    /// Validates a JSONPath with jsonpath-rust; a syntax error is labelled at the offset
    /// inside the path that the library reports.
    pub fn json_path(&mut self, text: &str, span: Span) -> Option<JsonPath> {
        // Most paths are plain steps like `$.amount.value`, and many repeat across
        // sources: neither needs the library's parser again.
        if let Some(singular) = simple_path(text) {
            return Some(JsonPath {
                text: text.to_string(),
                singular: Some(singular),
            });
        }
        if let Some(known) = self.paths.get(text) {
            return Some(known.clone());
        }
        let path = self.parse_json_path(text, span)?;
        self.paths.insert(text.to_string(), path.clone());
        Some(path)
    }

    fn parse_json_path(&mut self, text: &str, span: Span) -> Option<JsonPath> {
        use jsonpath_rust::parser::errors::JsonPathError;
        use jsonpath_rust::parser::model::{Segment, Selector};
        if let Some((at, len, message, label)) = unbalanced_path(text) {
            self.error(
                Code::InvalidJsonPath,
                format!("invalid JSONPath `{text}`: {message}"),
                Span::new(span.start + at, span.start + at + len),
                label,
            );
            return None;
        }
        match jsonpath_rust::parser::parse_json_path(text) {
            Ok(q) => {
                let singular = q
                    .segments
                    .iter()
                    .map(|s| match s {
                        Segment::Selector(Selector::Name(n)) => Some(PathStep::Name(n.clone())),
                        Segment::Selector(Selector::Index(i)) => Some(PathStep::Index(*i)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>();
                Some(JsonPath {
                    text: text.to_string(),
                    singular,
                })
            }
            Err(JsonPathError::PestError(err)) => {
                use pest::error::InputLocation;
                let pos = match err.location {
                    InputLocation::Pos(p) => p,
                    InputLocation::Span((s, _)) => s,
                };
                let pos = pos.min(text.len());
                let len = text[pos..].chars().next().map_or(0, char::len_utf8);
                let what = match &err.variant {
                    pest::error::ErrorVariant::ParsingError { positives, .. }
                        if !positives.is_empty() =>
                    {
                        let mut wanted: Vec<&str> = positives
                            .iter()
                            .map(|r| path_rule_phrase(&format!("{r:?}")))
                            .collect();
                        wanted.sort_unstable();
                        wanted.dedup();
                        format!("expected {}", wanted.join(" or "))
                    }
                    other => other.message().replace('\n', " "),
                };
                self.error(
                    Code::InvalidJsonPath,
                    format!("invalid JSONPath `{text}`: {what}"),
                    Span::new(span.start + pos, span.start + pos + len),
                    if pos >= text.len() { "the path ends too early" } else { "the path goes wrong here" },
                )
                .help = Some("JSONPath follows RFC 9535: `$.data[*]`, `$['odd key']`, `$..id`, `$.items[?@.qty > 1]`".into());
                None
            }
            Err(other) => {
                self.error(
                    Code::InvalidJsonPath,
                    format!("invalid JSONPath `{text}`: {other}"),
                    span,
                    "invalid JSONPath",
                );
                None
            }
        }
    }
}

/// The steps of a path made only of `$`, `.name` and `[index]`, which is always valid
/// RFC 9535; `None` for anything else, which the library then parses.
fn simple_path(text: &str) -> Option<Vec<PathStep>> {
    let mut rest = text.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let len = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            let name = &r[..len];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            steps.push(PathStep::Name(name.to_string()));
            rest = &r[len..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let index = &r[..close];
            let digits = index.strip_prefix('-').unwrap_or(index);
            let plain = !digits.is_empty()
                && digits.len() <= 15
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (!digits.starts_with('0') || index == "0");
            if !plain {
                return None;
            }
            steps.push(PathStep::Index(index.parse().ok()?));
            rest = &r[close + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// An unclosed `[` or quote, or a `]` that closes nothing, in a JSONPath: its offset,
/// length, the problem and a label. The library would report these further on.
fn unbalanced_path(text: &str) -> Option<(usize, usize, &'static str, &'static str)> {
    let mut open: Vec<usize> = Vec::new();
    let mut quote: Option<(char, usize)> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some((q, _)) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some((c, i)),
            '[' => open.push(i),
            ']' if open.pop().is_none() => {
                return Some((i, 1, "this `]` closes no `[`", "nothing to close"))
            }
            _ => {}
        }
    }
    if let Some((_, i)) = quote {
        return Some((i, 1, "this quoted name is not closed", "not closed"));
    }
    open.last()
        .map(|&i| (i, 1, "this `[` is not closed", "not closed"))
}

/// The phrase for a rule of jsonpath-rust's grammar in "expected ...".
fn path_rule_phrase(rule: &str) -> &'static str {
    match rule {
        "EOI" => "the end of the path",
        "segment" | "segments" | "child_segment" | "descendant_segment" => {
            "a segment like `.name` or `[0]`"
        }
        "bracketed_selection"
        | "selector"
        | "name_selector"
        | "wildcard_selector"
        | "index_selector"
        | "slice_selector"
        | "filter_selector" => "a selector: `'name'`, `*`, an index, a slice or `?filter`",
        "member_name_shorthand" | "name_first" | "name_char" | "ALPHA" => "a name",
        "logical_expr" | "logical_expr_and" | "atom_expr" | "paren_expr" | "comp_expr"
        | "test_expr" | "test" => "a filter condition like `@.qty > 1`",
        "comparable" | "literal" | "singular_query" | "rel_singular_query"
        | "abs_singular_query" => "a value to compare: a literal or a path like `@.qty`",
        "comp_op" => "a comparison: `==`, `!=`, `<`, `<=`, `>`, `>=`",
        "function_expr" | "function_argument" => "a function call",
        "string" => "a quoted string",
        "int" | "number" | "start" | "end" | "step" => "a number",
        _ => "something else",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for plain paths agrees with jsonpath-rust wherever it is taken,
    /// and leaves everything else to the library.
    #[test]
    fn simple_paths_agree_with_the_library() {
        let env = |_: &str| None;
        let taken = [
            "$",
            "$.a",
            "$.a.b_c",
            "$._links.next.href",
            "$.data[0]",
            "$.data[-1].id",
            "$[12].x",
            "$.data[999999999999999]",
        ];
        let left = [
            "$.a[01]",
            "$.a[-0]",
            "$.a[ 1]",
            "$.1a",
            "$..a",
            "$.a[*]",
            "$['a']",
            "$.é",
            "$.a.",
            "$[1",
            "$.data[1:2]",
        ];
        for text in taken {
            let mut ctx = Ctx::new(&env, &|_| Err(String::new()));
            let library = ctx.parse_json_path(text, Span::default());
            let library = library.unwrap_or_else(|| panic!("{text}: library refuses"));
            assert_eq!(library.singular, simple_path(text), "{text}");
        }
        for text in left {
            assert_eq!(simple_path(text), None, "{text}");
        }
    }
}
