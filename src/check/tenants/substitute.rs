//! `tenant.<column>` in a declaration: finding every use (to check the columns and to
//! tell which diagnostics depend on the row), and writing one row's values in their
//! place, so the rest of the checker sees plain strings.

use crate::syntax::ast::{Arg, Block, Expr, ExprKind, Stmt, StmtValue};
use crate::syntax::Span;

/// One use of `tenant.<column>`: as a value, or as a `{tenant.column}` placeholder in a
/// request path (then `span` is the path string's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    pub column: String,
    pub span: Span,
}

/// Every `tenant.x` in a block, in order.
pub fn refs_in_block(block: &Block, out: &mut Vec<TenantRef>) {
    for stmt in &block.stmts {
        match &stmt.value {
            StmtValue::Expr(e) | StmtValue::Typed(_, e) => {
                if is_path(stmt) {
                    if let ExprKind::Str(s) = &e.kind {
                        placeholders(s, |column| {
                            out.push(TenantRef {
                                column: column.to_string(),
                                span: e.span,
                            })
                        });
                    }
                }
                refs_in_expr(e, out);
            }
            StmtValue::Block(b) => refs_in_block(b, out),
        }
    }
}

/// Every `tenant.x` in an expression.
pub fn refs_in_expr(e: &Expr, out: &mut Vec<TenantRef>) {
    match &e.kind {
        ExprKind::Name(parts) if is_tenant(parts) => out.push(TenantRef {
            column: column_of(parts),
            span: e.span,
        }),
        ExprKind::List(args) | ExprKind::Call { args, .. } => {
            args.iter().for_each(|a| refs_in_expr(&a.value, out))
        }
        ExprKind::Object(b) => refs_in_block(b, out),
        ExprKind::Unary(_, x) => refs_in_expr(x, out),
        ExprKind::Binary(_, a, b) => {
            refs_in_expr(a, out);
            refs_in_expr(b, out);
        }
        _ => {}
    }
}

/// The block with every `tenant.x` replaced by `value(x)`: a string literal where it was
/// a value, the value percent-encoded as a path segment where it was a placeholder.
pub fn substitute_block(block: &Block, value: &dyn Fn(&str) -> String) -> Block {
    Block {
        stmts: block
            .stmts
            .iter()
            .map(|stmt| Stmt {
                value: match &stmt.value {
                    StmtValue::Expr(e) => StmtValue::Expr(if is_path(stmt) {
                        substitute_path(e, value)
                    } else {
                        substitute_expr(e, value)
                    }),
                    StmtValue::Typed(t, e) => {
                        StmtValue::Typed(t.clone(), substitute_expr(e, value))
                    }
                    StmtValue::Block(b) => StmtValue::Block(substitute_block(b, value)),
                },
                ..stmt.clone()
            })
            .collect(),
        span: block.span,
    }
}

fn substitute_expr(e: &Expr, value: &dyn Fn(&str) -> String) -> Expr {
    let args = |args: &[Arg]| -> Vec<Arg> {
        args.iter()
            .map(|a| Arg {
                name: a.name.clone(),
                value: substitute_expr(&a.value, value),
            })
            .collect()
    };
    let kind = match &e.kind {
        ExprKind::Name(parts) if is_tenant(parts) => ExprKind::Str(value(&column_of(parts))),
        ExprKind::List(a) => ExprKind::List(args(a)),
        ExprKind::Call { name, args: a } => ExprKind::Call {
            name: name.clone(),
            args: args(a),
        },
        ExprKind::Object(b) => ExprKind::Object(substitute_block(b, value)),
        ExprKind::Unary(op, x) => ExprKind::Unary(*op, Box::new(substitute_expr(x, value))),
        ExprKind::Binary(op, a, b) => ExprKind::Binary(
            *op,
            Box::new(substitute_expr(a, value)),
            Box::new(substitute_expr(b, value)),
        ),
        other => other.clone(),
    };
    Expr { kind, span: e.span }
}

/// `"/shops/{tenant.id}/orders"` with the row's `id` written in, encoded as one path
/// segment (RFC 3986's unreserved characters kept), like a parent's placeholder.
fn substitute_path(e: &Expr, value: &dyn Fn(&str) -> String) -> Expr {
    let ExprKind::Str(s) = &e.kind else {
        return substitute_expr(e, value);
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(open) = rest.find("{tenant.") {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let column = &rest[open + "{tenant.".len()..open + close];
        let v = value(column);
        out.push_str(&percent_encoding::utf8_percent_encode(&v, SEGMENT).to_string());
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Expr {
        kind: ExprKind::Str(out),
        span: e.span,
    }
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn placeholders(s: &str, mut each: impl FnMut(&str)) {
    let mut rest = s;
    while let Some(open) = rest.find("{tenant.") {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        each(&rest[open + "{tenant.".len()..open + close]);
        rest = &rest[open + close + 1..];
    }
}

fn is_path(stmt: &Stmt) -> bool {
    !stmt.name.quoted && (stmt.name.text == "get" || stmt.name.text == "post")
}

fn is_tenant(parts: &[crate::syntax::ast::Ident]) -> bool {
    parts.len() >= 2 && parts[0].name == "tenant"
}

fn column_of(parts: &[crate::syntax::ast::Ident]) -> String {
    parts[1..]
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}
