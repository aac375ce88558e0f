//! Unit tests of values: exact decimals, finite floats, the conversions of spec §4,
//! short reasons, and comparison.
use super::numeral::{digits_of, same_number};
use super::*;

fn num(s: &str) -> Val {
    let v: Json = serde_json::from_str(s).unwrap();
    Val::from_json(&v)
}

#[test]
fn decimals_are_exact() {
    assert_eq!(
        num("12.50").convert(Type::Decimal).unwrap().to_json(),
        Json::String("12.50".into())
    );
    assert_eq!(
        Val::Str("0.10".into())
            .convert(Type::Decimal)
            .unwrap()
            .to_json(),
        Json::String("0.10".into())
    );
    assert!(Val::Str("ten".into()).convert(Type::Decimal).is_err());
}

#[test]
fn a_decimal_is_kept_exactly_or_refused_never_rounded() {
    let kept = |v: Val| v.convert(Type::Decimal).map(|d| d.to_text());
    assert_eq!(kept(num("1e3")), Ok("1000".into()));
    assert_eq!(kept(num("-2.5E-3")), Ok("-0.0025".into()));
    assert_eq!(
        kept(num("0.1234567890123456789012345678")),
        Ok("0.1234567890123456789012345678".into())
    );
    // Trailing zeros beyond what a decimal holds lose nothing.
    assert_eq!(
        kept(Val::Str("1.000000000000000000000000000000000".into())),
        Ok("1.0000000000000000000000000000".into())
    );
    for refused in [
        num("0.10000000000000000000000000001"),
        num("1e-40"),
        num("1e400"),
        Val::Str("1.00000000000000000000000000009".into()),
        Val::Str("123456789012345678901234567890.5".into()),
    ] {
        let e = refused.clone().convert(Type::Decimal).unwrap_err();
        assert!(e.contains("cannot be kept exactly"), "{refused:?}: {e}");
    }
    // Kept as written where the field is json or string.
    assert_eq!(
        num("0.10000000000000000000000000001")
            .convert(Type::Json)
            .unwrap()
            .to_json()
            .to_string(),
        "0.10000000000000000000000000001"
    );
    assert_eq!(
        num("1e-40").convert(Type::String),
        Ok(Val::Str("1e-40".into()))
    );
}

#[test]
fn a_float_is_finite() {
    assert_eq!(num("2.5").convert(Type::Float), Ok(Val::Float(2.5)));
    assert_eq!(
        num("0.10000000000000000000000000001").convert(Type::Float),
        Ok(Val::Float(0.1))
    );
    for refused in [
        num("1e400"),
        Val::Str("NaN".into()),
        Val::Str("inf".into()),
        Val::Str("-Infinity".into()),
    ] {
        assert!(refused.clone().convert(Type::Float).is_err(), "{refused:?}");
    }
}

#[test]
fn conversions_follow_the_spec() {
    assert_eq!(Val::Str("42".into()).convert(Type::Int), Ok(Val::Int(42)));
    assert!(num("4.5").convert(Type::Int).is_err());
    assert_eq!(num("7").convert(Type::String), Ok(Val::Str("7".into())));
    assert_eq!(
        Val::Bool(true).convert(Type::String),
        Ok(Val::Str("true".into()))
    );
    assert_eq!(
        Val::Str("false".into()).convert(Type::Bool),
        Ok(Val::Bool(false))
    );
    let dt = Val::Str("2026-01-01T10:00:00+02:00".into())
        .convert(Type::Datetime)
        .unwrap();
    assert_eq!(dt.to_json(), Json::String("2026-01-01T08:00:00Z".into()));
    assert!(num("1700000000").convert(Type::Datetime).is_err());
    assert!(Val::Json(serde_json::json!({"a": 1}))
        .convert(Type::String)
        .is_err());
}

