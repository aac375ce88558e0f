//! The constant values properties and arguments hold: strings and `env()`, numbers,
//! durations, rates and URLs.

use super::{Code, Ctx, Rate, Text};
use crate::syntax::ast::{Arg, Expr, ExprKind};
use crate::syntax::Span;

impl<'e> Ctx<'e> {
    /// A string literal or `env(...)`; `secret` marks env values used where they are
    /// secrets (auth, headers, query, body).
    pub fn text(&mut self, e: &Expr, secret: bool, what: &str) -> Option<Text> {
        match &e.kind {
            ExprKind::Str(s) => Some(Text::plain(s.clone())),
            ExprKind::Call { name, args } if name.name == "env" => {
                self.env_call(e.span, args, secret)
            }
            _ => {
                self.error(
                    Code::InvalidValue,
                    format!("{what} must be a string or `env(...)`"),
                    e.span,
                    "expected a string",
                );
                None
            }
        }
    }

    /// Like [`Ctx::text`], but numbers and booleans are written out as text too.
    pub fn scalar_text(&mut self, e: &Expr, secret: bool, what: &str) -> Option<Text> {
        match &e.kind {
            ExprKind::Number(n) => Some(Text::plain(n.clone())),
            ExprKind::Bool(b) => Some(Text::plain(b.to_string())),
            ExprKind::Unary(crate::syntax::ast::UnaryOp::Neg, inner) => match &inner.kind {
                ExprKind::Number(n) => Some(Text::plain(format!("-{n}"))),
                _ => self.text(e, secret, what),
            },
            _ => self.text(e, secret, what),
        }
    }

    fn env_call(&mut self, span: Span, args: &[Arg], secret: bool) -> Option<Text> {
        let mut strings = Vec::new();
        for a in args {
            if let Some(n) = &a.name {
                self.error(
                    Code::UnknownArgument,
                    "`env` takes no named arguments",
                    n.span,
                    "unknown argument",
                );
                return None;
            }
            match &a.value.kind {
                ExprKind::Str(s) => strings.push((s.clone(), a.value.span)),
                _ => {
                    self.error(
                        Code::InvalidValue,
                        "`env` takes string literals",
                        a.value.span,
                        "expected a string",
                    );
                    return None;
                }
            }
        }
        let (name, name_span) = match strings.as_slice() {
            [(n, s)] | [(n, s), _] => (n.clone(), *s),
            [] => {
                self.error(
                    Code::MissingArgument,
                    "`env` needs the variable's name",
                    span,
                    "like `env(\"TOKEN\")`",
                );
                return None;
            }
            _ => {
                self.error(
                    Code::UnknownArgument,
                    "`env` takes a name and an optional default",
                    strings[2].1,
                    "one argument too many",
                );
                return None;
            }
        };
        let value = match ((self.env)(&name), strings.get(1)) {
            (Some(v), _) => v,
            (None, Some((default, _))) => default.clone(),
            (None, None) => {
                self.unset_env.push(span);
                self.warn(
                    Code::EnvNotSet,
                    format!("environment variable `{name}` is not set and has no default"),
                    name_span,
                    "not set",
                )
                .help = Some(format!(
                    "set {name}, or give a default: `env(\"{name}\", \"...\")`"
                ));
                String::new()
            }
        };
        Some(Text { value, secret })
    }

    pub fn int(&mut self, e: &Expr, what: &str, min: i64) -> Option<i64> {
        let (text, neg) = match &e.kind {
            ExprKind::Number(n) => (n.as_str(), false),
            ExprKind::Unary(crate::syntax::ast::UnaryOp::Neg, inner) => match &inner.kind {
                ExprKind::Number(n) => (n.as_str(), true),
                _ => ("", false),
            },
            _ => ("", false),
        };
        match text.parse::<i64>() {
            Ok(v) => {
                let v = if neg { -v } else { v };
                if v < min {
                    self.error(
                        Code::InvalidValue,
                        format!("{what} must be at least {min}"),
                        e.span,
                        format!("{v} is too small"),
                    );
                    None
                } else {
                    Some(v)
                }
            }
            Err(_) => {
                self.error(
                    Code::InvalidValue,
                    format!("{what} must be a whole number"),
                    e.span,
                    "expected a whole number",
                );
                None
            }
        }
    }

