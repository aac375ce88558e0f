//! Property: after any sequence of inserts, updates (a key's record changing values or
//! group) and restarts, an aggregate's view equals a recomputation from scratch over the
//! latest record of every key (and every unkeyed record), for every aggregate function.

use hamstr::check::Pipeline;
use hamstr::nodes::aggregate::View;
use hamstr::nodes::extract::Emitted;
use hamstr::state::SledStore;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const PIPELINE: &str = r#"
service api { base_url = "http://127.0.0.1:9" }
model Row {
  id     : string
  g      : string
  h      : int
  amount : decimal?
  score  : int?
}
source keyed from api {
  get      = "/keyed"
  schedule = once
  model    = Row
  key      = id
  fields { id = $.id  g = $.g  h = $.h  amount = $.amount  score = $.score }
}
source unkeyed from api {
  get      = "/unkeyed"
  schedule = once
  model    = Row
  fields { id = $.id  g = $.g  h = $.h  amount = $.amount  score = $.score }
}
aggregate v {
  from     = [keyed, unkeyed]
  group_by = [g, h]
  compute {
    n     = count()
    total = sum(amount)
    lo    = min(amount)
    hi    = max(score)
    mean  = avg(amount)
    kinds = count_distinct(score)
    big   = max(amount)
  }
}
sink rows  = stdout()
sink views = stdout()
flow keyed, unkeyed -> rows
flow v -> views
"#;

#[derive(Debug, Clone)]
struct Rec {
    key: u8,
    g: u8,
    h: i64,
    amount: Option<Decimal>,
    score: Option<i64>,
}

impl Rec {
    fn emitted(&self, keyed: bool) -> Emitted {
        let obj = json!({
            "id": format!("k{}", self.key),
            "g": format!("g{}", self.g),
            "h": self.h,
            "amount": self.amount.map(|d| d.to_string()),
            "score": self.score,
        });
        Emitted {
            key: keyed.then(|| format!("k{}", self.key).into_bytes()),
            json: serde_json::to_vec(&obj).unwrap().into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Page { keyed: bool, recs: Vec<Rec> },
    Restart,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        0u8..8,
        0u8..3,
        0i64..2,
        proptest::option::weighted(0.85, (-5000i64..5000, 0u32..3)),
        proptest::option::weighted(0.8, 0i64..6),
    )
        .prop_map(|(key, g, h, amount, score)| Rec {
            key,
            g,
            h,
            amount: amount.map(|(m, s)| Decimal::new(m, s)),
            score,
        })
}

/// Mostly keyed pages: updates are what this property is about.
fn step() -> impl Strategy<Value = Step> {
    let page = |keyed: bool| {
        proptest::collection::vec(rec(), 1..6).prop_map(move |recs| Step::Page { keyed, recs })
    };
    prop_oneof![
        5 => page(true),
        1 => page(false),
        1 => Just(Step::Restart),
    ]
}

fn pipeline() -> Pipeline {
    let checked = hamstr::check::check("props.hmr", PIPELINE, &|_| None);
    match checked.pipeline {
        Some(p) => p,
        None => panic!("{}", checked.report.render(false, 100)),
    }
}

type Group = (String, i64);

/// The view as recomputed from the records alone.
fn recompute(latest: &HashMap<u8, Rec>, appended: &[Rec]) -> BTreeMap<Group, Value> {
    let mut groups: BTreeMap<Group, Vec<&Rec>> = BTreeMap::new();
    for r in latest.values().chain(appended) {
        groups
            .entry((format!("g{}", r.g), r.h))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|(g, recs)| {
            let amounts: Vec<Decimal> = recs.iter().filter_map(|r| r.amount).collect();
            let scores: Vec<i64> = recs.iter().filter_map(|r| r.score).collect();
            // A sum is written at the greatest scale of the values it holds (docs: §7),
            // whatever order and zero short cuts the addition took.
            let total: Option<Decimal> = (!amounts.is_empty()).then(|| {
                let mut t: Decimal = amounts.iter().sum();
                t.rescale(amounts.iter().map(|d| d.scale()).max().unwrap_or(0));
                t
            });
            let row = json!({
                "n": recs.len(),
                "total": total.map(|t| t.to_string()),
                "lo": amounts.iter().min().map(|d| d.normalize().to_string()),
                "hi": scores.iter().max(),
                "mean": total.map(|t| (t / Decimal::from(amounts.len())).to_string()),
                "kinds": scores.iter().collect::<BTreeSet<_>>().len(),
                "big": amounts.iter().max().map(|d| d.normalize().to_string()),
            });
            (g, row)
        })
        .collect()
}

/// The view as the store holds it; min and max normalised for comparison (equal values
/// written at different scales are one value, shown as first seen).
fn view_rows(view: &View, store: &SledStore) -> BTreeMap<Group, Value> {
    view.rows(store)
        .unwrap()
        .into_iter()
        .map(|r| {
            let mut row: serde_json::Map<String, Value> = serde_json::from_slice(&r.json).unwrap();
            let g = row.remove("g").unwrap().as_str().unwrap().to_string();
            let h = row.remove("h").unwrap().as_i64().unwrap();
            for (name, v) in row.iter_mut() {
                if name == "total" || name == "mean" {
                    continue;
                }
                if let Value::String(s) = v {
                    let d: Decimal = s
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}: {s} is no decimal"));
                    *v = Value::String(d.normalize().to_string());
                }
            }
            ((g, h), Value::Object(row))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_view_equals_a_recomputation(steps in proptest::collection::vec(step(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline();
        let mut store = Some(SledStore::open(dir.path()).unwrap());
        let mut view = View::open(&p, "v", store.as_ref().unwrap()).unwrap();
        let mut latest: HashMap<u8, Rec> = HashMap::new();
        let mut appended: Vec<Rec> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Page { keyed, recs } => {
                    let page: Vec<Emitted> = recs.iter().map(|r| r.emitted(*keyed)).collect();
                    let source = if *keyed { "keyed" } else { "unkeyed" };
                    view.apply(store.as_ref().unwrap(), source, &page, i % 2 == 0).unwrap();
                    for r in recs {
                        if *keyed {
                            latest.insert(r.key, r.clone());
                        } else {
                            appended.push(r.clone());
                        }
                    }
                }
                Step::Restart => {
                    drop(store.take());
                    store = Some(SledStore::open(dir.path()).unwrap());
                    view = View::open(&p, "v", store.as_ref().unwrap()).unwrap();
                }
            }
            let got = view_rows(&view, store.as_ref().unwrap());
            prop_assert_eq!(got, recompute(&latest, &appended), "after step {}: {:?}", i, step);
        }
    }
}
