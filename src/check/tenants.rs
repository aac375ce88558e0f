//! Tenants (spec §13): `tenants NAME = csv(path)` or `json(path)`, a file of accounts
//! with one row each, and reading it into a [`Table`]. The file comes in through the
//! checker's file lookup (the loader reads it beside the pipeline), so checking stays
//! pure. `instances.rs` turns a tenant service and its sources into one of each per row;
//! `substitute.rs` writes a row's values where the file says `tenant.<column>`.

mod instances;
mod substitute;

pub use instances::unit_name;
pub(super) use instances::Instances;

use super::{Code, Ctx};
use crate::syntax::ast::{self, ExprKind};
use std::collections::{BTreeMap, HashMap};

/// A tenants file as read: its columns and its rows, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The declared name (`shops`).
    pub name: String,
    /// The path as written in the pipeline.
    pub path: String,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// One tenant: where it is in its file (a line of a CSV file, an item of a JSON array),
/// and its values by column (`None` where a JSON object lacks the column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub at: usize,
    pub values: Vec<Option<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// A row's value of a column.
    pub fn value<'a>(&self, row: &'a Row, column: &str) -> Option<&'a str> {
        row.values.get(self.column(column)?)?.as_deref()
    }

    /// A row's `name`: what its units are called (`source[name]`).
    pub fn row_name<'a>(&self, row: &'a Row) -> &'a str {
        self.value(row, "name").unwrap_or("")
    }

    /// "shops.csv line 3", "shops.json item 2": where a row is, for diagnostics.
    pub fn place(&self, row: &Row) -> String {
        let unit = if self.is_json() { "item" } else { "line" };
        format!("{} {unit} {}", self.path, row.at)
    }

    fn is_json(&self) -> bool {
        self.path.to_ascii_lowercase().ends_with(".json")
    }
}

/// Reads CSV text: a header row, then one tenant per row.
pub fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let at = record.position().map_or(0, |p| p.line() as usize);
        rows.push(Row {
            at,
            values: record.iter().map(|v| Some(v.to_string())).collect(),
        });
    }
    Ok((columns, rows))
}

/// Reads JSON text: an array of objects whose values are strings (numbers and booleans
/// are taken as written).
pub fn parse_json(text: &str) -> Result<(Vec<String>, Vec<Row>), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Array(items) = value else {
        return Err("expected an array of objects".into());
    };
    let mut columns: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut objects = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let serde_json::Value::Object(map) = item else {
            return Err(format!("item {} is not an object", i + 1));
        };
        let mut values = Vec::with_capacity(map.len());
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "item {}: `{k}` is not a string, number or boolean",
                        i + 1
                    ))
                }
            };
            let col = *index.entry(k.clone()).or_insert_with(|| {
                columns.push(k.clone());
                columns.len() - 1
            });
            values.push((col, text));
        }
        objects.push(values);
    }
    let rows = objects
        .into_iter()
        .enumerate()
        .map(|(i, values)| {
            let mut row = vec![None; columns.len()];
            for (col, v) in values {
                row[col] = Some(v);
            }
            Row {
                at: i + 1,
                values: row,
            }
        })
        .collect();
    Ok((columns, rows))
}

