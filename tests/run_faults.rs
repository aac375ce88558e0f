//! Faults between hamstr and an API (spec §3, §5.1, §8): Retry-After and RateLimit
//! waits, 5xx bursts, broken bodies, hangs, bad JSON, HTML, oversized bodies, links and
//! redirects to other origins, credentials on the service's origin only, a failing source
//! beside healthy ones, and secrets kept out of every log line.

mod support;

use std::time::{Duration, SystemTime};

use support::cli::{
    assert_contains, id_range, ids, service, stderr, stdout, text, Pipeline, FIELDS,
};
use support::{base64_encode, records, Auth, Fault, Paging, RetryAfter, TestApi};

const PATH: &str = "/items";
const LINES: &str = "out/src.jsonl";

fn api_with(n: usize, paging: Paging) -> TestApi {
    let api = TestApi::start_blocking();
    api.set_records(PATH, records::make(n));
    api.serve(PATH, paging);
    api
}

/// One source `src` at `/items` of a service with `svc_extra` properties, into jsonl.
fn pipeline(url: &str, svc_extra: &str, body: &str) -> Pipeline {
    Pipeline::new(&format!(
        "{}\nsource src from api {{\n  get = \"/items\"\n  schedule = once\n{body}\n{FIELDS}\n}}\nsink lines = jsonl(\"{LINES}\")\nflow src -> lines\n",
        service(url, svc_extra)
    ))
}

const PAGED: &str = "paginate = page(size_param = \"per_page\", size = 5)\n  records = $.data[*]";

/// The time between the first and the last request to `/items`.
fn spread(api: &TestApi) -> Duration {
    let reqs = api.requests_to(PATH);
    reqs.last().unwrap().at - reqs.first().unwrap().at
}

// ---- waits ------------------------------------------------------------------------------

#[test]
fn a_429_with_retry_after_seconds_is_waited_out() {
    let api = api_with(5, Paging::none());
    api.fail_next(
        PATH,
        Fault::TooManyRequests {
            retry_after: RetryAfter::Seconds(1),
        },
    );
    let p = pipeline(&api.url(), "", "");
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 5));
    assert_eq!(api.hits(PATH), 2);
    assert!(
        spread(&api) >= Duration::from_millis(900),
        "{:?}",
        spread(&api)
    );
}

#[test]
fn a_429_with_retry_after_as_an_http_date_is_waited_out() {
    let api = api_with(5, Paging::none());
    // HTTP dates have whole seconds: this is 1-2 s from now
    let when = SystemTime::now() + Duration::from_secs(2);
    api.fail_next(
        PATH,
        Fault::TooManyRequests {
            retry_after: RetryAfter::HttpDate(when),
        },
    );
    let p = pipeline(&api.url(), "", "");
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 5));
    assert_eq!(api.hits(PATH), 2);
    assert!(
        spread(&api) >= Duration::from_millis(500),
        "{:?}",
        spread(&api)
    );
}

#[test]
fn ratelimit_remaining_zero_pauses_before_the_next_request() {
    let api = api_with(8, Paging::page(5));
    api.fail_next(
        PATH,
        Fault::RateLimitHeaders {
            remaining: 0,
            reset_secs: 1,
        },
    );
    let p = pipeline(&api.url(), "", PAGED);
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 8));
    assert_eq!(api.hits(PATH), 2, "no 429 was needed");
    assert!(
        spread(&api) >= Duration::from_millis(700),
        "{:?}",
        spread(&api)
    );
}

#[test]
fn a_retry_after_pauses_every_source_of_the_service() {
    let api = TestApi::start_blocking();
    api.set_records("/a", records::make(3));
    api.set_records("/b", records::make(8));
    api.serve("/b", Paging::page(5));
    api.fail_next(
        "/a",
        Fault::TooManyRequests {
            retry_after: RetryAfter::Seconds(3),
        },
    );
    // /b's first page comes late, so its second request is asked for during the pause
    api.fail_next("/b", Fault::Delay(Duration::from_millis(800)));
    let src = |name: &str, path: &str, extra: &str| {
        format!("source {name} from api {{\n  get = \"{path}\"\n  schedule = once\n{extra}\n{FIELDS}\n}}\n")
    };
    let p = Pipeline::new(&format!(
        "{}\n{}\n{}\nsink lines = jsonl(\"{LINES}\")\nflow src_a, src_b -> lines\n",
        service(&api.url(), ""),
        src("src_a", "/a", ""),
        src("src_b", "/b", PAGED),
    ));
    p.run_ok();
    assert_eq!(p.jsonl(LINES).len(), 11);
    let first_a = api.requests_to("/a")[0].at;
    let second_b = api.requests_to("/b")[1].at;
    assert!(
        second_b.duration_since(first_a) >= Duration::from_secs(2),
        "/b's second page was asked for {:?} after the 429",
        second_b.duration_since(first_a)
    );
}