/// A reason quotes 40 characters of a string at most, escaping what cannot be seen,
/// so a hostile value cannot make a reason long or break it over lines.
#[test]
fn a_reason_shows_a_short_escaped_value() {
    assert_eq!(quoted("ten"), "\"ten\"");
    assert_eq!(quoted("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
    assert_eq!(
        quoted(&"x".repeat(100_000)),
        format!("\"{}\"…", "x".repeat(40))
    );
    let e = Val::Str("\u{0}".repeat(100_000))
        .convert(Type::Int)
        .unwrap_err();
    assert!(e.len() < 100 && !e.contains('\u{0}'), "{e}");
}

/// A numeral whose exponent no `i64` holds is no decimal; counting its magnitude
/// overflowed before.
#[test]
fn an_exponent_beyond_i64_is_not_a_number_a_decimal_holds() {
    assert_eq!(digits_of("1e9223372036854775807"), None);
    assert_eq!(digits_of("0.001e-9223372036854775808"), None);
    assert!(!same_number("1e9223372036854775807", "1"));
    assert_eq!(parse_decimal("1e9223372036854775807"), None);
}

#[test]
fn cross_type_comparison() {
    assert_eq!(
        Val::Int(2).compare(&Val::Decimal(Decimal::new(15, 1))),
        Some(Ordering::Greater)
    );
    assert_eq!(Val::Null.compare(&Val::Int(1)), None);
    assert_eq!(Val::Str("a".into()).compare(&Val::Int(1)), None);
}

/// A `json` field read back from a store is the JSON that was written, digit for digit.
#[test]
fn a_json_field_reads_back_as_written() {
    let fields = [("raw".to_string(), Type::Json, true)];
    for text in ["-0", "12.50", "1E+2", "[1.0, {\"a\": -0.0}]"] {
        let bytes = format!("{{\"raw\":{text}}}");
        let record = read_record(&fields, bytes.as_bytes()).unwrap();
        let written: Json = serde_json::from_str(text).unwrap();
        assert_eq!(record.values, [Val::Json(written.clone())], "{text}");
        let mut out = Vec::new();
        write_record(&["raw".to_string()], &record, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{\"raw\":{}}}", written)
        );
    }
    // A decimal that an expression computed is a JSON number too.
    assert_eq!(
        Val::Decimal(Decimal::new(1250, 2))
            .convert(Type::Json)
            .unwrap()
            .to_json()
            .to_string(),
        "12.50"
    );
}

/// A record's datetimes, ints, floats and decimals are written straight into its JSON;
/// the text is what chrono's `to_rfc3339_opts(AutoSi, true)` and `to_string` write.
#[test]
fn values_written_in_place_read_as_their_text() {
    let mut seconds: Vec<i64> = vec![
        0,
        1,
        59,
        86_399,
        951_782_400,
        1_700_000_000,
        -1,
        -62_135_596_800,
    ];
    seconds.extend([
        253_402_300_799,
        253_402_300_800,
        -62_135_596_801,
        8_210_266_876_799,
    ]);
    for s in seconds {
        for nano in [
            0u32,
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            5_000_000,
            123_456_789,
            999_999_999,
            1_500_000_000,
        ] {
            let Some(d) = DateTime::<Utc>::from_timestamp(s, nano) else {
                continue;
            };
            let mut out = Vec::new();
            Val::Datetime(d).write_json(&mut out);
            let want = format!("\"{}\"", d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            assert_eq!(String::from_utf8(out).unwrap(), want, "{s} {nano}");
        }
    }
    for v in [
        Val::Int(i64::MIN),
        Val::Int(-7),
        Val::Int(i64::MAX),
        Val::Float(1.5),
        Val::Float(-0.0),
        Val::Float(1e300),
        Val::Decimal(Decimal::new(-1250, 2)),
    ] {
        let mut out = Vec::new();
        v.write_json(&mut out);
        let want = match &v {
            Val::Decimal(d) => format!("\"{d}\""),
            other => other.to_text(),
        };
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

/// A string is written as serde_json writes it, whether it needs escapes or not.
#[test]
fn strings_are_written_as_serde_json_writes_them() {
    let mut texts: Vec<String> = (0u32..0x80)
        .filter_map(char::from_u32)
        .map(|c| format!("a{c}b"))
        .collect();
    texts.extend(
        [
            "",
            "plain",
            "é ß 日本 \u{2028} \u{feff} \u{10ffff}",
            "\u{7f}",
            "q\"b\\s",
        ]
        .map(String::from),
    );
    for t in texts {
        let mut out = Vec::new();
        write_str(&t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&t).unwrap(),
            "{t:?}"
        );
    }
}
