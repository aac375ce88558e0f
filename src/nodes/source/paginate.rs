//! Paginators (spec §5.1, §5.2a): which request comes next — its query, or its body
//! fields with `in = body` — and when to stop: empty or short pages, totals, `has_more`
//! or `done`, `max_pages`, loops, and links that leave the origin.

pub mod pick;

use super::http::{link_next, Response};
use crate::check::Paginate;
use crate::nodes::net::{api_text, SHOWN};
use crate::nodes::value::json_prefix;
pub use pick::Picker;
use pick::{as_i64, Flag};
use serde_json::Value as Json;
use std::collections::HashSet;
use url::Url;

/// What to do after a page.
#[derive(Debug, PartialEq)]
pub enum Next {
    Fetch(Url),
    /// The last page was reached.
    Done,
    /// Stopped early for a reason worth a warning; the listing was not seen to its end.
    Stop(String),
    /// `max_pages` was reached: stop, with a warning.
    Limit(String),
}

enum Kind {
    None,
    Page {
        param: String,
        size_param: Option<String>,
        size: Option<u64>,
        total_pages: Option<Picker>,
    },
    Offset {
        param: String,
        limit_param: Option<String>,
        limit: Option<u64>,
        total: Option<Picker>,
    },
    Cursor {
        param: String,
        from: Picker,
    },
    NextUrl(Picker),
    LinkHeader,
}

/// The pagination of one run of one source.
pub struct Pager {
    kind: Kind,
    /// `has_more` or `done`.
    flag: Option<Flag>,
    /// `in = body`: the paginator's values go in the request body, not the query.
    in_body: bool,
    base: Url,
    /// Parameters the paginator adds to every request it builds.
    fixed: Vec<(String, String)>,
    /// Parameters of the first request only (a stored resume token), unless the
    /// paginator sets the same name itself.
    first_only: Vec<(String, String)>,
    /// The body fields of the request last built (`in = body`), by dotted name.
    body: Vec<(String, Json)>,
    position: i64,
    max_pages: u64,
    pages: u64,
    records: u64,
    /// A digest of each request made in this run (its URL and body fields): fixed-size,
    /// however long the URLs (an API's cursors may be megabytes).
    seen: HashSet<u128>,
    last_body: Option<u64>,
    /// Warnings that do not stop the listing (a server that caps page sizes), each
    /// given once a run; taken by [`Pager::take_notes`].
    notes: Vec<String>,
    capped: bool,
    /// The total (`total_pages` or `total`) the last page gave, with which the
    /// requests that follow can be named before their pages arrive ([`Pager::planned`]).
    known_total: Option<i64>,
    /// How many records the last page held: an `offset` listing's step while its pages
    /// stay full.
    step: u64,
}

impl Pager {
    /// `base` is the source's URL with its `query` applied; `fixed` are further
    /// parameters for built requests (the incremental watermark).
    pub fn new(p: &Paginate, base: Url, fixed: Vec<(String, String)>) -> Pager {
        let (kind, position) = match p {
            Paginate::None => (Kind::None, 0),
            Paginate::Page {
                param,
                start,
                size_param,
                size,
                total_pages,
                ..
            } => (
                Kind::Page {
                    param: param.clone(),
                    size_param: size_param.clone(),
                    size: *size,
                    total_pages: total_pages.as_ref().map(Picker::compile),
                },
                *start,
            ),
            Paginate::Offset {
                param,
                start,
                limit_param,
                limit,
                total,
                ..
            } => (
                Kind::Offset {
                    param: param.clone(),
                    limit_param: limit_param.clone(),
                    limit: *limit,
                    total: total.as_ref().map(Picker::compile),
                },
                *start,
            ),
            Paginate::Cursor { param, from, .. } => (
                Kind::Cursor {
                    param: param.clone(),
                    from: Picker::compile(from),
                },
                0,
            ),
            Paginate::NextUrl { path, .. } => (Kind::NextUrl(Picker::compile(path)), 0),
            Paginate::LinkHeader { .. } => (Kind::LinkHeader, 0),
        };
        Pager {
            kind,
            flag: p.more().map(Flag::compile),
            in_body: p.in_body(),
            base,
            fixed,
            first_only: Vec::new(),
            body: Vec::new(),
            position,
            max_pages: p.max_pages(),
            pages: 0,
            records: 0,
            seen: HashSet::new(),
            last_body: None,
            notes: Vec::new(),
            capped: false,
            known_total: None,
            step: 0,
        }
    }