    /// A duration literal in milliseconds; zero is refused.
    pub fn duration(&mut self, e: &Expr, what: &str) -> Option<u64> {
        match &e.kind {
            ExprKind::Duration(text) => match parse_duration(text) {
                Ok(0) => {
                    self.error(
                        Code::InvalidDuration,
                        format!("{what} must be longer than zero"),
                        e.span,
                        "zero",
                    );
                    None
                }
                Ok(ms) => Some(ms),
                Err(why) => {
                    self.error(
                        Code::InvalidDuration,
                        format!("invalid duration `{text}`: {why}"),
                        e.span,
                        "invalid duration",
                    );
                    None
                }
            },
            ExprKind::Number(_) => {
                self.error(
                    Code::InvalidDuration,
                    format!("{what} needs a unit"),
                    e.span,
                    "no unit",
                )
                .help = Some("write it with a unit: `500ms`, `30s`, `5m`, `1h`, `1d`".into());
                None
            }
            _ => {
                self.error(
                    Code::InvalidDuration,
                    format!("{what} must be a duration like `30s`"),
                    e.span,
                    "expected a duration",
                );
                None
            }
        }
    }

    pub fn rate(&mut self, e: &Expr, what: &str) -> Option<Rate> {
        let ExprKind::Rate(text) = &e.kind else {
            self.error(
                Code::InvalidRate,
                format!("{what} must be a rate like `20/s`"),
                e.span,
                "expected a rate",
            )
            .help = Some("requests per second, minute or hour: `20/s`, `600/m`, `5000/h`".into());
            return None;
        };
        let (count, unit) = text.split_once('/').unwrap_or((text, "s"));
        let per_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            other => {
                self.error(
                    Code::InvalidRate,
                    format!("unknown rate unit `{other}` in `{text}`"),
                    e.span,
                    "unknown unit",
                )
                .help =
                    Some("requests per second, minute or hour: `20/s`, `600/m`, `5000/h`".into());
                return None;
            }
        };
        match count.parse::<u32>() {
            Ok(0) => {
                self.error(
                    Code::InvalidRate,
                    format!("{what} of zero would never send a request"),
                    e.span,
                    "zero",
                );
                None
            }
            Ok(count) => Some(Rate { count, per_ms }),
            Err(_) => {
                self.error(
                    Code::InvalidRate,
                    format!("rate `{text}` is too large"),
                    e.span,
                    "too large",
                );
                None
            }
        }
    }

    pub fn url(&mut self, text: &Text, span: Span, what: &str) -> Option<String> {
        if self.already_reported(span) {
            // An unset variable is only a warning: its empty value stands.
            return self.unset_env.contains(&span).then(|| text.value.clone());
        }
        match url::Url::parse(&text.value) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                Some(text.value.clone())
            }
            Ok(u) => {
                self.error(
                    Code::InvalidUrl,
                    format!("{what} must be an http or https URL, not `{}:`", u.scheme()),
                    span,
                    "not http(s)",
                );
                None
            }
            Err(e) => {
                self.error(
                    Code::InvalidUrl,
                    format!("{what} `{}` is not a valid URL: {e}", text.shown()),
                    span,
                    "invalid URL",
                );
                None
            }
        }
    }
}

/// `1h30m` → milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number before `{rest}`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                Some('s') => (1_000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                _ => return Err("units are ms, s, m, h, d".into()),
            }
        };
        rest = &rest[len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "too long".to_string())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(super::parse_duration("500ms"), Ok(500));
        assert!(super::parse_duration("99999999999999999999s").is_err());
        assert!(super::parse_duration("9999999999999999d").is_err());
    }
}
