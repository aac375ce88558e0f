//! Unit tests of expression evaluation: the functions, and the deepest expressions.
use super::*;
use crate::check::{check, Pipeline};
use rust_decimal::Decimal;

fn pipeline(fields: &str) -> Pipeline {
    let text = format!(
        "service s {{ base_url = \"http://x\" }}\nsource a from s {{ get = \"/\" schedule = once records = $[*] key = id fields {{ id : string = $.id {fields} }} }}\nsink k = stdout()\nflow a -> k"
    );
    let c = check("t.hmr", &text, &|_| None);
    assert_eq!(c.report.errors(), 0, "{}", c.report.render(false, 100));
    c.pipeline.unwrap()
}

fn eval_field(fields: &str, name: &str, item: Json) -> Result<Val, String> {
    let p = pipeline(fields);
    let f = p.sources["a"].field(name).unwrap().clone();
    let c = Compiled::new(&f.expr, &|_| None);
    c.eval(&Env {
        item: Some(&item),
        parent: None,
        fields: &[],
    })
}

#[test]
fn functions() {
    let item = serde_json::json!({"id": "x", "amount": 1250, "name": " Ann ", "ts": 1700000000, "cur": null, "items": [{"q": 1}, {"q": 3}]});
    assert_eq!(
        eval_field(
            "v : decimal = to_decimal($.amount) / 100",
            "v",
            item.clone()
        ),
        Ok(Val::Decimal(Decimal::new(125, 1)))
    );
    assert_eq!(
        eval_field("v : string = upper(trim($.name))", "v", item.clone()),
        Ok(Val::Str("ANN".into()))
    );
    assert_eq!(
        eval_field("v : string = $.cur ?? \"EUR\"", "v", item.clone()),
        Ok(Val::Str("EUR".into()))
    );
    assert_eq!(
        eval_field("v : datetime = from_unix($.ts)", "v", item.clone())
            .unwrap()
            .to_json(),
        Json::String("2023-11-14T22:13:20Z".into())
    );
    assert_eq!(
        eval_field("v : string = day(from_unix($.ts))", "v", item.clone()),
        Ok(Val::Str("2023-11-14".into()))
    );
    assert_eq!(
        eval_field("v : json = $.items[?@.q > 1]", "v", item.clone()),
        Ok(Val::Json(serde_json::json!([{"q": 3}])))
    );
    assert_eq!(
        eval_field("v : string = concat($.id, \"-\", $.amount)", "v", item),
        Ok(Val::Str("x-1250".into()))
    );
}

/// The deepest expressions the checker accepts (256 levels) compile, evaluate and
/// drop on a 2 MiB stack, the size of a tokio worker's.
#[test]
fn the_deepest_accepted_expression_runs_on_a_worker_stack() {
    let deepest = [
        format!("v : int = {}", vec!["$.n"; 256].join(" + ")),
        format!("v : int = {}$.n", "-".repeat(255)),
        format!("v : bool = {}true", "not ".repeat(255)),
        format!("v : bool = {} > 0", vec!["$.n"; 255].join(" + ")),
    ];
    let pipelines: Vec<_> = deepest.iter().map(|f| pipeline(f)).collect();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let item = serde_json::json!({"id": "x", "n": 1});
            let env = Env {
                item: Some(&item),
                parent: None,
                fields: &[],
            };
            let got: Vec<_> = pipelines
                .iter()
                .map(|p| Compiled::new(&p.sources["a"].field("v").unwrap().expr, &|_| None))
                .map(|c| c.eval(&env))
                .collect();
            assert_eq!(
                got,
                [
                    Ok(Val::Int(256)),
                    Ok(Val::Int(-1)),
                    Ok(Val::Bool(false)),
                    Ok(Val::Bool(true))
                ]
            );
            drop(pipelines);
        })
        .expect("thread")
        .join()
        .expect("no overflow");
}

/// The defect that took a source down: `from_unix` multiplied a 27-digit number by 1000
/// without a check and panicked.
#[test]
fn a_timestamp_beyond_any_instant_is_out_of_range() {
    let item =
        serde_json::json!({"id": "x", "ts": 100000000000000000000000000_i128, "neg": "-1e20"});
    for field in [
        "v : datetime = from_unix($.ts)",
        "v : datetime = from_unix_ms($.ts)",
        "v : datetime = from_unix($.neg)",
        "v : datetime = from_unix(to_string($.ts))",
    ] {
        assert_eq!(
            eval_field(field, "v", item.clone()),
            Err("timestamp out of range".into()),
            "{field}"
        );
    }
}

/// Arithmetic that leaves what its type holds is refused, never an infinity (which a
/// `json` field would have stored as null) nor a panic.
#[test]
fn arithmetic_beyond_its_type_is_out_of_range() {
    let item = serde_json::json!({"id": "x", "big": 1e308, "huge": 79228162514264337593543950335_u128, "min": i64::MIN});
    for field in [
        "v : json = $.big * 10",
        "v : json = $.big + $.big",
        "v : json = $.huge * 2",
        "v : json = $.huge + 1",
        "v : json = abs($.min)",
        "v : json = -$.min",
    ] {
        assert_eq!(
            eval_field(field, "v", item.clone()),
            Err("number out of range".into()),
            "{field}"
        );
    }
    assert_eq!(
        eval_field("v : json = $.big / 0", "v", item.clone()),
        Err("division by zero".into())
    );
    // An int that outgrows an int goes on as a decimal.
    assert_eq!(
        eval_field("v : json = $.min - 1", "v", item),
        Ok(Val::Decimal(Decimal::from(i64::MIN) - Decimal::ONE))
    );
}
