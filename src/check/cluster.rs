//! What `check --cluster` (and `run --cluster`, before starting) adds (spec §14): state
//! kept on one machine only cannot be shared by the instances of a cluster, so `sled`
//! sinks and aggregates are errors there.

use super::{ast, Code, Diagnostic, Pipeline, Sink};

/// One error per `sled` sink and per aggregate of the file.
pub(super) fn local_state(tree: &ast::File, pipeline: &Pipeline) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for item in &tree.items {
        match item {
            ast::Item::Sink(s)
                if matches!(pipeline.sinks.get(&s.name.name), Some(Sink::Sled { .. })) =>
            {
                out.push(
                    Diagnostic::error(
                        Code::LocalInCluster,
                        format!(
                            "sink `{}` is a `sled` sink, kept on one machine: a cluster's instances cannot share it",
                            s.name.name
                        ),
                        s.value.span,
                        "local to one instance",
                    )
                    .with_help(Some(
                        "in a cluster, use a `postgres(url = ..., table = ...)` sink, which every instance writes to".into(),
                    )),
                );
            }
            ast::Item::Aggregate(a) => out.push(
                Diagnostic::error(
                    Code::LocalInCluster,
                    format!(
                        "aggregate `{}` keeps its view on one machine: a cluster's instances cannot share it",
                        a.name.name
                    ),
                    a.name.span,
                    "local to one instance",
                )
                .with_help(Some(
                    "in a cluster, send the records to a `postgres` sink and aggregate there (a view or a query)".into(),
                )),
            ),
            _ => {}
        }
    }
    out
}
