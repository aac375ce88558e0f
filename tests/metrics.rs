//! The metrics of spec §15: a pipeline run in this process (`hamstr::app::run --once`)
//! against the fake API, with a 429 to retry, a datetime watermark, a sink that takes
//! everything and one whose program is missing; then the Prometheus text that
//! `/metrics` serves (`hamstr::metrics::render`) is parsed with a Prometheus text parser
//! and every counter equals what the run did. Metrics stay empty unless enabled.

mod support;

use prometheus_parse::{Scrape, Value};
use std::time::Duration;
use support::cli::Pipeline;
use support::events::{listener_url, Sender};
use support::{records, wait_until, Fault, Paging, TestApi};

/// The value of metric `name` with label `key=value` (one sample expected).
fn value(scrape: &Scrape, name: &str, key: &str, label: &str) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(key) == Some(label))
        .collect();
    assert_eq!(found.len(), 1, "{name}{{{key}=\"{label}\"}}: {found:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

#[test]
fn the_metrics_equal_what_the_run_did() {
    // Off unless asked: nothing is counted before `enable`.
    hamstr::metrics::source_request("orders");
    assert!(!hamstr::metrics::render().contains("source=\"orders\""));

    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(25));
    api.serve("/orders", Paging::page(10));
    api.fail_next("/orders", Fault::Status(429));
    let p = Pipeline::new(&format!(
        r#"
service api {{
  base_url = "{url}"
  retry {{ attempts = 3  backoff = 50ms  max_backoff = 200ms }}
}}

source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 10)
  records  = $.data[*]
  key      = id
  incremental {{ cursor = created_at }}
  fields {{
    id         : string   = $.id
    created_at : datetime = $.created_at
  }}
}}

sink out  = jsonl("out/orders.jsonl")
sink hook = exec(["./nowhere.sh"])

flow orders -> out, hook
"#,
        url = api.url()
    ));

    hamstr::metrics::enable();
    let outcome = hamstr::app::run(
        &p.file,
        true,
        false,
        Some(&p.data),
        &hamstr::app::Exchanges::Live,
        None,
        None,
        hamstr::app::Console { color: false },
    )
    .expect("the run");
    assert!(
        matches!(outcome, hamstr::app::Outcome::Failure),
        "records wait in the hook's queue"
    );
    let text = hamstr::metrics::render();
    assert!(!text.contains(&api.url()), "no URL in the metrics:\n{text}");
    let m = parse(&text);
    let source = |name: &str| value(&m, name, "source", "orders");
    // Pages of 10, 10 and 5; the first request was answered 429 and tried again.
    assert_eq!(source("hamstr_source_requests_total"), 3.0, "{text}");
    assert_eq!(source("hamstr_source_pages_total"), 3.0);
    assert_eq!(source("hamstr_source_records_total"), 25.0);
    assert_eq!(source("hamstr_source_emitted_total"), 25.0);
    assert_eq!(source("hamstr_source_rejected_total"), 0.0);
    assert_eq!(source("hamstr_source_errors_total"), 0.0);
    let now = chrono::Utc::now().timestamp() as f64;
    let last = source("hamstr_source_last_success_timestamp_seconds");
    assert!(
        last > now - 600.0 && last <= now + 1.0,
        "{last} against {now}"
    );
    // The watermark is the newest created_at, record 25's.
    let newest = chrono::DateTime::parse_from_rfc3339(&records::created_at(25))
        .unwrap()
        .timestamp() as f64;
    let lag = source("hamstr_source_watermark_lag_seconds");
    assert!(
        (lag - (now - newest)).abs() < 600.0,
        "lag {lag}, expected about {}",
        now - newest
    );

    let service = |name: &str| value(&m, name, "service", "api");
    assert_eq!(service("hamstr_service_429_total"), 1.0);
    assert_eq!(service("hamstr_service_retries_total"), 1.0);
    let answered = m
        .samples
        .iter()
        .find(|s| s.metric == "hamstr_service_request_duration_seconds")
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.last().map(|b| b.count).unwrap_or_default(),
            _ => 0.0,
        });
    assert_eq!(answered, Some(4.0), "4 answers timed:\n{text}");

    assert_eq!(
        value(&m, "hamstr_sink_delivered_records_total", "sink", "out"),
        25.0
    );
    assert_eq!(value(&m, "hamstr_sink_failures_total", "sink", "out"), 0.0);
    assert!(value(&m, "hamstr_sink_failures_total", "sink", "hook") >= 1.0);
    assert_eq!(value(&m, "hamstr_sink_queue_depth", "sink", "hook"), 3.0);
    assert_eq!(
        p.jsonl("out/orders.jsonl").len(),
        25,
        "the metrics say what the sink holds"
    );

    // The listener's hook: events by answer code.
    hamstr::metrics::event_answered("orders", 200);
    hamstr::metrics::event_answered("orders", 200);
    hamstr::metrics::event_answered("orders", 401);
    let m = parse(&hamstr::metrics::render());
    let events: Vec<(String, f64)> = m
        .samples
        .iter()
        .filter(|s| s.metric == "hamstr_events_received_total")
        .map(|s| match s.value {
            Value::Counter(v) => (s.labels.get("code").unwrap_or_default().to_string(), v),
            _ => panic!("a counter"),
        })
        .collect();
    let mut events = events;
    events.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(events, [("200".to_string(), 2.0), ("401".to_string(), 1.0)]);
}

