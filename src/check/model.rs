//! `model NAME { field : type ... }`: field names and types.

use super::expr::FieldInfo;
use super::fields::type_named;
use super::{Code, Ctx, Decls, Label};
use crate::syntax::Span;
use std::collections::{BTreeMap, BTreeSet};

/// The models of a file by name.
#[derive(Default)]
pub(super) struct Models {
    /// Models without an error.
    complete: BTreeMap<String, Vec<FieldInfo>>,
    /// Models with an error (a field declared twice, an unknown type): their sources
    /// still have their other fields checked.
    partial: BTreeMap<String, Partial>,
}

/// A model with an error: the fields that are well declared, and the names of those
/// that are not, about which nothing more is said.
pub(super) struct Partial {
    pub fields: Vec<FieldInfo>,
    pub broken: BTreeSet<String>,
}

impl Models {
    /// The fields of a model without an error.
    pub fn get(&self, name: &str) -> Option<&Vec<FieldInfo>> {
        self.complete.get(name)
    }

    /// A model with an error.
    pub fn partial(&self, name: &str) -> Option<&Partial> {
        self.partial.get(name)
    }
}

impl<'e> Ctx<'e> {
    /// Every model's fields. A model with an error is kept apart as partial: its
    /// sources check their other fields, and say nothing about the broken ones.
    pub(super) fn models(&mut self, decls: &Decls) -> Models {
        let mut out = Models::default();
        for (name, model) in &decls.models {
            let mut fields: Vec<FieldInfo> = Vec::new();
            let mut spans: BTreeMap<&str, Span> = BTreeMap::new();
            let mut broken = BTreeSet::new();
            for f in &model.fields {
                if let Some(first) = spans.insert(&f.name.name, f.name.span) {
                    self.error(
                        Code::DuplicateName,
                        format!("model `{name}` has two fields `{}`", f.name.name),
                        f.name.span,
                        "declared again here",
                    )
                    .labels
                    .push(Label {
                        span: first,
                        text: "first declared here".into(),
                    });
                    broken.insert(f.name.name.clone());
                    continue;
                }
                match type_named(&f.ty.name.name) {
                    Some(ty) => fields.push(FieldInfo {
                        name: f.name.name.clone(),
                        ty,
                        optional: f.ty.optional,
                    }),
                    None => {
                        self.unknown_type(&f.ty.name);
                        broken.insert(f.name.name.clone());
                    }
                }
            }
            if broken.is_empty() {
                out.complete.insert(name.to_string(), fields);
            } else {
                // Which of two declarations was meant is not known: neither counts.
                fields.retain(|f| !broken.contains(&f.name));
                out.partial
                    .insert(name.to_string(), Partial { fields, broken });
            }
        }
        out
    }
}
