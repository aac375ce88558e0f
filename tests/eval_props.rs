//! Property: whatever an API sends, evaluating a field never panics. Every function and
//! operator of spec §2 and every model type of §4, fed extreme numbers (400 digits, 1e308,
//! -0, exponents past i64), odd strings (empty, invalid dates, 100,000 characters,
//! unicode, control characters) and deep or wide JSON, gives a value of the field's type
//! or a rejection whose reason is short, one line and readable.

use hamstr::check::{check, Type};
use hamstr::nodes::record::{Extractor, Item, Room};
use hamstr::nodes::value::{write_record, write_record_raw, Record, Val};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Every type a model field can have (spec §4), as written in a pipeline.
const TYPES: [(&str, Type); 7] = [
    ("string", Type::String),
    ("int", Type::Int),
    ("float", Type::Float),
    ("decimal", Type::Decimal),
    ("bool", Type::Bool),
    ("datetime", Type::Datetime),
    ("json", Type::Json),
];

/// Formats for `parse_datetime`, which takes a literal: the common ones and the odd
/// corners of strftime (epoch seconds, week dates, fractions, bare years).
const FORMATS: [&str; 12] = [
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%s",
    "%d/%m/%Y %H:%M",
    "%Y",
    "%+",
    "%Y-%j",
    "%G-W%V-%u",
    "%e %b %Y",
    "%a, %d %b %Y %H:%M:%S %z",
];

/// Expressions over `$.a` and `$.b` (the hostile values): every function and operator
/// of spec §2, the extensions (`to_float year round abs length`), combinations that
/// multiply or divide what came in, and paths into deep values.
fn expressions() -> Vec<String> {
    let mut e: Vec<String> = [
        // functions
        "lower($.a)",
        "upper($.a)",
        "trim($.a)",
        "concat($.a, $.b)",
        "concat($.a, \"-\", $.b, $.a)",
        "coalesce($.a, $.b)",
        "coalesce($.b, $.a, \"z\")",
        "to_string($.a)",
        "to_int($.a)",
        "to_float($.a)",
        "to_decimal($.a)",
        "from_unix($.a)",
        "from_unix_ms($.a)",
        "from_unix($.a * $.b)",
        "from_unix_ms(to_decimal($.a) * 1000)",
        "now()",
        "day($.a)",
        "hour($.a)",
        "month($.a)",
        "year($.a)",
        "day(from_unix($.a))",
        "hour(from_unix_ms($.a))",
        "month(parse_datetime($.a, \"%s\"))",
        "round($.a)",
        "round($.a, $.b)",
        "round($.a, 2)",
        "abs($.a)",
        "length($.a)",
        // operators
        "$.a + $.b",
        "$.a - $.b",
        "$.a * $.b",
        "$.a / $.b",
        "-$.a",
        "-(-$.a)",
        "$.a == $.b",
        "$.a != $.b",
        "$.a < $.b",
        "$.a <= $.b",
        "$.a > $.b",
        "$.a >= $.b",
        "$.a and $.b",
        "$.a or $.b",
        "not $.a",
        "$.a ?? $.b",
        "($.a + $.b) * ($.a - $.b) / $.b",
        "$.a * 1000",
        "$.a / 0",
        "$.a + 1",
        "$.a - 0.0000000000000000000000000001",
        "$.a == \"x\"",
        "$.a < 0.5",
        "from_unix($.a) < now()",
        "from_unix($.a) == from_unix_ms($.b)",
        "abs($.a) * -1 >= $.b",
        // paths into the values: singular and general
        "$.a",
        "$.a.x",
        "$.a[0]",
        "$.a[-1]",
        "$.a[9007199254740991]",
        "$.a[-9007199254740991]",
        "$.a[0].x[1]",
        "$..x",
        "$.a[*]",
        "$.a[?@ > 1]",
        "$.a[?@.x == \"y\"]",
        "$.a[1:3]",
    ]
    .map(String::from)
    .to_vec();
    for f in FORMATS {
        e.push(format!("parse_datetime($.a, \"{f}\")"));
        e.push(format!("day(parse_datetime($.b, \"{f}\"))"));
    }
    e
}