// ---- retried faults ------------------------------------------------------------------------

#[test]
fn a_burst_of_5xx_then_success() {
    let api = api_with(12, Paging::page(5));
    api.fail_after(PATH, 1, Fault::Status(500));
    api.fail_next(PATH, Fault::Status(502));
    api.fail_next(PATH, Fault::Status(503));
    let p = pipeline(
        &api.url(),
        "  retry { attempts = 5  backoff = 50ms  max_backoff = 200ms }",
        PAGED,
    );
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 12));
    let pages: Vec<_> = api
        .requests_to(PATH)
        .iter()
        .map(|r| r.query_value("page").unwrap_or("-").to_string())
        .collect();
    assert_eq!(pages, ["1", "2", "2", "2", "2", "3"]);
}

/// A fault on the first request is retried and the run collects everything.
fn retried(fault: Fault) {
    let api = api_with(12, Paging::page(5));
    api.fail_next(PATH, fault.clone());
    let p = pipeline(&api.url(), "", PAGED);
    let out = p.run_once();
    assert_eq!(out.status.code(), Some(0), "{fault:?}\n{}", text(&out));
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 12), "{fault:?}");
    assert_eq!(api.hits(PATH), 4, "{fault:?}: one retry, then three pages");
}

#[test]
fn a_reset_mid_body_is_retried() {
    retried(Fault::ResetMidBody);
}

#[test]
fn a_short_body_is_retried() {
    retried(Fault::ShortBody);
}

#[test]
fn a_closed_connection_is_retried() {
    retried(Fault::CloseWithoutAnswer);
}

#[test]
fn malformed_json_is_retried() {
    retried(Fault::MalformedJson);
}

#[test]
fn an_html_200_is_retried() {
    retried(Fault::Html);
}

#[test]
fn a_hang_beyond_the_timeout_is_retried() {
    let api = api_with(5, Paging::none());
    api.fail_next(PATH, Fault::Hang(Duration::from_secs(5)));
    let p = pipeline(
        &api.url(),
        "  timeout = 1s\n  retry { attempts = 2  backoff = 100ms }",
        "",
    );
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 5));
    assert_eq!(api.hits(PATH), 2);
    assert!(
        spread(&api) >= Duration::from_millis(900),
        "{:?}",
        spread(&api)
    );
}

// ---- faults that fail the run ---------------------------------------------------------------

/// `fault` on every request fails the run with an error containing `says`.
fn fails(fault: Fault, svc_extra: &str, says: &str) {
    let api = api_with(5, Paging::none());
    api.fail_always(PATH, fault.clone());
    let p = pipeline(&api.url(), svc_extra, "");
    let err = p.run_failing();
    assert_contains(&err, says);
    assert!(p.jsonl(LINES).is_empty(), "{fault:?}");
}

#[test]
fn a_hang_on_every_attempt_fails_with_a_timeout() {
    fails(
        Fault::Hang(Duration::from_secs(4)),
        "  timeout = 1s\n  retry { attempts = 2  backoff = 100ms }",
        "timed out",
    );
}

#[test]
fn malformed_json_on_every_attempt_fails() {
    fails(Fault::MalformedJson, "", "not valid JSON");
}

#[test]
fn an_html_page_on_every_attempt_fails() {
    fails(Fault::Html, "", "HTML");
}

#[test]
fn a_body_larger_than_max_body_fails_clearly() {
    fails(
        Fault::Huge(64 << 20),
        "  max_body = 100000",
        "larger than max_body",
    );
    fails(
        Fault::HugeChunked(64 << 20),
        "  max_body = 100000",
        "larger than max_body",
    );
}

// ---- origins and credentials ------------------------------------------------------------------