    /// Parameters for the first request only: the token a run resumes from.
    pub fn with_first(mut self, params: Vec<(String, String)>) -> Pager {
        self.first_only = params;
        self
    }

    /// The first request.
    pub fn first(&mut self) -> Url {
        let first = std::mem::take(&mut self.first_only);
        let url = match &self.kind {
            Kind::Page {
                param,
                size_param,
                size,
                ..
            } => {
                let (param, size) = (param.clone(), size_param.clone().zip(*size));
                self.built(&first, &[(param, Json::from(self.position))], size)
            }
            Kind::Offset {
                param,
                limit_param,
                limit,
                ..
            } => {
                let (param, limit) = (param.clone(), limit_param.clone().zip(*limit));
                self.built(&first, &[(param, Json::from(self.position))], limit)
            }
            _ => self.built(&first, &[], None),
        };
        self.seen.insert(self.digest(&url));
        url
    }

    /// The body fields the paginator set for the request it built last (`in = body`),
    /// by dotted name.
    pub fn body_fields(&self) -> &[(String, Json)] {
        &self.body
    }

    /// Builds a request and keeps its body fields as the request built last.
    fn built(
        &mut self,
        first: &[(String, String)],
        extra: &[(String, Json)],
        size: Option<(String, u64)>,
    ) -> Url {
        let (url, body) = self.build(first, extra, size);
        self.body = body;
        url
    }

