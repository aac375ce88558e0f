//! The printer: walks the syntax tree and writes each construct in its canonical
//! layout, taking the comments in source order as it passes them.

use super::Comment;
use crate::syntax::ast::*;

/// Lines longer than this are not made by joining a block onto one line.
const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// `text` laid out canonically; `comments` are its comments, in order.
pub fn print(text: &str, comments: &[Comment], tree: &File) -> String {
    Printer {
        src: text,
        comments,
        next: 0,
        out: String::with_capacity(text.len()),
    }
    .file(tree)
}

/// The inside of a `{ ... }`: a block's statements or a model's fields.
struct Body<'t> {
    /// Offsets of the `{` and the `}`.
    open: usize,
    close: usize,
    entries: Vec<Entry<'t>>,
}

#[derive(Clone, Copy)]
enum Entry<'t> {
    Stmt(&'t Stmt),
    Field(&'t ModelField),
}

impl Entry<'_> {
    fn span(&self) -> Span {
        match self {
            Entry::Stmt(s) => s.span,
            Entry::Field(f) => f.name.span.to(f.ty.span),
        }
    }
    fn name(&self) -> String {
        match self {
            Entry::Stmt(s) if s.name.quoted => quote(&s.name.text),
            Entry::Stmt(s) => s.name.text.clone(),
            Entry::Field(f) => f.name.name.clone(),
        }
    }
    /// The type written after the name, for `name : type = value` and model fields.
    fn ty(&self) -> Option<String> {
        match self {
            Entry::Stmt(Stmt {
                value: StmtValue::Typed(t, _),
                ..
            }) => Some(type_ref(t)),
            Entry::Field(f) => Some(type_ref(&f.ty)),
            Entry::Stmt(_) => None,
        }
    }
    fn block(&self) -> Option<&Block> {
        match self {
            Entry::Stmt(Stmt {
                value: StmtValue::Block(b),
                ..
            }) => Some(b),
            _ => None,
        }
    }
}

fn block_body(b: &Block) -> Body<'_> {
    Body {
        open: b.span.start,
        close: b.span.end.saturating_sub(1),
        entries: b.stmts.iter().map(Entry::Stmt).collect(),
    }
}

/// Where the layout of the previous top-level line came from.
#[derive(Clone, Copy)]
enum Prev {
    Start,
    Comment(usize),
    /// The end of a declaration (or its trailing comment), and whether it is a one-line
    /// declaration (`sink`, `flow`).
    Decl(usize, bool),
}

struct Printer<'a> {
    src: &'a str,
    comments: &'a [Comment],
    next: usize,
    out: String,
}

