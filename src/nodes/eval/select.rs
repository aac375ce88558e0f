//! Selection by the JSONPath forms a `records` path usually takes — names, indexes,
//! wildcards and their descendant (`..`) forms — as references into the body.
//!
//! jsonpath-rust builds a path string for every node it visits, and a descendant segment
//! visits every node: on a deep body each of those strings is as long as the depth, so
//! `$..items[*]` would cost memory in proportion to the body times its depth. Here a
//! selection costs one reference per match. Other forms (filters, slices, unions) are
//! left to jsonpath-rust; the order of the matches is the same as there (RFC 9535: a
//! node before its descendants, arrays in order, objects in their order).

use super::index;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use serde_json::Value as Json;

/// One segment of a path this module can run.
#[derive(Debug, Clone)]
pub struct Step {
    /// `..x`: the selector applies to the node and to each of its descendants.
    descendant: bool,
    sel: Sel,
}

#[derive(Debug, Clone)]
enum Sel {
    Name(String),
    Index(i64),
    Wildcard,
}

/// The steps of a query made only of names, indexes and wildcards (descendant or not).
pub fn compile(q: &JpQuery) -> Option<Vec<Step>> {
    let sel = |s: &Selector| match s {
        Selector::Name(n) => Some(Sel::Name(n.clone())),
        Selector::Index(i) => Some(Sel::Index(*i)),
        Selector::Wildcard => Some(Sel::Wildcard),
        Selector::Slice(..) | Selector::Filter(_) => None,
    };
    q.segments
        .iter()
        .map(|s| match s {
            Segment::Selector(s) => Some(Step {
                descendant: false,
                sel: sel(s)?,
            }),
            Segment::Descendant(inner) => match inner.as_ref() {
                Segment::Selector(s) => Some(Step {
                    descendant: true,
                    sel: sel(s)?,
                }),
                _ => None,
            },
            Segment::Selectors(_) => None,
        })
        .collect()
}

/// Everything the steps select from `root`, in document order.
pub fn select<'a>(root: &'a Json, steps: &[Step]) -> Vec<&'a Json> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for node in current {
            if step.descendant {
                // Depth first, a node before its children, without recursion.
                let mut stack = vec![node];
                while let Some(n) = stack.pop() {
                    apply(&step.sel, n, &mut next);
                    match n {
                        Json::Array(a) => stack.extend(a.iter().rev()),
                        Json::Object(m) => stack.extend(m.values().rev()),
                        _ => {}
                    }
                }
            } else {
                apply(&step.sel, node, &mut next);
            }
        }
        current = next;
    }
    current
}

fn apply<'a>(sel: &Sel, node: &'a Json, out: &mut Vec<&'a Json>) {
    match (sel, node) {
        (Sel::Name(n), Json::Object(m)) => out.extend(m.get(n)),
        (Sel::Index(i), Json::Array(a)) => out.extend(index(*i, a.len()).and_then(|i| a.get(i))),
        (Sel::Wildcard, Json::Array(a)) => out.extend(a.iter()),
        (Sel::Wildcard, Json::Object(m)) => out.extend(m.values()),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same matches, in the same order, as jsonpath-rust.
    #[test]
    fn selects_what_jsonpath_rust_selects() {
        let body = json!({
            "items": [
                {"id": 1, "items": [{"id": 2, "items": []}, {"id": 3}]},
                {"id": 4, "more": {"items": [{"id": 5}], "id": 6}},
                [7, {"id": 8}]
            ],
            "id": 0,
            "x": [[1, 2], [3, [4, 5]]]
        });
        for path in [
            "$..items[*]",
            "$..id",
            "$..items[0].id",
            "$..[*]",
            "$.items[*].id",
            "$..*",
            "$.x[-1][-1][0]",
            "$.x[-9]",
            "$..items[-1]",
            "$.items..id",
            "$..x..*",
            "$.nothing..id",
        ] {
            let q = jsonpath_rust::parser::parse_json_path(path).unwrap();
            let steps = compile(&q).unwrap_or_else(|| panic!("{path} compiles"));
            let ours: Vec<&Json> = select(&body, &steps);
            let theirs: Vec<&Json> = jsonpath_rust::query::js_path_process(&q, &body)
                .unwrap()
                .into_iter()
                .map(|r| r.val())
                .collect();
            assert_eq!(ours, theirs, "{path}");
        }
    }

    #[test]
    fn filters_slices_and_unions_are_left_to_jsonpath_rust() {
        for path in [
            "$..items[?@.id > 1]",
            "$.items[0:2]",
            "$['a','b']",
            "$..['a','b']",
        ] {
            let q = jsonpath_rust::parser::parse_json_path(path).unwrap();
            assert!(compile(&q).is_none(), "{path}");
        }
    }
}
