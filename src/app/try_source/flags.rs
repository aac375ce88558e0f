//! Fields that are null in every item `try` saw: most often a wrong path
//! (`$.created_at` where the API says `createdAt`), flagged with the keys the items do
//! have there and the closest of them.

use crate::check::suggest::closest;
use crate::check::{Expr, PathStep, Source};
use crate::nodes::eval::walk;
use crate::nodes::extract::Extractor;
use crate::nodes::net::{api_text, SHOWN};
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// The keys a flag lists at most.
const MAX_KEYS: usize = 30;

/// A field null in every item of the sample.
#[derive(Debug, Serialize, PartialEq)]
pub struct Flag {
    pub field: String,
    /// The path of its expression that found nothing, when one did.
    pub path: Option<String>,
    /// The key the items have that is closest to the one the path asks.
    pub did_you_mean: Option<String>,
    /// The keys the items have where the path looks (the first few, in order).
    pub keys: Vec<String>,
    pub message: String,
}

impl Flag {
    /// The flag's first sentence, without the list of keys (shown apart).
    pub fn headline(&self) -> &str {
        self.message
            .split_once(" (the items have: ")
            .map_or(self.message.as_str(), |(head, _)| head)
    }
}

/// A flag for each field of `src` that is null in every one of `items` (none when there
/// are no items: an empty page says nothing about paths).
pub fn null_everywhere(
    src: &Source,
    ex: &Extractor,
    items: &[Json],
    parent: Option<&Map<String, Json>>,
) -> Vec<Flag> {
    if items.is_empty() {
        return Vec::new();
    }
    let values: Vec<_> = items.iter().map(|i| ex.field_values(i, parent)).collect();
    let mut flags = Vec::new();
    for (at, field) in src.fields.iter().enumerate() {
        let null_in_all = values
            .iter()
            .all(|v| matches!(v.get(at), Some(Ok(x)) if x.is_null()));
        if !null_in_all {
            continue;
        }
        flags.push(flag_for(&field.name, &field.expr, items));
    }
    flags
}

