//! Child sources (`for_each`): the order that puts each parent before its children,
//! with `for_each` cycles reported, and the `{field}` placeholders of a child's path.

use super::diagnostic::did_you_mean;
use super::expr::FieldInfo;
use super::{Code, Ctx, Decls};
use crate::syntax::ast::{self, ExprKind, StmtValue};
use crate::syntax::Span;
use std::collections::BTreeSet;

/// Sources in an order where each parent comes before its children; sources caught in a
/// `for_each` cycle are reported and come last.
pub(super) fn order_by_parent<'a>(ctx: &mut Ctx, decls: &Decls<'a>) -> Vec<&'a str> {
    let parent_of = |name: &str| -> Option<(&'a str, Span)> {
        let src = decls.sources.get(name)?;
        match &src.body.get("for_each")?.value {
            StmtValue::Expr(ast::Expr {
                kind: ExprKind::Name(parts),
                span,
            }) => decls
                .sources
                .get_key_value(parts[0].name.as_str())
                .map(|(k, _)| (*k, *span)),
            _ => None,
        }
    };
    let mut done: Vec<&'a str> = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut cyclic: BTreeSet<&str> = BTreeSet::new();
    for &start in decls.sources.keys() {
        let mut chain: Vec<&'a str> = Vec::new();
        let mut cur = Some(start);
        while let Some(name) = cur {
            if placed.contains(name) || cyclic.contains(name) {
                break;
            }
            if let Some(pos) = chain.iter().position(|c| *c == name) {
                let cycle: Vec<&str> = chain[pos..].to_vec();
                let first = cycle[0];
                if let Some((_, span)) = parent_of(first) {
                    ctx.error(
                        Code::ForEachCycle,
                        format!(
                            "`for_each` goes round in a cycle: {} -> {first}",
                            cycle.join(" -> ")
                        ),
                        span,
                        "this closes the cycle",
                    );
                }
                cyclic.extend(cycle);
                break;
            }
            chain.push(name);
            cur = parent_of(name).map(|(p, _)| p);
        }
        for name in chain.into_iter().rev() {
            if !cyclic.contains(name) && placed.insert(name) {
                done.push(name);
            }
        }
    }
    done.extend(cyclic.iter().copied());
    done
}

impl<'e> Ctx<'e> {
    /// `{field}` placeholders: only in child sources, and only the parent's fields.
    pub(super) fn placeholders(
        &mut self,
        path: &str,
        span: Span,
        parent: Option<&(String, Vec<FieldInfo>)>,
    ) -> bool {
        let mut ok = true;
        let mut rest = path;
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            // +1 for the opening quote of the literal.
            let at = Span::new(
                span.start + 1 + offset + open,
                span.start + 1 + offset + open + close + 1,
            );
            match parent {
                None => {
                    self.error(Code::UnknownPlaceholder, format!("placeholder `{{{name}}}` needs a parent record, but this source has no `for_each`"), at, "no parent")
                        .help = Some("placeholders take a field of the parent source named by `for_each`".into());
                    ok = false;
                }
                Some((pname, fields)) if !fields.iter().any(|f| f.name == name) => {
                    let help = did_you_mean(name, fields.iter().map(|f| f.name.as_str()));
                    self.error(Code::UnknownPlaceholder, format!("placeholder `{{{name}}}`: parent source `{pname}` has no field `{name}`"), at, "not a parent field").help = help;
                    ok = false;
                }
                _ => {}
            }
            offset += open + close + 1;
            rest = &rest[open + close + 1..];
        }
        ok
    }
}