impl Printer<'_> {
    fn file(mut self, f: &File) -> String {
        let mut prev = Prev::Start;
        let sink_widths = self.sink_alignment(&f.items);
        for (item, &sink_w) in f.items.iter().zip(&sink_widths) {
            let (start, one_line) = match item {
                Item::Service(s) => (s.span.start, false),
                Item::Model(m) => (m.span.start, false),
                Item::Source(s) => (s.span.start, false),
                Item::Aggregate(a) => (a.span.start, false),
                Item::Server(s) => (s.span.start, false),
                Item::Sink(s) => (s.span.start, true),
                Item::Flow(fl) => (fl.span.start, true),
                Item::Tenants(t) => (t.span.start, true),
            };
            for c in self.take_before(start) {
                self.top_blank(prev, c.start, one_line);
                self.line(0, &c.text, None);
                prev = Prev::Comment(c.end);
            }
            self.top_blank(prev, start, one_line);
            prev = Prev::Decl(self.item(item, sink_w), one_line);
        }
        for c in self.take_before(usize::MAX) {
            if let Prev::Comment(end) | Prev::Decl(end, _) = prev {
                if self.blank_between(end, c.start) {
                    self.out.push('\n');
                }
            }
            self.line(0, &c.text, None);
            prev = Prev::Comment(c.end);
        }
        self.out
    }

    /// One blank line between declarations; between two one-line declarations, and
    /// between a comment and what follows it, a blank line only where the source had one.
    fn top_blank(&mut self, prev: Prev, next: usize, next_one_line: bool) {
        let blank = match prev {
            Prev::Start => false,
            Prev::Comment(end) => self.blank_between(end, next),
            Prev::Decl(end, one_line) => {
                !(one_line && next_one_line) || self.blank_between(end, next)
            }
        };
        if blank {
            self.out.push('\n');
        }
    }

    /// Per declaration, the width a sink's name is padded to: the widest in its run of
    /// sinks with no blank line between them.
    fn sink_alignment(&self, items: &[Item]) -> Vec<usize> {
        let mut widths = vec![0; items.len()];
        let mut i = 0;
        while i < items.len() {
            let Item::Sink(first) = &items[i] else {
                i += 1;
                continue;
            };
            let mut end = i + 1;
            let mut last = first.span.end;
            while let Some(Item::Sink(next)) = items.get(end) {
                if self.blank_between(last, next.span.start) {
                    break;
                }
                last = next.span.end;
                end += 1;
            }
            let w = items[i..end]
                .iter()
                .map(|it| match it {
                    Item::Sink(s) => s.name.name.chars().count(),
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            widths[i..end].fill(w);
            i = end;
        }
        widths
    }

    /// Prints a declaration; returns where it ended in the source (its trailing comment
    /// included).
    fn item(&mut self, item: &Item, sink_w: usize) -> usize {
        match item {
            Item::Service(s) => self.braced(
                0,
                match &s.tenants {
                    Some(t) => format!("service {} for {}", s.name.name, t.name),
                    None => format!("service {}", s.name.name),
                },
                &block_body(&s.body),
                s.span.end,
            ),
            Item::Source(s) => self.braced(
                0,
                format!("source {} from {}", s.name.name, s.service.name),
                &block_body(&s.body),
                s.span.end,
            ),
            Item::Aggregate(a) => self.braced(
                0,
                format!("aggregate {}", a.name.name),
                &block_body(&a.body),
                a.span.end,
            ),
            Item::Server(s) => {
                self.braced(0, "server".to_string(), &block_body(&s.body), s.span.end)
            }
            Item::Model(m) => {
                let body = Body {
                    open: self.model_open(m),
                    close: m.span.end.saturating_sub(1),
                    entries: m.fields.iter().map(Entry::Field).collect(),
                };
                self.braced(0, format!("model {}", m.name.name), &body, m.span.end)
            }
            Item::Sink(s) => {
                let text = format!("sink {:sink_w$} = {}", s.name.name, self.expr(&s.value));
                self.single(0, text, s.span)
            }
            Item::Tenants(t) => {
                let text = format!("tenants {} = {}", t.name.name, self.expr(&t.value));
                self.single(0, text, t.span)
            }
            Item::Flow(fl) => {
                let names = |list: &[Ident]| {
                    list.iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let text = format!("flow {} -> {}", names(&fl.inputs), names(&fl.outputs));
                self.single(0, text, fl.span)
            }
        }
    }

    /// The `{` of a model: the first one after its name that is not in a comment.
    fn model_open(&self, m: &Model) -> usize {
        let mut in_comment = false;
        for (i, b) in self.src.bytes().enumerate().skip(m.name.span.end) {
            match b {
                b'\n' => in_comment = false,
                b'#' => in_comment = true,
                b'{' if !in_comment => return i,
                _ => {}
            }
        }
        m.name.span.end
    }

    /// A construct printed on one line: comments inside its span go on their own lines
    /// before it, one after it on the same source line stays there.
    fn single(&mut self, depth: usize, text: String, span: Span) -> usize {
        for c in self.take_before(span.end) {
            self.line(depth, &c.text, None);
        }
        let trailing = self.take_trailing(span.end);
        self.line(depth, &text, trailing.as_ref());
        trailing.map_or(span.end, |c| c.end)
    }

    /// `head { ... }`: on one line when the source had it on one line and it fits, else
    /// one entry per line. `end` is where the construct ends in the source.
    fn braced(&mut self, depth: usize, head: String, body: &Body, end: usize) -> usize {
        for c in self.take_before(body.open) {
            self.line(depth, &c.text, None);
        }
        if let Some(inline) = self.inline(body) {
            let text = format!("{head} {inline}");
            if depth * INDENT.len() + text.chars().count() <= WIDTH {
                let trailing = self.take_trailing(end);
                self.line(depth, &text, trailing.as_ref());
                return trailing.map_or(end, |c| c.end);
            }
        }
        let trailing = self.take_trailing(body.open + 1);
        self.line(depth, &format!("{head} {{"), trailing.as_ref());
        self.entries(depth + 1, body);
        let trailing = self.take_trailing(end);
        self.line(depth, "}", trailing.as_ref());
        trailing.map_or(end, |c| c.end)
    }

    /// A body on one line, `{ a = 1  b = 2 }`, when its braces are on one source line
    /// and no comment is inside; `{}` when it is empty.
    fn inline(&self, body: &Body) -> Option<String> {
        let inside = self.src.get(body.open..body.close)?;
        let has_comment = self
            .comments
            .iter()
            .any(|c| c.start > body.open && c.start < body.close);
        if has_comment {
            return None;
        }
        if body.entries.is_empty() {
            return Some("{}".into());
        }
        if inside.contains('\n') {
            return None;
        }
        let mut parts = Vec::new();
        for e in &body.entries {
            parts.push(match e.block() {
                Some(b) => format!("{} {}", e.name(), self.inline(&block_body(b))?),
                None => self.entry_text(e, 0, 0),
            });
        }
        Some(format!("{{ {} }}", parts.join("  ")))
    }

    /// The entries of a body, one per line at `depth`, with the comments between them.
    fn entries(&mut self, depth: usize, body: &Body) {
        let widths = self.alignment(body);
        let mut prev: Option<usize> = None;
        for (e, &(name_w, ty_w)) in body.entries.iter().zip(&widths) {
            let span = e.span();
            for c in self.take_before(span.start) {
                self.inner_blank(prev, c.start);
                self.line(depth, &c.text, None);
                prev = Some(c.end);
            }
            self.inner_blank(prev, span.start);
            prev = Some(match e.block() {
                Some(b) => self.braced(depth, e.name(), &block_body(b), span.end),
                None => {
                    let text = self.entry_text(e, name_w, ty_w);
                    self.single(depth, text, span)
                }
            });
        }
        for c in self.take_before(body.close) {
            self.inner_blank(prev, c.start);
            self.line(depth, &c.text, None);
            prev = Some(c.end);
        }
    }

    /// Inside a block: a blank line where the source had one or more, none first.
    fn inner_blank(&mut self, prev: Option<usize>, next: usize) {
        if prev.is_some_and(|end| self.blank_between(end, next)) {
            self.out.push('\n');
        }
    }

    /// Per entry, the widths its name and type are padded to: the widest in its group,
    /// a run of entries with no blank line between them. Blocks are not padded.
    fn alignment(&self, body: &Body) -> Vec<(usize, usize)> {
        let mut widths = vec![(0, 0); body.entries.len()];
        let mut start = 0;
        for i in 1..=body.entries.len() {
            let ends_group = i == body.entries.len()
                || self.blank_between(body.entries[i - 1].span().end, body.entries[i].span().start);
            if !ends_group {
                continue;
            }
            let group = &body.entries[start..i];
            let plain = group.iter().filter(|e| e.block().is_none());
            let name_w = plain
                .clone()
                .map(|e| e.name().chars().count())
                .max()
                .unwrap_or(0);
            let ty_w = plain
                .filter_map(|e| e.ty())
                .map(|t| t.chars().count())
                .max()
                .unwrap_or(0);
            widths[start..i].fill((name_w, ty_w));
            start = i;
        }
        widths
    }

    /// `name = value`, `name : type = value` or `name : type`, padded to the widths.
    fn entry_text(&self, e: &Entry, name_w: usize, ty_w: usize) -> String {
        let name = e.name();
        match e {
            Entry::Field(_) => format!("{name:name_w$} : {}", e.ty().unwrap_or_default()),
            Entry::Stmt(s) => match &s.value {
                StmtValue::Expr(v) => format!("{name:name_w$} = {}", self.expr(v)),
                StmtValue::Typed(t, v) => {
                    format!("{name:name_w$} : {:ty_w$} = {}", type_ref(t), self.expr(v))
                }
                StmtValue::Block(b) => format!(
                    "{name} {}",
                    self.inline(&block_body(b)).unwrap_or_else(|| "{}".into())
                ),
            },
        }
    }

    fn expr(&self, e: &Expr) -> String {
        let text = match &e.kind {
            ExprKind::Str(s) => quote(s),
            ExprKind::Number(t) | ExprKind::Duration(t) | ExprKind::Rate(t) | ExprKind::Path(t) => {
                t.clone()
            }
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Null => "null".into(),
            ExprKind::List(args) => format!("[{}]", self.args(args)),
            ExprKind::Object(b) => self.inline(&block_body(b)).unwrap_or_else(|| {
                let entries: Vec<String> = b
                    .stmts
                    .iter()
                    .map(|s| self.entry_text(&Entry::Stmt(s), 0, 0))
                    .collect();
                format!("{{ {} }}", entries.join("  "))
            }),
            ExprKind::Call { name, args } => format!("{}({})", name.name, self.args(args)),
            ExprKind::Name(parts) => parts
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
            ExprKind::Unary(UnaryOp::Neg, x) => format!("-{}", self.expr(x)),
            ExprKind::Unary(UnaryOp::Not, x) => format!("not {}", self.expr(x)),
            ExprKind::Binary(op, l, r) => {
                format!("{} {} {}", self.expr(l), op.symbol(), self.expr(r))
            }
        };
        if self.parenthesized(e) {
            format!("({text})")
        } else {
            text
        }
    }

    /// The tree keeps no parentheses, but an expression written in them has a span that
    /// starts at the `(`: its own operand (or operator) starts later.
    fn parenthesized(&self, e: &Expr) -> bool {
        let opens = self.src.as_bytes().get(e.span.start) == Some(&b'(');
        match &e.kind {
            ExprKind::Binary(_, l, _) => opens && e.span.start < l.span.start,
            _ => opens,
        }
    }

    fn args(&self, args: &[Arg]) -> String {
        args.iter()
            .map(|a| match &a.name {
                Some(n) => format!("{} = {}", n.name, self.expr(&a.value)),
                None => self.expr(&a.value),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn line(&mut self, depth: usize, text: &str, trailing: Option<&Comment>) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
        self.out.push_str(text);
        if let Some(c) = trailing {
            self.out.push_str("  ");
            self.out.push_str(&c.text);
        }
        self.out.push('\n');
    }

    /// The comments not yet printed that start before `pos`.
    fn take_before(&mut self, pos: usize) -> Vec<Comment> {
        let from = self.next;
        while self.comments.get(self.next).is_some_and(|c| c.start < pos) {
            self.next += 1;
        }
        self.comments[from..self.next].to_vec()
    }

    /// The next comment, when it follows `pos` on the same line with only blanks and
    /// commas between.
    fn take_trailing(&mut self, pos: usize) -> Option<Comment> {
        let c = self.comments.get(self.next)?;
        let gap = self.src.get(pos..c.start)?;
        if gap
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b','))
        {
            self.next += 1;
            Some(c.clone())
        } else {
            None
        }
    }

    /// Whether the source has an empty line (blanks and commas only) between two offsets.
    fn blank_between(&self, from: usize, to: usize) -> bool {
        let Some(gap) = self.src.get(from..to) else {
            return false;
        };
        gap.split('\n')
            .skip(1)
            .take(gap.matches('\n').count().saturating_sub(1))
            .any(|line| {
                line.bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b','))
            })
    }
}

fn type_ref(t: &TypeRef) -> String {
    format!("{}{}", t.name.name, if t.optional { "?" } else { "" })
}

/// A string literal with the canonical escapes: `\"`, `\\`, `\n`, `\t`, `\r`, and
/// `\u{XXXX}` for other control characters; everything else as itself.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
