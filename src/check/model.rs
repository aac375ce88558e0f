//! `model NAME { field : type ... }`: field names and types.

use super::expr::FieldInfo;
use super::source::type_named;
use super::{codes, Ctx, Decls, Label};
use crate::syntax::Span;
use std::collections::BTreeMap;

impl<'e> Ctx<'e> {
    /// Every model's fields; a model with an unknown type is left out (its sources
    /// then report nothing more about it).
    pub(super) fn models(&mut self, decls: &Decls) -> BTreeMap<String, Vec<FieldInfo>> {
        let mut out = BTreeMap::new();
        for (name, model) in &decls.models {
            let mut fields: Vec<FieldInfo> = Vec::new();
            let mut spans: BTreeMap<&str, Span> = BTreeMap::new();
            let mut ok = true;
            for f in &model.fields {
                if let Some(first) = spans.insert(&f.name.name, f.name.span) {
                    self.error(
                        codes::DUPLICATE_NAME,
                        format!("model `{name}` has two fields `{}`", f.name.name),
                        f.name.span,
                        "declared again here",
                    )
                    .labels
                    .push(Label {
                        span: first,
                        text: "first declared here".into(),
                    });
                    ok = false;
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
                        ok = false;
                    }
                }
            }
            if ok {
                out.insert(name.to_string(), fields);
            }
        }
        out
    }
}
