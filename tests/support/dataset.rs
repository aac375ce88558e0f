//! A dataset served at one path: its records, order, `since` filter, and the rendering
//! of one page in its pagination style.

use serde_json::{json, Value};

use super::http::Reply;
use super::paging::{
    compare, cursor_token, parse_cursor_token, put, text_of, CursorNext, Order, Paging,
};

#[derive(Clone, Debug)]
pub(crate) struct Dataset {
    pub records: Vec<Value>,
    /// `(after_hits, records)`: pushed before the request numbered `after_hits + 1`.
    pub pending: Vec<(usize, Vec<Value>)>,
    pub paging: Paging,
    pub order: Order,
    /// `(param, field)`: only records with `field >= ?param=` are listed.
    pub since: Option<(String, String)>,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            records: Vec::new(),
            pending: Vec::new(),
            paging: Paging::none(),
            order: Order::Inserted,
            since: None,
        }
    }
}

/// Pagination-loop faults that change an otherwise normal page.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkMods {
    pub next_to_page: Option<u64>,
    pub next_origin: Option<String>,
    pub repeat_cursor: bool,
}

/// What a page is rendered from.
pub(crate) struct Ctx<'a> {
    /// `http://127.0.0.1:PORT`
    pub base: &'a str,
    /// The request's path as sent.
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// A query parameter never copied into generated links (the auth key).
    pub strip: Option<&'a str>,
    pub mods: LinkMods,
}

impl Ctx<'_> {
    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The link to `page` on `origin` (default: this server), relative when asked.
    fn link(&self, page: u64, origin: Option<&str>, relative: bool) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.query {
            if k != "page" && Some(k.as_str()) != self.strip {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("page", &page.to_string());
        let path_query = format!("{}?{}", self.path, ser.finish());
        match origin {
            Some(o) => format!("{}{}", o.trim_end_matches('/'), path_query),
            None if relative => path_query,
            None => format!("{}{}", self.base, path_query),
        }
    }

    /// The page's next link after loop faults; `natural` is the page that would follow.
    fn next_link(&self, current: u64, natural: Option<u64>, relative: bool) -> Option<String> {
        let m = &self.mods;
        if let Some(p) = m.next_to_page {
            return Some(self.link(p, None, relative));
        }
        if m.repeat_cursor {
            return Some(self.link(current, None, relative));
        }
        if let Some(origin) = &m.next_origin {
            return Some(self.link(current + 1, Some(origin), relative));
        }
        natural.map(|p| self.link(p, None, relative))
    }
}

fn at_least(field: Option<&Value>, bound: &str) -> bool {
    match field {
        None | Some(Value::Null) => false,
        Some(Value::Number(n)) => match (n.as_f64(), bound.parse::<f64>()) {
            (Some(x), Ok(y)) => x >= y,
            _ => n.to_string().as_str() >= bound,
        },
        Some(v) => text_of(v).as_str() >= bound,
    }
}

