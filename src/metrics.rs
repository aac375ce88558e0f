//! The run's metrics (spec §15), served as the Prometheus text format at `GET /metrics`
//! when `server { metrics = true }`: per source requests, pages, records, emitted,
//! rejected, errors, last successful run, watermark lag and rate-limit waits; per sink
//! queue depth, delivered records and failures; per service request latency, retries and
//! 429s; received events by answer. Kept with `prometheus-client` in one registry of the
//! process; the nodes count through the functions here, which do nothing until
//! [`enable`] is called (metrics are off unless asked). Labels hold only the names of
//! sources, sinks and services and status codes: never a URL, a header or a value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabel {
    source: String,
    code: u16,
}

type Counters<L> = Family<L, Counter>;
type Gauges<L> = Family<L, Gauge<f64, AtomicU64>>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies from 5 ms to about 20 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

struct Metrics {
    registry: Registry,
    requests: Counters<SourceLabel>,
    pages: Counters<SourceLabel>,
    records: Counters<SourceLabel>,
    emitted: Counters<SourceLabel>,
    rejected: Counters<SourceLabel>,
    errors: Counters<SourceLabel>,
    last_success: Gauges<SourceLabel>,
    watermark_lag: Gauges<SourceLabel>,
    rate_limit_waits: Counters<ServiceLabel>,
    queue_depth: Gauges<SinkLabel>,
    delivered: Counters<SinkLabel>,
    failures: Counters<SinkLabel>,
    latency: Histograms<ServiceLabel>,
    retries: Counters<ServiceLabel>,
    throttled: Counters<ServiceLabel>,
    events: Counters<AnswerLabel>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hamstr");
        let m = Metrics {
            requests: Family::default(),
            pages: Family::default(),
            records: Family::default(),
            emitted: Family::default(),
            rejected: Family::default(),
            errors: Family::default(),
            last_success: Family::default(),
            watermark_lag: Family::default(),
            rate_limit_waits: Family::default(),
            queue_depth: Family::default(),
            delivered: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            throttled: Family::default(),
            events: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "source_requests",
            "Requests a source sent (one per page asked for; retries are counted per service)",
            m.requests.clone(),
        );
        r.register("source_pages", "Pages a source fetched", m.pages.clone());
        r.register(
            "source_records",
            "Records a source selected from its pages",
            m.records.clone(),
        );
        r.register(
            "source_emitted",
            "Records a source emitted (new or changed)",
            m.emitted.clone(),
        );
        r.register(
            "source_rejected",
            "Records a source rejected",
            m.rejected.clone(),
        );
        r.register(
            "source_errors",
            "Runs of a source that failed",
            m.errors.clone(),
        );
        r.register(
            "source_last_success_timestamp_seconds",
            "When a source's last successful run ended (Unix time)",
            m.last_success.clone(),
        );
        r.register(
            "source_watermark_lag_seconds",
            "How far a source's datetime watermark is behind now, after its last run",
            m.watermark_lag.clone(),
        );
        r.register(
            "service_rate_limit_waits",
            "Requests that waited for a service's rate limit or a pause it asked for",
            m.rate_limit_waits.clone(),
        );
        r.register(
            "sink_queue_depth",
            "Pages waiting in a sink's durable queue",
            m.queue_depth.clone(),
        );
        r.register(
            "sink_delivered_records",
            "Records a sink took",
            m.delivered.clone(),
        );
        r.register(
            "sink_failures",
            "Writes a sink could not make (the page waits in its queue)",
            m.failures.clone(),
        );
        r.register(
            "service_request_duration_seconds",
            "Time until a service's answer arrived (headers), per request sent",
            m.latency.clone(),
        );
        r.register(
            "service_retries",
            "Requests to a service tried again",
            m.retries.clone(),
        );
        r.register(
            "service_429",
            "Answers 429 Too Many Requests from a service",
            m.throttled.clone(),
        );
        r.register(
            "events_received",
            "Events received by a source's receive path, by the status answered",
            m.events.clone(),
        );
        Metrics { registry, ..m }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Turns counting on for this process (a pipeline asked for metrics).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
    LazyLock::force(&METRICS);
}

