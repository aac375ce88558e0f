//! What one run of a source sends (spec §5.2a): the `query` and `body` values computed
//! once at its start with `watermark` (the watermark as the run found it, minus
//! `lookback`), the incremental `param` in its `format`, the token a run resumes from,
//! and the body fields a paginator sets (`in = body`, dotted names nested).

use crate::check::{BodyValue, ParamValue, Source, TimeFormat, WATERMARK};
use crate::nodes::eval::{Compiled, Env};
use crate::nodes::record::Extractor;
use crate::nodes::value::Val;
use crate::state::SourceMeta;
use serde_json::Value as Json;

/// The parts of a run's requests that stay the same from page to page.
#[derive(Debug, Default)]
pub struct RunRequest {
    /// The source's `query`, values computed.
    pub query: Vec<(String, String)>,
    /// What the paginator adds to every request it builds: the incremental `param`.
    pub fixed: Vec<(String, String)>,
    /// What only the first request carries: the stored resume token as `param`.
    pub first_only: Vec<(String, String)>,
    /// The JSON body, values computed; `None` without a `body`.
    pub body: Option<Json>,
}

impl RunRequest {
    /// The requests of a run of `src` whose state is `meta`. A value that cannot be
    /// computed (a datetime no format can write) fails the run with the reason.
    pub fn new(src: &Source, ex: &Extractor, meta: &SourceMeta) -> Result<RunRequest, String> {
        let inc = src.incremental.as_ref();
        let token = inc
            .filter(|i| i.resume.is_some())
            .and_then(|_| meta.resume.clone());
        // `watermark`: as the run found it, minus `lookback`; `start` until something
        // was collected. Once a resume token is held the entries using it are left out.
        let watermark = match &token {
            Some(_) => None,
            None => ex.watermark(meta.watermark.as_ref()).map(|w| ex.floor(w)),
        };
        let mut out = RunRequest::default();
        for (k, v) in &src.query {
            let text = match v {
                ParamValue::Text(t) => Some(t.value.clone()),
                ParamValue::Computed(e) => {
                    if v.uses_watermark() && watermark.is_none() {
                        continue;
                    }
                    computed(e, watermark.as_ref())?
                        .filter(|v| !v.is_null())
                        .map(|v| v.to_text())
                }
            };
            out.query.extend(text.map(|t| (k.clone(), t)));
        }
        if let Some(inc) = inc {
            match (&inc.param, &inc.resume, token) {
                (Some(param), Some(_), Some(token)) => out.first_only.push((param.clone(), token)),
                (Some(_), Some(_), None) => {}
                (Some(param), None, _) => {
                    if let Some(w) = &watermark {
                        out.fixed
                            .push((param.clone(), format_time(w, &inc.format)?));
                    }
                }
                (None, _, _) => {}
            }
        }
        out.body = match &src.body {
            Some(b) => body_json(b, watermark.as_ref(), true)?,
            None => None,
        };
        Ok(out)
    }

    /// The body of one request: the source's body with the paginator's fields set
    /// (`in = body`); an object of those fields alone when the source has no body.
    pub fn body_with(&self, fields: &[(String, Json)]) -> Option<Json> {
        if fields.is_empty() {
            return self.body.clone();
        }
        let mut body = self
            .body
            .clone()
            .unwrap_or_else(|| Json::Object(Default::default()));
        for (name, value) in fields {
            set_dotted(&mut body, name, value.clone());
        }
        Some(body)
    }
}

/// Sets a dotted field (`paging.after`) of a body, making the objects on its way (and
/// replacing what on its way is not an object).
pub fn set_dotted(body: &mut Json, name: &str, value: Json) {
    let mut at = body;
    let mut parts = name.split('.').peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = Json::Object(Default::default());
        }
        let Json::Object(map) = at else { return };
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        at = map
            .entry(part.to_string())
            .or_insert_with(|| Json::Object(Default::default()));
    }
}

/// A computed value: its expression with `watermark` bound.
fn computed(e: &crate::check::Expr, watermark: Option<&Val>) -> Result<Option<Val>, String> {
    let expr = Compiled::new(e, &|name| (name == WATERMARK).then_some(0));
    let fields = [watermark.cloned().unwrap_or(Val::Null)];
    let env = Env {
        item: None,
        parent: None,
        fields: &fields,
    };
    expr.eval(&env)
        .map(Some)
        .map_err(|e| format!("a request value cannot be computed: {e}"))
}

