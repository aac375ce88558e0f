//! What the language server says about the words of the language: the properties of
//! each block, the kinds of paginators, auth, schedules and sinks, and the functions,
//! each with a line from the reference (docs/language.md).

/// `(block, property, what it means)`; a block is the keyword or property that opens
/// it (`source`, `retry`, `incremental`).
pub const PROPERTIES: &[(&str, &str, &str)] = &[
    ("service", "base_url", "The URL every source path of this service is joined to: `base_url = \"https://api.example.com/v1\"`."),
    ("service", "auth", "Credentials, sent only to the service's own origin: `bearer(TOKEN)`, `basic(USER, PASSWORD)`, `api_key(header = \"X-Key\", value = ...)` or `api_key(query = \"key\", value = ...)`, `none`."),
    ("service", "headers", "Headers sent with every request of the service: `headers { \"Accept\" = \"application/json\" }`."),
    ("service", "rate_limit", "At most this many requests, shared by all its sources: `rate_limit = 20/s` (also `/m`, `/h`)."),
    ("service", "concurrency", "How many requests to the service may be in flight at once (default 4)."),
    ("service", "timeout", "How long one request may take before it is retried: `timeout = 30s`."),
    ("service", "retry", "Retries of failed requests (429, 5xx, network): `retry { attempts = 5  backoff = 500ms  max_backoff = 1m }`."),
    ("service", "max_body", "The largest response body read, in bytes (default 64 MiB); a larger one fails the request."),
    ("retry", "attempts", "How many times a request is tried in all (default 5)."),
    ("retry", "backoff", "The first wait before a retry, doubled each time, with jitter (default 500ms)."),
    ("retry", "max_backoff", "The longest wait between two attempts (default 1m); `Retry-After` is honoured."),
    ("source", "get", "The path requested with GET, joined to the service's `base_url`; `{field}` takes a parent record's field in a child source."),
    ("source", "post", "The path requested with POST (its JSON `body` goes with it)."),
    ("source", "query", "Query parameters of every request: `query { per_page = 100 }`."),
    ("source", "body", "The JSON body of a POST request: `body { filter { status = \"paid\" } }`."),
    ("source", "schedule", "When the source runs: `every(30s)`, `cron(\"*/15 * * * *\")` or `once`; a child source runs when its parent emits."),
    ("source", "paginate", "How the next page is requested: `page(...)`, `offset(...)`, `cursor(...)`, `next_url($.next)`, `link_header()` or `none`."),
    ("source", "records", "The JSONPath of the records in a response body: `records = $.data[*]` (default: the body is the array)."),
    ("source", "model", "The model the records must fit: each of its fields needs an entry in `fields`."),
    ("source", "key", "The field (or `[fields]`) identifying a record: only new or changed keys are emitted."),
    ("source", "incremental", "Only new objects: `incremental { cursor = created_at  param = \"since\" }`; a watermark is kept between runs."),
    ("source", "where", "Records that fail this condition are not emitted: `where = status != \"open\"`."),
    ("source", "fields", "The record's fields from each item: `fields { id : string = $.id }`; with a `model`, the types come from it."),
    ("source", "for_each", "Makes this a child source: it runs once per record its parent emits, with `parent.FIELD` and `{field}` placeholders."),
    ("source", "receive", "Events POSTed to hamstr's listener feed the source: `receive { path = \"/hooks/pay\"  verify = hmac(...) }`; answered 200 once committed. Needs a `key`; without `get` it is push only."),
    ("receive", "path", "The listener's path the events are POSTed to: `path = \"/hooks/payments\"`."),
    ("receive", "verify", "How an event proves its sender: `hmac(...)`, `stripe(...)`, `standard(...)`, `token(...)` or `none`; a failed verification is answered 401."),
    ("receive", "records", "The JSONPath of the record items in the event body (default `$`): an object is one item, an array many."),
    ("receive", "fetch", "Each item names the record to GET from the service: `fetch = \"/payments/{id}\"` (placeholders URL-encoded); a failed fetch is answered 503."),
    ("receive", "max_body", "The largest event body taken, in bytes (default 1 MiB); a larger one is answered 413."),
    ("server", "listen", "The address of hamstr's HTTP listener: `listen = \"127.0.0.1:8787\"` (the default); `run --listen` overrides it."),
    ("server", "metrics", "`metrics = true` serves `GET /metrics` in the Prometheus text format."),
    ("incremental", "cursor", "The field whose greatest value is the watermark (a `datetime`, number or string field)."),
    ("incremental", "param", "The query parameter that carries the watermark to the API: `param = \"updated_since\"`."),
    ("incremental", "order", "`newest_first` when the API lists newest records first: the run stops once it reaches older ones."),
    ("incremental", "format", "How the watermark is written into `param`: `\"unix\"`, `\"unix_ms\"` or a strftime pattern (default RFC 3339)."),
    ("incremental", "lookback", "Reach back this far behind the watermark (`lookback = 10m`) for records that arrive late; their keys settle duplicates."),
    ("incremental", "resume", "The path of an opaque resume token in each page (`resume = $.after_cursor`), sent as `param` by the next run."),
    ("incremental", "start", "The watermark before anything was collected: `start = \"2024-01-01T00:00:00Z\"`."),
    ("aggregate", "from", "The sources whose records the aggregate reads: `from = [orders]`."),
    ("aggregate", "group_by", "The groups: `group_by = [day(created_at), currency]`."),
    ("aggregate", "compute", "What each group holds: `compute { orders = count()  revenue = sum(amount) }`."),
];

