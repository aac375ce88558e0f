//! Evaluates checked expressions against a JSON record item, a parent record, or a
//! record's own fields. JSONPath is compiled once; singular paths are read by a walk.

use super::value::{number_val, parse_decimal, Val};
use crate::check::{BinOp, Expr, Func, JsonPath, Lit, PathStep};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use jsonpath_rust::parser::model::JpQuery;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::cmp::Ordering;

/// A path ready to run: the steps of a singular path, or a compiled general query.
#[derive(Debug, Clone)]
pub enum Path {
    Singular(Vec<PathStep>),
    General(Box<JpQuery>),
}

impl Path {
    pub fn compile(p: &JsonPath) -> Path {
        match &p.singular {
            Some(steps) => Path::Singular(steps.clone()),
            // The checker validated the text; a failure here would be a checker bug, and
            // then the path selects nothing rather than taking the run down.
            None => match jsonpath_rust::parser::parse_json_path(&p.text) {
                Ok(q) => Path::General(Box::new(q)),
                Err(_) => Path::Singular(vec![PathStep::Name("\u{0}unparsable".into())]),
            },
        }
    }

    /// The single value a singular path names, if any.
    pub fn get<'a>(&self, root: &'a Json) -> Option<&'a Json> {
        match self {
            Path::Singular(steps) => walk(root, steps),
            Path::General(_) => None,
        }
    }

    /// Everything the path selects.
    pub fn select<'a>(&self, root: &'a Json) -> Vec<&'a Json> {
        match self {
            Path::Singular(steps) => walk(root, steps).into_iter().collect(),
            Path::General(q) => jsonpath_rust::query::js_path_process(q, root)
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// Reads the value: a singular path gives it (or null), a general one an array.
    pub fn read(&self, root: &Json) -> Val {
        match self {
            Path::Singular(steps) => walk(root, steps).map_or(Val::Null, Val::from_json),
            Path::General(_) => Val::Json(Json::Array(
                self.select(root).into_iter().cloned().collect(),
            )),
        }
    }
}

