//! Calls in expressions: the functions of spec §2 (and a few more), their number of
//! arguments, the types they take and the type they give; `env(...)` is a constant.

use super::diagnostic::did_you_mean;
use super::expr::{ETy, Scope};
use super::{Code, Ctx, Expr, Func, Lit, Type};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;

pub const FUNCTIONS: &[(&str, Func, usize, usize)] = &[
    ("lower", Func::Lower, 1, 1),
    ("upper", Func::Upper, 1, 1),
    ("trim", Func::Trim, 1, 1),
    ("concat", Func::Concat, 1, 64),
    ("coalesce", Func::Coalesce, 1, 64),
    ("to_string", Func::ToString, 1, 1),
    ("to_int", Func::ToInt, 1, 1),
    ("to_float", Func::ToFloat, 1, 1),
    ("to_decimal", Func::ToDecimal, 1, 1),
    ("parse_datetime", Func::ParseDatetime, 2, 2),
    ("from_unix", Func::FromUnix, 1, 1),
    ("from_unix_ms", Func::FromUnixMs, 1, 1),
    ("now", Func::Now, 0, 0),
    ("day", Func::Day, 1, 1),
    ("hour", Func::Hour, 1, 1),
    ("month", Func::Month, 1, 1),
    ("year", Func::Year, 1, 1),
    ("round", Func::Round, 1, 2),
    ("abs", Func::Abs, 1, 1),
    ("length", Func::Length, 1, 1),
    ("unix", Func::Unix, 1, 1),
    ("unix_ms", Func::UnixMs, 1, 1),
    ("format_datetime", Func::FormatDatetime, 2, 2),
];

impl<'e> Ctx<'e> {
    /// Whether a strftime pattern is valid; reports it when not.
    pub(super) fn strftime(&mut self, fmt: &str, span: Span) -> bool {
        let bad = chrono::format::StrftimeItems::new(fmt)
            .any(|i| matches!(i, chrono::format::Item::Error));
        if bad {
            self.error(
                Code::InvalidValue,
                format!("invalid datetime format `{fmt}`"),
                span,
                "bad format",
            )
            .help = Some("use strftime codes, for example \"%Y-%m-%d %H:%M:%S\"".into());
        }
        !bad
    }

    pub(super) fn call(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        scope: &Scope,
    ) -> Option<(Expr, ETy)> {
        if name.name == "env" {
            let t = self.text(
                &ast::Expr {
                    kind: ExprKind::Call {
                        name: name.clone(),
                        args: args.to_vec(),
                    },
                    span,
                },
                false,
                "`env`",
            )?;
            if let Scope::Request { .. } = scope {
                self.request_env.push(t.value.clone());
            }
            return Some((Expr::Lit(Lit::Str(t.value)), ETy::Known(Type::String)));
        }
        let Some(&(fname, func, min, max)) = FUNCTIONS.iter().find(|(n, ..)| *n == name.name)
        else {
            let help = did_you_mean(&name.name, FUNCTIONS.iter().map(|(n, ..)| *n));
            self.error(
                Code::UnknownFunction,
                format!("unknown function `{}`", name.name),
                name.span,
                "unknown function",
            )
            .help = help;
            // Still check the arguments, for their own errors.
            for a in args {
                let _ = self.lower(&a.value, scope);
            }
            return None;
        };
        if let Some(n) = args.iter().find_map(|a| a.name.as_ref()) {
            self.error(
                Code::UnknownArgument,
                format!("`{fname}` takes no named arguments"),
                n.span,
                "named argument",
            );
            return None;
        }
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            self.error(
                Code::MissingArgument,
                format!(
                    "`{fname}` takes {want} argument{}, found {}",
                    if max == 1 { "" } else { "s" },
                    args.len()
                ),
                span,
                "wrong number of arguments",
            );
            return None;
        }
        let mut lowered = Vec::new();
        let mut types = Vec::new();
        let mut ok = true;
        for a in args {
            match self.lower(&a.value, scope) {
                Some((x, t)) => {
                    lowered.push(x);
                    types.push(t);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let arg_error = |ctx: &mut Self, i: usize, want: &str| {
            ctx.error(
                Code::TypeError,
                format!("`{fname}` expects {want}, found {}", types[i].describe()),
                args[i].value.span,
                format!("this is {}", types[i].describe()),
            );
        };
        let ty = match func {
            Func::Lower | Func::Upper | Func::Trim => {
                if !types[0].is(Type::String) {
                    arg_error(self, 0, "a string");
                    return None;
                }
                ETy::Known(Type::String)
            }
            Func::Concat | Func::ToString => ETy::Known(Type::String),
            Func::Coalesce => types
                .iter()
                .copied()
                .find(|t| matches!(t, ETy::Known(_)))
                .unwrap_or(ETy::Any),
            Func::ToInt => ETy::Known(Type::Int),
            Func::ToFloat => ETy::Known(Type::Float),
            Func::ToDecimal => ETy::Known(Type::Decimal),
            Func::ParseDatetime | Func::FormatDatetime => {
                match &args[1].value.kind {
                    ExprKind::Str(fmt) => {
                        if !self.strftime(fmt, args[1].value.span) {
                            return None;
                        }
                    }
                    _ => {
                        self.error(
                            Code::InvalidValue,
                            format!("the format of `{fname}` must be a string literal"),
                            args[1].value.span,
                            "expected a string",
                        );
                        return None;
                    }
                }
                if func == Func::FormatDatetime {
                    if !types[0].is(Type::Datetime) && types[0] != ETy::Known(Type::String) {
                        arg_error(self, 0, "a datetime");
                        return None;
                    }
                    ETy::Known(Type::String)
                } else {
                    ETy::Known(Type::Datetime)
                }
            }
            Func::Unix | Func::UnixMs => {
                let t = types[0];
                if !(t.is(Type::Datetime) || t == ETy::Known(Type::String) || t.numeric()) {
                    arg_error(self, 0, "a datetime");
                    return None;
                }
                ETy::Known(Type::Int)
            }
            Func::FromUnix | Func::FromUnixMs => {
                if !(types[0].numeric() || types[0] == ETy::Known(Type::String)) {
                    arg_error(self, 0, "a number");
                    return None;
                }
                ETy::Known(Type::Datetime)
            }
            Func::Now => ETy::Known(Type::Datetime),
            Func::Day | Func::Hour | Func::Month | Func::Year => {
                if !types[0].is(Type::Datetime) && types[0] != ETy::Known(Type::String) {
                    arg_error(self, 0, "a datetime");
                    return None;
                }
                ETy::Known(Type::String)
            }
            Func::Round | Func::Abs => {
                if !types[0].numeric() {
                    arg_error(self, 0, "a number");
                    return None;
                }
                if types.len() == 2 && !types[1].is(Type::Int) {
                    arg_error(self, 1, "a whole number of places");
                    return None;
                }
                match types[0] {
                    ETy::Known(t) => ETy::Known(t),
                    _ => ETy::Known(Type::Decimal),
                }
            }
            Func::Length => ETy::Known(Type::Int),
        };
        Some((Expr::Call(func, lowered), ty))
    }
}