/// One source whose only field is `v : TYPE? = EXPR`, or `None` when the checker
/// refuses that pairing (a path with a filter into an `int`, say).
fn extractor(ty: &str, expr: &str) -> Option<Extractor> {
    let text = format!(
        "service s {{ base_url = \"http://127.0.0.1:9\" }}\n\
         source a from s {{ get = \"/\" schedule = once fields {{ v : {ty}? = {expr} }} }}\n\
         sink k = stdout()\nflow a -> k\n"
    );
    let checked = check("props.hmr", &text, &|_| None);
    if checked.report.errors() > 0 {
        return None;
    }
    Some(Extractor::new(&checked.pipeline?.sources["a"]))
}

/// Every expression into every type the checker allows, each with the type it must give.
fn extractors() -> &'static [(String, Type, Extractor)] {
    static ALL: OnceLock<Vec<(String, Type, Extractor)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        for expr in expressions() {
            let before = all.len();
            for (name, ty) in TYPES {
                if let Some(x) = extractor(name, &expr) {
                    all.push((format!("v : {name}? = {expr}"), ty, x));
                }
            }
            // A json field takes anything (spec §4): each expression checks at least there.
            assert!(all.len() > before, "`{expr}` checks into no type");
        }
        all
    })
}

/// A JSON number written exactly as `text` (serde_json keeps its digits: the crate is
/// built with `arbitrary_precision`).
fn number(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(v.is_number(), "{text}");
    v
}

/// Numbers at and past the edges of i64, u64, f64, `Decimal` and chrono's datetimes.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "0.0e0",
    "1.5",
    "12.50",
    "100000000000000000000000000",
    "-100000000000000000000000000",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "5e-324",
    "1e-400",
    "1e400",
    "-1e400",
    "0e999999999999999999999",
    "1e9223372036854775807",
    "1e-9223372036854775808",
    "1e18446744073709551616",
    "0.5e-9223372036854775807",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "-79228162514264337593543950336",
    "0.0000000000000000000000000001",
    "0.00000000000000000000000000001",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "8640000000000000",
    "8640000000001",
    "-8640000000001",
    "8639999999999999.999",
    "253402300800",
    "-62135596800",
    "262143",
    "28",
    "29",
    "-1",
];

/// Strings an API might send where a number, a date or a name belongs.
const EDGE_STRINGS: &[&str] = &[
    "",
    " ",
    "x",
    "2024-02-30T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00+23:59",
    "+262143-12-31T23:59:59Z",
    "-262144-01-01T00:00:00Z",
    "2024-01-01",
    "2024-01-01T00:00:00.123456789123Z",
    "1700000000",
    "-9223372036854775808",
    "9223372036854775808",
    "1e400",
    "1e9223372036854775807",
    "100000000000000000000000000",
    "0.00000000000000000000000000001",
    "-0",
    "NaN",
    "inf",
    "-Infinity",
    "true",
    "false",
    "null",
    "ǅ ß İ ﬃ ΐ",
    "\u{0}\u{1}\u{1b}[31m\n\r\t",
    "\u{202e}\u{feff}\u{ffff}",
    "2024-W53-8",
    "2024-366",
    "Mon, 30 Feb 2024 25:61:61 +9999",
];

fn numbers() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(EDGE_NUMBERS).prop_map(number),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        // up to 400 digits, up to 60 after the point, exponents up to 25 digits
        "-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,60})?([eE][+-]?[0-9]{1,25})?".prop_map(|t| number(&t)),
    ]
}

fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(EDGE_STRINGS).prop_map(String::from),
        any::<String>(),
        "\\PC{0,40}",
        "-?[0-9]{0,60}(\\.[0-9]{0,40})?([eE][+-]?[0-9]{1,25})?",
        "[0-9+:TZ. -]{0,40}",
        // Datetimes, some written as a datetime writes them (copied when a run writes
        // records out).
        "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{3,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        (any::<char>(), 1usize..100_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        Just("9".repeat(400)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        numbers(),
        strings().prop_map(Value::String),
    ]
}

