//! The source node: one run of a source — build requests, follow the paginator, parse
//! pages and hand them to the extract node; stop early for newest-first listings.

pub mod http;
pub mod paginate;
pub mod request;

use crate::check::{Method, Source};
use crate::nodes::extract::{Extractor, Page, RunSummary, SourceMsg};
use crate::nodes::net::SHOWN;
use crate::nodes::value::Val;
use crate::state::StateStore;
use crate::stop::Stop;
use http::{Request, ServiceClient};
use paginate::{Next, Pager};
use request::RunRequest;
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
            Err(Failed::Error(e)) => (false, Some(e)),
            // The parent record cannot name a request: it is rejected, with the reason,
            // and its request is done (asking again would name the same path).
            Err(Failed::Rejected(reason)) => {
                tracing::warn!(source = %name, reason = %reason, "a parent record names no request");
                let item = parent.as_ref().map_or(Json::Null, |(_, r)| r.clone());
                if self
                    .tx
                    .send(SourceMsg::Rejected { reason, item })
                    .await
                    .is_err()
                {
                    out.error = Some("the source's graph is gone".into());
                    return out;
                }
                (true, None)
            }
        };
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
    ) -> Result<bool, Failed> {
        let src = &self.src;
        let name = &src.name;
        let meta = self.store.meta(&src.name).map_err(|e| e.to_string())?;
        // The newest-first early stop is bounded by the watermark minus `lookback`.
        let watermark = self
            .ex
            .watermark(meta.watermark.as_ref())
            .map(|w| self.ex.floor(w));
        let run = RunRequest::new(src, &self.ex, &meta)?;
        let base = self.base_url(parent.as_deref(), &run.query)?;
        let mut pager =
            Pager::new(&src.paginate, base, run.fixed.clone()).with_first(run.first_only.clone());
        let mut url = pager.first();
        let resume = src
            .incremental
            .as_ref()
            .and_then(|i| i.resume.as_ref())
            .map(paginate::Picker::compile);
        let newest_first = src.incremental.as_ref().is_some_and(|i| i.newest_first);
        loop {
            if self.stop.is_stopping() {
                return Ok(false);
            }
            let body = match run.body_with(pager.body_fields()) {
                Some(b) => Some(serde_json::to_vec(&b).map_err(|e| e.to_string())?),
                None => None,
            };
            let req = Request {
                post: src.method == Method::Post,
                url: url.clone(),
                body,
            };
            let resp = match self.client.fetch(&req, &self.stop).await {
                Ok(resp) => resp,
                // Interrupted, not failed: the page is fetched again next time.
                Err(_) if self.stop.is_stopping() => return Ok(false),
                Err(e) => return Err(e.message.into()),
            };
            if pager.repeats_previous(&resp) {
                let w = "a page repeated the previous one byte for byte (a pagination loop)";
                tracing::warn!(source = %name, warning = %w, "pagination stopped early");
                warnings.push(w.into());
                return Ok(false);
            }
            let count = self.ex.count(&resp.body)?;
            let token = resume
                .as_ref()
                .and_then(|r| r.get(&resp))
                .and_then(|t| match t {
                    Json::Null => None,
                    Json::String(s) if s.is_empty() => None,
                    Json::String(s) => Some(s),
                    other => Some(other.to_string()),
                });
            let client = self.client.clone();
            let next = pager.next(&resp, count, &move |u: &Url| client.same_origin(u));
            for w in pager.take_notes() {
                tracing::warn!(source = %name, warning = %w, "the server sent fewer records than asked");
                warnings.push(w);
            }
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
                    resume: token,
                }))
                .await
                .is_err()
            {
                return Err("the source's graph is gone".to_string().into());
            }
            if older_seen {
                return Ok(true);
            }
            match next {
                Next::Fetch(u) => url = u,
                Next::Done => return Ok(true),
                Next::Stop(w) | Next::Limit(w) => {
                    tracing::warn!(source = %name, warning = %w, "pagination stopped early");
                    warnings.push(w);
                    return Ok(false);
                }
            }
        }
    }

    /// The service's base URL joined with the source's path (placeholders filled from
    /// the parent record, each a percent-encoded path segment) and its `query`. A
    /// placeholder value that is empty, `.` or `..` would name another path (`..` is
    /// resolved away, with the service's credentials): the record is rejected instead.
    fn base_url(
        &self,
        parent: Option<&serde_json::Map<String, Json>>,
        query: &[(String, String)],
    ) -> Result<Url, Failed> {
        base_url(&self.src, &self.client, parent, query)
    }
}

/// The service's base URL joined with the source's path (placeholders filled from the
/// parent record, each a percent-encoded path segment) and the run's `query`. A
/// placeholder value that is empty, `.` or `..` would name another path (`..` is
/// resolved away, with the service's credentials): the record is rejected instead.
pub fn base_url(
    src: &Source,
    client: &ServiceClient,
    parent: Option<&serde_json::Map<String, Json>>,
    query: &[(String, String)],
) -> Result<Url, Failed> {
    {
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
            if let Some(what) = match value.as_str() {
                "" => Some("empty"),
                "." | ".." => Some("a dot segment"),
                _ => None,
            } {
                let shown = crate::nodes::net::api_text(&value, SHOWN);
                return Err(Failed::Rejected(format!(
                    "placeholder `{{{field}}}` is `{shown}` ({what}), which would change the path `{}`: no request was made",
                    src.path
                )));
            }
            path.push_str(&percent_encoding::utf8_percent_encode(&value, SEGMENT).to_string());
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
            Failed::Error(format!("bad URL `{shown}`: {e}"))
        })?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

/// What a path segment keeps as it is: the unreserved characters of RFC 3986 §2.3
/// (letters, digits, `-`, `.`, `_`, `~`); everything else is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a run fetched nothing more.
#[derive(Debug)]
pub enum Failed {
    /// The run failed: the error names why.
    Error(String),
    /// The parent record names no request (a placeholder value that would change the
    /// path): the record is rejected with this reason.
    Rejected(String),
}

impl Failed {
    /// Why, in words.
    pub fn reason(self) -> String {
        match self {
            Failed::Error(e) | Failed::Rejected(e) => e,
        }
    }
}

impl From<String> for Failed {
    fn from(e: String) -> Failed {
        Failed::Error(e)
    }
}
