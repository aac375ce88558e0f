//! A realistic pipeline of any size, for the benchmarks of `check` and of the language
//! server: ten services, fifty models, sources with a query, paginator, incremental
//! cursor, filter and eight mapped fields (every 20th a child source), aggregates,
//! sinks and flows.

use std::fmt::Write as _;

const SERVICES: usize = 10;
const MODELS: usize = 50;

/// A pipeline with `sources` sources; every 20th is a child of the one before it.
pub fn pipeline(sources: usize) -> String {
    let mut out = String::with_capacity(sources * 900);
    for s in 0..SERVICES {
        let _ = write!(
            out,
            r#"service svc_{s} {{
  base_url   = env("SVC_{s}_URL", "https://api{s}.example.com/v1")
  auth       = bearer(env("SVC_{s}_TOKEN", "demo"))
  headers {{ "Accept" = "application/json"  "X-Client" = "hamstr" }}
  rate_limit = 20/s
  timeout    = 10s
  retry {{ attempts = 5  backoff = 500ms  max_backoff = 30s }}
}}

"#
        );
    }
    for m in 0..MODELS {
        let _ = write!(
            out,
            "model M{m} {{\n  id         : string\n  status     : string\n  amount     : decimal\n  currency   : string\n  updated_at : datetime\n  created_at : datetime\n  note       : string?\n  tags       : json\n}}\n\n"
        );
    }
    for i in 0..sources {
        let m = i % MODELS;
        let svc = i % SERVICES;
        if i % 20 == 19 {
            let _ = write!(
                out,
                r#"source src_{i} from svc_{svc} {{
  for_each = src_{parent}
  get      = "/things/{{id}}/parts"
  query {{ expand = "all" }}
  records  = $.parts[*]
  key      = [thing_id, sku]
  where    = qty > 0
  fields {{
    thing_id : string   = parent.id
    sku      : string   = $.sku
    qty      : int      = to_int($.qty)
    price    : decimal  = to_decimal($.price) / 100
    seen_at  : datetime = parent.updated_at
  }}
}}

"#,
                parent = i - 1
            );
            continue;
        }
        let _ = write!(
            out,
            r#"source src_{i} from svc_{svc} {{
  get      = "/things/{i}"
  query {{ per_page = 100  kind = "k{i}" }}
  schedule = every({every}s)
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 100, total_pages = $.meta.total_pages)
  records  = $.data[*]
  model    = M{m}
  key      = id
  incremental {{ cursor = updated_at  param = "updated_since" }}
  where    = amount > 0 and status != "deleted"
  fields {{
    id         = $.id
    status     = lower($.status)
    amount     = to_decimal($.amount.value) / 100
    currency   = upper($.amount.currency ?? "EUR")
    updated_at = $.updated_at
    created_at = from_unix($.created)
    note       = trim($.note)
    tags       = $.tags[*].name
  }}
}}

"#,
            every = 30 + i % 60
        );
    }
    for m in 0..MODELS {
        let _ = writeln!(out, "sink store_{m} = sled(\"m{m}\")");
        let _ = writeln!(out, "sink archive_{m} = jsonl(\"out/m{m}.jsonl\")");
        let _ = write!(
            out,
            "aggregate daily_{m} {{\n  from     = [{}]\n  group_by = [day(created_at), currency]\n  compute {{ n = count()  total = sum(amount)  largest = max(amount) }}\n}}\nsink view_{m} = stdout()\nflow daily_{m} -> view_{m}\n\n",
            (0..sources)
                .filter(|i| i % MODELS == m && i % 20 != 19)
                .take(8)
                .map(|i| format!("src_{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(out, "sink parts = sled(\"parts\")");
    for i in 0..sources {
        if i % 20 == 19 {
            let _ = writeln!(out, "flow src_{i} -> parts");
        } else {
            let m = i % MODELS;
            let _ = writeln!(out, "flow src_{i} -> store_{m}, archive_{m}");
        }
    }
    out
}
