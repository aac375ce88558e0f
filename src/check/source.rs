//! `source NAME from SERVICE { ... }`: the source block, its properties and how they
//! make a [`Source`]; the request is checked in `request.rs`, `fields` and `key` in
//! `fields.rs`, `incremental` in `incremental.rs`, child sources in `for_each.rs`, the
//! schedule in `schedule.rs`, the paginator in `paginate.rs`.

use super::diagnostic::did_you_mean;
use super::expr::{ETy, FieldInfo, Parent, Scope};
use super::fields::declared_fields;
use super::model::Models;
use super::{Code, Ctx, Decls, Label, Paginate, Pipeline, Source, Type};
use crate::syntax::ast::{self, ExprKind};
use std::collections::BTreeSet;

pub(crate) const PROPS: &[&str] = &[
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
    "receive",
];

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

        // `receive` (spec §11): events feed the source; without `get` it is never polled.
        let receive = match props.get("receive") {
            Some(stmt) => self
                .stmt_block(stmt)
                .and_then(|b| self.receive(b, &src.name))
                .map(Some),
            None => Some(None),
        };
        let push_only = props.get("receive").is_some()
            && props.get("get").is_none()
            && props.get("post").is_none();
        if let Some(stmt) = props.get("receive") {
            if props.get("key").is_none() {
                let d = self.error(
                    Code::MissingProperty,
                    format!("{owner} has `receive` but no `key`"),
                    src.name.span,
                    "`key` is required",
                );
                d.labels.push(Label {
                    span: stmt.name.span,
                    text: "needs a `key`".into(),
                });
                d.help = Some(
                    "events are told apart by key, and share the key state with polls: add `key = id`"
                        .into(),
                );
                ok = false;
            }
            if let Some(fe) = props.get("for_each") {
                self.error(
                    Code::ConflictingProperties,
                    format!("{owner} is a child source (`for_each`); it cannot `receive`"),
                    stmt.name.span,
                    "not with `for_each`",
                )
                .labels
                .push(Label {
                    span: fe.name.span,
                    text: "a child source".into(),
                });
                ok = false;
            }
        }
        if push_only {
            for prop in ["schedule", "paginate", "query", "body"] {
                if let Some(stmt) = props.get(prop) {
                    self.error(
                        Code::ConflictingProperties,
                        format!("{owner} has no `get`: it only receives events, and `{prop}` belongs to a poll"),
                        stmt.name.span,
                        "needs `get`",
                    )
                    .help = Some("add `get = \"/path\"` to poll as well (the poll then reconciles missed events), or remove this".into());
                    ok = false;
                }
            }
        }
        let schedule = if push_only {
            Some(crate::check::Schedule::Push)
        } else {
            self.schedule(src, &props, props.get("for_each").is_some())
        };
        let paginate = match props.get("paginate").map(|s| self.stmt_expr(s)) {
            Some(Some(e)) => self.paginator(e, props.get("post").is_some()),
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
        // `watermark` in `query` and `body` values: typed as the cursor (as `start`
        // without one); any type when an error hid it; out of scope without
        // `incremental`.
        let watermark = match (&incremental, props.get("incremental")) {
            (_, None) => None,
            (Some(Some(inc)), Some(_)) => Some(match &inc.cursor {
                Some(c) => infos
                    .iter()
                    .find(|f| &f.name == c)
                    .map_or(ETy::Any, |f| ETy::Known(f.ty)),
                None => match &inc.start {
                    Some(super::Lit::Str(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
                        ETy::Known(Type::Datetime)
                    }
                    Some(super::Lit::Str(_)) => ETy::Known(Type::String),
                    Some(super::Lit::Int(_)) => ETy::Known(Type::Int),
                    Some(super::Lit::Decimal(_)) => ETy::Known(Type::Decimal),
                    _ => ETy::Any,
                },
            }),
            (_, Some(_)) => Some(ETy::Any),
        };
        let request = if push_only {
            Some((super::Method::Get, String::new(), Vec::new(), None))
        } else {
            self.request(src, &props, parent.as_ref(), parent_unknown, watermark)
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

        #[allow(clippy::type_complexity)]
        let (
            (method, path, query, body),
            schedule,
            paginate,
            records,
            fields,
            key,
            incremental,
            filter,
            receive,
        ) = (
            request?,
            schedule?,
            paginate?,
            records?,
            fields?,
            key?,
            incremental?,
            filter?,
            receive?,
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
            tenant: None,
            receive,
        })
    }
}