/// A body value as JSON. At the top (`top`), an entry that uses `watermark` is left
/// out while there is none; `None` means "left out".
fn body_json(b: &BodyValue, watermark: Option<&Val>, top: bool) -> Result<Option<Json>, String> {
    Ok(Some(match b {
        BodyValue::Null => Json::Null,
        BodyValue::Bool(x) => Json::Bool(*x),
        BodyValue::Number(n) => serde_json::from_str(n).unwrap_or(Json::Null),
        BodyValue::Text(t) => Json::String(t.value.clone()),
        BodyValue::List(items) => Json::Array(
            items
                .iter()
                .map(|i| body_json(i, watermark, false).map(|v| v.unwrap_or(Json::Null)))
                .collect::<Result<_, _>>()?,
        ),
        BodyValue::Object(items) => {
            let mut map = serde_json::Map::new();
            for (k, v) in items {
                if top && watermark.is_none() && v.uses_watermark() {
                    continue;
                }
                if let Some(j) = body_json(v, watermark, false)? {
                    map.insert(k.clone(), j);
                }
            }
            Json::Object(map)
        }
        BodyValue::Computed(e) => computed(e, watermark)?.map_or(Json::Null, |v| json_of(&v)),
    }))
}

/// A computed value as JSON in a request body: numbers as numbers (a decimal too),
/// datetimes as RFC 3339 in UTC.
fn json_of(v: &Val) -> Json {
    match v {
        Val::Decimal(d) => serde_json::from_str(&d.to_string()).unwrap_or(Json::Null),
        other => other.to_json(),
    }
}

/// A watermark as `param` carries it: a datetime in its `format` (UTC), anything else
/// as text.
pub fn format_time(v: &Val, format: &TimeFormat) -> Result<String, String> {
    let Val::Datetime(d) = v else {
        return Ok(v.to_text());
    };
    Ok(match format {
        TimeFormat::Rfc3339 => v.to_text(),
        TimeFormat::Unix => d.timestamp().to_string(),
        TimeFormat::UnixMs => d.timestamp_millis().to_string(),
        TimeFormat::Strftime(f) => {
            let mut out = String::new();
            std::fmt::Write::write_fmt(&mut out, format_args!("{}", d.format(f)))
                .map_err(|_| format!("the watermark cannot be written with the format `{f}`"))?;
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_fields_nest() {
        let mut body = json!({ "filter": "x", "paging": 3 });
        set_dotted(&mut body, "paging.after", json!("c1"));
        set_dotted(&mut body, "a.b.c", json!(1));
        set_dotted(&mut body, "limit", json!(100));
        assert_eq!(
            body,
            json!({ "filter": "x", "paging": { "after": "c1" }, "a": { "b": { "c": 1 } }, "limit": 100 })
        );
    }

    /// A top-level body entry that uses `watermark` (with all that is nested in it) is
    /// left out while there is none; the others are sent.
    #[test]
    fn body_entries_using_the_watermark_wait_for_one() {
        use crate::check::{Expr, Func, Text};
        let uses = BodyValue::List(vec![BodyValue::Object(vec![(
            "value".into(),
            BodyValue::Computed(Expr::Call(Func::Unix, vec![Expr::Field(WATERMARK.into())])),
        )])]);
        let body = BodyValue::Object(vec![
            ("filters".into(), uses),
            ("limit".into(), BodyValue::Number("10".into())),
            ("q".into(), BodyValue::Text(Text::plain("x"))),
        ]);
        assert_eq!(
            body_json(&body, None, true).unwrap(),
            Some(json!({ "limit": 10, "q": "x" }))
        );
        let t = Val::Datetime(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert_eq!(
            body_json(&body, Some(&t), true).unwrap(),
            Some(json!({ "filters": [{ "value": 1_700_000_000 }], "limit": 10, "q": "x" }))
        );
    }

    #[test]
    fn watermark_formats() {
        let t = Val::Datetime(
            chrono::DateTime::parse_from_rfc3339("2024-03-01T08:00:00+01:00")
                .unwrap()
                .with_timezone(&chrono::Utc),
        );
        assert_eq!(
            format_time(&t, &TimeFormat::Rfc3339).unwrap(),
            "2024-03-01T07:00:00Z"
        );
        assert_eq!(format_time(&t, &TimeFormat::Unix).unwrap(), "1709276400");
        assert_eq!(
            format_time(&t, &TimeFormat::UnixMs).unwrap(),
            "1709276400000"
        );
        assert_eq!(
            format_time(&t, &TimeFormat::Strftime("%Y/%m/%d %H:%M".into())).unwrap(),
            "2024/03/01 07:00"
        );
        assert_eq!(format_time(&Val::Int(42), &TimeFormat::Unix).unwrap(), "42");
    }
}