const TOKEN: &str = "tok-Origin-5ecret+1";

fn bearer_api(n: usize, paging: Paging) -> TestApi {
    let api = api_with(n, paging);
    api.require(Auth::Bearer(TOKEN.into()));
    api
}

fn bearer_pipeline(api: &TestApi, body: &str) -> Pipeline {
    pipeline(&api.url(), &format!("  auth = bearer(\"{TOKEN}\")"), body)
}

#[test]
fn a_next_link_to_another_origin_is_not_followed() {
    let other = api_with(50, Paging::next_url(10, false));
    for paging in [Paging::next_url(10, false), Paging::link_header(10)] {
        let api = bearer_api(50, paging.clone());
        api.fail_next(PATH, Fault::NextLinkTo(other.origin()));
        let body = match paging {
            Paging::NextUrl { .. } => {
                "paginate = next_url($._links.next.href)\n  records = $._embedded.items[*]"
            }
            _ => "paginate = link_header()",
        };
        let p = bearer_pipeline(&api, body);
        let summary = p.run_ok();
        assert_contains(&summary, "another origin");
        assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 10), "{paging:?}");
        assert_eq!(api.hits(PATH), 1);
    }
    assert_eq!(other.total_hits(), 0);
    assert!(!other.saw_header_value(TOKEN));
}

#[test]
fn a_redirect_to_another_origin_gets_no_credentials() {
    let other = api_with(5, Paging::none());
    let api = bearer_api(5, Paging::none());
    api.fail_next(PATH, Fault::RedirectTo(other.url_for(PATH)));
    let p = bearer_pipeline(&api, "");
    let out = p.run_once();
    assert!(!other.saw_header_value(TOKEN), "{}", text(&out));
    assert!(!other.saw_anywhere(TOKEN));
    assert_contains(&stderr(&out), "origin");
}

#[test]
fn a_redirect_on_the_same_origin_is_followed_with_credentials() {
    let api = bearer_api(5, Paging::none());
    api.set_records("/moved", records::make(5));
    api.fail_next(PATH, Fault::RedirectTo(api.url_for("/moved")));
    let p = bearer_pipeline(&api, "");
    p.run_ok();
    assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 5));
    assert_eq!(api.hits("/moved"), 1);
}

