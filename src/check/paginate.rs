//! A source's `paginate`: every paginator of spec §5.1, its arguments and `max_pages`;
//! and of §5.2a: `done` beside `has_more`, `header("Name")` for a path, `in = body`.

use super::diagnostic::did_you_mean;
use super::props::Signature;
use super::{Code, Ctx, Label, More, Paginate, Pick, DEFAULT_MAX_PAGES};
use crate::syntax::ast::{self, ExprKind};

pub(crate) const PAGINATORS: &[&str] = &[
    "none",
    "page",
    "offset",
    "cursor",
    "next_url",
    "link_header",
];

impl<'e> Ctx<'e> {
    /// The paginator of a source; `post` says whether the source sends a body (`in =
    /// body` needs one).
    pub(super) fn paginator(&mut self, e: &ast::Expr, post: bool) -> Option<Paginate> {
        let (name, args) = match &e.kind {
            ExprKind::Call { name, args } => (name, args.as_slice()),
            ExprKind::Name(parts) if parts.len() == 1 => (&parts[0], &[][..]),
            _ => {
                self.error(
                    Code::UnknownPaginator,
                    "`paginate` must be a paginator like `page(param = \"page\")`",
                    e.span,
                    "not a paginator",
                );
                return None;
            }
        };
        let sig = match name.name.as_str() {
            "none" => return Some(Paginate::None),
            "page" => Signature {
                name: "page",
                params: &[
                    "param",
                    "start",
                    "size_param",
                    "size",
                    "total_pages",
                    "has_more",
                    "done",
                    "in",
                    "max_pages",
                ],
                required: &[],
                positional: &[],
            },
            "offset" => Signature {
                name: "offset",
                params: &[
                    "param",
                    "start",
                    "limit_param",
                    "limit",
                    "total",
                    "has_more",
                    "done",
                    "in",
                    "max_pages",
                ],
                required: &[],
                positional: &[],
            },
            "cursor" => Signature {
                name: "cursor",
                params: &["param", "from", "has_more", "done", "in", "max_pages"],
                required: &["param", "from"],
                positional: &[],
            },
            "next_url" => Signature {
                name: "next_url",
                params: &["path", "has_more", "done", "max_pages"],
                required: &["path"],
                positional: &["path"],
            },
            "link_header" => Signature {
                name: "link_header",
                params: &["has_more", "done", "max_pages"],
                required: &[],
                positional: &[],
            },
            other => {
                let help = did_you_mean(other, PAGINATORS.iter().copied());
                self.error(
                    Code::UnknownPaginator,
                    format!("unknown paginator `{other}`"),
                    name.span,
                    "unknown paginator",
                )
                .help =
                    help.or_else(|| Some(format!("the paginators are: {}", PAGINATORS.join(", "))));
                return None;
            }
        };
        let a = self.call_args(&sig, args, name.span);
        let mut ok = true;
        let mut string = |ctx: &mut Self, key: &str, default: Option<&str>| -> Option<String> {
            match a.get(key) {
                Some(v) => match ctx.text(v, false, &format!("`{key}`")) {
                    Some(t) => Some(t.value),
                    None => {
                        ok = false;
                        None
                    }
                },
                None => default.map(str::to_string),
            }
        };
        let param = string(
            self,
            "param",
            Some(if name.name == "offset" {
                "offset"
            } else {
                "page"
            }),
        );
        let size_param = string(self, "size_param", None);
        let limit_param = string(self, "limit_param", None);
        let mut int = |ctx: &mut Self, key: &str, min: i64| -> Option<i64> {
            let v = a.get(key)?;
            let r = ctx.int(v, &format!("`{key}`"), min);
            if r.is_none() {
                ok = false;
            }
            r
        };
        let start = int(self, "start", i64::MIN);
        let size = int(self, "size", 1).map(|v| v as u64);
        let limit = int(self, "limit", 1).map(|v| v as u64);
        let max_pages = int(self, "max_pages", 1).map_or(DEFAULT_MAX_PAGES, |v| v as u64);
        let mut pick = |ctx: &mut Self, key: &str| -> Option<Pick> {
            let v = a.get(key)?;
            let r = ctx.pick(v, &format!("`{key}`"));
            if r.is_none() {
                ok = false;
            }
            r
        };
        let total_pages = pick(self, "total_pages");
        let total = pick(self, "total");
        let from = pick(self, "from");
        let has_more = pick(self, "has_more");
        let done = pick(self, "done");
        let next = pick(self, "path");
        let more = match (has_more, done) {
            (Some(_), Some(_)) => {
                let (h, d) = (a["has_more"].span, a["done"].span);
                self.error(
                    Code::ConflictingProperties,
                    format!("`{}` takes `has_more` or `done`, not both", name.name),
                    d,
                    "second stop flag",
                )
                .labels
                .push(Label {
                    span: h,
                    text: "first stop flag".into(),
                });
                ok = false;
                None
            }
            (Some(pick), None) => Some(More { pick, done: false }),
            (None, Some(pick)) => Some(More { pick, done: true }),
            (None, None) => None,
        };
        let in_body = match a.get("in") {
            None => false,
            Some(v) => match self.bare_name(v, "`in`").map(|n| n.name.as_str()) {
                Some("query") => false,
                Some("body") if post => true,
                Some("body") => {
                    self.error(
                        Code::ConflictingProperties,
                        "`in = body` needs a `post` source: a `get` request has no body",
                        v.span,
                        "no body to put it in",
                    )
                    .help = Some(
                        "use `post = \"/path\"` with a `body { ... }`, or leave `in` out to send it in the query"
                            .into(),
                    );
                    ok = false;
                    false
                }
                Some(other) => {
                    let help = did_you_mean(other, ["query", "body"]);
                    self.error(
                        Code::InvalidValue,
                        format!("unknown place `{other}`"),
                        v.span,
                        "expected `query` or `body`",
                    )
                    .help = help;
                    ok = false;
                    false
                }
                None => {
                    ok = false;
                    false
                }
            },
        };
        if !ok || sig.required.iter().any(|r| !a.contains_key(r)) {
            return None;
        }
        Some(match name.name.as_str() {
            "page" => Paginate::Page {
                param: param?,
                start: start.unwrap_or(1),
                size_param,
                size,
                total_pages,
                more,
                in_body,
                max_pages,
            },
            "offset" => Paginate::Offset {
                param: param?,
                start: start.unwrap_or(0),
                limit_param,
                limit,
                total,
                more,
                in_body,
                max_pages,
            },
            "cursor" => Paginate::Cursor {
                param: param?,
                from: from?,
                more,
                in_body,
                max_pages,
            },
            "next_url" => Paginate::NextUrl {
                path: next?,
                more,
                max_pages,
            },
            _ => Paginate::LinkHeader { more, max_pages },
        })
    }

