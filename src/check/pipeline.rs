//! The checked pipeline: what a `.hmr` file means, with names resolved, values typed and
//! paths validated. Plain data without spans, so two pipelines compare by meaning.

mod request;

pub use request::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipeline {
    pub services: BTreeMap<String, Service>,
    pub sources: BTreeMap<String, Source>,
    pub sinks: BTreeMap<String, Sink>,
    pub aggregates: BTreeMap<String, Aggregate>,
    /// Every `from -> to` edge, once.
    pub flows: Vec<(String, String)>,
    /// `server { ... }`, when the file has one.
    pub server: Option<Server>,
    /// Parts of URLs given by `env(...)` that may carry a token: the path of a service's
    /// `base_url`, the path and query of a webhook's URL; and what `env(...)` gave inside
    /// a computed `query` or `body` value. Masked like secrets.
    pub url_secrets: Vec<String>,
    /// The files the pipeline reads besides itself (tenants files), as written: a run
    /// watches them for reloads too.
    pub files: Vec<String>,
}

/// A string that may be a secret (spec §3): masked wherever hamstr prints it.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text {
    pub value: String,
    pub secret: bool,
}

impl Text {
    pub fn plain(value: impl Into<String>) -> Self {
        Text {
            value: value.into(),
            secret: false,
        }
    }
    /// Credentials are secrets even when written in the file.
    pub fn into_secret(self) -> Self {
        Text {
            secret: true,
            ..self
        }
    }
    /// What may be shown to a person.
    pub fn shown(&self) -> &str {
        if self.secret {
            "***"
        } else {
            &self.value
        }
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub headers: Vec<(String, Text)>,
    pub rate_limit: Option<Rate>,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub retry: Retry,
    pub max_body: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(Text),
    Basic(Text, Text),
    Header { name: String, value: Text },
    Query { name: String, value: Text },
    OAuth2(Box<OAuth2>),
    AwsSigV4(Box<AwsSigV4>),
}

/// `oauth2(...)` (spec §12): the client-credentials grant, or the refresh-token grant
/// when `refresh_token` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: Text,
    pub client_secret: Text,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub refresh_token: Option<Text>,
    pub client_auth: ClientAuth,
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// `aws_sigv4(...)`: every request signed with AWS Signature Version 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSigV4 {
    pub region: String,
    pub service: String,
    pub access_key: Text,
    pub secret_key: Text,
    pub session_token: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            backoff_ms: 500,
            max_backoff_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub service: String,
    pub method: Method,
    /// The path appended to the service's base URL; may hold `{field}` placeholders.
    pub path: String,
    pub query: Vec<(String, ParamValue)>,
    pub body: Option<BodyValue>,
    pub schedule: Schedule,
    pub paginate: Paginate,
    pub records: Option<JsonPath>,
    pub model: Option<String>,
    pub fields: Vec<Field>,
    pub key: Vec<String>,
    pub incremental: Option<Incremental>,
    pub filter: Option<Expr>,
    pub for_each: Option<String>,
    /// The tenant this instance runs for (spec §13): `soho` of `shop_orders[soho]`.
    pub tenant: Option<String>,
    /// `receive { ... }`: events POSTed to hamstr's listener feed the source (spec §11).
    pub receive: Option<Receive>,
}

impl Source {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// `server { listen = "host:port"  metrics = true }` (spec §11, §15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Server {
    /// The address to listen on; `None` for the default (or `run --listen`).
    pub listen: Option<String>,
    /// Whether `GET /metrics` is served.
    pub metrics: bool,
}

/// Where the listener listens when neither `server { listen }` nor `run --listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// The largest event body taken when `max_body` is not given: 1 MiB.
pub const DEFAULT_RECEIVE_MAX_BODY: u64 = 1024 * 1024;

/// `receive { path, verify, records, fetch, max_body }` (spec §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receive {
    /// The path of hamstr's listener the events are POSTed to, starting with `/`.
    pub path: String,
    pub verify: Verify,
    /// Selects the record items in the event body; `None` is `$` (the body itself).
    pub records: Option<JsonPath>,
    /// `"/payments/{id}"`: each item names the record to GET from the source's service.
    pub fetch: Option<String>,
    /// The largest body taken, in bytes.
    pub max_body: u64,
}

/// How an event proves it comes from its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Accepted as is.
    None,
    /// HMAC-SHA256 of the raw body in a header, after `prefix`.
    Hmac {
        header: String,
        secret: Text,
        prefix: String,
        encoding: Encoding,
    },
    /// Stripe's `Stripe-Signature: t=...,v1=...` over `t.body`.
    Stripe { secret: Text, tolerance_ms: u64 },
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard { secret: Text, tolerance_ms: u64 },
    /// A shared secret in a header.
    Token { header: String, value: Text },
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every {
        ms: u64,
    },
    Cron(String),
    Once,
    /// A child source: runs when its parent emits.
    Parent,
    /// A source that only receives events (`receive` without `get`): never polled.
    Push,
}

pub const DEFAULT_MAX_PAGES: u64 = 10_000;