/// What the API demands, the `auth` expression, and the environment it reads.
type AuthCase = (Auth, &'static str, Vec<(&'static str, &'static str)>);

#[test]
fn every_kind_of_credentials_arrives_on_every_page() {
    let cases: Vec<AuthCase> = vec![
        (
            Auth::Bearer("b-Tok+en/1=".into()),
            "bearer(env(\"HMR_T_A\"))",
            vec![("HMR_T_A", "b-Tok+en/1=")],
        ),
        (
            Auth::Basic("us-er".into(), "pa:ss-w+rd".into()),
            "basic(env(\"HMR_T_A\"), env(\"HMR_T_B\"))",
            vec![("HMR_T_A", "us-er"), ("HMR_T_B", "pa:ss-w+rd")],
        ),
        (
            Auth::Header("X-Api-Key".into(), "h-Key+1".into()),
            "api_key(header = \"X-Api-Key\", value = env(\"HMR_T_A\"))",
            vec![("HMR_T_A", "h-Key+1")],
        ),
        (
            Auth::Query("api_key".into(), "q-Key+1/=".into()),
            "api_key(query = \"api_key\", value = env(\"HMR_T_A\"))",
            vec![("HMR_T_A", "q-Key+1/=")],
        ),
    ];
    for (auth, expr, env) in cases {
        // the API's next links leave out a query key: hamstr has to add it again
        let api = api_with(25, Paging::next_url(10, true));
        api.require(auth.clone());
        let p = pipeline(
            &api.url(),
            &format!("  auth = {expr}"),
            "paginate = next_url($._links.next.href)\n  records = $._embedded.items[*]",
        );
        let out = p.run_once_with(&env);
        assert_eq!(out.status.code(), Some(0), "{auth:?}\n{}", text(&out));
        assert_eq!(ids(&p.jsonl(LINES)), id_range(1, 25), "{auth:?}");
        let reqs = api.requests_to(PATH);
        assert_eq!(reqs.len(), 3, "{auth:?}: no 401");
        assert!(reqs.iter().all(|r| auth.accepts(r)), "{auth:?}");
    }
}

// ---- a failing source beside healthy ones --------------------------------------------------------

#[test]
fn a_failing_source_keeps_its_state_and_the_others_collect() {
    let api = TestApi::start_blocking();
    api.set_records("/a", records::make(6));
    api.set_records("/b", records::make(4));
    let src = |name: &str, path: &str| {
        format!("source {name} from api {{\n  get = \"{path}\"\n  schedule = once\n  incremental {{ cursor = created_at }}\n{FIELDS}\n}}\n")
    };
    let p = Pipeline::new(&format!(
        "{}\n{}\n{}\nsink a = jsonl(\"a.jsonl\")\nsink b = jsonl(\"b.jsonl\")\nflow src_a -> a\nflow src_b -> b\n",
        service(&api.url(), ""),
        src("src_a", "/a"),
        src("src_b", "/b"),
    ));
    p.run_ok();
    let block = |state: &str| -> String {
        // the watermark and counts of src_a
        let start = state.find("src_a\n").expect("src_a in state");
        state[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| l.contains("watermark") || l.contains("records seen"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = block(&p.state());
    assert_contains(&before, &records::created_at(6));

    api.push_records("/a", records::range(7, 3));
    api.push_records("/b", records::range(5, 3));
    api.fail_always("/a", Fault::Status(500));
    let err = p.run_failing();
    assert_contains(&err, "src_a");
    assert_contains(&err, "500");
    assert_eq!(block(&p.state()), before, "src_a's state is untouched");
    assert_eq!(p.jsonl("a.jsonl").len(), 6);
    assert_eq!(
        ids(&p.jsonl("b.jsonl")),
        id_range(1, 7),
        "src_b still collects"
    );
    assert_contains(&p.state(), "500");

    api.clear_faults("/a");
    p.run_ok();
    assert_eq!(ids(&p.jsonl("a.jsonl")), id_range(1, 9));
}

// ---- secrets ----------------------------------------------------------------------------------------

#[test]
fn secrets_from_env_never_appear_in_output_at_trace_level() {
    let bearer = "tok-Trace-5ecret+1/=";
    let user = "u-Trace-5ecret";
    let password = "pw-Trace-5ecret+2";
    let qkey = "qk-Trace-5ecret+3/=";
    let hkey = "hk-Trace-5ecret-4";
    let api = TestApi::start_blocking();
    for path in ["/b", "/u", "/q", "/h"] {
        api.set_records(path, records::make(3));
    }
    // each service fails differently; the errors quote URLs and bodies
    api.fail_always("/b", Fault::Status(401));
    api.fail_always("/u", Fault::Html);
    api.set_handler("/q", |req| {
        support::Reply::error(400, &format!("bad request to {}", req.target))
    });
    api.fail_always("/h", Fault::Status(503));
    let svc = |name: &str, auth: &str| {
        format!(
            "service {name} {{\n  base_url = \"{}\"\n  auth = {auth}\n  retry {{ attempts = 2  backoff = 50ms }}\n}}\n",
            api.url()
        )
    };
    let src = |name: &str, svc: &str, path: &str| {
        format!("source {name} from {svc} {{\n  get = \"{path}\"\n  query {{ extra = env(\"HMR_T_Q\") }}\n  schedule = once\n{FIELDS}\n}}\n")
    };
    let text_ = [
        svc("sb", "bearer(env(\"HMR_T_BEARER\"))"),
        svc("su", "basic(env(\"HMR_T_USER\"), env(\"HMR_T_PASS\"))"),
        svc(
            "sq",
            "api_key(query = \"key\", value = env(\"HMR_T_QKEY\"))",
        ),
        svc(
            "sh",
            "api_key(header = \"X-Key\", value = env(\"HMR_T_HKEY\"))",
        ),
        src("b", "sb", "/b"),
        src("u", "su", "/u"),
        src("q", "sq", "/q"),
        src("h", "sh", "/h"),
        "sink lines = jsonl(\"out.jsonl\")\nflow b, u, q, h -> lines\n".to_string(),
    ]
    .concat();
    let p = Pipeline::new(&text_);
    let extra = "ex-Trace-5ecret+5";
    let env = [
        ("HMR_T_BEARER", bearer),
        ("HMR_T_USER", user),
        ("HMR_T_PASS", password),
        ("HMR_T_QKEY", qkey),
        ("HMR_T_HKEY", hkey),
        ("HMR_T_Q", extra),
        ("RUST_LOG", "trace"),
    ];
    let out = p.run_once_with(&env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("400"), "the run reported its errors:\n{all}");
    let basic = base64_encode(format!("{user}:{password}").as_bytes());
    for secret in [bearer, user, password, qkey, hkey, extra, basic.as_str()] {
        let encoded: Vec<String> = vec![
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ];
        assert!(!all.contains(secret), "{secret:?} appears in:\n{all}");
        for e in encoded {
            assert!(
                !all.contains(&e),
                "{e:?} (encoded {secret:?}) appears in:\n{all}"
            );
        }
    }
    // the hidden values did reach the API
    assert!(api.saw_header_value(qkey) && api.saw_header_value(hkey));
    // and the errors kept in the state show none of them either
    let mut state = p.cmd(&["state", "--data-dir"]);
    state.arg(&p.data);
    for (k, v) in &env[..6] {
        state.env(k, v);
    }
    let out = state.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert_contains(&shown, "last error:   HTTP 400");
    for secret in [bearer, user, password, qkey, hkey, extra] {
        assert!(!shown.contains(secret), "{secret:?} in state:\n{shown}");
    }
}

#[test]
fn service_headers_arrive_once_and_replace_defaults() {
    let api = api_with(3, Paging::none());
    let p = pipeline(
        &api.url(),
        "  headers { \"Accept\" = \"application/vnd.test+json\"  \"X-Client\" = \"hamstr-test\" }",
        "",
    );
    p.run_ok();
    let req = &api.requests_to(PATH)[0];
    assert_eq!(req.header("x-client"), Some("hamstr-test"));
    let accepts: Vec<_> = req.headers.iter().filter(|(k, _)| k == "accept").collect();
    assert_eq!(accepts.len(), 1, "{:?}", req.headers);
    assert_eq!(accepts[0].1, "application/vnd.test+json");
}

#[test]
fn rate_limit_spaces_requests_out() {
    let api = api_with(20, Paging::page(5));
    let p = pipeline(&api.url(), "  rate_limit = 5/s", PAGED);
    p.run_ok();
    assert_eq!(api.hits(PATH), 5);
    // one at once, then one per 200 ms
    assert!(
        spread(&api) >= Duration::from_millis(600),
        "{:?}",
        spread(&api)
    );
}

#[test]
fn a_refused_connection_is_retried_then_fails() {
    let p = pipeline(&support::closed_origin(), "", "");
    let err = p.run_failing();
    assert_contains(&err, "could not connect");
    assert_contains(&err, "gave up after 3 attempts");
}

/// Starts `hamstr run` on a source whose first request gets `fault`, sends SIGTERM once
/// the request arrived, and expects a prompt exit 0 with no further request.
fn sigterm_stops_promptly(fault: Fault) {
    let api = api_with(3, Paging::none());
    api.fail_next(PATH, fault.clone());
    let p = pipeline(&api.url(), "", "");
    let mut running = p.spawn_run(&["--no-watch"]);
    assert!(
        api.wait_for_hits_blocking(PATH, 1, Duration::from_secs(30)),
        "{fault:?}"
    );
    // Let time pass: the fault's reply (or silence) reaches hamstr and it settles into
    // its wait; nothing outside the process shows that moment.
    std::thread::sleep(Duration::from_millis(300));
    // the spec gives in-flight pages 10 s; the fault would hold on far longer
    let status = running.terminate(Duration::from_secs(25));
    assert!(
        status.is_some(),
        "{fault:?}: still running 25 s after SIGTERM"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{fault:?}");
    assert_eq!(api.hits(PATH), 1, "{fault:?}: no request after the stop");
}

#[test]
fn sigterm_during_a_long_retry_after_stops_promptly() {
    sigterm_stops_promptly(Fault::TooManyRequests {
        retry_after: RetryAfter::Seconds(300),
    });
}

#[test]
fn sigterm_during_a_hanging_request_stops_within_the_grace_period() {
    // the default timeout is 30 s
    sigterm_stops_promptly(Fault::Hang(Duration::from_secs(120)));
}