impl Dataset {
    /// Applies pushes that are due before the request numbered `hit` (1-based).
    pub fn apply_pending(&mut self, hit: usize) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(after, _)| *after < hit);
        self.pending = later;
        for (_, records) in due {
            self.records.extend(records);
        }
    }

    /// The records as listed: filtered by `since`, then ordered.
    pub fn view(&self, query: &[(String, String)]) -> Vec<Value> {
        let bound = self.since.as_ref().and_then(|(param, field)| {
            query
                .iter()
                .find(|(k, _)| k == param)
                .map(|(_, v)| (v.clone(), field.clone()))
        });
        let mut out: Vec<Value> = self
            .records
            .iter()
            .filter(|r| match &bound {
                Some((b, field)) => at_least(r.get(field), b),
                None => true,
            })
            .cloned()
            .collect();
        match &self.order {
            Order::Inserted => {}
            Order::Ascending(f) => out.sort_by(|a, b| compare(a.get(f), b.get(f))),
            Order::Descending(f) => out.sort_by(|a, b| compare(b.get(f), a.get(f))),
        }
        out
    }

    pub fn render(&self, ctx: &Ctx) -> Reply {
        match self.try_render(ctx) {
            Ok(reply) => reply,
            Err(msg) => Reply::error(400, &msg),
        }
    }

    fn try_render(&self, ctx: &Ctx) -> Result<Reply, String> {
        let view = self.view(ctx.query);
        let n = view.len();
        let slice = |from: usize, len: usize| -> Value {
            let from = from.min(n);
            Value::Array(view[from..(from + len).min(n)].to_vec())
        };
        let num = |name: &str| -> Result<Option<u64>, String> {
            match ctx.q(name) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("bad {name}: {v:?}")),
            }
        };
        let size_of = |param: &Option<String>, default: usize| -> Result<usize, String> {
            let size = match param {
                Some(p) => num(p)?.map_or(default, |v| v as usize),
                None => default,
            };
            if size == 0 {
                Err("page size must be positive".into())
            } else {
                Ok(size)
            }
        };

        match &self.paging {
            Paging::None { records_key } => Ok(Reply::json(&match records_key {
                None => Value::Array(view),
                Some(key) => {
                    let mut body = json!({});
                    put(&mut body, key, Value::Array(view));
                    body
                }
            })),
            Paging::Page {
                param,
                start,
                size_param,
                default_size,
                records_key,
                total_pages_key,
            } => {
                let page = match ctx.q(param) {
                    None => *start,
                    Some(v) => v
                        .parse::<i64>()
                        .map_err(|_| format!("bad {param}: {v:?}"))?,
                };
                let size = size_of(size_param, *default_size)?;
                let mut body = json!({});
                let records = if page < *start {
                    json!([])
                } else {
                    slice((page - start) as usize * size, size)
                };
                put(&mut body, records_key, records);
                if let Some(key) = total_pages_key {
                    put(&mut body, key, json!(n.div_ceil(size)));
                }
                Ok(Reply::json(&body))
            }
            Paging::Offset {
                param,
                limit_param,
                default_limit,
                records_key,
                total_key,
            } => {
                let offset = num(param)?.unwrap_or(0) as usize;
                let limit = size_of(limit_param, *default_limit)?;
                let mut body = json!({});
                put(&mut body, records_key, slice(offset, limit));
                if let Some(key) = total_key {
                    put(&mut body, key, json!(n));
                }
                Ok(Reply::json(&body))
            }
            Paging::Cursor {
                param,
                limit_param,
                page_size,
                records_key,
                next,
                has_more_key,
            } => {
                let size = size_of(limit_param, *page_size)?;
                let got = ctx.q(param);
                let mut body = json!({});
                let has_more = match next {
                    CursorNext::Token { pointer } => {
                        let from = match got {
                            None => 0,
                            Some(t) => parse_cursor_token(t)
                                .ok_or_else(|| format!("invalid cursor {t:?}"))?,
                        };
                        let end = (from + size).min(n);
                        put(&mut body, records_key, slice(from, size));
                        let next_token = if ctx.mods.repeat_cursor {
                            Some(got.map_or_else(|| cursor_token(from), str::to_string))
                        } else if end < n {
                            Some(cursor_token(end))
                        } else {
                            None
                        };
                        let more = next_token.is_some();
                        put(
                            &mut body,
                            pointer,
                            next_token.map_or(Value::Null, Value::String),
                        );
                        more
                    }
                    CursorNext::LastId { id_field } => {
                        let from = match got {
                            None => 0,
                            Some(id) => {
                                view.iter()
                                    .position(|r| {
                                        r.get(id_field).map(text_of).as_deref() == Some(id)
                                    })
                                    .ok_or_else(|| format!("no such object: {id:?}"))?
                                    + 1
                            }
                        };
                        if ctx.mods.repeat_cursor && from > 0 {
                            // the page that ends with the record just named: its last
                            // id is the cursor the client already sent
                            let first = from.saturating_sub(size);
                            put(&mut body, records_key, slice(first, from - first));
                            true
                        } else {
                            put(&mut body, records_key, slice(from, size));
                            from + size < n
                        }
                    }
                };
                if let Some(key) = has_more_key {
                    put(&mut body, key, json!(has_more));
                }
                Ok(Reply::json(&body))
            }
            Paging::NextUrl {
                records_pointer,
                next_pointer,
                page_size,
                relative,
            } => {
                let page = num("page")?.unwrap_or(1).max(1);
                let from = (page as usize - 1) * page_size;
                let natural = (from + page_size < n).then_some(page + 1);
                let mut body = json!({});
                put(&mut body, records_pointer, slice(from, *page_size));
                if let Some(next) = ctx.next_link(page, natural, *relative) {
                    put(&mut body, next_pointer, json!(next));
                }
                Ok(Reply::json(&body))
            }
            Paging::LinkHeader {
                per_page_param,
                default_per_page,
                relative,
            } => {
                let page = num("page")?.unwrap_or(1).max(1);
                let per = size_of(per_page_param, *default_per_page)?;
                let from = (page as usize - 1) * per;
                let last = n.div_ceil(per).max(1) as u64;
                let natural = (from + per < n).then_some(page + 1);
                // first, prev, next, last: `next` is never the first entry
                let mut links = vec![format!("<{}>; rel=\"first\"", ctx.link(1, None, *relative))];
                if page > 1 {
                    let prev = ctx.link(page - 1, None, *relative);
                    links.push(format!("<{prev}>; rel=\"prev\""));
                }
                if let Some(next) = ctx.next_link(page, natural, *relative) {
                    links.push(format!("<{next}>; rel=\"next\""));
                }
                links.push(format!(
                    "<{}>; rel=\"last\"",
                    ctx.link(last, None, *relative)
                ));
                let mut reply = Reply::json(&slice(from, per));
                reply = reply.with_header("link", links.join(", "));
                Ok(reply)
            }
        }
    }
}