/// Nested arrays and objects of leaves, including the keys the paths look for.
fn nested() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("x".to_string()), Just("y".to_string()), "\\PC{0,4}"],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chain nested up to 120 deep (a response body holds at most 128 levels: serde_json's
/// limit), or an array of up to 5,000 items.
fn deep_or_wide() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..120, leaf(), any::<bool>()).prop_map(|(depth, v, arrays)| {
            (0..depth).fold(v, |inner, _| {
                if arrays {
                    Value::Array(vec![inner])
                } else {
                    json!({ "x": inner })
                }
            })
        }),
        (
            0usize..5_000,
            prop_oneof![numbers(), "\\PC{0,8}".prop_map(Value::String)]
        )
            .prop_map(|(n, v)| Value::Array(vec![v; n])),
    ]
}

fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![4 => leaf(), 2 => nested(), 1 => deep_or_wide()]
}

/// A rejection reason a person can read in `dump --rejected` or a log line.
fn assert_clear(what: &str, reason: &str) {
    assert!(!reason.trim().is_empty(), "{what}: an empty reason");
    assert!(
        reason.chars().count() <= 300,
        "{what}: a reason of {} characters: {}…",
        reason.chars().count(),
        reason.chars().take(300).collect::<String>()
    );
    assert!(
        !reason.chars().any(char::is_control),
        "{what}: a control character in the reason {reason:?}"
    );
}