/// `(kind, what it is)` of paginators.
pub const PAGINATORS: &[(&str, &str)] = &[
    ("page", "`page(param = \"page\", start = 1, size_param = \"per_page\", size = 100, total_pages = $.pages)`: numbered pages; stops on an empty or short page or at `total_pages`."),
    ("offset", "`offset(param = \"offset\", limit_param = \"limit\", limit = 100, total = $.total)`: an offset moved by each page's record count."),
    ("cursor", "`cursor(param = \"after\", from = $.next_cursor, has_more = $.has_more)`: a cursor read from each page."),
    ("next_url", "`next_url($.links.next)`: the next page's URL read from each page."),
    ("link_header", "`link_header()`: the `rel=\"next\"` URL of the RFC 8288 `Link` header."),
    ("none", "`none`: one request, one page."),
];

/// `(kind, what it is)` of auth.
pub const AUTH_KINDS: &[(&str, &str)] = &[
    ("bearer", "`bearer(TOKEN)`: `Authorization: Bearer TOKEN`."),
    ("basic", "`basic(USER, PASSWORD)`: HTTP Basic authentication."),
    ("api_key", "`api_key(header = \"X-Api-Key\", value = KEY)` or `api_key(query = \"key\", value = KEY)`."),
    ("oauth2", "`oauth2(token_url = URL, client_id = ID, client_secret = SECRET, scope = ..., refresh_token = ...)`: OAuth2 access tokens, renewed before they expire; a rotated refresh token is kept in the data directory."),
    ("aws_sigv4", "`aws_sigv4(region = \"eu-west-1\", service = \"lambda\", access_key = ..., secret_key = ..., session_token = ...)`: every request signed with AWS Signature Version 4."),
    ("none", "`none`: no credentials."),
];

/// `(kind, what it is)` of `receive`'s verify kinds.
pub const VERIFY_KINDS: &[(&str, &str)] = &[
    ("hmac", "`hmac(header = \"X-Signature\", secret = ..., prefix = \"\", encoding = \"hex\")`: HMAC-SHA256 of the raw body (`encoding = \"base64\"` for Shopify, `prefix = \"sha256=\"` for GitHub)."),
    ("stripe", "`stripe(secret = ..., tolerance = 5m)`: the `Stripe-Signature` header; an older timestamp is refused."),
    ("standard", "`standard(secret = \"whsec_...\", tolerance = 5m)`: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."),
    ("token", "`token(header = \"X-Token\", value = ...)`: a shared secret in a header."),
    ("none", "`none`: accepted as is (with `fetch`, each record is read from the service)."),
];

/// `(kind, what it is)` of schedules.
pub const SCHEDULES: &[(&str, &str)] = &[
    (
        "every",
        "`every(30s)`: a run starts this long after the previous one started.",
    ),
    (
        "cron",
        "`cron(\"*/15 * * * *\")`: five cron fields, local time unless `TZ` says otherwise.",
    ),
    ("once", "`once`: at start only."),
];

/// `(kind, what it is)` of sinks.
pub const SINK_KINDS: &[(&str, &str)] = &[
    ("sled", "`sled(\"tree\")`: the embedded store in the data directory, one record per key (`hamstr dump`)."),
    ("jsonl", "`jsonl(\"out/orders.jsonl\")`: one JSON record a line, appended."),
    ("stdout", "`stdout()`: one JSON record a line on standard output."),
    ("postgres", "`postgres(URL, table = \"orders\", batch = 500)`: upserted by key into a table made from the model."),
    ("webhook", "`webhook(URL, batch = 100)`: records POSTed as a JSON array."),
    ("exec", "`exec([\"./announce.sh\", \"arg\"], batch = 100, timeout = 60s)`: runs the program (no shell) once per batch, the records as JSON lines on its standard input; exit 0 means delivered, otherwise retried from the sink's queue."),
];

