//! A tenant service, and every source that runs for its tenants, checked once per row:
//! `till` becomes `till[soho]`, `till[camden]`, ...; `shop_orders` becomes
//! `shop_orders[soho]`, ... Each instance is a plain service or source with the row's
//! values written in, so the plan and the runtime treat it like any other: its own
//! unit, state, schedule and limits.
//!
//! Flows, aggregates and sinks are checked against a template (the first row's
//! instance) under the declared name; [`Instances::expand`] then puts the instances in
//! its place.

use super::super::{Code, Ctx, Decls, Diagnostic, Pipeline, Service, Source};
use super::substitute::{refs_in_block, refs_in_expr, substitute_block, TenantRef};
use super::{Row, Table};
use crate::syntax::ast::{self, Block, StmtValue};
use crate::syntax::Span;
use std::collections::{BTreeMap, HashSet};

/// How many diagnostics that depend on a row are shown per declaration; the rest are
/// counted.
const SHOWN_ROWS: usize = 5;

/// The instances made of tenant declarations, by declared name.
#[derive(Default)]
pub struct Instances {
    services: BTreeMap<String, Vec<(String, Service)>>,
    sources: BTreeMap<String, Vec<(String, Source)>>,
    /// Every source that runs per tenant, and the tenants it runs for.
    scope: BTreeMap<String, String>,
}

/// A unit's name: `shop_orders[soho]`.
pub fn unit_name(declared: &str, tenant: &str) -> String {
    format!("{declared}[{tenant}]")
}