pub fn walk<'a>(mut v: &'a Json, steps: &[PathStep]) -> Option<&'a Json> {
    for step in steps {
        v = match (step, v) {
            (PathStep::Name(n), Json::Object(m)) => m.get(n)?,
            (PathStep::Index(i), Json::Array(a)) => {
                let idx = if *i < 0 {
                    a.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    *i as usize
                };
                a.get(idx)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// An expression with its paths compiled.
#[derive(Debug, Clone)]
pub enum Compiled {
    Lit(Val),
    Path(Path),
    Field(usize),
    Parent(String),
    Call(Func, Vec<Compiled>),
    Neg(Box<Compiled>),
    Not(Box<Compiled>),
    Binary(BinOp, Box<Compiled>, Box<Compiled>),
}

/// What names in an expression refer to.
pub struct Env<'a> {
    pub item: Option<&'a Json>,
    pub parent: Option<&'a serde_json::Map<String, Json>>,
    pub fields: &'a [Val],
}

impl Compiled {
    /// Compiles an expression; `field_index` maps field names to record positions.
    pub fn new(e: &Expr, field_index: &dyn Fn(&str) -> Option<usize>) -> Compiled {
        match e {
            Expr::Lit(l) => Compiled::Lit(lit(l)),
            Expr::Path(p) => Compiled::Path(Path::compile(p)),
            Expr::Field(f) => field_index(f).map_or(Compiled::Lit(Val::Null), Compiled::Field),
            Expr::Parent(f) => Compiled::Parent(f.clone()),
            Expr::Call(f, args) => Compiled::Call(
                *f,
                args.iter().map(|a| Compiled::new(a, field_index)).collect(),
            ),
            Expr::Neg(x) => Compiled::Neg(Box::new(Compiled::new(x, field_index))),
            Expr::Not(x) => Compiled::Not(Box::new(Compiled::new(x, field_index))),
            Expr::Binary(op, l, r) => Compiled::Binary(
                *op,
                Box::new(Compiled::new(l, field_index)),
                Box::new(Compiled::new(r, field_index)),
            ),
        }
    }

    /// Evaluates; `Err` is a reason the record cannot be built.
    pub fn eval(&self, env: &Env) -> Result<Val, String> {
        Ok(match self {
            Compiled::Lit(v) => v.clone(),
            Compiled::Path(p) => env.item.map_or(Val::Null, |item| p.read(item)),
            Compiled::Field(i) => env.fields.get(*i).cloned().unwrap_or(Val::Null),
            Compiled::Parent(f) => env
                .parent
                .and_then(|p| p.get(f))
                .map_or(Val::Null, Val::from_json),
            Compiled::Neg(x) => match x.eval(env)? {
                Val::Int(i) => Val::Int(i.checked_neg().ok_or("number out of range")?),
                Val::Decimal(d) => Val::Decimal(-d),
                Val::Float(f) => Val::Float(-f),
                Val::Null => Val::Null,
                other => Val::Decimal(-to_decimal(&other)?),
            },
            Compiled::Not(x) => match truthy(&x.eval(env)?) {
                Some(b) => Val::Bool(!b),
                None => Val::Null,
            },
            Compiled::Binary(op, l, r) => binary(*op, l, r, env)?,
            Compiled::Call(f, args) => call(*f, args, env)?,
        })
    }

    /// Evaluates a condition: anything but `true` is false.
    pub fn test(&self, env: &Env) -> bool {
        matches!(self.eval(env), Ok(Val::Bool(true)))
    }
}

fn lit(l: &Lit) -> Val {
    match l {
        Lit::Null => Val::Null,
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Int(i) => Val::Int(*i),
        Lit::Decimal(d) => Val::Decimal(*d),
        Lit::Str(s) => Val::Str(s.clone()),
    }
}

/// The value of a literal, for `incremental.start`.
pub fn lit_value(l: &Lit) -> Val {
    lit(l)
}

fn truthy(v: &Val) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Json(Json::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn to_decimal(v: &Val) -> Result<Decimal, String> {
    match v {
        Val::Str(s) => parse_decimal(s.trim()).ok_or_else(|| format!("\"{s}\" is not a number")),
        Val::Json(Json::Number(n)) => Err(format!(
            "{n} cannot be kept exactly: a decimal holds 28 or 29 significant digits and at most 28 after the point"
        )),
        Val::Bool(_) | Val::Datetime(_) | Val::Json(_) | Val::Null => {
            Err(format!("{} is not a number", v.type_name()))
        }
        other => other
            .as_decimal()
            .ok_or_else(|| "number out of range".to_string()),
    }
}

/// Strings that hold numbers or datetimes compare as such when the other side is one.
fn coerce_pair(a: Val, b: Val) -> (Val, Val) {
    match (&a, &b) {
        (Val::Str(s), Val::Datetime(_)) => match DateTime::parse_from_rfc3339(s) {
            Ok(d) => (Val::Datetime(d.with_timezone(&Utc)), b),
            Err(_) => (a, b),
        },
        (Val::Datetime(_), Val::Str(_)) => {
            let (y, x) = coerce_pair(b, a);
            (x, y)
        }
        (Val::Str(s), Val::Int(_) | Val::Decimal(_) | Val::Float(_)) => {
            match parse_decimal(s.trim()) {
                Some(d) => (Val::Decimal(d), b),
                None => (a, b),
            }
        }
        (Val::Int(_) | Val::Decimal(_) | Val::Float(_), Val::Str(_)) => {
            let (y, x) = coerce_pair(b, a);
            (x, y)
        }
        _ => (a, b),
    }
}

fn binary(op: BinOp, l: &Compiled, r: &Compiled, env: &Env) -> Result<Val, String> {
    match op {
        BinOp::And => {
            return Ok(match truthy(&l.eval(env)?) {
                Some(false) => Val::Bool(false),
                Some(true) => Val::Bool(truthy(&r.eval(env)?) == Some(true)),
                None => Val::Bool(false),
            })
        }
        BinOp::Or => {
            return Ok(match truthy(&l.eval(env)?) {
                Some(true) => Val::Bool(true),
                _ => Val::Bool(truthy(&r.eval(env)?) == Some(true)),
            })
        }
        BinOp::Coalesce => {
            let v = l.eval(env)?;
            return if v.is_null() { r.eval(env) } else { Ok(v) };
        }
        _ => {}
    }
    let (a, b) = coerce_pair(l.eval(env)?, r.eval(env)?);
    Ok(match op {
        BinOp::Eq => Val::Bool(equal(&a, &b)),
        BinOp::Ne => Val::Bool(!equal(&a, &b)),
        BinOp::Lt => Val::Bool(a.compare(&b) == Some(Ordering::Less)),
        BinOp::Le => Val::Bool(matches!(
            a.compare(&b),
            Some(Ordering::Less | Ordering::Equal)
        )),
        BinOp::Gt => Val::Bool(a.compare(&b) == Some(Ordering::Greater)),
        BinOp::Ge => Val::Bool(matches!(
            a.compare(&b),
            Some(Ordering::Greater | Ordering::Equal)
        )),
        _ => arithmetic(op, a, b)?,
    })
}

fn equal(a: &Val, b: &Val) -> bool {
    match (a.is_null(), b.is_null()) {
        (true, true) => true,
        (true, false) | (false, true) => false,
        _ => a.compare(b).map_or(a == b, |o| o == Ordering::Equal),
    }
}

fn arithmetic(op: BinOp, a: Val, b: Val) -> Result<Val, String> {
    if a.is_null() || b.is_null() {
        return Ok(Val::Null);
    }
    if let (BinOp::Add, Val::Str(x), Val::Str(y)) = (op, &a, &b) {
        return Ok(Val::Str(format!("{x}{y}")));
    }
    if let (Val::Int(x), Val::Int(y)) = (&a, &b) {
        let r = match op {
            BinOp::Add => x.checked_add(*y),
            BinOp::Sub => x.checked_sub(*y),
            BinOp::Mul => x.checked_mul(*y),
            _ => None,
        };
        if let Some(r) = r {
            return Ok(Val::Int(r));
        }
    }
    let float = |v: &Val| matches!(v, Val::Float(_) | Val::Json(Json::Number(_)));
    if float(&a) || float(&b) {
        let (x, y) = (
            a.as_f64().ok_or("not a number")?,
            b.as_f64().ok_or("not a number")?,
        );
        return Ok(Val::Float(match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            _ => x / y,
        }));
    }
    let (x, y) = (to_decimal(&a)?, to_decimal(&b)?);
    let r = match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        _ if y.is_zero() => return Err("division by zero".into()),
        _ => x.checked_div(y),
    };
    r.map(|d| Val::Decimal(d.normalize_if_long()))
        .ok_or_else(|| "number out of range".into())
}

trait NormalizeIfLong {
    fn normalize_if_long(self) -> Self;
}
impl NormalizeIfLong for Decimal {
    /// Division can leave 28 digits of scale; trailing zeros of such results are noise.
    fn normalize_if_long(self) -> Self {
        if self.scale() > 12 {
            self.normalize()
        } else {
            self
        }
    }
}

fn call(f: Func, args: &[Compiled], env: &Env) -> Result<Val, String> {
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(a.eval(env)?);
    }
    let text = |v: &Val| -> Option<String> {
        match v {
            Val::Null => None,
            Val::Json(Json::Null) => None,
            other => Some(other.to_text()),
        }
    };
    let first = vals.first().cloned().unwrap_or(Val::Null);
    Ok(match f {
        Func::Lower => text(&first).map_or(Val::Null, |s| Val::Str(s.to_lowercase())),
        Func::Upper => text(&first).map_or(Val::Null, |s| Val::Str(s.to_uppercase())),
        Func::Trim => text(&first).map_or(Val::Null, |s| Val::Str(s.trim().to_string())),
        Func::Concat => Val::Str(vals.iter().filter_map(text).collect()),
        Func::Coalesce => vals.into_iter().find(|v| !v.is_null()).unwrap_or(Val::Null),
        Func::ToString => text(&first).map_or(Val::Null, Val::Str),
        Func::ToInt => match first {
            Val::Null => Val::Null,
            v => match v.clone().convert(crate::check::Type::Int) {
                Ok(i) => i,
                Err(_) => Val::Int(
                    to_decimal(&v)?
                        .trunc()
                        .to_i64()
                        .ok_or("number out of range")?,
                ),
            },
        },
        Func::ToFloat => match first {
            Val::Null => Val::Null,
            v => v.convert(crate::check::Type::Float)?,
        },
        Func::ToDecimal => match first {
            Val::Null => Val::Null,
            v => Val::Decimal(to_decimal(&v)?),
        },
        Func::ParseDatetime => {
            let (Some(s), Some(fmt)) = (text(&first), vals.get(1).and_then(text)) else {
                return Ok(Val::Null);
            };
            parse_datetime(&s, &fmt)?
        }
        Func::FromUnix | Func::FromUnixMs => {
            if first.is_null() {
                return Ok(Val::Null);
            }
            let n = to_decimal(&first)?;
            let ms = if f == Func::FromUnix {
                n * Decimal::from(1000)
            } else {
                n
            };
            let ms = ms.trunc().to_i64().ok_or("timestamp out of range")?;
            Val::Datetime(
                Utc.timestamp_millis_opt(ms)
                    .single()
                    .ok_or("timestamp out of range")?,
            )
        }
        Func::Now => Val::Datetime(Utc::now()),
        Func::Day | Func::Hour | Func::Month | Func::Year => {
            let dt = match first {
                Val::Datetime(d) => d,
                Val::Str(s) => DateTime::parse_from_rfc3339(&s)
                    .map_err(|_| format!("\"{s}\" is not a datetime"))?
                    .with_timezone(&Utc),
                Val::Null => return Ok(Val::Null),
                other => return Err(format!("{} is not a datetime", other.type_name())),
            };
            let fmt = match f {
                Func::Day => "%Y-%m-%d",
                Func::Hour => "%Y-%m-%dT%H",
                Func::Month => "%Y-%m",
                _ => "%Y",
            };
            Val::Str(dt.format(fmt).to_string())
        }
        Func::Round => {
            if first.is_null() {
                return Ok(Val::Null);
            }
            let places = match vals.get(1) {
                Some(Val::Int(p)) => (*p).clamp(0, 28) as u32,
                _ => 0,
            };
            Val::Decimal(to_decimal(&first)?.round_dp(places))
        }
        Func::Abs => match first {
            Val::Int(i) => Val::Int(i.checked_abs().ok_or("number out of range")?),
            Val::Float(x) => Val::Float(x.abs()),
            Val::Null => Val::Null,
            other => Val::Decimal(to_decimal(&other)?.abs()),
        },
        Func::Length => match first {
            Val::Str(s) => Val::Int(s.chars().count() as i64),
            Val::Json(Json::Array(a)) => Val::Int(a.len() as i64),
            Val::Json(Json::Object(o)) => Val::Int(o.len() as i64),
            Val::Null => Val::Null,
            other => Val::Int(other.to_text().chars().count() as i64),
        },
    })
}

fn parse_datetime(s: &str, fmt: &str) -> Result<Val, String> {
    if let Ok(d) = DateTime::parse_from_str(s, fmt) {
        return Ok(Val::Datetime(d.with_timezone(&Utc)));
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
        return Ok(Val::Datetime(Utc.from_utc_datetime(&n)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt) {
        return Ok(Val::Datetime(
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).ok_or("bad date")?),
        ));
    }
    Err(format!("\"{s}\" does not match the format \"{fmt}\""))
}

/// Reads a JSON value for a path result, keeping numbers exact.
pub fn json_number(n: &serde_json::Number) -> Val {
    number_val(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check, Pipeline};

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
}
