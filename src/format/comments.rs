//! Finding the comments of a file. The grammar treats them as blanks, so they are not in
//! the tree: they are read from the text, skipping the tokens that may hold a `#` of
//! their own (strings and JSONPath), whose spans the tree knows.

use crate::syntax::ast::*;

/// One `#` comment: its bytes in the source (up to, not including, the newline) and its
/// text without trailing blanks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Every comment of `text`, in order.
pub fn collect(text: &str, tree: &File) -> Vec<Comment> {
    let mut opaque = Vec::new();
    for item in &tree.items {
        match item {
            Item::Service(Service { body, .. })
            | Item::Source(Source { body, .. })
            | Item::Aggregate(Aggregate { body, .. })
            | Item::Server(Server { body, .. }) => block_tokens(body, &mut opaque),
            Item::Sink(s) => expr_tokens(&s.value, &mut opaque),
            Item::Tenants(t) => expr_tokens(&t.value, &mut opaque),
            Item::Model(_) | Item::Flow(_) => {}
        }
    }
    opaque.sort_by_key(|s| s.start);
    let bytes = text.as_bytes();
    let mut comments = Vec::new();
    let mut tokens = opaque.iter().peekable();
    let mut i = 0;
    while i < bytes.len() {
        while tokens.next_if(|t| t.end <= i).is_some() {}
        if let Some(t) = tokens.peek().filter(|t| t.start <= i) {
            i = t.end;
            continue;
        }
        if bytes[i] == b'#' {
            let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
            comments.push(Comment {
                start: i,
                end,
                text: text[i..end].trim_end().to_string(),
            });
            i = end;
        } else {
            i += 1;
        }
    }
    comments
}

fn block_tokens(b: &Block, out: &mut Vec<Span>) {
    for s in &b.stmts {
        if s.name.quoted {
            out.push(s.name.span);
        }
        match &s.value {
            StmtValue::Expr(e) | StmtValue::Typed(_, e) => expr_tokens(e, out),
            StmtValue::Block(inner) => block_tokens(inner, out),
        }
    }
}

fn expr_tokens(e: &Expr, out: &mut Vec<Span>) {
    match &e.kind {
        ExprKind::Str(_) | ExprKind::Path(_) => out.push(e.span),
        ExprKind::List(args) | ExprKind::Call { args, .. } => {
            args.iter().for_each(|a| expr_tokens(&a.value, out))
        }
        ExprKind::Object(b) => block_tokens(b, out),
        ExprKind::Unary(_, x) => expr_tokens(x, out),
        ExprKind::Binary(_, l, r) => {
            expr_tokens(l, out);
            expr_tokens(r, out);
        }
        _ => {}
    }
}
