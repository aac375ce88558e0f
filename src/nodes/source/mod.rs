//! The source node: one run of a source — build requests, follow the paginator, parse
//! pages and hand them to the extract node; stop early for newest-first listings.

pub mod http;
pub mod paginate;

use crate::check::{BodyValue, Method, Source};
use crate::nodes::extract::{Extractor, Page, RunSummary, SourceMsg};
use crate::nodes::net::SHOWN;
use crate::nodes::value::Val;
use crate::state::StateStore;
use crate::stop::Stop;
use http::{Request, ServiceClient};
use paginate::{Next, Pager};
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use url::Url;

pub struct Poller {
    pub src: Arc<Source>,
    pub client: Arc<ServiceClient>,
    pub ex: Arc<Extractor>,
    pub tx: mpsc::Sender<SourceMsg>,
    pub store: Arc<dyn StateStore>,
    pub stop: Stop,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub summary: RunSummary,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl Poller {
    /// One full run; `parent` is the parent record (and its key) for a child source.
    pub async fn run(&self, parent: Option<(Vec<u8>, Json)>) -> RunOutcome {
        let name = &self.src.name;
        let mut out = RunOutcome::default();
        if self.tx.send(SourceMsg::RunStart).await.is_err() {
            out.error = Some("the source's graph is gone".into());
            return out;
        }
        let parent_obj = parent
            .as_ref()
            .and_then(|(_, r)| r.as_object().cloned())
            .map(Arc::new);
        let (complete, error) = match self.pages(parent_obj.clone(), &mut out.warnings).await {
            Ok(complete) => (complete, None),
            Err(e) => (false, Some(e)),
        };
        for w in &out.warnings {
            tracing::warn!(source = %name, warning = %w, "pagination stopped early");
        }
        let (done_tx, done_rx) = oneshot::channel();
        let end = SourceMsg::RunEnd {
            complete,
            error: error.clone(),
            child_of: parent.map(|(k, _)| k),
            done: done_tx,
        };
        if self.tx.send(end).await.is_err() {
            out.error = Some("the source's graph is gone".into());
            return out;
        }
        out.summary = done_rx.await.unwrap_or_default();
        out.error = error.or_else(|| {
            (!out.summary.committed).then(|| "a sink did not take every page".to_string())
        });
        out
    }

    /// Fetches every page; `Ok(true)` when the listing was seen to its end: its last page,
    /// or (newest first) a page reaching below the watermark. Any other stop — a loop, a
    /// link that leaves the origin or is not a URL, a `has_more` or total that the pages
    /// contradict, `max_pages` — leaves the run incomplete (spec §5.2): a newest-first
    /// watermark stays where it was, so the next run reads the pages this one did not.
    async fn pages(
        &self,
        parent: Option<Arc<serde_json::Map<String, Json>>>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, String> {
        let src = &self.src;
        let meta = self.store.meta(&src.name).map_err(|e| e.to_string())?;
        let watermark = self.ex.watermark(meta.watermark.as_ref());
        let mut fixed = Vec::new();
        if let Some(inc) = &src.incremental {
            let start = inc.start.as_ref().map(crate::nodes::eval::lit_value);
            if let (Some(param), Some(value)) = (&inc.param, watermark.clone().or(start)) {
                fixed.push((param.clone(), value.to_text()));
            }
        }
        let base = self.base_url(parent.as_deref())?;
        let body = match &src.body {
            Some(b) => Some(serde_json::to_vec(&body_json(b)).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut pager = Pager::new(&src.paginate, base, fixed);
        let mut url = pager.first();
        let newest_first = src.incremental.as_ref().is_some_and(|i| i.newest_first);
        loop {
            if self.stop.is_stopping() {
                return Ok(false);
            }
            let req = Request {
                post: src.method == Method::Post,
                url: url.clone(),
                body: body.clone(),
            };
            let resp = match self.client.fetch(&req, &self.stop).await {
                Ok(resp) => resp,
                // Interrupted, not failed: the page is fetched again next time.
                Err(_) if self.stop.is_stopping() => return Ok(false),
                Err(e) => return Err(e.message),
            };
            if pager.repeats_previous(&resp) {
                warnings.push(
                    "a page repeated the previous one byte for byte (a pagination loop)".into(),
                );
                return Ok(false);
            }
            let count = self.ex.count(&resp.body)?;
            let client = self.client.clone();
            let next = pager.next(&resp, count, &move |u: &Url| client.same_origin(u));
            let items = self.ex.items(resp.body)?;
            let older_seen = newest_first
                && watermark.as_ref().is_some_and(|w| {
                    items.refs().into_iter().any(|i| {
                        self.ex
                            .item_cursor(i, parent.as_deref())
                            .is_some_and(|c: Val| c.compare(w) == Some(Ordering::Less))
                    })
                });
            if self
                .tx
                .send(SourceMsg::Page(Page {
                    items,
                    parent: parent.clone(),
                }))
                .await
                .is_err()
            {
                return Err("the source's graph is gone".into());
            }
            if older_seen {
                return Ok(true);
            }
            match next {
                Next::Fetch(u) => url = u,
                Next::Done => return Ok(true),
                Next::Stop(w) | Next::Limit(w) => {
                    warnings.push(w);
                    return Ok(false);
                }
            }
        }
    }

    fn base_url(&self, parent: Option<&serde_json::Map<String, Json>>) -> Result<Url, String> {
        base_url(&self.src, &self.client, parent)
    }
}

/// The service's base URL joined with the source's path (placeholders filled from
/// the parent record, URL-encoded) and its `query`.
pub fn base_url(
    src: &Source,
    client: &ServiceClient,
    parent: Option<&serde_json::Map<String, Json>>,
) -> Result<Url, String> {
    let mut path = String::new();
    let mut rest = src.path.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        path.push_str(&rest[..open]);
        let field = &rest[open + 1..open + close];
        let value = parent
            .and_then(|p| p.get(field))
            .map(|v| Val::from_json(v).to_text())
            .unwrap_or_default();
        path.push_str(
            &percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        rest = &rest[open + close + 1..];
    }
    path.push_str(rest);
    let base = client.base.as_str().trim_end_matches('/');
    let joined = if path.is_empty() || path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    };
    let mut url = Url::parse(&joined).map_err(|e| {
        let shown = crate::nodes::net::api_text(&client.masker.mask(&joined), SHOWN);
        format!("bad URL `{shown}`: {e}")
    })?;
    if !src.query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in &src.query {
            q.append_pair(k, &v.value);
        }
    }
    Ok(url)
}

/// A `body { ... }` block as the JSON it sends.
pub fn body_json(b: &BodyValue) -> Json {
    match b {
        BodyValue::Null => Json::Null,
        BodyValue::Bool(x) => Json::Bool(*x),
        BodyValue::Number(n) => serde_json::from_str(n).unwrap_or(Json::Null),
        BodyValue::Text(t) => Json::String(t.value.clone()),
        BodyValue::List(items) => Json::Array(items.iter().map(body_json).collect()),
        BodyValue::Object(items) => Json::Object(
            items
                .iter()
                .map(|(k, v)| (k.clone(), body_json(v)))
                .collect(),
        ),
    }
}
