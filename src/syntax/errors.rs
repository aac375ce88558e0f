//! Syntax errors: the nesting pre-scan, and pest's errors rewritten into phrases a
//! person can read (what was expected, the string or block left open).

use super::ast::Span;
use super::parser::Rule;

/// How deep brackets, braces and parentheses may nest before the file is refused:
/// parsing recurses, and hostile input must not overflow the stack.
const MAX_NESTING: usize = 64;

/// A problem found while reading the text.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    /// Further places worth pointing at, such as the `{` that was never closed.
    pub related: Vec<(Span, String)>,
}

impl SyntaxError {
    pub(super) fn new(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        SyntaxError {
            span,
            message: message.into(),
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }
}

/// Scans for nesting deeper than [`MAX_NESTING`] outside strings and comments.
pub(super) fn check_nesting(text: &str) -> Option<SyntaxError> {
    let mut depth = 0usize;
    let mut scan = Scanner::default();
    for (i, c) in text.char_indices() {
        let quoted = scan.in_string || scan.in_comment;
        scan.step(i, c);
        if quoted || scan.in_string || scan.in_comment {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    // The count takes in the blocks around the expression, which a
                    // reader counting only the `[` in front of them would miss.
                    let mut e = SyntaxError::new(
                        Span::new(i, i + 1),
                        format!(
                            "nesting deeper than {MAX_NESTING} levels: this `{c}` opens level \
                             {depth}, counting every `{{`, `[` and `(` still open before it"
                        ),
                        "too deep",
                    );
                    e.help = Some(format!(
                        "at most {MAX_NESTING} braces, brackets and parentheses may be open at \
                         once, those of the enclosing blocks included"
                    ));
                    return Some(e);
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Turns pest's error into one with readable expectations.
pub(super) fn syntax_error(text: &str, err: pest::error::Error<Rule>) -> SyntaxError {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    // Point at the whole offending token rather than an empty position.
    let token_end = if end > start {
        end
    } else {
        let rest = &text[start.min(text.len())..];
        let len = rest
            .char_indices()
            .find(|&(i, c)| i > 0 && (c.is_whitespace() || "{}()[],=".contains(c)))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        start + len.max(rest.chars().next().map_or(0, char::len_utf8))
    };
    let found = text
        .get(start..token_end)
        .filter(|s| !s.is_empty())
        .map(|s| format!("`{}`", s.chars().take(40).collect::<String>()))
        .unwrap_or_else(|| "the end of the file".into());
    let message = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&str> = positives.iter().map(|r| phrase(*r)).collect();
            // Where a property or a field may start, so may the `}` that ends the block;
            // pest does not list literal tokens.
            if wanted
                .iter()
                .any(|w| w.starts_with("a property") || w.starts_with("a field"))
            {
                wanted.push("`}`");
            }
            wanted.sort_unstable();
            wanted.dedup();
            match wanted.len() {
                0 => format!("unexpected {found}"),
                1 => format!("expected {}, found {found}", wanted[0]),
                _ => {
                    let last = wanted.pop().unwrap_or_default();
                    format!("expected {} or {last}, found {found}", wanted.join(", "))
                }
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let message = if message.contains("call limit") {
        "the file is too complex to parse".to_string()
    } else {
        message
    };
    unclosed_string(text, start)
        .or_else(|| unclosed_block(text, start))
        .unwrap_or_else(|| {
            SyntaxError::new(Span::new(start, token_end), message, "unexpected here")
        })
}

/// A string literal opened at or before `at` that has no closing quote on its line:
/// the parser only notices further on, so point at where the string starts.
fn unclosed_string(text: &str, at: usize) -> Option<SyntaxError> {
    let mut scan = Scanner::default();
    for (i, c) in text.char_indices() {
        if i > at && !scan.in_string {
            return None;
        }
        if let Some(open) = scan.string_start.filter(|_| scan.in_string && c == '\n') {
            let mut e = SyntaxError::new(
                Span::new(open, i),
                "this string is not closed: a string ends with `\"` on the same line",
                "no closing quote",
            );
            e.help = Some("close it with `\"`; write a quote inside a string as `\\\"`".into());
            return Some(e);
        }
        scan.step(i, c);
    }
    let open = scan.string_start.filter(|_| scan.in_string)?;
    let mut e = SyntaxError::new(
        Span::new(open, text.len()),
        "this string is not closed: the file ends inside it",
        "no closing quote",
    );
    e.help = Some("close it with `\"`".into());
    Some(e)
}

/// An error at the start of a declaration (`source`, `sink`, ...) while a block is
/// still open, or at the end of the file: most likely a `}` is missing.
fn unclosed_block(text: &str, at: usize) -> Option<SyntaxError> {
    let mut scan = Scanner::default();
    let mut open: Vec<(usize, char)> = Vec::new();
    for (i, c) in text.char_indices() {
        if i >= at {
            break;
        }
        scan.step(i, c);
        if scan.in_string || scan.in_comment {
            continue;
        }
        match c {
            '{' | '(' | '[' => open.push((i, c)),
            '}' | ')' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    let &(brace, _) = open.iter().rev().find(|(_, c)| *c == '{')?;
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let indent = line.len() - line.trim_start().len();
    let keyword = ["service", "model", "source", "sink", "flow", "aggregate"]
        .into_iter()
        .find(|k| {
            line.trim_start().starts_with(k)
                && !line.trim_start()[k.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
    let brace_line = text[..brace].matches('\n').count() + 1;
    let mut e = if at >= text.trim_end().len() {
        // On the last character, since an empty span past the last line is not drawn.
        let trimmed = text.trim_end();
        let last = trimmed.char_indices().last().map_or(0, |(i, _)| i);
        SyntaxError::new(
            Span::new(last, trimmed.len()),
            format!("the file ends inside a block: the `{{` on line {brace_line} is not closed"),
            "expected `}` after this",
        )
    } else {
        // Only when the parser stopped right after the keyword, which it took for a
        // property name, and the block was opened on an earlier line.
        let kw = keyword?;
        let kw_start = line_start + indent;
        let after_keyword = text.get(kw_start + kw.len()..at)?;
        if brace >= line_start || !after_keyword.trim().is_empty() {
            return None;
        }
        SyntaxError::new(
            Span::new(kw_start, kw_start + kw.len()),
            format!(
                "expected `}}` before this `{kw}`: the `{{` on line {brace_line} is not closed"
            ),
            "a new declaration starts here",
        )
    };
    e.related
        .push((Span::new(brace, brace + 1), "this `{` is not closed".into()));
    e.help = Some("add the missing `}`".into());
    Some(e)
}

/// Tracks whether a position is inside a string or a comment.
#[derive(Default)]
struct Scanner {
    in_string: bool,
    in_comment: bool,
    escaped: bool,
    string_start: Option<usize>,
}

impl Scanner {
    fn step(&mut self, i: usize, c: char) {
        if self.in_comment {
            self.in_comment = c != '\n';
        } else if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' || c == '\n' {
                self.in_string = false;
            }
        } else if c == '#' {
            self.in_comment = true;
        } else if c == '"' {
            self.in_string = true;
            self.string_start = Some(i);
        }
    }
}

/// The phrase used in "expected ..." for a grammar rule.
fn phrase(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "the end of the file",
        Rule::service | Rule::kw_service => "`service`",
        Rule::model | Rule::kw_model => "`model`",
        Rule::source | Rule::kw_source => "`source`",
        Rule::sink | Rule::kw_sink => "`sink`",
        Rule::flow | Rule::kw_flow => "`flow`",
        Rule::aggregate | Rule::kw_aggregate => "`aggregate`",
        Rule::kw_from => "`from`",
        Rule::kw_for => "`for`",
        Rule::tenants | Rule::kw_tenants => "`tenants`",
        Rule::server | Rule::kw_server => "`server`",
        Rule::ident | Rule::name_ref | Rule::name_list => "a name",
        Rule::ident_any => "a name",
        Rule::prop_name | Rule::statement => "a property like `name = value`",
        Rule::model_field => "a field like `id : string`",
        Rule::type_ref => "a type like `string`",
        Rule::block | Rule::model_body => "`{`",
        Rule::typed_value => "`:`",
        Rule::assign | Rule::sink_eq => "`=`",
        Rule::arrow => "`->`",
        Rule::expr | Rule::paren | Rule::list | Rule::object | Rule::call | Rule::arg => "a value",
        Rule::duration => "a duration like `30s`",
        Rule::rate => "a rate like `20/s`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::null => "`null`",
        Rule::jsonpath => "a JSONPath like `$.data[*]`",
        Rule::neg | Rule::not_op => "a value",
        Rule::coalesce
        | Rule::or_op
        | Rule::and_op
        | Rule::eq
        | Rule::ne
        | Rule::le
        | Rule::ge
        | Rule::lt
        | Rule::gt
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div => "an operator",
        Rule::optional => "`?`",
        _ => "something else",
    }
}
