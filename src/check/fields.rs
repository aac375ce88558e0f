//! The fields of a source: the `fields` block checked against its model or its own
//! types, the fields declared without checking (for children and aggregates), and the
//! `key` drawn from them.

use super::diagnostic::did_you_mean;
use super::expr::{FieldInfo, Parent, Scope};
use super::model::Models;
use super::{Code, Ctx, Expr, Field, Label, Lit, Type};
use crate::syntax::ast::{self, ExprKind, StmtValue};
use crate::syntax::Span;
use std::collections::{BTreeMap, BTreeSet};

/// The fields a source declares, read from its model or typed `fields` without checking
/// anything, so children and aggregates can be checked even when the source has errors.
/// `None` when they cannot all be known (an unknown model, an untyped field, ...).
pub(super) fn declared_fields(src: &ast::Source, models: &Models) -> Option<Vec<FieldInfo>> {
    if let Some(stmt) = src.body.get("model") {
        return match &stmt.value {
            StmtValue::Expr(ast::Expr {
                kind: ExprKind::Name(parts),
                ..
            }) if parts.len() == 1 => models.get(&parts[0].name).cloned(),
            _ => None,
        };
    }
    let StmtValue::Block(b) = &src.body.get("fields")?.value else {
        return None;
    };
    b.stmts
        .iter()
        .map(|s| match &s.value {
            StmtValue::Typed(t, _) => Some(FieldInfo {
                name: s.name.text.clone(),
                ty: type_named(&t.name.name)?,
                optional: t.optional,
            }),
            _ => None,
        })
        .collect()
}