/// Whether metrics are counted.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

fn on() -> Option<&'static Metrics> {
    enabled().then(|| &*METRICS)
}

fn source(name: &str) -> SourceLabel {
    SourceLabel {
        source: name.to_string(),
    }
}

fn sink(name: &str) -> SinkLabel {
    SinkLabel {
        sink: name.to_string(),
    }
}

fn service(name: &str) -> ServiceLabel {
    ServiceLabel {
        service: name.to_string(),
    }
}

/// A source asked for a page.
pub fn source_request(name: &str) {
    if let Some(m) = on() {
        m.requests.get_or_create(&source(name)).inc();
    }
}

/// What a source's run did, as its report says; `watermark_lag` for a datetime
/// watermark after a successful run.
pub fn source_run(name: &str, counts: RunCounts, failed: bool, watermark_lag: Option<f64>) {
    let Some(m) = on() else { return };
    let l = source(name);
    m.pages.get_or_create(&l).inc_by(counts.pages);
    m.records.get_or_create(&l).inc_by(counts.records);
    m.emitted.get_or_create(&l).inc_by(counts.emitted);
    m.rejected.get_or_create(&l).inc_by(counts.rejected);
    // Created at 0 too: a source without errors shows `0`, not nothing.
    let errors = m.errors.get_or_create(&l);
    if failed {
        errors.inc();
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        m.last_success.get_or_create(&l).set(now);
    }
    if let Some(lag) = watermark_lag {
        m.watermark_lag.get_or_create(&l).set(lag);
    }
}

/// The counts of one run of a source.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunCounts {
    pub pages: u64,
    pub records: u64,
    pub emitted: u64,
    pub rejected: u64,
}

/// A request to a service waited for its rate limit or a pause.
pub fn rate_limit_wait(name: &str) {
    if let Some(m) = on() {
        m.rate_limit_waits.get_or_create(&service(name)).inc();
    }
}

/// A service answered (any status) after `took`.
pub fn service_answer(name: &str, status: u16, took: Duration) {
    if let Some(m) = on() {
        let l = service(name);
        m.latency.get_or_create(&l).observe(took.as_secs_f64());
        if status == 429 {
            m.throttled.get_or_create(&l).inc();
        }
    }
}

/// A request to a service is tried again.
pub fn service_retry(name: &str) {
    if let Some(m) = on() {
        m.retries.get_or_create(&service(name)).inc();
    }
}

/// A sink took `records` records.
pub fn sink_delivered(name: &str, records: u64) {
    if let Some(m) = on() {
        let l = sink(name);
        m.delivered.get_or_create(&l).inc_by(records);
        m.failures.get_or_create(&l).inc_by(0);
    }
}

/// A sink could not take a page.
pub fn sink_failure(name: &str) {
    if let Some(m) = on() {
        m.failures.get_or_create(&sink(name)).inc();
    }
}

/// How many pages wait in a sink's queue now.
pub fn sink_queue_depth(name: &str, pages: usize) {
    if let Some(m) = on() {
        m.queue_depth.get_or_create(&sink(name)).set(pages as f64);
    }
}

/// An event for `source` was answered with `status` (the listener calls this).
pub fn event_answered(source_name: &str, status: u16) {
    if let Some(m) = on() {
        m.events
            .get_or_create(&AnswerLabel {
                source: source_name.to_string(),
                code: status,
            })
            .inc();
    }
}

/// The metrics in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How far behind now a watermark is, in seconds, when it is a datetime (RFC 3339).
pub fn lag_of(watermark: Option<&serde_json::Value>) -> Option<f64> {
    let text = watermark?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let lag = chrono::Utc::now().signed_duration_since(at);
    Some((lag.num_milliseconds() as f64 / 1000.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_watermarks_have_a_lag() {
        let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let lag = lag_of(Some(&serde_json::json!(an_hour_ago))).unwrap();
        assert!((3590.0..3700.0).contains(&lag), "{lag}");
        assert_eq!(lag_of(Some(&serde_json::json!(42))), None);
        assert_eq!(lag_of(Some(&serde_json::json!("page-7"))), None);
        assert_eq!(lag_of(None), None);
    }
}