    /// A request: the base URL, the fixed parameters, `first` (unless the paginator
    /// sets the same name), and the paginator's own values (`extra` and the size) in
    /// the query, or with `in = body` in the body fields it returns beside the URL.
    fn build(
        &self,
        first: &[(String, String)],
        extra: &[(String, Json)],
        size: Option<(String, u64)>,
    ) -> (Url, Vec<(String, Json)>) {
        let mut own: Vec<(String, Json)> = extra.to_vec();
        if let Some((k, v)) = size {
            own.push((k, Json::from(v)));
        }
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.fixed {
                q.append_pair(k, v);
            }
            for (k, v) in first {
                if !own.iter().any(|(o, _)| o == k) {
                    q.append_pair(k, v);
                }
            }
            if !self.in_body {
                for (k, v) in &own {
                    q.append_pair(k, &as_text(v));
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let body = if self.in_body { own } else { Vec::new() };
        (url, body)
    }

    /// The requests that follow the one to send now, at most `n`, as URLs and body
    /// fields, when the paginator can name them without their pages: `page` or
    /// `offset` whose last page gave its total, so that the listing's end is known
    /// (an `offset` is assumed to step by the last page's count). Fewer when the total
    /// or `max_pages` comes first; none for the other paginators. They are guesses:
    /// [`Pager::next`] still decides each request from the page before it, and a guess
    /// it does not confirm is dropped (spec §5.1, pages in flight).
    pub fn planned(&self, n: usize) -> Vec<(Url, Vec<(String, Json)>)> {
        let Some(total) = self.known_total else {
            return Vec::new();
        };
        // The request to send now is the `pages + 1`th; `max_pages` counts it too.
        let left = self.max_pages.saturating_sub(self.pages.saturating_add(1));
        let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        let (param, size, step, end) = match &self.kind {
            Kind::Page {
                param,
                size_param,
                size,
                ..
            } => (param, size_param.clone().zip(*size), 1, total),
            Kind::Offset {
                param,
                limit_param,
                limit,
                ..
            } if self.step > 0 => {
                let step = i64::try_from(self.step).unwrap_or(i64::MAX);
                // The last offset is the one below the total.
                (param, limit_param.clone().zip(*limit), step, total - 1)
            }
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut at = self.position;
        while out.len() < n {
            match at.checked_add(step) {
                Some(next) if next <= end => at = next,
                _ => break,
            }
            out.push(self.build(&[], &[(param.clone(), Json::from(at))], size.clone()));
        }
        out
    }

    /// A digest of a request, to compare requests: the URL with its query parameters
    /// sorted, and the body fields the paginator set.
    fn digest(&self, url: &Url) -> u128 {
        let mut pairs: Vec<_> = url.query_pairs().collect();
        pairs.sort();
        let mut bare = url.clone();
        bare.set_query(None);
        bare.set_fragment(None);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(bare.as_str().as_bytes());
        let body: Vec<(String, String)> = self
            .body
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        for (k, v) in pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .chain([("", "")])
            .chain(body.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            for part in [k, v] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        h.digest128()
    }

    /// Warnings about the pages so far that did not stop the listing.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Notes, once a run, a page shorter than the size asked for that is not the last.
    fn note_capped(&mut self, what: &str, count: usize, asked: u64, total: &str) {
        if !self.capped {
            self.capped = true;
            self.notes.push(format!(
                "{what} held {count} records where {asked} were asked for: the server caps its page size; `{total}` decides where the listing ends"
            ));
        }
    }

    /// Whether this page repeats the previous one byte for byte (a loop).
    pub fn repeats_previous(&mut self, resp: &Response) -> bool {
        let same = self.last_body == Some(resp.body_hash);
        self.last_body = Some(resp.body_hash);
        same && self.pages > 0
    }

    /// Decides the next request from a page and the number of records it held.
    pub fn next(
        &mut self,
        resp: &Response,
        count: usize,
        same_origin: &dyn Fn(&Url) -> bool,
    ) -> Next {
        self.pages += 1;
        self.records += count as u64;
        self.known_total = None;
        self.step = count as u64;
        if matches!(self.kind, Kind::None) {
            return Next::Done;
        }
        // `has_more`/`done`: a page that says it is the last ends the listing.
        let more = self.flag.as_ref().and_then(|f| f.more(resp));
        let flag = self.flag.as_ref().map_or("has_more", Flag::name);
        if more == Some(false) {
            return Next::Done;
        }
        let next = match &self.kind {
            Kind::None => return Next::Done,
            Kind::Page {
                param,
                size_param,
                size,
                total_pages,
            } => {
                let total = total_pages
                    .as_ref()
                    .and_then(|p| p.get(resp))
                    .as_ref()
                    .and_then(as_i64);
                if count == 0 {
                    if let Some(t) = total.filter(|t| self.position <= *t) {
                        return Next::Stop(format!(
                            "page {} was empty, but `total_pages` says {t}",
                            self.position
                        ));
                    }
                    if more == Some(true) {
                        return Next::Stop(format!(
                            "`{flag}` says more follow, but the page was empty"
                        ));
                    }
                    return Next::Done;
                }
                // A total (or a stop flag) decides the end: a short page does not
                // (spec §5.2a).
                let short = size.filter(|s| (count as u64) < *s);
                self.known_total = total;
                match total {
                    Some(t) if self.position >= t => return Next::Done,
                    None if short.is_some() && more.is_none() => return Next::Done,
                    _ => {}
                }
                let decides = if total.is_some() { "total_pages" } else { flag };
                let (param, size) = (param.clone(), size_param.clone().zip(*size));
                if let Some(asked) = short {
                    let what = format!("page {}", self.position);
                    self.note_capped(&what, count, asked, decides);
                }
                self.position += 1;
                self.built(&[], &[(param, Json::from(self.position))], size)
            }
            Kind::Offset {
                param,
                limit_param,
                limit,
                total,
            } => {
                let total = total
                    .as_ref()
                    .and_then(|p| p.get(resp))
                    .as_ref()
                    .and_then(as_i64);
                if count == 0 {
                    if let Some(t) = total.filter(|t| self.position < *t) {
                        return Next::Stop(format!(
                            "offset {} was empty, but `total` says {t}",
                            self.position
                        ));
                    }
                    if more == Some(true) {
                        return Next::Stop(format!(
                            "`{flag}` says more follow, but the page was empty"
                        ));
                    }
                    return Next::Done;
                }
                self.position += count as i64;
                if let Some(t) = total.filter(|t| self.position > *t) {
                    return Next::Stop(format!(
                        "the pages held {} records, but `total` says {t}",
                        self.position
                    ));
                }
                // A total (or a stop flag) decides the end: a short page does not
                // (spec §5.2a).
                let short = limit.filter(|l| (count as u64) < *l);
                self.known_total = total;
                match total {
                    Some(t) if self.position >= t => return Next::Done,
                    None if short.is_some() && more.is_none() => return Next::Done,
                    _ => {}
                }
                let decides = if total.is_some() { "total" } else { flag };
                let (param, limit) = (param.clone(), limit_param.clone().zip(*limit));
                if let Some(asked) = short {
                    let what = format!("the page at offset {}", self.position - count as i64);
                    self.note_capped(&what, count, asked, decides);
                }
                self.built(&[], &[(param, Json::from(self.position))], limit)
            }
            Kind::Cursor { param, from } => {
                let token = match from.get(resp) {
                    None | Some(Json::Null) => None,
                    Some(Json::String(s)) if s.is_empty() => None,
                    Some(other) => Some(other),
                };
                match token {
                    None if more == Some(true) => {
                        return Next::Stop(format!(
                            "`{flag}` says more follow, but the cursor is empty"
                        ))
                    }
                    None => return Next::Done,
                    Some(t) => {
                        if count == 0 && more == Some(true) {
                            return Next::Stop(format!(
                                "`{flag}` says more follow, but the page was empty"
                            ));
                        }
                        // In the query a cursor is text; in a body it keeps its JSON
                        // type (a number stays a number).
                        let t = if self.in_body {
                            t
                        } else {
                            Json::String(as_text(&t))
                        };
                        let param = param.clone();
                        self.built(&[], &[(param, t)], None)
                    }
                }
            }
            Kind::NextUrl(path) => match path.get(resp) {
                None | Some(Json::Null) => return Next::Done,
                Some(Json::String(s)) if s.is_empty() => return Next::Done,
                Some(Json::String(s)) => match resp.url.join(&s) {
                    Ok(u) => u,
                    Err(e) => {
                        return Next::Stop(format!(
                            "the next link `{}` is not a URL: {e}",
                            api_text(&s, SHOWN)
                        ))
                    }
                },
                Some(other) => {
                    let (text, cut) = json_prefix(&other, SHOWN);
                    let text = if cut { text + "…" } else { text };
                    return Next::Stop(format!(
                        "the next link is {}, not a string",
                        api_text(&text, SHOWN)
                    ));
                }
            },
            Kind::LinkHeader => match link_next(&resp.headers) {
                None => return Next::Done,
                Some(s) => match resp.url.join(&s) {
                    Ok(u) => u,
                    Err(e) => {
                        return Next::Stop(format!(
                            "the Link header's next `{}` is not a URL: {e}",
                            api_text(&s, SHOWN)
                        ))
                    }
                },
            },
        };
        if !same_origin(&next) {
            return Next::Stop(format!(
                "the next page is on another origin ({}) and was not followed",
                api_text(&next.origin().ascii_serialization(), SHOWN)
            ));
        }
        if !self.seen.insert(self.digest(&next)) {
            return Next::Stop(
                "the next page was already requested in this run (a pagination loop)".into(),
            );
        }
        if self.pages >= self.max_pages {
            return Next::Limit(format!(
                "stopped after `max_pages` = {} pages",
                self.max_pages
            ));
        }
        Next::Fetch(next)
    }
}

/// A value as a query parameter carries it: a string as it is, anything else as JSON.
fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