pub(super) fn type_named(name: &str) -> Option<Type> {
    Type::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

impl<'e> Ctx<'e> {
    /// The `fields` block: with a model, `name = expr` for its fields; without one,
    /// `name : type = expr`.
    pub(super) fn fields(
        &mut self,
        block: &ast::Block,
        block_name: &ast::PropName,
        model: Option<(&str, &Vec<FieldInfo>)>,
        broken: Option<&BTreeSet<String>>,
        model_failed: bool,
        parent: Parent,
    ) -> Option<Vec<Field>> {
        let model_name = model.map_or("", |(n, _)| n);
        let model = model.map(|(_, m)| m);
        let scope = Scope::Record { parent };
        let mut out: Vec<Field> = Vec::new();
        let mut ok = true;
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for stmt in &block.stmts {
            let name = stmt.name.text.as_str();
            if let Some(first) = seen.insert(name, stmt.name.span) {
                self.error(
                    Code::DuplicateProperty,
                    format!("field `{name}` is mapped twice"),
                    stmt.name.span,
                    "mapped again here",
                )
                .labels
                .push(Label {
                    span: first,
                    text: "first mapped here".into(),
                });
                ok = false;
                continue;
            }
            let (declared, expr) = match (&stmt.value, model) {
                (StmtValue::Expr(e), Some(m)) => match m.iter().find(|f| f.name == name) {
                    Some(f) => (Some((f.ty, f.optional)), e),
                    // The model's declaration of it has an error: its type is unknown.
                    None if broken.is_some_and(|b| b.contains(name)) => {
                        let _ = self.lower(e, &scope);
                        ok = false;
                        continue;
                    }
                    None => {
                        let help = did_you_mean(name, m.iter().map(|f| f.name.as_str()));
                        self.error(
                            Code::UnknownField,
                            format!("model `{model_name}` has no field `{name}`"),
                            stmt.name.span,
                            "not in the model",
                        )
                        .help = help;
                        let _ = self.lower(e, &scope);
                        ok = false;
                        continue;
                    }
                },
                (StmtValue::Expr(e), None) => {
                    if !model_failed {
                        self.error(
                            Code::MissingProperty,
                            format!("field `{name}` has no type"),
                            stmt.name.span,
                            "no type",
                        )
                        .help = Some(format!(
                            "write `{name} : string = ...`, or name a `model` for the source"
                        ));
                    }
                    let _ = self.lower(e, &scope);
                    ok = false;
                    continue;
                }
                (StmtValue::Typed(t, e), None) => match type_named(&t.name.name) {
                    Some(ty) => (Some((ty, t.optional)), e),
                    None => {
                        self.unknown_type(&t.name);
                        let _ = self.lower(e, &scope);
                        ok = false;
                        continue;
                    }
                },
                (StmtValue::Typed(t, e), Some(_)) => {
                    self.error(
                        Code::InvalidValue,
                        "with a `model`, fields take their types from it",
                        t.span,
                        "type given twice",
                    )
                    .help = Some(format!("write `{name} = ...`"));
                    let _ = self.lower(e, &scope);
                    ok = false;
                    continue;
                }
                (StmtValue::Block(b), _) => {
                    self.error(
                        Code::InvalidValue,
                        format!("field `{name}` takes a value, not a block"),
                        b.span,
                        "expected `= value`",
                    );
                    ok = false;
                    continue;
                }
            };
            let Some((ty, optional)) = declared else {
                continue;
            };
            match self.lower(expr, &scope) {
                Some((x, t)) => {
                    if self.check_assignable(name, ty, optional, expr, t) {
                        out.push(Field {
                            name: name.to_string(),
                            ty,
                            optional,
                            expr: x,
                        });
                    } else {
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        if let Some(m) = model {
            let mut ordered = Vec::new();
            for f in m {
                match out.iter().position(|o| o.name == f.name) {
                    Some(i) => ordered.push(out.swap_remove(i)),
                    None if f.optional => ordered.push(Field {
                        name: f.name.clone(),
                        ty: f.ty,
                        optional: true,
                        expr: Expr::Lit(Lit::Null),
                    }),
                    None if seen.contains_key(f.name.as_str()) => {}
                    None => {
                        self.error(
                            Code::UnmappedField,
                            format!("model field `{}` is not mapped", f.name),
                            block_name.span,
                            format!("`{}` missing", f.name),
                        )
                        .help = Some(format!(
                            "add `{} = $.{}`, or make it optional in the model",
                            f.name, f.name
                        ));
                        ok = false;
                    }
                }
            }
            out = ordered;
        }
        ok.then_some(out)
    }

    pub(super) fn unknown_type(&mut self, name: &ast::Ident) {
        let help = did_you_mean(&name.name, Type::ALL.iter().map(|(n, _)| *n));
        self.error(
            Code::UnknownType,
            format!("unknown type `{}`", name.name),
            name.span,
            "unknown type",
        )
        .help = help.or_else(|| {
            Some("the types are: string, int, float, decimal, bool, datetime, json".into())
        });
    }

    pub(super) fn key(
        &mut self,
        e: &ast::Expr,
        fields: &[FieldInfo],
        owner: &str,
    ) -> Option<Vec<String>> {
        let names: Vec<&ast::Expr> = match &e.kind {
            ExprKind::List(items) => items.iter().map(|a| &a.value).collect(),
            _ => vec![e],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for n in names {
            let Some(ident) = self.bare_name(n, "a key") else {
                ok = false;
                continue;
            };
            match fields.iter().find(|f| f.name == ident.name) {
                Some(f) if f.optional => {
                    self.error(
                        Code::InvalidKey,
                        format!("key field `{}` is optional", f.name),
                        ident.span,
                        "may be null",
                    )
                    .help = Some("a key must always be there: make the field required".into());
                    ok = false;
                }
                Some(f) if f.ty == Type::Json => {
                    self.error(
                        Code::InvalidKey,
                        format!("key field `{}` is json", f.name),
                        ident.span,
                        "not a scalar",
                    );
                    ok = false;
                }
                Some(f) => out.push(f.name.clone()),
                None => {
                    let help = did_you_mean(&ident.name, fields.iter().map(|f| f.name.as_str()));
                    self.error(
                        Code::InvalidKey,
                        format!("{owner} has no field `{}` for its key", ident.name),
                        ident.span,
                        "unknown field",
                    )
                    .help = help;
                    ok = false;
                }
            }
        }
        if out.is_empty() && ok {
            self.error(
                Code::InvalidKey,
                "a key needs at least one field",
                e.span,
                "empty key",
            );
            ok = false;
        }
        ok.then_some(out)
    }
}