/// `hamstr run` with `server { metrics = true }`: `/metrics` on its listener, scraped with
/// a real client and parsed, equals what the run did (polled pages into a sink, events
/// answered 200 and 401 on a receive path); without `metrics = true` it is a 404.
#[test]
fn metrics_are_served_on_the_listener() {
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(12));
    api.serve("/orders", Paging::page(5));
    let text = |metrics: bool| {
        format!(
            r#"
server {{ metrics = {metrics} }}
service api {{ base_url = "{url}" }}

source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 5)
  records  = $.data[*]
  key      = id
  fields {{ id : string = $.id }}
}}

source pushed from api {{
  receive {{
    path   = "/hooks/orders"
    verify = token(header = "X-Token", value = "t0ken-value")
  }}
  key = id
  fields {{ id : string = $.id }}
}}

sink out = jsonl("out/orders.jsonl")
flow orders, pushed -> out
"#,
            url = api.url()
        )
    };
    let p = Pipeline::new(&text(true));
    let sender = Sender::new();
    let mut run = p.spawn_run(&["--no-watch", "--listen", "127.0.0.1:0"]);
    let url = listener_url(&mut run);
    assert!(
        wait_until(
            || p.jsonl("out/orders.jsonl").len() >= 12,
            Duration::from_secs(60)
        ),
        "{}",
        run.stderr()
    );
    let hook = format!("{url}/hooks/orders");
    let json = ("content-type", "application/json".to_string());
    let ok = vec![json.clone(), ("X-Token", "t0ken-value".to_string())];
    assert_eq!(sender.post(&hook, &ok, br#"{"id": "e1"}"#).unwrap().0, 200);
    assert_eq!(sender.post(&hook, &ok, br#"{"id": "e2"}"#).unwrap().0, 200);
    assert_eq!(
        sender.post(&hook, &[json], br#"{"id": "e3"}"#).unwrap().0,
        401
    );

    let (status, body) = sender.get(&format!("{url}/metrics")).unwrap();
    run.terminate(Duration::from_secs(20));
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("t0ken-value") && !body.contains(&api.url()),
        "{body}"
    );
    let m = parse(&body);
    let orders = |name: &str| value(&m, name, "source", "orders");
    assert_eq!(orders("hamstr_source_requests_total"), 3.0, "{body}");
    assert_eq!(orders("hamstr_source_pages_total"), 3.0);
    assert_eq!(orders("hamstr_source_records_total"), 12.0);
    assert_eq!(orders("hamstr_source_emitted_total"), 12.0);
    assert_eq!(
        value(&m, "hamstr_sink_delivered_records_total", "sink", "out"),
        14.0
    );
    // Nothing waited: the sink's queue gauge is absent or zero.
    assert!(m
        .samples
        .iter()
        .filter(|s| s.metric == "hamstr_sink_queue_depth" && s.labels.get("sink") == Some("out"))
        .all(|s| matches!(s.value, Value::Gauge(v) if v == 0.0)));
    let code = |c: &str| {
        m.samples
            .iter()
            .find(|s| s.metric == "hamstr_events_received_total" && s.labels.get("code") == Some(c))
            .map(|s| match s.value {
                Value::Counter(v) => v,
                _ => -1.0,
            })
    };
    assert_eq!(code("200"), Some(2.0), "{body}");
    assert_eq!(code("401"), Some(1.0), "{body}");

    // Off unless asked.
    let p = Pipeline::new(&text(false));
    let mut run = p.spawn_run(&["--no-watch", "--listen", "127.0.0.1:0"]);
    let url = listener_url(&mut run);
    let (status, _) = sender.get(&format!("{url}/metrics")).unwrap();
    run.terminate(Duration::from_secs(20));
    assert_eq!(status, 404);
}
