//! Paginators (spec §5.1): which request comes next, and when to stop — empty or short
//! pages, totals, `has_more`, `max_pages`, loops, and links that leave the origin.

use super::http::{link_next, Response};
use crate::check::Paginate;
use crate::nodes::eval::Path;
use crate::nodes::net::{api_text, SHOWN};
use crate::nodes::value::json_prefix;
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
        total_pages: Option<Path>,
    },
    Offset {
        param: String,
        limit_param: Option<String>,
        limit: Option<u64>,
        total: Option<Path>,
    },
    Cursor {
        param: String,
        from: Path,
        has_more: Option<Path>,
    },
    NextUrl(Path),
    LinkHeader,
}

/// The pagination of one run of one source.
pub struct Pager {
    kind: Kind,
    base: Url,
    /// Parameters the paginator adds to every request it builds.
    fixed: Vec<(String, String)>,
    position: i64,
    max_pages: u64,
    pages: u64,
    records: u64,
    /// A digest of each URL requested in this run: fixed-size, however long the URLs
    /// (an API's cursors may be megabytes).
    seen: HashSet<u128>,
    last_body: Option<u64>,
    /// Warnings that do not stop the listing (a server that caps page sizes), each
    /// given once a run; taken by [`Pager::take_notes`].
    notes: Vec<String>,
    capped: bool,
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
                    total_pages: total_pages.as_ref().map(Path::compile),
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
                    total: total.as_ref().map(Path::compile),
                },
                *start,
            ),
            Paginate::Cursor {
                param,
                from,
                has_more,
                ..
            } => (
                Kind::Cursor {
                    param: param.clone(),
                    from: Path::compile(from),
                    has_more: has_more.as_ref().map(Path::compile),
                },
                0,
            ),
            Paginate::NextUrl { path, .. } => (Kind::NextUrl(Path::compile(path)), 0),
            Paginate::LinkHeader { .. } => (Kind::LinkHeader, 0),
        };
        Pager {
            kind,
            base,
            fixed,
            position,
            max_pages: p.max_pages(),
            pages: 0,
            records: 0,
            seen: HashSet::new(),
            last_body: None,
            notes: Vec::new(),
            capped: false,
        }
    }

    /// The first request.
    pub fn first(&mut self) -> Url {
        let url = match &self.kind {
            Kind::Page {
                param,
                size_param,
                size,
                ..
            } => self.built(
                &[(param.clone(), self.position.to_string())],
                size_param.as_ref().zip(*size),
            ),
            Kind::Offset {
                param,
                limit_param,
                limit,
                ..
            } => self.built(
                &[(param.clone(), self.position.to_string())],
                limit_param.as_ref().zip(*limit),
            ),
            _ => self.built(&[], None),
        };
        self.seen.insert(digest(&url));
        url
    }

    fn built(&self, extra: &[(String, String)], size: Option<(&String, u64)>) -> Url {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.fixed {
                q.append_pair(k, v);
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
            if let Some((k, v)) = size {
                q.append_pair(k, &v.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
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
        if matches!(self.kind, Kind::None) {
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
                    .and_then(|p| p.get(&resp.body))
                    .and_then(as_i64);
                if count == 0 {
                    if let Some(t) = total.filter(|t| self.position <= *t) {
                        return Next::Stop(format!(
                            "page {} was empty, but `total_pages` says {t}",
                            self.position
                        ));
                    }
                    return Next::Done;
                }
                // A total decides the end: a short page does not (spec §5.2a).
                let short = size.filter(|s| (count as u64) < *s);
                match total {
                    Some(t) if self.position >= t => return Next::Done,
                    Some(_) => {}
                    None if short.is_some() => return Next::Done,
                    None => {}
                }
                let (param, size_param, size) = (param.clone(), size_param.clone(), *size);
                if let Some(asked) = short {
                    let what = format!("page {}", self.position);
                    self.note_capped(&what, count, asked, "total_pages");
                }
                self.position += 1;
                self.built(
                    &[(param, self.position.to_string())],
                    size_param.as_ref().zip(size),
                )
            }
            Kind::Offset {
                param,
                limit_param,
                limit,
                total,
            } => {
                let total = total
                    .as_ref()
                    .and_then(|p| p.get(&resp.body))
                    .and_then(as_i64);
                if count == 0 {
                    if let Some(t) = total.filter(|t| self.position < *t) {
                        return Next::Stop(format!(
                            "offset {} was empty, but `total` says {t}",
                            self.position
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
                // A total decides the end: a short page does not (spec §5.2a).
                let short = limit.filter(|l| (count as u64) < *l);
                match total {
                    Some(t) if self.position >= t => return Next::Done,
                    Some(_) => {}
                    None if short.is_some() => return Next::Done,
                    None => {}
                }
                let (param, limit_param, limit) = (param.clone(), limit_param.clone(), *limit);
                if let Some(asked) = short {
                    let what = format!("the page at offset {}", self.position - count as i64);
                    self.note_capped(&what, count, asked, "total");
                }
                self.built(
                    &[(param, self.position.to_string())],
                    limit_param.as_ref().zip(limit),
                )
            }
            Kind::Cursor {
                param,
                from,
                has_more,
            } => {
                let more = has_more
                    .as_ref()
                    .and_then(|p| p.get(&resp.body))
                    .and_then(Json::as_bool);
                if more == Some(false) {
                    return Next::Done;
                }
                let token = match from.get(&resp.body) {
                    None | Some(Json::Null) => None,
                    Some(Json::String(s)) if s.is_empty() => None,
                    Some(Json::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                };
                match token {
                    None if more == Some(true) => {
                        return Next::Stop("`has_more` is true, but the cursor is empty".into())
                    }
                    None => return Next::Done,
                    Some(t) => {
                        if count == 0 && more == Some(true) {
                            return Next::Stop("`has_more` is true, but the page was empty".into());
                        }
                        self.built(&[(param.clone(), t)], None)
                    }
                }
            }
            Kind::NextUrl(path) => match path.get(&resp.body) {
                None | Some(Json::Null) => return Next::Done,
                Some(Json::String(s)) if s.is_empty() => return Next::Done,
                Some(Json::String(s)) => match resp.url.join(s) {
                    Ok(u) => u,
                    Err(e) => {
                        return Next::Stop(format!(
                            "the next link `{}` is not a URL: {e}",
                            api_text(s, SHOWN)
                        ))
                    }
                },
                Some(other) => {
                    let (text, cut) = json_prefix(other, SHOWN);
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
        if !self.seen.insert(digest(&next)) {
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

fn as_i64(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A digest of a URL with its query parameters sorted, to compare requests.
fn digest(url: &Url) -> u128 {
    let mut pairs: Vec<_> = url.query_pairs().collect();
    pairs.sort();
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(bare.as_str().as_bytes());
    for (k, v) in &pairs {
        for part in [k, v] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    h.digest128()
}

#[cfg(test)]
mod tests;
