//! The table of a postgres sink: its columns from the schema, the `CREATE TABLE` made
//! when it is missing, the check of an existing table against the schema, and the upsert
//! statement.

use crate::check::{Schema, Type};
use tokio_postgres::Client;

/// One column: a field of the records the sink receives.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
}

/// A table name, `table` or `schema.table`, and the columns it must have.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key fields; empty for an append-only table.
    pub key: Vec<usize>,
}

/// Quotes an identifier: `"order"`, with `"` doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type a field gets in a table hamstr creates.
pub fn sql_type(ty: Type) -> &'static str {
    match ty {
        Type::String => "text",
        Type::Int => "bigint",
        Type::Float => "double precision",
        Type::Decimal => "numeric",
        Type::Bool => "boolean",
        Type::Datetime => "timestamptz",
        Type::Json => "jsonb",
    }
}

/// The column types (as `information_schema` names them) an existing table may have for
/// a field: those that hold every value of the field as it is, or refuse it with an
/// error (an int too large for `integer`); never one that rounds it silently (`real`,
/// `double precision` for a decimal, a `numeric` with a scale for a decimal: see
/// [`Table::ensure`]).
fn accepted(ty: Type) -> &'static [&'static str] {
    match ty {
        Type::String => &["text", "character varying", "character", "citext"],
        Type::Int => &["bigint", "integer", "smallint", "numeric"],
        Type::Float => &["double precision", "numeric"],
        Type::Decimal => &["numeric"],
        Type::Bool => &["boolean"],
        Type::Datetime => &["timestamp with time zone", "timestamp without time zone"],
        Type::Json => &["jsonb", "json"],
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl Table {
    pub fn new(qualified: &str, schema: &Schema) -> Table {
        let (ns, name) = match qualified.split_once('.') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, qualified.to_string()),
        };
        let columns: Vec<Column> = schema
            .fields
            .iter()
            .map(|(name, ty, optional)| Column {
                name: name.clone(),
                ty: *ty,
                optional: *optional,
            })
            .collect();
        let key = schema
            .key
            .iter()
            .filter_map(|k| columns.iter().position(|c| &c.name == k))
            .collect();
        Table {
            schema: ns,
            name,
            columns,
            key,
        }
    }

    /// The name as written in the pipeline, for messages.
    pub fn shown(&self) -> String {
        match &self.schema {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The quoted, possibly schema-qualified name, for SQL.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(ns) => format!("{}.{}", ident(ns), ident(&self.name)),
            None => ident(&self.name),
        }
    }

    pub fn create_sql(&self) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    ident(&c.name),
                    sql_type(c.ty),
                    if c.optional { "" } else { " NOT NULL" }
                )
            })
            .collect();
        if !self.key.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", self.key_list()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.quoted(),
            parts.join(", ")
        )
    }

    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|i| ident(&self.columns[*i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The insert of one chunk of rows: each column comes as one array parameter, in
    /// column order, and `UNNEST` turns the arrays into rows. Keyed tables upsert.
    pub fn insert_sql(&self) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| ident(&c.name)).collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 1, sql_type(c.ty)))
            .collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
            self.quoted(),
            names.join(", "),
            arrays.join(", ")
        );
        if !self.key.is_empty() {
            let updates: Vec<String> = self
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.key.contains(i))
                .map(|(_, c)| format!("{0} = EXCLUDED.{0}", ident(&c.name)))
                .collect();
            sql.push_str(&format!(" ON CONFLICT ({}) DO ", self.key_list()));
            if updates.is_empty() {
                sql.push_str("NOTHING");
            } else {
                sql.push_str("UPDATE SET ");
                sql.push_str(&updates.join(", "));
            }
        }
        sql
    }

    /// Creates the table when it is missing, or checks that the existing one can take
    /// the records: every field has a column of a fitting type, no column that hamstr
    /// leaves empty is required, and a keyed table has a unique index on the key.
    /// `Err` names the column that differs; `Ok(true)` when the table was created.
    pub async fn ensure(&self, client: &Client) -> Result<bool, Failure> {
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, udt_name::text, is_nullable = 'YES', \
                 column_default IS NOT NULL OR is_identity = 'YES' OR is_generated <> 'NEVER', \
                 numeric_scale IS NOT NULL \
                 FROM information_schema.columns \
                 WHERE table_schema::text = COALESCE($1::text, current_schema()::text) \
                   AND table_name::text = $2::text \
                 ORDER BY ordinal_position",
                &[&self.schema, &self.name],
            )
            .await
            .map_err(Failure::Db)?;
        if rows.is_empty() {
            client
                .batch_execute(&self.create_sql())
                .await
                .map_err(Failure::Db)?;
            return Ok(true);
        }
        let existing: Vec<(String, String, bool, bool, bool)> = rows
            .iter()
            .map(|r| {
                let data_type: String = r.get(1);
                let shown = if data_type == "USER-DEFINED" {
                    r.get(2)
                } else {
                    data_type
                };
                (r.get(0), shown, r.get(3), r.get(4), r.get(5))
            })
            .collect();
        let t = self.shown();
        for (i, c) in self.columns.iter().enumerate() {
            let Some((_, ty, nullable, _, scaled)) = existing.iter().find(|(n, ..)| *n == c.name)
            else {
                return Err(Failure::Table(format!(
                    "table `{t}` has no column `{}` for field `{}` ({}); add it with \
                     ALTER TABLE {} ADD COLUMN {} {}",
                    c.name,
                    c.name,
                    c.ty.name(),
                    self.quoted(),
                    ident(&c.name),
                    sql_type(c.ty)
                )));
            };
            if !accepted(c.ty).contains(&ty.as_str()) {
                return Err(Failure::Table(format!(
                    "table `{t}`: column `{}` has type {ty}, but field `{}` is {}, which \
                     needs {}",
                    c.name,
                    c.name,
                    c.ty.name(),
                    one_of(accepted(c.ty))
                )));
            }
            if c.ty == Type::Decimal && *scaled {
                return Err(Failure::Table(format!(
                    "table `{t}`: column `{}` is a numeric with a fixed scale, which would round \
                     the decimals of field `{}`; a decimal is kept exactly in a plain numeric \
                     (ALTER TABLE {} ALTER COLUMN {} TYPE numeric)",
                    c.name,
                    c.name,
                    self.quoted(),
                    ident(&c.name)
                )));
            }
            // A primary key's columns are NOT NULL whatever was declared (PostgreSQL adds
            // it), so an optional key field (an aggregate's group) meets one there.
            if c.optional && !nullable && !self.key.contains(&i) {
                return Err(Failure::Table(format!(
                    "table `{t}`: column `{}` is NOT NULL, but field `{}` is optional",
                    c.name, c.name
                )));
            }
        }
        if let Some((name, ..)) = existing.iter().find(|(n, _, nullable, filled, _)| {
            !nullable && !filled && !self.columns.iter().any(|c| &c.name == n)
        }) {
            return Err(Failure::Table(format!(
                "table `{t}`: column `{name}` is NOT NULL without a default, and no field \
                 fills it"
            )));
        }
        if !self.key.is_empty() && !self.has_unique_key(client).await? {
            return Err(Failure::Table(format!(
                "table `{t}` has no primary key or unique index on ({}), which upserting \
                 by the key needs; add one with ALTER TABLE {} ADD PRIMARY KEY ({})",
                self.key
                    .iter()
                    .map(|i| format!("`{}`", self.columns[*i].name))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.quoted(),
                self.key_list()
            )));
        }
        Ok(false)
    }

    async fn has_unique_key(&self, client: &Client) -> Result<bool, Failure> {
        let rows = client
            .query(
                "SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
                 FROM pg_index i JOIN pg_attribute a \
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
                   AND i.indexprs IS NULL \
                 GROUP BY i.indexrelid",
                &[&self.quoted()],
            )
            .await
            .map_err(Failure::Db)?;
        let mut key: Vec<String> = self
            .key
            .iter()
            .map(|i| self.columns[*i].name.clone())
            .collect();
        key.sort();
        Ok(rows.iter().any(|r| r.get::<_, Vec<String>>(0) == key))
    }
}