/// A validated JSONPath. `singular` holds its steps when it names one value (names and
/// indexes only), so it can be read by a direct walk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath {
    pub text: String,
    pub singular: Option<Vec<PathStep>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    Name(String),
    Index(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    String,
    Int,
    Float,
    Decimal,
    Bool,
    Datetime,
    Json,
}

impl Type {
    pub const ALL: [(&'static str, Type); 7] = [
        ("string", Type::String),
        ("int", Type::Int),
        ("float", Type::Float),
        ("decimal", Type::Decimal),
        ("bool", Type::Bool),
        ("datetime", Type::Datetime),
        ("json", Type::Json),
    ];
    pub fn name(self) -> &'static str {
        Type::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("json", |(n, _)| n)
    }
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Decimal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// The field that grows; `None` for a source that keeps only a `resume` token.
    pub cursor: Option<String>,
    /// The query parameter for the watermark, or (with `resume`) for the token.
    pub param: Option<String>,
    pub newest_first: bool,
    pub start: Option<Lit>,
    /// How `param` carries a datetime watermark (`format`, spec §5.2a).
    pub format: TimeFormat,
    /// How far before the watermark requests and the key state reach (`lookback`).
    pub lookback: Option<Lookback>,
    /// Where each page gives the opaque token the next run resumes from (`resume`).
    pub resume: Option<Pick>,
}

/// A typed expression. `Path` reads the current record item, `Field` a field of the
/// source's record, `Parent` a field of the parent record of a child source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Lit(Lit),
    Path(JsonPath),
    Field(String),
    Parent(String),
    Call(Func, Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Decimal(Decimal),
    Str(String),
}

impl Expr {
    /// Whether the expression reads the field `name` anywhere.
    pub fn uses_field(&self, name: &str) -> bool {
        match self {
            Expr::Field(f) => f == name,
            Expr::Lit(_) | Expr::Path(_) | Expr::Parent(_) => false,
            Expr::Call(_, args) => args.iter().any(|a| a.uses_field(name)),
            Expr::Neg(x) | Expr::Not(x) => x.uses_field(name),
            Expr::Binary(_, l, r) => l.uses_field(name) || r.uses_field(name),
        }
    }
}

/// Binary operators are the syntax tree's own: they carry no span.
pub use crate::syntax::ast::BinaryOp as BinOp;

/// The expression functions (spec §2, and a few more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Lower,
    Upper,
    Trim,
    Concat,
    Coalesce,
    ToString,
    ToInt,
    ToFloat,
    ToDecimal,
    ParseDatetime,
    FromUnix,
    FromUnixMs,
    Now,
    Day,
    Hour,
    Month,
    Year,
    Round,
    Abs,
    Length,
    Unix,
    UnixMs,
    FormatDatetime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Sled {
        name: String,
        tree: String,
    },
    Jsonl {
        name: String,
        path: String,
    },
    Stdout {
        name: String,
    },
    Postgres {
        name: String,
        url: Text,
        table: String,
        batch: u32,
    },
    Webhook {
        name: String,
        url: Text,
        batch: u32,
    },
    /// `exec([program, args...], batch, timeout)`: a callback run once per batch.
    Exec {
        name: String,
        /// The program, then its arguments; never empty.
        command: Vec<Text>,
        batch: u32,
        timeout_ms: u64,
    },
}

impl Sink {
    pub fn name(&self) -> &str {
        match self {
            Sink::Sled { name, .. }
            | Sink::Jsonl { name, .. }
            | Sink::Stdout { name }
            | Sink::Postgres { name, .. }
            | Sink::Webhook { name, .. }
            | Sink::Exec { name, .. } => name,
        }
    }
    /// Keyed sinks store one record per key.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Sink::Sled { .. } | Sink::Postgres { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub name: String,
    pub from: Vec<String>,
    pub group_by: Vec<(String, Expr, Type)>,
    pub compute: Vec<Compute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compute {
    pub name: String,
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub ty: Type,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
}

/// The fields a record of a node carries: a source's fields, or an aggregate's group
/// and computed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<(String, Type, bool)>,
    pub key: Vec<String>,
}

impl Pipeline {
    /// The schema of what a source or aggregate emits.
    pub fn schema_of(&self, name: &str) -> Option<Schema> {
        if let Some(s) = self.sources.get(name) {
            return Some(Schema {
                fields: s
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), f.ty, f.optional))
                    .collect(),
                key: s.key.clone(),
            });
        }
        self.aggregates.get(name).map(|a| Schema {
            fields: a
                .group_by
                .iter()
                .map(|(n, _, t)| (n.clone(), *t, true))
                .chain(a.compute.iter().map(|c| {
                    (
                        c.name.clone(),
                        c.ty,
                        c.func != AggFunc::Count && c.func != AggFunc::CountDistinct,
                    )
                }))
                .collect(),
            key: a.group_by.iter().map(|(n, _, _)| n.clone()).collect(),
        })
    }

    /// The sinks a source or aggregate feeds.
    pub fn outputs_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flows
            .iter()
            .filter(move |(f, _)| f == name)
            .map(|(_, t)| t.as_str())
    }
}

/// Re-exported: the plan reaches it as `check::pipeline::url_shown`.
pub use super::secrets::url_shown;
