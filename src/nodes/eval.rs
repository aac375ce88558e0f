//! Evaluates checked expressions against a JSON record item, a parent record, or a
//! record's own fields. JSONPath is compiled once; singular paths are read by a walk.
//!
//! Every value an expression meets may come from an API, so evaluating never panics on
//! one: arithmetic is checked (an overflow is the reason a record is rejected), casts
//! are checked, nothing is indexed. Evaluation recurses along the expression, which the
//! parser keeps to 256 levels (`the_deepest_accepted_expression_runs_on_a_worker_stack`),
//! and along JSON values, which serde_json keeps to 128 levels when it reads a body.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod arith;
mod call;
mod select;

use super::value::{number_val, Val};
use crate::check::{BinOp, Expr, Func, JsonPath, Lit, PathStep};
use arith::{arithmetic, coerce_pair, to_decimal};
use call::call;
use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value as Json;
use std::cmp::Ordering;

/// A path ready to run: the steps of a singular path, of a path of names, indexes and
/// wildcards (`$..items[*]`), or a compiled general query.
#[derive(Debug, Clone)]
pub enum Path {
    Singular(Vec<PathStep>),
    Simple(Vec<select::Step>),
    General(Box<JpQuery>),
}

impl Path {
    pub fn compile(p: &JsonPath) -> Path {
        match &p.singular {
            Some(steps) => Path::Singular(steps.clone()),
            // The checker validated the text; a failure here would be a checker bug, and
            // then the path selects nothing rather than taking the run down.
            None => match jsonpath_rust::parser::parse_json_path(&p.text) {
                Ok(q) => match select::compile(&q) {
                    Some(steps) => Path::Simple(steps),
                    None => Path::General(Box::new(q)),
                },
                Err(_) => Path::Singular(vec![PathStep::Name("\u{0}unparsable".into())]),
            },
        }
    }

    /// The single value a singular path names, if any.
    pub fn get<'a>(&self, root: &'a Json) -> Option<&'a Json> {
        match self {
            Path::Singular(steps) => walk(root, steps),
            Path::Simple(_) | Path::General(_) => None,
        }
    }

    /// Everything the path selects.
    pub fn select<'a>(&self, root: &'a Json) -> Vec<&'a Json> {
        match self {
            Path::Singular(steps) => walk(root, steps).into_iter().collect(),
            Path::Simple(steps) => select::select(root, steps),
            Path::General(q) => jsonpath_rust::query::js_path_process(q, root)
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// Reads the value: a singular path gives it (or null), a general one an array.
    pub fn read(&self, root: &Json) -> Val {
        match self {
            Path::Singular(steps) => walk(root, steps).map_or(Val::Null, Val::from_json),
            Path::Simple(_) | Path::General(_) => Val::Json(Json::Array(
                self.select(root).into_iter().cloned().collect(),
            )),
        }
    }
}

pub fn walk<'a>(mut v: &'a Json, steps: &[PathStep]) -> Option<&'a Json> {
    for step in steps {
        v = match (step, v) {
            (PathStep::Name(n), Json::Object(m)) => member(m, n)?,
            (PathStep::Index(i), Json::Array(a)) => a.get(index(*i, a.len())?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// An object's member `name`. A record's object has a few members: comparing names in
/// order is faster there than hashing the name (SipHash, about 3 % of a keyed run's time
/// under `perf`); a large object is looked up by hash.
pub fn member<'a>(m: &'a serde_json::Map<String, Json>, name: &str) -> Option<&'a Json> {
    if m.len() <= 16 {
        m.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
    } else {
        m.get(name)
    }
}

/// The position an index names in an array of `len` items (`-1` is the last), if any.
pub fn index(i: i64, len: usize) -> Option<usize> {
    let from_end = usize::try_from(i.unsigned_abs()).ok()?;
    if i < 0 {
        len.checked_sub(from_end)
    } else {
        Some(from_end)
    }
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
                Val::Decimal(d) => Val::Decimal(arith::negate(d)),
                Val::Float(f) => Val::Float(-f),
                Val::Null => Val::Null,
                other => Val::Decimal(arith::negate(to_decimal(&other)?)),
            },
            Compiled::Not(x) => match truthy(&x.eval(env)?) {
                Some(b) => Val::Bool(!b),
                None => Val::Null,
            },
            Compiled::Binary(op, l, r) => binary(*op, l, r, env)?,
            Compiled::Call(f, args) => call(*f, args, env)?,
        })
    }

    /// Evaluates for a `json` field: a bare path or `parent.x` keeps the JSON exactly as
    /// the API wrote it (spec §4 "as is": `1E+2` stays `1E+2`, `-0` stays `-0`), where
    /// reading it as a value first would write its number anew.
    pub fn eval_json(&self, env: &Env) -> Result<Val, String> {
        let raw = match self {
            Compiled::Path(p @ Path::Singular(_)) => env.item.and_then(|item| p.get(item)),
            Compiled::Parent(f) => env.parent.and_then(|p| p.get(f)),
            other => return other.eval(env)?.convert(crate::check::Type::Json),
        };
        Ok(match raw {
            None | Some(Json::Null) => Val::Null,
            Some(j) => Val::Json(j.clone()),
        })
    }

    /// Adds the record fields the expression reads to `out`.
    pub fn fields(&self, out: &mut Vec<usize>) {
        match self {
            Compiled::Field(i) => out.push(*i),
            Compiled::Lit(_) | Compiled::Path(_) | Compiled::Parent(_) => {}
            Compiled::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
            Compiled::Neg(x) | Compiled::Not(x) => x.fields(out),
            Compiled::Binary(_, l, r) => {
                l.fields(out);
                r.fields(out);
            }
        }
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

/// Reads a JSON value for a path result, keeping numbers exact.
pub fn json_number(n: &serde_json::Number) -> Val {
    number_val(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
