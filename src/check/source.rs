//! `source NAME from SERVICE { ... }`: request, records, fields, key, incremental
//! collection, filter, and child sources (`for_each`); the schedule is checked in
//! `schedule.rs`, the paginator in `paginate.rs`.

use super::diagnostic::did_you_mean;
use super::expr::{ETy, FieldInfo, Parent, Scope};
use super::model::Models;
use super::props::Props;
use super::{
    BodyValue, Code, Ctx, Decls, Expr, Field, Incremental, Label, Lit, Method, Paginate, Pipeline,
    Source, Type,
};
use crate::syntax::ast::{self, ExprKind, StmtValue};
use crate::syntax::Span;
use std::collections::{BTreeMap, BTreeSet};

const PROPS: &[&str] = &[
    "get",
    "post",
    "query",
    "body",
    "schedule",
    "paginate",
    "records",
    "model",
    "key",
    "incremental",
    "where",
    "fields",
    "for_each",
];
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
    pub(super) fn source(
        &mut self,
        src: &ast::Source,
        decls: &Decls,
        models: &Models,
        _p: &Pipeline,
    ) -> Option<Source> {
        let owner = format!("source `{}`", src.name.name);
        let props = self.props(&src.body, PROPS, &owner);
        let mut ok = true;

        if !decls.services.contains_key(src.service.name.as_str()) {
            let help = did_you_mean(&src.service.name, decls.services.keys().copied());
            self.error(
                Code::UnknownService,
                format!(
                    "source `{}` uses unknown service `{}`",
                    src.name.name, src.service.name
                ),
                src.service.span,
                "not declared",
            )
            .help = help;
            ok = false;
        }

        // The parent, for child sources: `Unknown` when an error hides its fields, so
        // that placeholders and `parent.x` are not reported again.
        let mut parent: Option<(String, Vec<FieldInfo>)> = None;
        let mut parent_unknown = false;
        if let Some(stmt) = props.get("for_each") {
            parent_unknown = true;
            match self
                .stmt_expr(stmt)
                .and_then(|e| self.bare_name(e, "`for_each`"))
            {
                Some(name) => match decls.sources.get(name.name.as_str()) {
                    Some(p) => {
                        if let Some(fields) = declared_fields(p, models) {
                            parent = Some((name.name.clone(), fields));
                            parent_unknown = false;
                        }
                    }
                    None => {
                        let help = self.suggest(&name.name, decls.sources.keys().copied());
                        let what = if decls.aggregates.contains_key(name.name.as_str()) {
                            "is an aggregate, not a source"
                        } else {
                            "is not a declared source"
                        };
                        self.error(
                            Code::UnknownSource,
                            format!("`for_each` names `{}`, which {what}", name.name),
                            name.span,
                            "not a source",
                        )
                        .help = help;
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }

        let request = self.request(src, &props, parent.as_ref(), parent_unknown);
        let schedule = self.schedule(src, &props, props.get("for_each").is_some());
        let paginate = match props.get("paginate").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.paginator(e),
            Some(None) => None,
            None => Some(Paginate::None),
        };
        let records = match props.get("records").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match &e.kind {
                ExprKind::Path(text) => self.json_path(text, e.span).map(Some),
                _ => {
                    self.error(
                        Code::InvalidValue,
                        "`records` must be a JSONPath like `$.data[*]`",
                        e.span,
                        "expected a JSONPath",
                    );
                    None
                }
            },
            Some(None) => None,
            None => Some(None),
        };

        // The model, then the fields.
        let mut model_name = None;
        let mut model_fields: Option<&Vec<FieldInfo>> = None;
        let mut model_failed = false;
        // The fields of the model that are declared with an error of their own.
        let mut broken: Option<&BTreeSet<String>> = None;
        if let Some(stmt) = props.get("model") {
            match self
                .stmt_expr(stmt)
                .and_then(|e| self.bare_name(e, "`model`"))
            {
                Some(name) => match models.get(&name.name) {
                    Some(f) => {
                        model_name = Some(name.name.clone());
                        model_fields = Some(f);
                    }
                    None if models.partial(&name.name).is_some() => {
                        let partial = models.partial(&name.name).expect("just checked");
                        model_name = Some(name.name.clone());
                        model_fields = Some(&partial.fields);
                        broken = Some(&partial.broken);
                    }
                    None => {
                        model_failed = true;
                        if !decls.models.contains_key(name.name.as_str()) {
                            let help = did_you_mean(&name.name, decls.models.keys().copied());
                            self.error(
                                Code::UnknownModel,
                                format!("unknown model `{}`", name.name),
                                name.span,
                                "not declared",
                            )
                            .help = help;
                        }
                    }
                },
                None => model_failed = true,
            }
        }
        let parent_scope = match &parent {
            Some((n, f)) => Parent::Known(n, f),
            None if parent_unknown => Parent::Unknown,
            None => Parent::None,
        };
        let fields = match props.get("fields") {
            Some(stmt) => self.stmt_block(stmt).and_then(|b| {
                let model = model_name.as_deref().zip(model_fields);
                let fields = self.fields(b, &stmt.name, model, broken, model_failed, parent_scope);
                // A source of a model with an error is not built; its fields were
                // checked all the same.
                fields.filter(|_| broken.is_none())
            }),
            None => {
                self.missing("source", &src.name, "fields");
                None
            }
        };

        // Key, cursor and filter are checked against the declared fields even when some
        // field's expression had an error; only fields that cannot be known stop them.
        let infos: Option<Vec<FieldInfo>> = match &fields {
            Some(f) => Some(
                f.iter()
                    .map(|f| FieldInfo {
                        name: f.name.clone(),
                        ty: f.ty,
                        optional: f.optional,
                    })
                    .collect(),
            ),
            None => declared_fields(src, models),
        };
        let fields_known = infos.is_some();
        let infos = infos.unwrap_or_default();
        let key = match props.get("key").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) if fields_known => self.key(e, &infos, &owner),
            Some(Some(_)) => None,
            Some(None) => None,
            None => Some(Vec::new()),
        };
        let incremental = match props.get("incremental") {
            Some(stmt) => match self.stmt_block(stmt) {
                Some(b) => {
                    if props.get("key").is_none() {
                        let d = self.error(
                            Code::MissingProperty,
                            format!("{owner} has `incremental` but no `key`"),
                            src.name.span,
                            "`key` is required",
                        );
                        d.labels.push(Label {
                            span: stmt.name.span,
                            text: "needs a `key`".into(),
                        });
                        d.help = Some(
                            "incremental collection tells records apart by key: add `key = id`"
                                .into(),
                        );
                    }
                    if fields_known {
                        self.incremental(b, &stmt.name, &infos, &owner).map(Some)
                    } else {
                        None
                    }
                }
                None => None,
            },
            None => Some(None),
        };
        let filter = match props.get("where").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) if fields_known => {
                let scope = Scope::Fields {
                    fields: &infos,
                    owner: &format!("the `where` of {owner}"),
                    known: true,
                };
                match self.lower(e, &scope) {
                    Some((x, t)) if t == ETy::Known(Type::Bool) || t == ETy::Any => Some(Some(x)),
                    Some((_, t)) => {
                        self.error(
                            Code::TypeError,
                            format!(
                                "`where` must be true or false, but this is {}",
                                t.describe()
                            ),
                            e.span,
                            "not a condition",
                        );
                        None
                    }
                    None => None,
                }
            }
            Some(_) => None,
            None => Some(None),
        };

        let (
            (method, path, query, body),
            schedule,
            paginate,
            records,
            fields,
            key,
            incremental,
            filter,
        ) = (
            request?,
            schedule?,
            paginate?,
            records?,
            fields?,
            key?,
            incremental?,
            filter?,
        );
        if !ok {
            return None;
        }
        Some(Source {
            name: src.name.name.clone(),
            service: src.service.name.clone(),
            method,
            path,
            query,
            body,
            schedule,
            paginate,
            records,
            model: model_name,
            fields,
            key,
            incremental,
            filter,
            for_each: parent.map(|(n, _)| n),
        })
    }

    #[allow(clippy::type_complexity)]
    fn request(
        &mut self,
        src: &ast::Source,
        props: &Props,
        parent: Option<&(String, Vec<FieldInfo>)>,
        parent_unknown: bool,
    ) -> Option<(
        Method,
        String,
        Vec<(String, super::Text)>,
        Option<BodyValue>,
    )> {
        let (method, stmt) = match (props.get("get"), props.get("post")) {
            (Some(g), Some(p)) => {
                self.error(
                    Code::ConflictingProperties,
                    format!("source `{}` has both `get` and `post`", src.name.name),
                    p.name.span,
                    "second method",
                )
                .labels
                .push(Label {
                    span: g.name.span,
                    text: "first method".into(),
                });
                return None;
            }
            (Some(g), None) => (Method::Get, g),
            (None, Some(p)) => (Method::Post, p),
            (None, None) => {
                self.missing("source", &src.name, "get");
                return None;
            }
        };
        let expr = self.stmt_expr(stmt)?;
        let ExprKind::Str(path) = &expr.kind else {
            self.error(
                Code::InvalidValue,
                "the path must be a string like \"/orders\"",
                expr.span,
                "expected a string",
            );
            return None;
        };
        let mut ok = parent_unknown || self.placeholders(path, expr.span, parent);
        let query = match props.get("query") {
            Some(s) => self
                .stmt_block(s)
                .and_then(|b| self.string_map(b, true, "a query parameter")),
            None => Some(Vec::new()),
        };
        let body = match props.get("body") {
            Some(s) if method == Method::Get => {
                self.error(
                    Code::ConflictingProperties,
                    "a `body` is sent only with `post`",
                    s.name.span,
                    "GET has no body",
                );
                ok = false;
                None
            }
            Some(s) => self
                .stmt_block(s)
                .and_then(|b| self.body_object(b))
                .map(Some),
            None => Some(None),
        };
        let (query, body) = (query?, body?);
        ok.then(|| (method, path.clone(), query, body))
    }

    /// `{field}` placeholders: only in child sources, and only the parent's fields.
    fn placeholders(
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

    fn body_object(&mut self, block: &ast::Block) -> Option<BodyValue> {
        let mut out = Vec::new();
        let mut ok = true;
        for stmt in &block.stmts {
            let v = match &stmt.value {
                StmtValue::Block(b) => self.body_object(b),
                StmtValue::Expr(e) => self.body_value(e),
                StmtValue::Typed(t, _) => {
                    self.error(
                        Code::InvalidValue,
                        "a body value takes no type",
                        t.span,
                        "no type expected",
                    );
                    None
                }
            };
            match v {
                Some(v) => out.push((stmt.name.text.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(BodyValue::Object(out))
    }

    fn body_value(&mut self, e: &ast::Expr) -> Option<BodyValue> {
        match &e.kind {
            ExprKind::Null => Some(BodyValue::Null),
            ExprKind::Bool(b) => Some(BodyValue::Bool(*b)),
            ExprKind::Number(n) => Some(BodyValue::Number(n.clone())),
            ExprKind::List(items) => items
                .iter()
                .map(|a| self.body_value(&a.value))
                .collect::<Option<Vec<_>>>()
                .map(BodyValue::List),
            _ => {
                let secret = matches!(&e.kind, ExprKind::Call { name, .. } if name.name == "env");
                self.text(e, secret, "a body value").map(BodyValue::Text)
            }
        }
    }

    /// The `fields` block: with a model, `name = expr` for its fields; without one,
    /// `name : type = expr`.
    fn fields(
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
                (StmtValue::Typed(t, e), None) => match super::source::type_named(&t.name.name) {
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

    fn key(&mut self, e: &ast::Expr, fields: &[FieldInfo], owner: &str) -> Option<Vec<String>> {
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

    fn incremental(
        &mut self,
        block: &ast::Block,
        block_name: &ast::PropName,
        fields: &[FieldInfo],
        owner: &str,
    ) -> Option<Incremental> {
        let props = self.props(
            block,
            &["cursor", "param", "order", "start"],
            &format!("`incremental` of {owner}"),
        );
        let cursor_field = match props.get("cursor") {
            Some(stmt) => {
                let ident = self
                    .stmt_expr(stmt)
                    .and_then(|e| self.bare_name(e, "`cursor`"));
                ident.and_then(|ident| match fields.iter().find(|f| f.name == ident.name) {
                    Some(f) if f.optional => {
                        self.error(
                            Code::InvalidCursor,
                            format!("cursor field `{}` is optional", f.name),
                            ident.span,
                            "may be null",
                        )
                        .help =
                            Some("a cursor must always be there: make the field required".into());
                        None
                    }
                    Some(f) if matches!(f.ty, Type::Json | Type::Bool) => {
                        self.error(
                            Code::InvalidCursor,
                            format!(
                                "cursor field `{}` is {}, which has no order",
                                f.name,
                                f.ty.name()
                            ),
                            ident.span,
                            "not orderable",
                        );
                        None
                    }
                    Some(f) => Some(f.clone()),
                    None => {
                        let help =
                            did_you_mean(&ident.name, fields.iter().map(|f| f.name.as_str()));
                        self.error(
                            Code::InvalidCursor,
                            format!("{owner} has no field `{}` for its cursor", ident.name),
                            ident.span,
                            "unknown field",
                        )
                        .help = help;
                        None
                    }
                })
            }
            None => {
                self.error(
                    Code::MissingProperty,
                    format!("`incremental` of {owner} has no `cursor`"),
                    block_name.span,
                    "`cursor` is required",
                )
                .help = Some("name the field that grows, like `cursor = updated_at`".into());
                None
            }
        };
        let param = match props.get("param").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.text(e, false, "`param`").map(|t| Some(t.value)),
            Some(None) => None,
            None => Some(None),
        };
        let newest_first = match props.get("order").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => match self.bare_name(e, "`order`").map(|n| n.name.as_str()) {
                Some("newest_first") => Some(true),
                Some("oldest_first") => Some(false),
                Some(other) => {
                    let help = did_you_mean(other, ["newest_first", "oldest_first"]);
                    self.error(
                        Code::InvalidValue,
                        format!("unknown order `{other}`"),
                        e.span,
                        "expected `newest_first` or `oldest_first`",
                    )
                    .help = help;
                    None
                }
                None => None,
            },
            Some(None) => None,
            None => Some(false),
        };
        let start = match props.get("start").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => {
                let lit = match &e.kind {
                    ExprKind::Str(s) => Some(Lit::Str(s.clone())),
                    ExprKind::Number(n) => n
                        .parse::<i64>()
                        .ok()
                        .map(Lit::Int)
                        .or_else(|| n.parse().ok().map(Lit::Decimal)),
                    _ => None,
                };
                match (lit, &cursor_field) {
                    (Some(l), Some(f)) if !start_converts(&l, f.ty) => {
                        let shown = match (&l, &e.kind) {
                            (Lit::Str(s), _) => format!("\"{s}\""),
                            (_, ExprKind::Number(n)) => n.clone(),
                            _ => String::new(),
                        };
                        let help = match f.ty {
                            Type::Datetime => Some(
                                "a datetime cursor starts at an RFC 3339 string, like \
                                 `\"2024-01-01T00:00:00Z\"`"
                                    .to_string(),
                            ),
                            Type::Int => Some(super::expr::INT_RANGE.to_string()),
                            _ => None,
                        };
                        self.error(
                            Code::TypeMismatch,
                            format!(
                                "`start` {shown} does not convert to the cursor's type {}",
                                f.ty.name()
                            ),
                            e.span,
                            "does not convert",
                        )
                        .help = help;
                        None
                    }
                    (Some(l), _) => Some(Some(l)),
                    (None, _) => {
                        self.error(
                            Code::InvalidValue,
                            "`start` must be a string or a number",
                            e.span,
                            "expected a literal",
                        );
                        None
                    }
                }
            }
            Some(None) => None,
            None => Some(None),
        };
        let (cursor, param, newest_first, start) = (cursor_field?, param?, newest_first?, start?);
        Some(Incremental {
            cursor: cursor.name,
            param,
            newest_first,
            start,
        })
    }
}

/// Whether a `start` literal converts to the cursor field's type (spec §4), as the
/// first watermark must.
fn start_converts(l: &Lit, ty: Type) -> bool {
    use super::expr::{convertible_literal, number_converts};
    match l {
        Lit::Str(s) => convertible_literal(s, ty),
        Lit::Int(i) => number_converts((*i).into(), ty),
        Lit::Decimal(d) => number_converts(*d, ty),
        Lit::Null | Lit::Bool(_) => false,
    }
}