/// A value of the field's type (or null: the fields are optional) that writes as JSON.
fn assert_typed(what: &str, ty: Type, record: &Record) {
    let v = &record.values[0];
    assert!(
        v.is_null() || v.type_name() == ty.name(),
        "{what}: a {} in a {} field: {v:?}",
        v.type_name(),
        ty.name()
    );
    if let Val::Float(f) = v {
        assert!(f.is_finite(), "{what}: {f}");
    }
    let mut out = Vec::new();
    write_record(&["v".to_string()], record, &mut out);
    serde_json::from_slice::<Value>(&out)
        .unwrap_or_else(|e| panic!("{what}: wrote {:?}: {e}", String::from_utf8_lossy(&out)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_expression_and_type_gives_a_value_or_a_clear_rejection(
        a in hostile(),
        b in hostile(),
    ) {
        let item = json!({ "a": a, "b": b });
        for (what, ty, x) in extractors() {
            match x.record(Item::Json(&item), None) {
                Ok(record) => assert_typed(what, *ty, &record),
                Err(rejected) => assert_clear(what, &rejected.reason),
            }
        }
    }

    /// An item read from its text (a run keeps a page's items as text and reads the
    /// fields it names where they lie) gives the record, or the rejection with its
    /// reason, key and cursor, that its tree gives: for every expression and type,
    /// whatever the values, with escapes, spaces and a repeated name in the text.
    #[test]
    fn an_item_read_from_its_text_gives_what_its_tree_gives(
        a in hostile(),
        b in hostile(),
        spaced in any::<bool>(),
    ) {
        let item = json!({ "a": a, "b": b });
        let mut texts = vec![serde_json::to_string(&item).unwrap()];
        if spaced {
            texts.push(serde_json::to_string_pretty(&item).unwrap());
        }
        // A name given twice keeps its last value, as the tree does.
        texts.push(format!(
            "{{\"a\":{},\"b\":1,\"\\u0061\":{}}}",
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&a).unwrap()
        ));
        for text in &texts {
            // Past serde_json's depth limit the page is refused before any item is read.
            let Ok(tree) = serde_json::from_str::<Value>(text) else { continue };
            // `now()` differs from one call to the next.
            for (what, _, x) in extractors().iter().filter(|(w, _, _)| !w.contains("now()")) {
                let by_text = x.record(Item::Text(text), None);
                let by_tree = x.record(Item::Json(&tree), None);
                match (by_text, by_tree) {
                    (Ok(t), Ok(j)) => prop_assert_eq!(t, j, "{}", what),
                    (Err(t), Err(j)) => {
                        prop_assert_eq!(&t.reason, &j.reason, "{}", what);
                        prop_assert_eq!(&t.key, &j.key, "{}", what);
                        prop_assert_eq!(&t.cursor, &j.cursor, "{}", what);
                    }
                    (t, j) => prop_assert!(false, "{}: from the text {:?}, from the tree {:?}", what, t.map(|_| ()).map_err(|e| e.reason), j.map(|_| ()).map_err(|e| e.reason)),
                }
                // Made for the sinks (a `json`, `string`, `decimal` or `datetime` field's
                // text copied where it is what its value writes), the record writes what
                // the tree's record writes.
                let mut room = Room::default();
                match (x.record_in(Item::Text(text), None, &mut room), x.record(Item::Json(&tree), None)) {
                    (Ok(t), Ok(j)) => {
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        write_record_raw(&x.heads, &t, &room.raw, &mut a);
                        write_record(&["v".to_string()], &j, &mut b);
                        prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{}", what);
                    }
                    (Err(t), Err(j)) => prop_assert_eq!(&t.reason, &j.reason, "{}", what),
                    (t, j) => prop_assert!(false, "{}: raw {:?}, tree {:?}", what, t.map(|_| ()).map_err(|e| e.reason), j.map(|_| ()).map_err(|e| e.reason)),
                }
            }
        }
    }

    /// The conversions of spec §4 straight from a JSON value, as a stored watermark or a
    /// record read back from a sink is converted.
    #[test]
    fn every_conversion_gives_a_value_or_a_clear_error(v in hostile()) {
        for (name, ty) in TYPES {
            match Val::from_json(&v).convert(ty) {
                Ok(got) => assert_typed(name, ty, &Record { values: vec![got] }),
                Err(reason) => assert_clear(name, &reason),
            }
        }
    }
}

/// The defect this file was written for: `from_unix` of a 27-digit number multiplied a
/// `Decimal` past its range and panicked, killing the source's extract task.
#[test]
fn from_unix_of_a_huge_number_is_a_timestamp_out_of_range() {
    let item = json!({ "a": number("100000000000000000000000000"), "b": 1 });
    for expr in [
        "from_unix($.a)",
        "from_unix_ms($.a)",
        "from_unix(to_string($.a))",
    ] {
        let x = extractor("datetime", expr).expect("checks");
        let reason = x.record(Item::Json(&item), None).expect_err(expr).reason;
        assert!(
            reason.contains("timestamp out of range"),
            "{expr}: {reason}"
        );
    }
    let x = extractor("decimal", "$.a * $.a").expect("checks");
    let reason = x
        .record(Item::Json(&item), None)
        .expect_err("overflow")
        .reason;
    assert!(reason.contains("number out of range"), "{reason}");
}

/// Spec §4: a `json` field keeps any JSON value as is; a number stays a number.
#[test]
fn a_json_field_keeps_numbers_as_numbers() {
    let x = extractor("json", "$.a").expect("checks");
    for text in [
        "12.5",
        "12.50",
        "-0",
        "1e400",
        "100000000000000000000000000",
        "7",
    ] {
        let item = json!({ "a": number(text) });
        let record = x.record(Item::Json(&item), None).expect(text);
        let mut out = Vec::new();
        write_record(&["v".to_string()], &record, &mut out);
        // As serde_json read it (it writes `1e400` as `1e+400`), digit for digit.
        let read = serde_json::to_string(&number(text)).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), format!("{{\"v\":{read}}}"));
    }
    // A number an expression computes is a number too.
    let x = extractor("json", "to_decimal($.a) / 4").expect("checks");
    let record = x
        .record(Item::Json(&json!({ "a": 50 })), None)
        .expect("divides");
    let v = record.values[0].to_json();
    assert!(v.is_number() && v.as_f64() == Some(12.5), "{v:?}");
}