/// `(function, what it does)`.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("lower", "`lower(s)`: the text in lower case."),
    ("upper", "`upper(s)`: the text in upper case."),
    ("trim", "`trim(s)`: the text without leading and trailing spaces."),
    ("concat", "`concat(a, b, ...)`: the texts joined."),
    ("coalesce", "`coalesce(a, b, ...)`: the first value that is not null."),
    ("to_string", "`to_string(x)`: the value as text."),
    ("to_int", "`to_int(x)`: the value as an integer."),
    ("to_float", "`to_float(x)`: the value as a float."),
    ("to_decimal", "`to_decimal(x)`: the value as an exact decimal."),
    ("parse_datetime", "`parse_datetime(s, \"%d/%m/%Y %H:%M\")`: a datetime read with a format."),
    ("from_unix", "`from_unix(n)`: a datetime from seconds since 1970."),
    ("from_unix_ms", "`from_unix_ms(n)`: a datetime from milliseconds since 1970."),
    ("now", "`now()`: the current time."),
    ("day", "`day(t)`: the date of a datetime."),
    ("hour", "`hour(t)`: the hour of a datetime."),
    ("month", "`month(t)`: the month of a datetime."),
    ("year", "`year(t)`: the year of a datetime."),
    ("round", "`round(x, digits)`: a number rounded."),
    ("abs", "`abs(x)`: the absolute value."),
    ("length", "`length(x)`: the length of a text or a list."),
    ("unix", "`unix(t)`: a datetime as whole seconds since 1970 (`query { since = unix(watermark) }`)."),
    ("unix_ms", "`unix_ms(t)`: a datetime as milliseconds since 1970."),
    ("format_datetime", "`format_datetime(t, \"%Y-%m-%d %H:%M\")`: a datetime written with a strftime pattern."),
    ("env", "`env(\"NAME\", \"default\")`: an environment variable, masked as a secret wherever hamstr prints."),
];

/// The properties of a block, with what each means.
pub fn properties(block: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    PROPERTIES
        .iter()
        .filter(move |(b, _, _)| *b == block)
        .map(|(_, p, doc)| (*p, *doc))
}

/// What a word of the language means, when it is one.
pub fn word(w: &str) -> Option<&'static str> {
    [
        PAGINATORS,
        AUTH_KINDS,
        SCHEDULES,
        SINK_KINDS,
        FUNCTIONS,
        VERIFY_KINDS,
    ]
    .iter()
    .find_map(|list| list.iter().find(|(k, _)| *k == w).map(|(_, d)| *d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::vocabulary as v;

    /// Every property, paginator, auth and sink kind and function the checker knows
    /// has a line here.
    #[test]
    fn the_reference_covers_what_check_accepts() {
        for p in v::SERVICE_PROPS {
            assert!(properties("service").any(|(q, _)| q == *p), "service {p}");
        }
        for p in v::SOURCE_PROPS {
            assert!(properties("source").any(|(q, _)| q == *p), "source {p}");
        }
        for p in v::RECEIVE_PROPS {
            assert!(properties("receive").any(|(q, _)| q == *p), "receive {p}");
        }
        for p in v::SERVER_PROPS {
            assert!(properties("server").any(|(q, _)| q == *p), "server {p}");
        }
        for (list, known) in [
            (v::PAGINATORS, PAGINATORS),
            (v::AUTH_KINDS, AUTH_KINDS),
            (v::SINK_KINDS, SINK_KINDS),
            (v::VERIFY_KINDS, VERIFY_KINDS),
        ] {
            for k in list {
                assert!(known.iter().any(|(q, _)| q == k), "{k}");
            }
        }
        for (f, ..) in v::FUNCTIONS {
            assert!(FUNCTIONS.iter().any(|(q, _)| q == f), "function {f}");
        }
    }

    /// Whether `word` stands in `text` as a whole word.
    fn mentions(text: &str, word: &str) -> bool {
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        text.match_indices(word).any(|(i, _)| {
            !text[..i].chars().next_back().is_some_and(is_word)
                && !text[i + word.len()..].chars().next().is_some_and(is_word)
        })
    }

    /// The editor grammars (editors/) colour every kind, function and property the
    /// language has, and the VS Code extension carries the TextMate grammar unchanged.
    #[test]
    fn the_editor_grammars_know_every_word() {
        let textmate = include_str!("../../../editors/textmate/hamstr.tmLanguage.json");
        let vscode = include_str!("../../../editors/vscode/syntaxes/hamstr.tmLanguage.json");
        let highlights = include_str!("../../../editors/tree-sitter-hamstr/queries/highlights.scm");
        assert_eq!(
            textmate, vscode,
            "editors/vscode/syntaxes/ holds an old copy of the TextMate grammar: `npm run sync-grammar` in editors/vscode"
        );
        for list in [
            PAGINATORS,
            AUTH_KINDS,
            SCHEDULES,
            SINK_KINDS,
            FUNCTIONS,
            VERIFY_KINDS,
        ] {
            for (word, _) in list {
                assert!(
                    mentions(textmate, word),
                    "the TextMate grammar lacks `{word}`"
                );
                assert!(mentions(highlights, word), "highlights.scm lacks `{word}`");
            }
        }
        for (_, prop, _) in PROPERTIES {
            assert!(
                mentions(textmate, prop),
                "the TextMate grammar lacks `{prop}`"
            );
        }
    }
}
