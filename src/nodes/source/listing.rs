//! The requests of one run of a source, page after page: the base URL with its path
//! placeholders filled, the run's query and body, and the paginator's next request.
//! The poller walks it, and so does `hamstr try`.

use super::http::{Request, Response, ServiceClient};
use super::paginate::{Next, Pager};
use super::request::RunRequest;
use crate::check::{Method, Source};
use crate::nodes::extract::Extractor;
use crate::nodes::net::SHOWN;
use crate::nodes::value::Val;
use crate::state::SourceMeta;
use serde_json::Value as Json;
use url::Url;

/// The requests of a run: built once from the source, its state and the parent record,
/// then moved on by each page.
pub struct Listing {
    run: RunRequest,
    pager: Pager,
    url: Url,
    post: bool,
}

impl Listing {
    /// The first request of a run of `src` whose state is `meta` (a default one for a
    /// run that keeps none), for `parent`'s record in a child source.
    pub fn new(
        src: &Source,
        client: &ServiceClient,
        ex: &Extractor,
        meta: &SourceMeta,
        parent: Option<&serde_json::Map<String, Json>>,
    ) -> Result<Listing, Failed> {
        let run = RunRequest::new(src, ex, meta)?;
        let base = base_url(src, client, parent, &run.query)?;
        let mut pager =
            Pager::new(&src.paginate, base, run.fixed.clone()).with_first(run.first_only.clone());
        let url = pager.first();
        Ok(Listing {
            run,
            pager,
            url,
            post: src.method == Method::Post,
        })
    }

    /// The URL of the request to send now.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The request to send now: its URL, and the body with the paginator's fields.
    pub fn request(&self) -> Result<Request, String> {
        let body = match self.run.body_with(self.pager.body_fields()) {
            Some(b) => Some(serde_json::to_vec(&b).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Request {
            post: self.post,
            url: self.url.clone(),
            body,
        })
    }

    /// The request to send now and, after it, up to `n - 1` that the paginator can
    /// name before their pages arrive ([`Pager::planned`]): the requests a run may
    /// have in flight together. Only the request to send now when it cannot.
    pub fn upcoming(&self, n: usize) -> Result<Vec<Request>, String> {
        let mut out = vec![self.request()?];
        for (url, fields) in self.pager.planned(n.saturating_sub(1)) {
            let body = match self.run.body_with(&fields) {
                Some(b) => Some(serde_json::to_vec(&b).map_err(|e| e.to_string())?),
                None => None,
            };
            out.push(Request {
                post: self.post,
                url,
                body,
            });
        }
        Ok(out)
    }

    /// Whether a page is the previous one again, byte for byte (a pagination loop).
    pub fn repeats_previous(&mut self, resp: &Response) -> bool {
        self.pager.repeats_previous(resp)
    }

    /// What follows a page of `count` records; with [`Next::Fetch`], the request to send
    /// now becomes that one.
    pub fn next(&mut self, resp: &Response, count: usize, client: &ServiceClient) -> Next {
        let next = self
            .pager
            .next(resp, count, &|u: &Url| client.same_origin(u));
        if let Next::Fetch(u) = &next {
            self.url = u.clone();
        }
        next
    }

    /// What the paginator noticed since last asked (a page shorter than asked).
    pub fn take_notes(&mut self) -> Vec<String> {
        self.pager.take_notes()
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
    url_of(&src.path, client, parent, query)
}

/// The service's base URL joined with `template`, its `{field}` placeholders filled from
/// `fields` (as [`base_url`] does for a child's path and `receive`'s `fetch`).
pub fn url_of(
    template: &str,
    client: &ServiceClient,
    parent: Option<&serde_json::Map<String, Json>>,
    query: &[(String, String)],
) -> Result<Url, Failed> {
    let mut path = String::new();
    let mut rest = template;
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
                "placeholder `{{{field}}}` is `{shown}` ({what}), which would change the path `{template}`: no request was made",
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
