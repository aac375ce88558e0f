//! A source's `paginate`: every paginator of spec §5.1, its arguments and `max_pages`.

use super::diagnostic::did_you_mean;
use super::props::Signature;
use super::{Code, Ctx, Paginate, DEFAULT_MAX_PAGES};
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
    pub(super) fn paginator(&mut self, e: &ast::Expr) -> Option<Paginate> {
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
                    "max_pages",
                ],
                required: &[],
                positional: &[],
            },
            "cursor" => Signature {
                name: "cursor",
                params: &["param", "from", "has_more", "max_pages"],
                required: &["param", "from"],
                positional: &[],
            },
            "next_url" => Signature {
                name: "next_url",
                params: &["path", "max_pages"],
                required: &["path"],
                positional: &["path"],
            },
            "link_header" => Signature {
                name: "link_header",
                params: &["max_pages"],
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
        let mut path = |ctx: &mut Self, key: &str| -> Option<super::JsonPath> {
            let v = a.get(key)?;
            let r = match &v.kind {
                ExprKind::Path(text) => ctx.json_path(text, v.span),
                _ => {
                    ctx.error(
                        Code::InvalidValue,
                        format!("`{key}` must be a JSONPath like `$.next`"),
                        v.span,
                        "expected a JSONPath",
                    );
                    None
                }
            };
            if r.is_none() {
                ok = false;
            }
            r
        };
        let total_pages = path(self, "total_pages");
        let total = path(self, "total");
        let from = path(self, "from");
        let has_more = path(self, "has_more");
        let next = path(self, "path");
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
                max_pages,
            },
            "offset" => Paginate::Offset {
                param: param?,
                start: start.unwrap_or(0),
                limit_param,
                limit,
                total,
                max_pages,
            },
            "cursor" => Paginate::Cursor {
                param: param?,
                from: from?,
                has_more,
                max_pages,
            },
            "next_url" => Paginate::NextUrl {
                path: next?,
                max_pages,
            },
            _ => Paginate::LinkHeader { max_pages },
        })
    }
}
