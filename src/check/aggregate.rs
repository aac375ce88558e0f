//! `aggregate NAME { from, group_by, compute }`: the sources it reads and the fields
//! they share, its groups, and its computed fields.

use super::diagnostic::did_you_mean;
use super::expr::{ETy, FieldInfo, Scope};
use super::model::Models;
use super::{AggFunc, Aggregate, Code, Compute, Ctx, Decls, Type};
use crate::syntax::ast::{self, ExprKind, StmtValue};

const AGG_FUNCS: &[(&str, AggFunc)] = &[
    ("count", AggFunc::Count),
    ("sum", AggFunc::Sum),
    ("min", AggFunc::Min),
    ("max", AggFunc::Max),
    ("avg", AggFunc::Avg),
    ("count_distinct", AggFunc::CountDistinct),
];

impl<'e> Ctx<'e> {
    pub(super) fn aggregate(
        &mut self,
        agg: &ast::Aggregate,
        decls: &Decls,
        models: &Models,
    ) -> Option<Aggregate> {
        let owner = format!("aggregate `{}`", agg.name.name);
        let props = self.props(&agg.body, &["from", "group_by", "compute"], &owner);
        // The sources it reads, and the fields they all share.
        let mut from = Vec::new();
        let mut fields: Option<Vec<FieldInfo>> = None;
        let mut ok = true;
        // False when a source could not be resolved or its fields are not known: then
        // names in `group_by` and `compute` are not reported again.
        let mut known = true;
        match props.get("from").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => {
                let items: Vec<&ast::Expr> = match &e.kind {
                    ExprKind::List(items) => items.iter().map(|a| &a.value).collect(),
                    _ => vec![e],
                };
                for item in items {
                    let Some(ident) = self.bare_name(item, "a source in `from`") else {
                        ok = false;
                        known = false;
                        continue;
                    };
                    match decls.sources.get(ident.name.as_str()) {
                        Some(src) => {
                            match super::fields::declared_fields(src, models) {
                                Some(theirs) => {
                                    fields = Some(match fields {
                                        None => theirs,
                                        Some(mine) => mine
                                            .into_iter()
                                            .filter(|f| theirs.contains(f))
                                            .collect(),
                                    });
                                }
                                None => known = false,
                            }
                            from.push(ident.name.clone());
                        }
                        None => {
                            known = false;
                            let help = self.suggest(&ident.name, decls.sources.keys().copied());
                            self.error(
                                Code::UnknownSource,
                                format!(
                                    "{owner} reads `{}`, which is not a declared source",
                                    ident.name
                                ),
                                ident.span,
                                "unknown source",
                            )
                            .help = help;
                            ok = false;
                        }
                    }
                }
            }
            Some(None) => {
                ok = false;
                known = false;
            }
            None => {
                self.missing("aggregate", &agg.name, "from");
                ok = false;
                known = false;
            }
        }
        let fields = fields.unwrap_or_default();
        let scope_owner = if from.len() > 1 {
            format!("every source of {owner}")
        } else {
            owner.clone()
        };
        let scope = Scope::Fields {
            fields: &fields,
            owner: &scope_owner,
            known,
        };