fn flag_for(field: &str, expr: &Expr, items: &[Json]) -> Flag {
    let n = items.len();
    let (all, none) = if n == 1 {
        ("the one item".to_string(), "the one item".to_string())
    } else {
        (format!("all {n} items"), format!("any of the {n} items"))
    };
    let mut paths = Vec::new();
    item_paths(expr, &mut paths);
    // The first path that names nothing anywhere: the likely typo.
    for (text, steps) in &paths {
        let Some((PathStep::Name(last), above)) = steps.split_last() else {
            continue;
        };
        let found = items
            .iter()
            .any(|i| walk(i, steps).is_some_and(|v| !v.is_null()));
        if found {
            continue;
        }
        let present = items.iter().any(|i| walk(i, steps).is_some());
        let keys = keys_at(items, above);
        let text = api_text(text, SHOWN);
        if present {
            return Flag {
                field: field.to_string(),
                path: Some(text.clone()),
                did_you_mean: None,
                keys,
                message: format!(
                    "field `{field}` is null in every record of the sample: `{text}` is null in {all}"
                ),
            };
        }
        let suggestion = likely_key(last, &keys);
        let hint = match &suggestion {
            Some(s) => format!("; did you mean `{}`?", api_text(s, SHOWN)),
            None => String::new(),
        };
        let have = if keys.is_empty() {
            " (there are no keys there)".to_string()
        } else {
            format!(
                " (the items have: {})",
                keys.iter()
                    .map(|k| api_text(k, 40))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Flag {
            field: field.to_string(),
            path: Some(text.clone()),
            did_you_mean: suggestion,
            keys,
            message: format!(
                "field `{field}` is null in every record of the sample: `{text}` is not in {none}, a likely wrong path{hint}{have}"
            ),
        };
    }
    Flag {
        field: field.to_string(),
        path: None,
        did_you_mean: None,
        keys: Vec::new(),
        message: format!("field `{field}` is null in every record of the sample ({all})"),
    }
}

/// The key the items have that `wanted` most likely meant: the same name in another
/// spelling (`created_at` for `createdAt`), else a key that starts with it or that it
/// starts with (`created_at` for `created`), else the closest by edits.
fn likely_key(wanted: &str, keys: &[String]) -> Option<String> {
    let plain = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let want = plain(wanted);
    if want.is_empty() {
        return None;
    }
    if let Some(k) = keys.iter().find(|k| plain(k) == want) {
        return Some(k.clone());
    }
    let prefixed = keys
        .iter()
        .filter(|k| {
            let k = plain(k);
            !k.is_empty() && (k.starts_with(&want) || want.starts_with(&k))
        })
        .min_by_key(|k| k.len().abs_diff(wanted.len()));
    if let Some(k) = prefixed {
        return Some(k.clone());
    }
    closest(wanted, keys.iter().map(String::as_str)).map(str::to_string)
}

/// The singular paths of an expression that read the item (`$.a.b`), with their text.
fn item_paths(expr: &Expr, out: &mut Vec<(String, Vec<PathStep>)>) {
    match expr {
        Expr::Path(p) => {
            if let Some(steps) = &p.singular {
                out.push((p.text.clone(), steps.clone()));
            }
        }
        Expr::Call(_, args) => args.iter().for_each(|a| item_paths(a, out)),
        Expr::Neg(e) | Expr::Not(e) => item_paths(e, out),
        Expr::Binary(_, a, b) => {
            item_paths(a, out);
            item_paths(b, out);
        }
        Expr::Lit(_) | Expr::Field(_) | Expr::Parent(_) => {}
    }
}

/// The keys of the objects at `steps` in the items, in the order first seen.
fn keys_at(items: &[Json], steps: &[PathStep]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for item in items {
        if let Some(Json::Object(m)) = walk(item, steps) {
            for k in m.keys() {
                if keys.len() >= MAX_KEYS {
                    return keys;
                }
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(text: &str) -> Source {
        let file = format!(
            "service s {{ base_url = \"http://127.0.0.1:1\" }}\nsource src from s {{\n get = \"/x\"\n schedule = once\n {text}\n}}\nsink o = stdout()\nflow src -> o\n"
        );
        let checked = crate::check::check("t.hmr", &file, &|_| None);
        let p = checked
            .pipeline
            .unwrap_or_else(|| panic!("{}", checked.report.render(false, 100)));
        p.sources["src"].clone()
    }

    #[test]
    fn a_wrong_path_is_flagged_with_the_closest_key() {
        let src = source(
            "fields { id : int = $.id  created : string? = $.created_at  note : string? = $.note }",
        );
        let ex = Extractor::new(&src);
        let items = vec![
            json!({"id": 1, "createdAt": "x", "note": null}),
            json!({"id": 2, "createdAt": "y", "note": null}),
        ];
        let flags = null_everywhere(&src, &ex, &items, None);
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert_eq!(flags[0].field, "created");
        assert_eq!(flags[0].did_you_mean.as_deref(), Some("createdAt"));
        assert_eq!(flags[0].keys, ["id", "createdAt", "note"]);
        assert!(
            flags[0].message.contains("did you mean `createdAt`?"),
            "{}",
            flags[0].message
        );
        assert_eq!(flags[1].field, "note");
        assert_eq!(flags[1].did_you_mean, None);
        assert!(flags[1].message.contains("is null in all 2 items"));
        assert!(null_everywhere(&src, &ex, &[], None).is_empty());
    }

    #[test]
    fn nested_paths_look_for_keys_where_they_point() {
        let src = source("fields { who : string? = lower($.user.logn) }");
        let ex = Extractor::new(&src);
        let items = vec![json!({"user": {"login": "a", "id": 1}})];
        let flags = null_everywhere(&src, &ex, &items, None);
        assert_eq!(flags[0].did_you_mean.as_deref(), Some("login"));
        assert_eq!(flags[0].keys, ["login", "id"]);
    }
}