impl Instances {
    /// Replaces every template by its instances: services, sources, the parents of
    /// child sources, flows and the inputs of aggregates.
    pub fn expand(self, p: &mut Pipeline) {
        let tenant_services: HashSet<String> = self.services.keys().cloned().collect();
        for (declared, list) in self.services {
            p.services.remove(&declared);
            for (tenant, mut s) in list {
                s.name = unit_name(&declared, &tenant);
                p.services.insert(s.name.clone(), s);
            }
        }
        let rows: BTreeMap<String, Vec<String>> = self
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|(t, _)| t.clone()).collect()))
            .collect();
        for (declared, list) in self.sources {
            p.sources.remove(&declared);
            for (tenant, mut s) in list {
                s.name = unit_name(&declared, &tenant);
                s.tenant = Some(tenant.clone());
                if tenant_services.contains(&s.service) {
                    s.service = unit_name(&s.service, &tenant);
                }
                if let Some(parent) = s.for_each.as_mut() {
                    if rows.contains_key(parent.as_str()) {
                        *parent = unit_name(parent, &tenant);
                    }
                }
                p.sources.insert(s.name.clone(), s);
            }
        }
        let each = |name: &String| -> Vec<String> {
            match rows.get(name) {
                Some(tenants) => tenants.iter().map(|t| unit_name(name, t)).collect(),
                None => vec![name.clone()],
            }
        };
        p.flows = std::mem::take(&mut p.flows)
            .into_iter()
            .flat_map(|(from, to)| {
                each(&from)
                    .into_iter()
                    .map(move |f| (f, to.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for agg in p.aggregates.values_mut() {
            agg.from = agg.from.iter().flat_map(each).collect();
        }
    }
}

impl Ctx<'_> {
    /// A service: once per row of its tenants when it has `for NAME`. Returns the
    /// template.
    pub(in crate::check) fn service_for_tenants(
        &mut self,
        svc: &ast::Service,
        tables: &BTreeMap<String, Table>,
        inst: &mut Instances,
    ) -> Option<Service> {
        let Some(tenants) = &svc.tenants else {
            return match self.outside_tenants(&svc.body) {
                Some(body) => self.service(&ast::Service {
                    body,
                    ..svc.clone()
                }),
                None => self.service(svc),
            };
        };
        let table = tables.get(&tenants.name);
        if table.is_none() && !self.tenants_declared.contains(&tenants.name) {
            let help = super::super::diagnostic::did_you_mean(
                &tenants.name,
                self.tenants_declared.iter().map(String::as_str),
            );
            self.error(
                Code::UnknownTenants,
                format!(
                    "service `{}` is for unknown tenants `{}`",
                    svc.name.name, tenants.name
                ),
                tenants.span,
                "no `tenants` declares this",
            )
            .help = help.or_else(|| {
                Some(format!(
                    "declare `tenants {} = csv(\"file.csv\")`",
                    tenants.name
                ))
            });
        }
        let (template, list) = self.per_row(table, &svc.body, |ctx, body| {
            ctx.service(&ast::Service {
                body: body.clone(),
                ..svc.clone()
            })
        });
        inst.services.insert(svc.name.name.clone(), list);
        template
    }

    /// A source: once per row when its service is a tenant service or its parent runs
    /// per tenant. Returns the template.
    pub(in crate::check) fn source_for_tenants(
        &mut self,
        src: &ast::Source,
        decls: &Decls,
        models: &super::super::model::Models,
        p: &Pipeline,
        tables: &BTreeMap<String, Table>,
        inst: &mut Instances,
    ) -> Option<Source> {
        let own = decls
            .services
            .get(src.service.name.as_str())
            .and_then(|s| s.tenants.as_ref())
            .map(|t| t.name.clone());
        let parent = parent_of(src).and_then(|p| inst.scope.get(&p).cloned());
        if let (Some(a), Some(b)) = (&own, &parent) {
            if a != b {
                self.error(
                    Code::InvalidValue,
                    format!(
                        "source `{}` runs for tenants `{a}` (its service) and `{b}` (its parent)",
                        src.name.name
                    ),
                    src.service.span,
                    format!("a service for `{a}`"),
                );
            }
        }
        let Some(scope) = own.clone().or(parent) else {
            return match self.outside_tenants(&src.body) {
                Some(body) => self.source(
                    &ast::Source {
                        body,
                        ..src.clone()
                    },
                    decls,
                    models,
                    p,
                ),
                None => self.source(src, decls, models, p),
            };
        };
        inst.scope.insert(src.name.name.clone(), scope.clone());
        let table = tables.get(&scope);
        let (template, list) = self.per_row(table, &src.body, |ctx, body| {
            ctx.source(
                &ast::Source {
                    body: body.clone(),
                    ..src.clone()
                },
                decls,
                models,
                p,
            )
        });
        if own.is_some() {
            if let Some(t) = &template {
                self.tenant_key(src, t);
            }
        }
        inst.sources.insert(src.name.name.clone(), list);
        template
    }

    /// Checks `body` once per row of `table` with the row's values written in (once,
    /// with empty values, when there are no rows). A diagnostic that points at a
    /// `tenant.x` names its row; one that does not is the same for every row and shown
    /// once.
    fn per_row<T: Clone>(
        &mut self,
        table: Option<&Table>,
        body: &Block,
        mut check: impl FnMut(&mut Self, &Block) -> Option<T>,
    ) -> (Option<T>, Vec<(String, T)>) {
        let mut refs = Vec::new();
        refs_in_block(body, &mut refs);
        if let Some(t) = table {
            if !self.columns_exist(t, &refs) {
                return (None, Vec::new());
            }
        }
        let rows: Vec<Option<&Row>> = match table {
            Some(t) if !t.rows.is_empty() => t.rows.iter().map(Some).collect(),
            _ => vec![None],
        };
        let mut seen: HashSet<DiagKey> = HashSet::new();
        let mut shown = 0;
        let mut more = 0;
        let mut last_shown: Option<usize> = None;
        let mut template = None;
        let mut list = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let before = self.diags.len();
            let value = |column: &str| -> String {
                match (table, row) {
                    (Some(t), Some(r)) => t.value(r, column).unwrap_or("").to_string(),
                    _ => String::new(),
                }
            };
            let substituted = substitute_block(body, &value);
            let out = check(self, &substituted);
            for mut d in self.diags.split_off(before) {
                if depends_on_row(&d, &refs) {
                    let (Some(t), Some(r)) = (table, row) else {
                        continue;
                    };
                    if shown == SHOWN_ROWS {
                        more += 1;
                        continue;
                    }
                    shown += 1;
                    d.message =
                        format!("{} (tenant `{}`, {})", d.message, t.row_name(r), t.place(r));
                    self.diags.push(d);
                    last_shown = Some(self.diags.len() - 1);
                } else if seen.insert(key(&d)) {
                    self.diags.push(d);
                }
            }
            if i == 0 {
                template = out.clone();
            }
            if let (Some(t), Some(r), Some(o)) = (table, row, out) {
                list.push((t.row_name(r).to_string(), o));
            }
        }
        if let (Some(i), true) = (last_shown, more > 0) {
            let d = &mut self.diags[i];
            let also = format!("the same for {more} more tenants");
            d.help = Some(match d.help.take() {
                Some(h) => format!("{h}; {also}"),
                None => also,
            });
        }
        (template, list)
    }

    /// Every `tenant.x` names a column of the file.
    fn columns_exist(&mut self, table: &Table, refs: &[TenantRef]) -> bool {
        let mut ok = true;
        for r in refs {
            if table.column(&r.column).is_some() {
                continue;
            }
            ok = false;
            let help = super::super::diagnostic::did_you_mean(
                &r.column,
                table.columns.iter().map(String::as_str),
            );
            self.error(
                Code::UnknownColumn,
                format!(
                    "the tenants file `{}` has no column `{}`",
                    table.path, r.column
                ),
                r.span,
                "not a column",
            )
            .help = help.or_else(|| Some(format!("its columns: {}", table.columns.join(", "))));
        }
        ok
    }

    /// `tenant.x` where no tenant is in scope: reported, and the body to check on with
    /// empty strings in its place (so it is not reported again as an unknown name).
    fn outside_tenants(&mut self, body: &Block) -> Option<Block> {
        let mut refs = Vec::new();
        refs_in_block(body, &mut refs);
        if refs.is_empty() {
            return None;
        }
        for r in refs {
            self.error(
                Code::OutOfScope,
                format!("`tenant.{}` outside a service for tenants", r.column),
                r.span,
                "no tenant here",
            )
            .help = Some("declare the service with `service NAME for TENANTS { ... }`".into());
        }
        Some(substitute_block(body, &|_| String::new()))
    }

    /// Warns when no key field of a keyed tenant source comes from `tenant.`: two
    /// tenants' records with the same id would be one record in a shared sink.
    fn tenant_key(&mut self, src: &ast::Source, checked: &Source) {
        if checked.key.is_empty() {
            return;
        }
        let Some(StmtValue::Block(fields)) = src.body.get("fields").map(|s| &s.value) else {
            return;
        };
        let mapped = checked.key.iter().any(|k| {
            fields.stmts.iter().any(|s| {
                s.name.text == *k
                    && match &s.value {
                        StmtValue::Expr(e) | StmtValue::Typed(_, e) => {
                            let mut refs = Vec::new();
                            refs_in_expr(e, &mut refs);
                            !refs.is_empty()
                        }
                        StmtValue::Block(_) => false,
                    }
            })
        });
        if mapped {
            return;
        }
        let span = src.body.get("key").map_or(src.name.span, |s| s.span);
        self.warn(
            Code::TenantKey,
            format!(
                "the key of `{}` has no field from `tenant.`: two tenants' records with the same key are one record in a shared sink",
                src.name.name
            ),
            span,
            "no field of the tenant",
        )
        .help = Some("add a field like `shop : string = tenant.name` to the key".into());
    }
}

/// The `for_each` parent a source names.
fn parent_of(src: &ast::Source) -> Option<String> {
    match &src.body.get("for_each")?.value {
        StmtValue::Expr(e) => match &e.kind {
            ast::ExprKind::Name(parts) if parts.len() == 1 => Some(parts[0].name.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn overlaps(a: Span, b: Span) -> bool {
    a.start < b.end && b.start < a.end
}

fn depends_on_row(d: &Diagnostic, refs: &[TenantRef]) -> bool {
    d.labels
        .iter()
        .any(|l| refs.iter().any(|r| overlaps(l.span, r.span)))
}

/// What makes two diagnostics the same: code, message and where their labels point.
type DiagKey = (Code, String, Vec<(usize, usize)>);

fn key(d: &Diagnostic) -> DiagKey {
    (
        d.code,
        d.message.clone(),
        d.labels
            .iter()
            .map(|l| (l.span.start, l.span.end))
            .collect(),
    )
}