impl Ctx<'_> {
    /// Reads every `tenants` declaration's file. A file that cannot be used is an error
    /// at its path and leaves no table (its services are checked without rows).
    pub(super) fn tenant_tables(&mut self, file: &ast::File) -> BTreeMap<String, Table> {
        let mut tables = BTreeMap::new();
        let mut declared: BTreeMap<String, crate::syntax::Span> = BTreeMap::new();
        for item in &file.items {
            let ast::Item::Tenants(t) = item else {
                continue;
            };
            if let Some(first) = declared.get(&t.name.name) {
                let first = *first;
                self.error(
                    Code::DuplicateName,
                    format!("`{}` is declared twice", t.name.name),
                    t.name.span,
                    "declared again here",
                )
                .labels
                .push(super::Label {
                    span: first,
                    text: "first declared here".into(),
                });
                continue;
            }
            declared.insert(t.name.name.clone(), t.name.span);
            if let Some(table) = self.tenant_table(t) {
                tables.insert(t.name.name.clone(), table);
            }
        }
        tables
    }

    fn tenant_table(&mut self, t: &ast::Tenants) -> Option<Table> {
        let (kind, path, path_span) = match &t.value.kind {
            ExprKind::Call { name, args }
                if (name.name == "csv" || name.name == "json")
                    && args.len() == 1
                    && args[0].name.is_none() =>
            {
                match &args[0].value.kind {
                    ExprKind::Str(p) => (name.name.as_str(), p.clone(), args[0].value.span),
                    _ => {
                        self.error(
                            Code::InvalidValue,
                            format!("`{}` takes the file's path as a string", name.name),
                            args[0].value.span,
                            "expected a string",
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    Code::InvalidValue,
                    "tenants come from `csv(\"file.csv\")` or `json(\"file.json\")`",
                    t.value.span,
                    "expected csv(...) or json(...)",
                );
                return None;
            }
        };
        let text = match (self.files)(&path) {
            Ok(text) => text,
            Err(e) => {
                self.error(
                    Code::TenantsFile,
                    format!("cannot read the tenants file `{path}`: {e}"),
                    path_span,
                    "this file",
                );
                return None;
            }
        };
        let parsed = if kind == "csv" {
            parse_csv(&text)
        } else {
            parse_json(&text)
        };
        let (columns, rows) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.error(
                    Code::TenantsFile,
                    format!("the tenants file `{path}` is not valid {kind}: {e}"),
                    path_span,
                    "this file",
                );
                return None;
            }
        };
        let table = Table {
            name: t.name.name.clone(),
            path,
            columns,
            rows,
        };
        self.tenant_names(&table, path_span).then_some(table)
    }

    /// Every row has a `name`, unique, usable in a unit's name (`source[name]`).
    fn tenant_names(&mut self, table: &Table, span: crate::syntax::Span) -> bool {
        if table.column("name").is_none() {
            let help =
                super::diagnostic::did_you_mean("name", table.columns.iter().map(String::as_str));
            self.error(
                Code::TenantsFile,
                format!("the tenants file `{}` has no `name` column", table.path),
                span,
                "each tenant needs a unique `name`",
            )
            .help = help.or_else(|| Some(format!("its columns: {}", table.columns.join(", "))));
            return false;
        }
        let mut seen: HashMap<&str, &Row> = HashMap::with_capacity(table.rows.len());
        let mut ok = true;
        for row in &table.rows {
            let name = table.value(row, "name").unwrap_or("");
            let bad = if name.is_empty() {
                Some("has no name".to_string())
            } else if name.chars().any(|c| c.is_control() || "[]/\\".contains(c)) {
                Some("has a name with a control character, bracket or slash".to_string())
            } else {
                seen.insert(name, row)
                    .map(|first| format!("repeats the name `{name}` of {}", table.place(first)))
            };
            if let Some(what) = bad {
                ok = false;
                self.error(
                    Code::TenantsFile,
                    format!("{} {what}", table.place(row)),
                    span,
                    "in this file",
                );
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_line() {
        let (cols, rows) = parse_csv("name,url\nsoho, http://a\ncamden,http://b\n").unwrap();
        assert_eq!(cols, ["name", "url"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].values[1].as_deref(), Some("http://a"));
        assert_eq!(rows[1].at, 3);
    }

    #[test]
    fn json_items_may_lack_a_column() {
        let (cols, rows) = parse_json(r#"[{"name":"a","url":"u"},{"name":"b","n":3}]"#).unwrap();
        assert_eq!(cols, ["name", "url", "n"]);
        assert_eq!(rows[1].values, [Some("b".into()), None, Some("3".into())]);
        assert!(parse_json(r#"[{"name":{"x":1}}]"#).is_err());
        assert!(parse_json(r#"{"name":"a"}"#).is_err());
    }
}

#[cfg(test)]
mod instance_tests {
    /// A tenant service, its source and a child of it, an aggregate and a flow: one
    /// instance per row, each child pointing at its own tenant's parent.
    #[test]
    fn every_row_gets_its_service_source_child_flow_and_aggregate_input() {
        let text = r#"
tenants shops = csv("shops.csv")
service till for shops { base_url = tenant.url  auth = bearer(env(tenant.var)) }
source orders from till {
  get = "/shops/{tenant.name}/orders"  schedule = every(1m)  records = $.data[*]
  key = [shop, id]
  fields { shop : string = tenant.name  id : string = $.id  total : decimal = $.total }
}
source items from till {
  for_each = orders  get = "/orders/{id}/items"  records = $.data[*]
  fields { shop : string = parent.shop  sku : string = $.sku }
}
aggregate per_shop { from = orders  group_by = [shop]  compute { n = count() } }
sink out = sled("orders")
sink lines = jsonl("items.jsonl")
sink totals = sled("totals")
flow orders -> out
flow items -> lines
flow per_shop -> totals
"#;
        let files = |p: &str| {
            assert_eq!(p, "shops.csv");
            Ok(
                "name,url,var\nsoho,http://a.example/,A\ncamden west,http://b.example/,B\n"
                    .to_string(),
            )
        };
        let env = |v: &str| Some(format!("token-{v}"));
        let checked =
            crate::check::check_with("t.hmr", text, &env, &files, crate::check::Mode::Single);
        let p = checked
            .pipeline
            .unwrap_or_else(|| panic!("{}", checked.report.render(false, 100)));
        let names: Vec<&str> = p.sources.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "items[camden west]",
                "items[soho]",
                "orders[camden west]",
                "orders[soho]"
            ]
        );
        let child = &p.sources["items[soho]"];
        assert_eq!(child.for_each.as_deref(), Some("orders[soho]"));
        assert_eq!(child.service, "till[soho]");
        let camden = &p.sources["orders[camden west]"];
        assert_eq!(camden.path, "/shops/camden%20west/orders");
        assert_eq!(camden.tenant.as_deref(), Some("camden west"));
        assert_eq!(
            p.services["till[camden west]"].base_url,
            "http://b.example/"
        );
        match &p.services["till[soho]"].auth {
            crate::check::Auth::Bearer(t) => {
                assert_eq!(t.value, "token-A");
                assert!(t.secret);
            }
            other => panic!("{other:?}"),
        }
        assert!(p.secrets().contains(&"token-B".to_string()));
        assert_eq!(
            p.aggregates["per_shop"].from,
            ["orders[soho]", "orders[camden west]"]
        );
        let mut flows = p.flows.clone();
        flows.sort();
        assert_eq!(
            flows,
            [
                ("items[camden west]".to_string(), "lines".to_string()),
                ("items[soho]".into(), "lines".into()),
                ("orders[camden west]".into(), "out".into()),
                ("orders[soho]".into(), "out".into()),
                ("per_shop".into(), "totals".into()),
            ]
        );
        assert_eq!(p.files, ["shops.csv"]);
        // And the plan wires each child to its own parent.
        let plan = crate::plan::Plan::new(&p);
        let id = crate::plan::NodeId::Source("items[soho]".into());
        assert!(plan
            .edges
            .iter()
            .any(|(a, b)| b == &id && a.name() == "orders[soho]"));
    }
}
