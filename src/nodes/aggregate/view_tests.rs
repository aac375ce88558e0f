//! Unit tests of the view: retraction of extremes, a crash between redo entry and writes,
//! and a changed definition.

use super::*;
use crate::nodes::aggregate::codec::encode_ops;
use crate::state::SledStore;
use serde_json::json;

const PIPELINE: &str = r#"
service api { base_url = "http://127.0.0.1:9" }
source orders from api {
  get      = "/orders"
  schedule = once
  key      = id
  fields {
    id       : string   = $.id
    shop     : string   = $.shop
    amount   : decimal? = $.amount
  }
}
aggregate totals {
  from     = [orders]
  group_by = [shop]
  compute {
    n     = count()
    total = sum(amount)
    lo    = min(amount)
    hi    = max(amount)
    mean  = avg(amount)
    kinds = count_distinct(amount)
  }
}
sink out  = stdout()
sink view = stdout()
flow orders -> out
flow totals -> view
"#;

fn pipeline(text: &str) -> Pipeline {
    let checked = crate::check::check("t.hmr", text, &|_| None);
    match checked.pipeline {
        Some(p) => p,
        None => panic!("{}", checked.report.render(false, 100)),
    }
}

fn rec(id: &str, shop: &str, amount: Option<&str>) -> Emitted {
    Emitted {
        key: Some(id.as_bytes().to_vec()),
        json: serde_json::to_vec(&json!({"id": id, "shop": shop, "amount": amount}))
            .unwrap()
            .into(),
    }
}

fn rows(view: &View, store: &dyn StateStore) -> Vec<Json> {
    view.rows(store)
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_slice(&r.json).unwrap())
        .collect()
}

#[test]
fn extremes_and_groups_follow_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let p = pipeline(PIPELINE);
    let view = View::open(&p, "totals", &store).unwrap();
    let page = [
        rec("1", "a", Some("5.00")),
        rec("2", "a", Some("9.50")),
        rec("3", "a", Some("5")),
        rec("4", "b", None),
    ];
    assert_eq!(view.apply(&store, "orders", &page, true).unwrap(), 2);
    assert_eq!(
        rows(&view, &store),
        vec![
            json!({"shop": "a", "n": 3, "total": "19.50", "lo": "5.00", "hi": "9.50", "mean": "6.50", "kinds": 2}),
            json!({"shop": "b", "n": 1, "total": null, "lo": null, "hi": null, "mean": null, "kinds": 0}),
        ]
    );
    // The maximum moves to another group, and the last record of `b` leaves it.
    let page = [rec("2", "b", Some("1")), rec("4", "a", Some("7"))];
    view.apply(&store, "orders", &page, true).unwrap();
    assert_eq!(
        rows(&view, &store),
        vec![
            json!({"shop": "a", "n": 3, "total": "17.00", "lo": "5.00", "hi": "7", "mean": "5.6666666666666666666666666667", "kinds": 2}),
            json!({"shop": "b", "n": 1, "total": "1", "lo": "1", "hi": "1", "mean": "1", "kinds": 1}),
        ]
    );
    let page = [rec("2", "a", Some("1"))];
    view.apply(&store, "orders", &page, true).unwrap();
    assert_eq!(rows(&view, &store).len(), 1);
    // Both changed groups wait for the sinks; the gone one with zero counts.
    let out = view.outbox(&store, 10).unwrap();
    assert_eq!(out.len(), 2);
    let gone: Json = serde_json::from_slice(&out[1].1.json).unwrap();
    assert_eq!(gone["n"], json!(0));
    assert_eq!(out[1].1.key.as_deref(), Some(&b"b"[..]));
}

#[test]
fn a_crash_after_the_redo_entry_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(PIPELINE);
    let first = [rec("1", "a", Some("2")), rec("2", "a", Some("3"))];
    let second = [rec("1", "b", Some("4")), rec("3", "a", None)];
    let expected = {
        let d = tempfile::tempdir().unwrap();
        let store = SledStore::open(d.path()).unwrap();
        let view = View::open(&p, "totals", &store).unwrap();
        view.apply(&store, "orders", &first, false).unwrap();
        view.apply(&store, "orders", &second, false).unwrap();
        rows(&view, &store)
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        let view = View::open(&p, "totals", &store).unwrap();
        view.apply(&store, "orders", &first, false).unwrap();
        let mut tx = view.prepare(&store, "orders", &second, false).unwrap();
        // The crash: the redo entry is written, the writes are not.
        let ops = tx.ops();
        store
            .kv_apply(
                &view.spaces.redo,
                &[(REDO_KEY.to_vec(), Some(encode_ops(&ops)))],
            )
            .unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    // Reading (as `dump` does) sees the batch through its redo entry, writing nothing.
    let view = View::new(&p, "totals").unwrap();
    assert_eq!(rows(&view, &store), expected);
    let view = View::open(&p, "totals", &store).unwrap();
    assert_eq!(rows(&view, &store), expected);
    // Applying the same page again changes nothing: it is already counted.
    assert_eq!(view.apply(&store, "orders", &second, false).unwrap(), 0);
    assert_eq!(rows(&view, &store), expected);
}

#[test]
fn a_changed_definition_starts_the_view_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let view = View::open(&pipeline(PIPELINE), "totals", &store).unwrap();
    view.apply(&store, "orders", &[rec("1", "a", Some("2"))], false)
        .unwrap();
    // Renaming a computed field keeps the view.
    let renamed = pipeline(&PIPELINE.replace("kinds", "distinct_amounts"));
    let view = View::open(&renamed, "totals", &store).unwrap();
    assert_eq!(rows(&view, &store)[0]["distinct_amounts"], json!(1));
    // Another function in its place does not.
    let changed = pipeline(&PIPELINE.replace("hi    = max(amount)", "hi = min(amount)"));
    let view = View::new(&changed, "totals").unwrap();
    assert!(!view.is_current(&store).unwrap());
    let view = View::open(&changed, "totals", &store).unwrap();
    assert!(rows(&view, &store).is_empty());
}

/// A retraction leaves the sum at the scale a recomputation would give: after the one
/// value written with cents leaves the group, `1` stays `1`, not `1.00`.
#[test]
fn a_sum_keeps_the_scale_of_the_values_it_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let p = pipeline(PIPELINE);
    let view = View::open(&p, "totals", &store).unwrap();
    let page = [rec("1", "a", Some("1")), rec("2", "a", Some("2.00"))];
    view.apply(&store, "orders", &page, true).unwrap();
    assert_eq!(rows(&view, &store)[0]["total"], json!("3.00"));
    view.apply(&store, "orders", &[rec("2", "b", Some("2.00"))], true)
        .unwrap();
    let a = &rows(&view, &store)[0];
    assert_eq!((&a["total"], &a["mean"]), (&json!("1"), &json!("1")), "{a}");
}