        let mut group_by = Vec::new();
        match props.get("group_by").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => {
                let items: Vec<(Option<&ast::Ident>, &ast::Expr)> = match &e.kind {
                    ExprKind::List(items) => {
                        items.iter().map(|a| (a.name.as_ref(), &a.value)).collect()
                    }
                    _ => vec![(None, e)],
                };
                for (name, item) in items {
                    let out_name = match (name, &item.kind) {
                        (Some(n), _) => n.name.clone(),
                        (None, ExprKind::Name(parts)) => parts
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join("_"),
                        (None, ExprKind::Call { name, args }) => {
                            let mut n = name.name.clone();
                            for a in args {
                                if let ExprKind::Name(parts) = &a.value.kind {
                                    n.push('_');
                                    n.push_str(&parts[0].name);
                                }
                            }
                            n
                        }
                        _ => {
                            self.error(
                                Code::InvalidValue,
                                "name this group: `name = expression`",
                                item.span,
                                "unnamed group",
                            )
                            .help =
                                Some("for example `group_by = [weekday = day(created_at)]`".into());
                            ok = false;
                            continue;
                        }
                    };
                    match self.lower(item, &scope) {
                        Some((x, t)) => group_by.push((out_name, x, known_or_json(t))),
                        None => ok = false,
                    }
                }
            }
            Some(None) => ok = false,
            None => {
                self.missing("aggregate", &agg.name, "group_by");
                ok = false;
            }
        }

        let mut compute = Vec::new();
        match props.get("compute") {
            Some(stmt) => match self.stmt_block(stmt) {
                Some(block) => {
                    for c in &block.stmts {
                        match self.compute(c, &scope) {
                            Some(x) => compute.push(x),
                            None => ok = false,
                        }
                    }
                }
                None => ok = false,
            },
            None => {
                self.missing("aggregate", &agg.name, "compute");
                ok = false;
            }
        }
        ok.then(|| Aggregate {
            name: agg.name.name.clone(),
            from,
            group_by,
            compute,
        })
    }

    fn compute(&mut self, stmt: &ast::Stmt, scope: &Scope) -> Option<Compute> {
        let StmtValue::Expr(e) = &stmt.value else {
            self.error(
                Code::InvalidValue,
                "a computed field is `name = count()` or `name = sum(field)`",
                stmt.span,
                "expected `name = function(...)`",
            );
            return None;
        };
        let ExprKind::Call { name, args } = &e.kind else {
            self.error(Code::InvalidValue, "a computed field is an aggregate function: count, sum, min, max, avg, count_distinct", e.span, "not an aggregate function");
            return None;
        };
        let Some(&(_, func)) = AGG_FUNCS.iter().find(|(n, _)| *n == name.name) else {
            let help = did_you_mean(&name.name, AGG_FUNCS.iter().map(|(n, _)| *n));
            self.error(
                Code::UnknownFunction,
                format!("unknown aggregate function `{}`", name.name),
                name.span,
                "unknown function",
            )
            .help = help.or_else(|| {
                Some(
                    "the aggregate functions are: count, sum, min, max, avg, count_distinct".into(),
                )
            });
            return None;
        };
        let want = usize::from(func != AggFunc::Count);
        if args.len() != want {
            self.error(
                Code::MissingArgument,
                format!(
                    "`{}` takes {want} argument{}",
                    name.name,
                    if want == 1 { "" } else { "s" }
                ),
                e.span,
                "wrong number of arguments",
            );
            return None;
        }
        let (arg, ty) = match args.first() {
            Some(a) => {
                let (x, t) = self.lower(&a.value, scope)?;
                let numeric = matches!(t, ETy::Any) || matches!(t, ETy::Known(k) if k.is_numeric());
                let orderable = !matches!(t, ETy::Known(Type::Json | Type::Bool));
                if matches!(func, AggFunc::Sum | AggFunc::Avg) && !numeric {
                    self.error(
                        Code::TypeError,
                        format!("`{}` needs a number, found {}", name.name, t.describe()),
                        a.value.span,
                        format!("this is {}", t.describe()),
                    );
                    return None;
                }
                if matches!(func, AggFunc::Min | AggFunc::Max) && !orderable {
                    self.error(
                        Code::TypeError,
                        format!(
                            "`{}` needs values with an order, found {}",
                            name.name,
                            t.describe()
                        ),
                        a.value.span,
                        format!("this is {}", t.describe()),
                    );
                    return None;
                }
                (Some(x), t)
            }
            None => (None, ETy::Known(Type::Int)),
        };
        let ty = match func {
            AggFunc::Count | AggFunc::CountDistinct => Type::Int,
            AggFunc::Avg => match ty {
                ETy::Known(Type::Float) => Type::Float,
                _ => Type::Decimal,
            },
            AggFunc::Sum => match ty {
                ETy::Known(t) => t,
                _ => Type::Decimal,
            },
            AggFunc::Min | AggFunc::Max => known_or_json(ty),
        };
        Some(Compute {
            name: stmt.name.text.clone(),
            func,
            arg,
            ty,
        })
    }
}

fn known_or_json(t: ETy) -> Type {
    match t {
        ETy::Known(t) => t,
        _ => Type::Json,
    }
}