/// Why a table cannot be used: a database error, a table that does not fit, or TLS
/// settings that cannot be used (an unreadable `sslrootcert`).
#[derive(Debug)]
pub enum Failure {
    Db(tokio_postgres::Error),
    Table(String),
    /// The lease checked in the write's transaction is no longer this instance's.
    Fenced(String),
    Tls(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(key: &[&str]) -> Schema {
        Schema {
            fields: vec![
                ("id".into(), Type::String, false),
                ("amount".into(), Type::Decimal, false),
                ("note".into(), Type::String, true),
            ],
            key: key.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn statements_quote_names() {
        let t = Table::new("shop.orders", &schema(&["id"]));
        assert_eq!(
            t.create_sql(),
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\"id\" text NOT NULL, \
             \"amount\" numeric NOT NULL, \"note\" text, PRIMARY KEY (\"id\"))"
        );
        assert_eq!(
            t.insert_sql(),
            "INSERT INTO \"shop\".\"orders\" (\"id\", \"amount\", \"note\") SELECT * FROM \
             UNNEST($1::text[], $2::numeric[], $3::text[]) ON CONFLICT (\"id\") DO UPDATE SET \
             \"amount\" = EXCLUDED.\"amount\", \"note\" = EXCLUDED.\"note\""
        );
        let plain = Table::new("orders", &schema(&[]));
        assert!(!plain.insert_sql().contains("ON CONFLICT"));
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
