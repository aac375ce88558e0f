//! Properties of blocks and the arguments of calls: a block's statements by name, a
//! statement's value or block, bare names, and arguments matched to a signature; the
//! constant values they hold are read in `values.rs`.

use super::diagnostic::did_you_mean;
use super::{Code, Ctx, Label};
use crate::syntax::ast::{Arg, Block, Expr, ExprKind, Ident, Stmt, StmtValue};
use crate::syntax::Span;
use std::collections::BTreeMap;

/// A block's statements by name, after unknown and duplicate ones were reported.
pub struct Props<'a> {
    map: BTreeMap<&'a str, &'a Stmt>,
}

impl<'a> Props<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Stmt> {
        self.map.get(name).copied()
    }
}

/// What a named call accepts: its arguments by name, which are required, and which may
/// be given by position (in order).
pub struct Signature {
    pub name: &'static str,
    pub params: &'static [&'static str],
    pub required: &'static [&'static str],
    pub positional: &'static [&'static str],
}

impl<'e> Ctx<'e> {
    /// Indexes a block's statements, reporting unknown and repeated properties.
    pub fn props<'a>(&mut self, block: &'a Block, allowed: &[&str], owner: &str) -> Props<'a> {
        let mut map: BTreeMap<&str, &Stmt> = BTreeMap::new();
        for stmt in &block.stmts {
            let name = stmt.name.text.as_str();
            if !allowed.contains(&name) {
                let help = did_you_mean(name, allowed.iter().copied());
                self.error(
                    Code::UnknownProperty,
                    format!("{owner} has no property `{name}`"),
                    stmt.name.span,
                    "unknown property",
                )
                .help = help
                    .or_else(|| Some(format!("the properties here are: {}", allowed.join(", "))));
                continue;
            }
            if let Some(first) = map.get(name) {
                self.set_twice(
                    format!("`{name}` is set twice in {owner}"),
                    stmt.name.span,
                    first.name.span,
                );
                continue;
            }
            map.insert(name, stmt);
        }
        Props { map }
    }

    /// A missing required property, labelled on the name of the block's declaration.
    pub fn missing(&mut self, owner_kind: &str, owner: &Ident, prop: &str) {
        self.error(
            Code::MissingProperty,
            format!("{owner_kind} `{}` has no `{prop}`", owner.name),
            owner.span,
            format!("`{prop}` is required"),
        );
    }

    /// The expression of a `name = value` statement; a block or typed value is reported.
    pub fn stmt_expr<'a>(&mut self, stmt: &'a Stmt) -> Option<&'a Expr> {
        match &stmt.value {
            StmtValue::Expr(e) => Some(e),
            StmtValue::Block(b) => {
                self.error(
                    Code::InvalidValue,
                    format!("`{}` takes a value, not a block", stmt.name.text),
                    b.span,
                    "expected `= value`",
                );
                None
            }
            StmtValue::Typed(t, _) => {
                self.error(
                    Code::InvalidValue,
                    format!("`{}` takes no type here", stmt.name.text),
                    t.span,
                    "no type expected",
                );
                None
            }
        }
    }

    /// The block of a `name { ... }` statement.
    pub fn stmt_block<'a>(&mut self, stmt: &'a Stmt) -> Option<&'a Block> {
        match &stmt.value {
            StmtValue::Block(b) => Some(b),
            StmtValue::Expr(e) | StmtValue::Typed(_, e) => {
                self.error(
                    Code::InvalidValue,
                    format!("`{}` takes a block, not a value", stmt.name.text),
                    e.span,
                    format!("expected `{} {{ ... }}`", stmt.name.text),
                );
                None
            }
        }
    }

    /// A bare name such as `newest_first`.
    pub fn bare_name<'a>(&mut self, e: &'a Expr, what: &str) -> Option<&'a Ident> {
        match &e.kind {
            ExprKind::Name(parts) if parts.len() == 1 => Some(&parts[0]),
            _ => {
                self.error(
                    Code::InvalidValue,
                    format!("{what} must be a name"),
                    e.span,
                    "expected a name",
                );
                None
            }
        }
    }

    /// Matches a call's arguments to a signature: reports unknown, repeated and missing
    /// arguments (a missing one on the callee's name), and returns them by name.
    pub fn call_args<'a>(
        &mut self,
        sig: &Signature,
        args: &'a [Arg],
        callee: Span,
    ) -> BTreeMap<&'static str, &'a Expr> {
        let mut out: BTreeMap<&'static str, &'a Expr> = BTreeMap::new();
        let mut given: BTreeMap<&'static str, Span> = BTreeMap::new();
        let mut position = 0;
        for a in args {
            let param = match &a.name {
                Some(n) => match sig.params.iter().find(|p| **p == n.name) {
                    Some(p) => *p,
                    None => {
                        let help = did_you_mean(&n.name, sig.params.iter().copied());
                        self.error(
                            Code::UnknownArgument,
                            format!("`{}` has no argument `{}`", sig.name, n.name),
                            n.span,
                            "unknown argument",
                        )
                        .help = help.or_else(|| {
                            Some(format!("its arguments are: {}", sig.params.join(", ")))
                        });
                        continue;
                    }
                },
                None => match sig.positional.get(position) {
                    Some(p) => {
                        position += 1;
                        *p
                    }
                    None => {
                        self.error(
                            Code::UnknownArgument,
                            format!("`{}` takes its arguments by name", sig.name),
                            a.value.span,
                            "unnamed argument",
                        )
                        .help = Some(format!(
                            "write `name = value`; its arguments are: {}",
                            sig.params.join(", ")
                        ));
                        continue;
                    }
                },
            };
            let at = a.name.as_ref().map_or(a.value.span, |n| n.span);
            if let Some(first) = given.insert(param, at) {
                self.error(
                    Code::DuplicateProperty,
                    format!("argument `{param}` of `{}` is given twice", sig.name),
                    at,
                    "given again here",
                )
                .labels
                .push(Label {
                    span: first,
                    text: "first given here".into(),
                });
                given.insert(param, first);
                continue;
            }
            out.insert(param, &a.value);
        }
        for req in sig.required {
            if !out.contains_key(req) {
                self.error(
                    Code::MissingArgument,
                    format!("`{}` needs the argument `{req}`", sig.name),
                    callee,
                    format!("`{req}` missing"),
                )
                .help = Some(format!("its arguments are: {}", sig.params.join(", ")));
            }
        }
        out
    }
}