    /// A value read from a response: a JSONPath into the body, or `header("Name")`.
    pub(super) fn pick(&mut self, v: &ast::Expr, what: &str) -> Option<Pick> {
        match &v.kind {
            ExprKind::Path(text) => self.json_path(text, v.span).map(Pick::Body),
            ExprKind::Call { name, args } if name.name == "header" => match args.as_slice() {
                [arg] if arg.name.is_none() => match &arg.value.kind {
                    ExprKind::Str(h)
                        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_ok() =>
                    {
                        Some(Pick::Header(h.to_ascii_lowercase()))
                    }
                    ExprKind::Str(h) => {
                        self.error(
                            Code::InvalidValue,
                            format!("`{h}` is not a header name"),
                            arg.value.span,
                            "not a header name",
                        );
                        None
                    }
                    _ => {
                        self.error(
                            Code::InvalidValue,
                            "`header` takes the header's name as a string",
                            arg.value.span,
                            "expected a string",
                        )
                        .help = Some("like `header(\"X-Total-Count\")`".into());
                        None
                    }
                },
                [] => {
                    self.error(
                        Code::MissingArgument,
                        "`header` needs the header's name",
                        v.span,
                        "like `header(\"X-Total-Count\")`",
                    );
                    None
                }
                [arg, ..] if arg.name.is_some() => {
                    self.error(
                        Code::UnknownArgument,
                        "`header` takes no named arguments",
                        arg.name.as_ref().map_or(arg.value.span, |n| n.span),
                        "named argument",
                    );
                    None
                }
                [_, rest @ ..] => {
                    let span = rest.first().map_or(v.span, |x| x.value.span);
                    self.error(
                        Code::UnknownArgument,
                        "`header` takes one argument, the header's name",
                        span,
                        "one argument too many",
                    );
                    None
                }
            },
            _ => {
                self.error(
                    Code::InvalidValue,
                    format!("{what} must be a JSONPath like `$.next` or `header(\"Name\")`"),
                    v.span,
                    "expected a JSONPath",
                );
                None
            }
        }
    }
}
