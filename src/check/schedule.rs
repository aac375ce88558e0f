//! A source's `schedule`: `every(D)`, `cron("m h dom mon dow")` (five standard fields,
//! names only where they belong), `once`, and none for a child source.

use super::diagnostic::did_you_mean;
use super::props::{Props, Signature};
use super::{Code, Ctx, Schedule};
use crate::syntax::ast::{self, ExprKind};
use crate::syntax::Span;

impl<'e> Ctx<'e> {
    pub(super) fn schedule(
        &mut self,
        src: &ast::Source,
        props: &Props,
        is_child: bool,
    ) -> Option<Schedule> {
        let Some(stmt) = props.get("schedule") else {
            if is_child {
                return Some(Schedule::Parent);
            }
            self.missing("source", &src.name, "schedule");
            return None;
        };
        let e = self.stmt_expr(stmt)?;
        if is_child {
            self.error(
                Code::ConflictingProperties,
                "a child source runs when its parent emits; it has no `schedule`",
                stmt.name.span,
                "not allowed with `for_each`",
            );
            return None;
        }
        match &e.kind {
            ExprKind::Name(parts) if parts.len() == 1 && parts[0].name == "once" => {
                Some(Schedule::Once)
            }
            ExprKind::Call { name, args } if name.name == "every" => {
                let sig = Signature {
                    name: "every",
                    params: &["interval"],
                    required: &["interval"],
                    positional: &["interval"],
                };
                let a = self.call_args(&sig, args, name.span);
                let ms = self.duration(a.get("interval")?, "the interval")?;
                Some(Schedule::Every { ms })
            }
            ExprKind::Call { name, args } if name.name == "cron" => {
                let sig = Signature {
                    name: "cron",
                    params: &["expression"],
                    required: &["expression"],
                    positional: &["expression"],
                };
                let a = self.call_args(&sig, args, name.span);
                let arg = a.get("expression")?;
                let ExprKind::Str(text) = &arg.kind else {
                    self.error(
                        Code::InvalidCron,
                        "`cron` takes a string like \"*/5 * * * *\"",
                        arg.span,
                        "expected a string",
                    );
                    return None;
                };
                // Point at the field that is out of range when the literal has no
                // escapes, so offsets in the text are offsets in the file.
                let checked = match cron_field_error(text) {
                    Some((why, at, len, label)) if text.len() + 2 == arg.span.len() => {
                        let start = arg.span.start + 1 + at;
                        Err((why, Span::new(start, start + len), label))
                    }
                    Some((why, ..)) => Err((why, arg.span, "invalid cron")),
                    None => validate_cron(text).map_err(|why| (why, arg.span, "invalid cron")),
                };
                match checked {
                    Ok(()) => Some(Schedule::Cron(text.clone())),
                    Err((why, span, label)) => {
                        self.error(Code::InvalidCron, format!("invalid cron expression \"{text}\": {why}"), span, label)
                            .help = Some("five fields: minute hour day-of-month month day-of-week, like \"*/15 * * * *\"".into());
                        None
                    }
                }
            }
            _ => {
                let word = match &e.kind {
                    ExprKind::Call { name, .. } => Some(name),
                    ExprKind::Name(parts) => parts.first(),
                    _ => None,
                };
                let help = word.and_then(|w| did_you_mean(&w.name, ["every", "cron", "once"]));
                self.error(
                    Code::InvalidValue,
                    "`schedule` must be `every(30s)`, `cron(\"*/5 * * * *\")` or `once`",
                    e.span,
                    "not a schedule",
                )
                .help = help;
                None
            }
        }
    }
}

/// A month or day name outside the one field that takes it: croner would read `MON` in
/// the minute field as minute 1, and `JAN` as day of week as Monday.
fn misplaced_name(part: &str, field: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let upper = part.to_ascii_uppercase();
    let (kind, home) = if MONTHS.contains(&upper.as_str()) {
        ("month", "month (JAN-DEC)")
    } else if DAYS.contains(&upper.as_str()) {
        ("day", "day of week (SUN-SAT)")
    } else {
        return None;
    };
    let wanted = if kind == "month" {
        "month"
    } else {
        "day of week"
    };
    (field != wanted).then(|| {
        format!("`{part}` is a {kind} name, which only the {home} field takes, not the {field}")
    })
}

/// Five standard fields, parsed by croner.
pub fn validate_cron(text: &str) -> Result<(), String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!("expected 5 fields, found {fields}"));
    }
    if let Some((why, ..)) = cron_field_error(text) {
        return Err(why);
    }
    text.parse::<croner::Cron>()
        .map(|_| ())
        .map_err(|e| e.to_string().trim_end_matches('.').to_lowercase())
}

/// A number out of its field's range, or a name in a field that takes none, in a
/// five-field cron expression: the problem, the offset and length of the field in
/// `text`, and a label for it. Other forms are left to croner.
fn cron_field_error(text: &str) -> Option<(String, usize, usize, &'static str)> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        let len = rest[start..]
            .find(char::is_whitespace)
            .unwrap_or(rest.len() - start);
        fields.push((text.len() - rest.len() + start, &rest[start..start + len]));
        rest = &rest[start + len..];
    }
    if fields.len() != 5 {
        return None;
    }
    for ((at, field), (what, lo, hi)) in fields.into_iter().zip(FIELDS) {
        for part in field.split(',') {
            let (range, step) = part.split_once('/').unwrap_or((part, ""));
            if step == "0" {
                return Some((
                    format!("the {what} step must not be 0"),
                    at,
                    field.len(),
                    "out of range",
                ));
            }
            for n in range.split('-') {
                if let Some(error) = misplaced_name(n, what) {
                    return Some((error, at, field.len(), "a name this field does not take"));
                }
                if let Ok(v) = n.parse::<u64>() {
                    if v < u64::from(lo) || v > u64::from(hi) {
                        return Some((
                            format!("{what} {v} is out of range {lo}-{hi}"),
                            at,
                            field.len(),
                            "out of range",
                        ));
                    }
                }
            }
        }
    }
    None
}
