//! Push sources (`receive`, spec §11) against `hamstr run`, with a real HTTP client:
//! every answer code, each verify kind with its provider's signing scheme computed in the
//! test, `fetch` through a faulty API (503 until it succeeds, nothing stored before),
//! push and pull sharing one key state, reloads that add, change and remove paths without
//! a restart, and a shutdown that answers 503 to new events.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::cli::{Pipeline, FIELDS};
use support::events::*;
use support::{records, wait_until, Fault, RunningHamstr, TestApi};

const SECRET: &str = "it's a secret";

fn ids(values: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = values
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// `hamstr run --no-watch --listen 127.0.0.1:0` and the listener's URL once `/health`
/// says every receiving source takes events.
fn start(p: &Pipeline, sender: &Sender, watch: bool) -> (RunningHamstr, String) {
    let args: &[&str] = if watch {
        &["--listen", "127.0.0.1:0"]
    } else {
        &["--no-watch", "--listen", "127.0.0.1:0"]
    };
    let mut run = p.spawn_run(args);
    let url = listener_url(&mut run);
    let healthy = wait_until(
        || {
            sender
                .get(&format!("{url}/health"))
                .is_ok_and(|(s, _)| s == 200)
        },
        Duration::from_secs(30),
    );
    assert!(healthy, "never healthy: {}", run.stderr());
    (run, url)
}

fn json_headers(extra: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let mut h = vec![("content-type", "application/json".to_string())];
    h.extend(extra);
    h
}

#[test]
fn every_answer_code_from_a_real_client() {
    let p = Pipeline::new(&format!(
        r#"
service pay {{ base_url = "http://127.0.0.1:9/unused" }}
source payments from pay {{
  receive {{
    path     = "/hooks/pay"
    verify   = hmac(header = "X-Hub-Signature-256", secret = "{SECRET}", prefix = "sha256=")
    records  = $.payments
    max_body = 4000
  }}
  key = id
  fields {{ id : string = $.id  amount : decimal = $.amount }}
}}
sink store = sled("store")
flow payments -> store
"#
    ));
    let sender = Sender::new();
    let (mut run, url) = start(&p, &sender, false);
    let hook = format!("{url}/hooks/pay");
    let signed = |body: &[u8]| {
        json_headers(vec![(
            "X-Hub-Signature-256",
            github_signature(SECRET, body),
        )])
    };

    // 200: committed before the answer, so `dump` (asking the run) already has it.
    let body = br#"{"payments": {"id": "p1", "amount": "10.50"}}"#;
    assert_eq!(sender.post(&hook, &signed(body), body).unwrap().0, 200);
    assert_eq!(
        p.dump("store"),
        vec![json!({"id": "p1", "amount": "10.50"})]
    );

    // An array of items, and a form body (an object of strings).
    let body = br#"{"payments": [{"id": "p2", "amount": 2}, {"id": "p3", "amount": "3"}]}"#;
    assert_eq!(sender.post(&hook, &signed(body), body).unwrap().0, 200);
    // 401: no signature, a wrong one, a signature of another body.
    let other = br#"{"payments": {"id": "p9", "amount": "1"}}"#;
    assert_eq!(
        sender.post(&hook, &json_headers(vec![]), other).unwrap().0,
        401
    );
    let wrong = json_headers(vec![(
        "X-Hub-Signature-256",
        github_signature("not it", other),
    )]);
    assert_eq!(sender.post(&hook, &wrong, other).unwrap().0, 401);
    assert_eq!(sender.post(&hook, &signed(body), other).unwrap().0, 401);
    // 400: not JSON.
    let broken = br#"{"payments": [{"id": "p"#;
    assert_eq!(sender.post(&hook, &signed(broken), broken).unwrap().0, 400);
    // 413: over max_body, by its length and by what is sent.
    let big = format!(
        r#"{{"payments": {{"id": "p9", "amount": "1", "pad": "{}"}}}}"#,
        "x".repeat(5000)
    );
    assert_eq!(
        sender
            .post(&hook, &signed(big.as_bytes()), big.as_bytes())
            .unwrap()
            .0,
        413
    );
    // 405: another method; 404: another path.
    assert_eq!(sender.get(&hook).unwrap().0, 405);
    assert_eq!(
        sender
            .post(&format!("{url}/hooks/nothing"), &signed(body), body)
            .unwrap()
            .0,
        404
    );
    // A rejected item is answered 200 (sending it again would not help) and listed.
    let bad = br#"{"payments": [{"id": "p4", "amount": "lots"}, {"id": "p5", "amount": "5"}]}"#;
    assert_eq!(sender.post(&hook, &signed(bad), bad).unwrap().0, 200);
    let rejected = p.rejected("payments");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["item"]["id"], "p4");
    assert_eq!(ids(&p.dump("store")), ["p1", "p2", "p3", "p5"]);

    let status = run.terminate(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", run.stderr());
    assert!(!run.stderr().contains(SECRET), "{}", run.stderr());
}

#[test]
fn form_bodies_are_objects_of_strings() {
    let p = Pipeline::new(
        r#"
service pay { base_url = "http://127.0.0.1:9/unused" }
source sms from pay {
  receive { path = "/hooks/sms"  verify = token(header = "X-Token", value = "t0k3n") }
  key = MessageSid
  fields { MessageSid : string = $.MessageSid  Body : string = $.Body }
}
sink store = sled("store")
flow sms -> store
"#,
    );
    let sender = Sender::new();
    let (_run, url) = start(&p, &sender, false);
    let headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("X-Token", "t0k3n".to_string()),
    ];
    let body = b"MessageSid=SM1&Body=hello+there%21";
    assert_eq!(
        sender
            .post(&format!("{url}/hooks/sms"), &headers, body)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        p.dump("store"),
        vec![json!({"MessageSid": "SM1", "Body": "hello there!"})]
    );
}

#[test]
fn each_verify_kind_takes_its_providers_signature_and_refuses_others() {
    let whsec = format!("whsec_{}", b64(b"standard webhooks key"));
    let source = |name: &str, path: &str, verify: &str| {
        format!(
            "source {name} from pay {{\n  receive {{ path = \"{path}\"  verify = {verify} }}\n  key = id\n  fields {{ id : string = $.id }}\n}}\nflow {name} -> store\n"
        )
    };
    let text = [
        "service pay { base_url = \"http://127.0.0.1:9/unused\" }\nsink store = sled(\"store\")\n".to_string(),
        source("github", "/gh", &format!("hmac(header = \"X-Hub-Signature-256\", secret = \"{SECRET}\", prefix = \"sha256=\")")),
        source("shopify", "/shop", &format!("hmac(header = \"X-Shopify-Hmac-Sha256\", secret = \"{SECRET}\", encoding = \"base64\")")),
        source("stripe", "/stripe", &format!("stripe(secret = \"{SECRET}\")")),
        source("standard", "/std", &format!("standard(secret = \"{whsec}\", tolerance = 2m)")),
        source("token", "/tok", &format!("token(header = \"X-Token\", value = \"{SECRET}\")")),
    ]
    .concat();
    let p = Pipeline::new(&text);
    let sender = Sender::new();
    let (run, url) = start(&p, &sender, false);
    let post = |path: &str, headers: Vec<(&'static str, String)>, body: &[u8]| {
        sender
            .post(&format!("{url}{path}"), &json_headers(headers), body)
            .unwrap()
            .0
    };
    let body = |id: &str| format!(r#"{{"id": "{id}"}}"#).into_bytes();
    let tampered = |b: &[u8]| {
        let mut t = b.to_vec();
        t.extend_from_slice(b" ");
        t
    };

    let b = body("gh1");
    assert_eq!(
        post(
            "/gh",
            vec![("X-Hub-Signature-256", github_signature(SECRET, &b))],
            &b
        ),
        200
    );
    assert_eq!(
        post(
            "/gh",
            vec![("X-Hub-Signature-256", github_signature(SECRET, &b))],
            &tampered(&b)
        ),
        401
    );
    // The hex without its prefix is not GitHub's header.
    let bare = hex(&hmac_sha256(SECRET.as_bytes(), &[&b]));
    assert_eq!(post("/gh", vec![("X-Hub-Signature-256", bare)], &b), 401);

    let b = body("shop1");
    assert_eq!(
        post(
            "/shop",
            vec![("X-Shopify-Hmac-Sha256", shopify_signature(SECRET, &b))],
            &b
        ),
        200
    );
    assert_eq!(
        post(
            "/shop",
            vec![("X-Shopify-Hmac-Sha256", shopify_signature("other", &b))],
            &b
        ),
        401
    );

    let b = body("st1");
    let t = now();
    assert_eq!(
        post(
            "/stripe",
            vec![("Stripe-Signature", stripe_signature(SECRET, t, &b))],
            &b
        ),
        200
    );
    // A second `v1` (a secret being rolled) may be the one that matches.
    let rolled = format!(
        "{},v1={}",
        stripe_signature(SECRET, t, &b).replace(',', ",v1=00,"),
        "ab"
    );
    assert_eq!(post("/stripe", vec![("Stripe-Signature", rolled)], &b), 200);
    // A replay: correctly signed, 10 minutes ago (the tolerance is 5 minutes).
    let b2 = body("st2");
    assert_eq!(
        post(
            "/stripe",
            vec![("Stripe-Signature", stripe_signature(SECRET, t - 600, &b2))],
            &b2
        ),
        401
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = stripe_signature(SECRET, t - 600, &b2)
        .replace(&format!("t={}", t - 600), &format!("t={t}"));
    assert_eq!(post("/stripe", vec![("Stripe-Signature", moved)], &b2), 401);

    let b = body("sw1");
    assert_eq!(
        post("/std", standard_headers(&whsec, "msg_1", now(), &b), &b),
        200
    );
    let b2 = body("sw2");
    assert_eq!(
        post(
            "/std",
            standard_headers(&whsec, "msg_2", now() - 180, &b2),
            &b2
        ),
        401
    );
    assert_eq!(
        post(
            "/std",
            standard_headers(&whsec, "msg_2", now() + 180, &b2),
            &b2
        ),
        401
    );
    let mut other_id = standard_headers(&whsec, "msg_2", now(), &b2);
    other_id[0].1 = "msg_3".into();
    assert_eq!(post("/std", other_id, &b2), 401);

    let b = body("tok1");
    assert_eq!(post("/tok", vec![("X-Token", SECRET.to_string())], &b), 200);
    assert_eq!(
        post("/tok", vec![("X-Token", format!("{SECRET}x"))], &b),
        401
    );
    assert_eq!(post("/tok", vec![], &b), 401);

    assert_eq!(
        ids(&p.dump("store")),
        ["gh1", "shop1", "st1", "sw1", "tok1"]
    );
    drop(run);
}

#[test]
fn fetch_answers_503_until_the_api_answers_and_stores_nothing_before() {
    let api = TestApi::start_blocking();
    let record = json!({"id": "tr_1", "amount": {"value": "12.00"}, "status": "paid"});
    api.set_json("/v2/payments/tr_1", record);
    api.require(support::Auth::Bearer("api-token".into()));
    let p = Pipeline::new(&format!(
        r#"
service mollie {{
  base_url = "{}/v2"
  auth     = bearer("api-token")
  timeout  = 500ms
  retry {{ attempts = 1 }}
}}
source payments from mollie {{
  receive {{ path = "/hooks/mollie"  verify = none  fetch = "/payments/{{id}}" }}
  key = id
  fields {{ id : string = $.id  amount : decimal = $.amount.value  status : string = $.status }}
}}
sink store = sled("store")
flow payments -> store
"#,
        api.url()
    ));
    let sender = Sender::new();
    let (_run, url) = start(&p, &sender, false);
    let hook = format!("{url}/hooks/mollie");
    let form = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    for fault in [
        Fault::Status(429),
        Fault::Status(500),
        Fault::Hang(Duration::from_secs(3)),
    ] {
        api.fail_next("/v2/payments/tr_1", fault.clone());
        let (status, _) = sender.post(&hook, &form, b"id=tr_1").unwrap();
        assert_eq!(status, 503, "after {fault:?}");
        assert!(p.dump("store").is_empty(), "stored after {fault:?}");
    }
    // A record the API does not have (404) is not taken either.
    assert_eq!(sender.post(&hook, &form, b"id=tr_404").unwrap().0, 503);
    assert_eq!(sender.post(&hook, &form, b"id=tr_1").unwrap().0, 200);
    assert_eq!(
        p.dump("store"),
        vec![json!({"id": "tr_1", "amount": "12.00", "status": "paid"})]
    );
    // An item naming no record is rejected, and the event answered.
    assert_eq!(sender.post(&hook, &form, b"other=1").unwrap().0, 200);
    assert_eq!(p.rejected("payments").len(), 1);
    // Placeholders are URL-encoded into one path segment.
    assert_eq!(sender.post(&hook, &form, b"id=a%2Fb%20c").unwrap().0, 503);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/v2/payments/a%2Fb%20c"));
}

#[test]
fn push_and_pull_share_one_key_state() {
    let api = TestApi::start_blocking();
    api.set_records("/payments", records::make(2));
    let p = Pipeline::new(&format!(
        r#"
service pay {{ base_url = "{}" }}
source payments from pay {{
  get      = "/payments"
  schedule = every(300ms)
  receive  {{ path = "/hooks/pay"  verify = token(value = "{SECRET}") }}
{FIELDS}
}}
sink store = sled("store")
sink lines = jsonl("out/lines.jsonl")
flow payments -> store, lines
"#,
        api.url()
    ));
    let sender = Sender::new();
    let (_run, url) = start(&p, &sender, false);
    let lines = || p.jsonl("out/lines.jsonl");
    let hook = format!("{url}/hooks/pay");
    let push = |record: &Value| {
        let body = serde_json::to_vec(record).unwrap();
        let (status, text) = sender
            .post(
                &hook,
                &json_headers(vec![("X-Token", SECRET.into())]),
                &body,
            )
            .unwrap();
        assert_eq!(status, 200, "{text}");
    };
    // Two more polls after `now`: whatever the API holds has been read.
    let polled = || {
        let seen = api.hits("/payments");
        assert!(wait_until(
            || api.hits("/payments") >= seen + 2,
            Duration::from_secs(30)
        ));
    };
    assert!(wait_until(|| lines().len() == 2, Duration::from_secs(30)));

    // Already polled: not emitted again by a webhook.
    push(&records::record(1));
    polled();
    assert_eq!(lines().len(), 2);
    // New by webhook, then listed by the API: emitted once.
    let third = records::record(3);
    push(&third);
    assert_eq!(lines().len(), 3);
    api.push_records("/payments", vec![third]);
    polled();
    assert_eq!(lines().len(), 3);
    // Updated by webhook, then by the API the same way: emitted once more.
    let first = records::changed(&records::record(1), "amount", json!("99.99"));
    push(&first);
    assert_eq!(lines().len(), 4);
    api.upsert_record("/payments", "id", first);
    polled();
    assert_eq!(lines().len(), 4);
    // Updated in the API, then the same by webhook.
    let second = records::changed(&records::record(2), "amount", json!("77.00"));
    api.upsert_record("/payments", "id", second.clone());
    assert!(wait_until(|| lines().len() == 5, Duration::from_secs(30)));
    push(&second);
    assert_eq!(lines().len(), 5);
    // A webhook that never came: the next poll collects the record.
    api.push_records("/payments", vec![records::record(4)]);
    assert!(wait_until(|| lines().len() == 6, Duration::from_secs(30)));
    polled();
    let got = lines();
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(
        ids(&p.dump("store")),
        (1..=4).map(records::id).collect::<Vec<_>>()
    );
    let stored: Vec<Value> = p.dump("store");
    let amount =
        |seq: u64| stored.iter().find(|r| r["id"] == records::id(seq)).unwrap()["amount"].clone();
    assert_eq!(amount(1), "99.99");
    assert_eq!(amount(2), "77.00");
}

#[test]
fn a_reload_adds_changes_and_removes_paths_without_a_restart() {
    let source = |name: &str, path: &str| {
        format!(
            "source {name} from pay {{\n  receive {{ path = \"{path}\"  verify = token(value = \"{SECRET}\") }}\n  key = id\n  fields {{ id : string = $.id }}\n}}\nflow {name} -> store\n"
        )
    };
    let head =
        "service pay { base_url = \"http://127.0.0.1:9/unused\" }\nsink store = sled(\"store\")\n";
    let p = Pipeline::new(&format!("{head}{}", source("a", "/hooks/a")));
    let sender = Sender::new();
    let (mut run, url) = start(&p, &sender, true);
    let headers = json_headers(vec![("X-Token", SECRET.into())]);
    let post = |path: &str, id: &str| {
        sender
            .post(
                &format!("{url}{path}"),
                &headers,
                format!(r#"{{"id": "{id}"}}"#).as_bytes(),
            )
            .unwrap()
            .0
    };
    assert_eq!(post("/hooks/a", "a1"), 200);
    assert_eq!(post("/hooks/c", "c0"), 404);

    p.rewrite(&format!(
        "{head}{}{}",
        source("a", "/hooks/b"),
        source("c", "/hooks/c")
    ));
    run.wait_for_stderr_line(
        "the reload",
        |l| l.starts_with("reloaded:"),
        Duration::from_secs(60),
    );
    assert_eq!(post("/hooks/a", "a2"), 404);
    // The changed and the new source take events once their units run.
    assert!(wait_until(
        || post("/hooks/b", "b1") == 200,
        Duration::from_secs(30)
    ));
    assert!(wait_until(
        || post("/hooks/c", "c1") == 200,
        Duration::from_secs(30)
    ));

    p.rewrite(&format!("{head}{}", source("c", "/hooks/c")));
    run.wait_for_stderr_line(
        "the second reload",
        |l| l.starts_with("reloaded:"),
        Duration::from_secs(60),
    );
    assert_eq!(post("/hooks/b", "b2"), 404);
    assert_eq!(post("/hooks/c", "c2"), 200);
    assert_eq!(ids(&p.dump("store")), ["a1", "b1", "c1", "c2"]);
    // One listener all along: a single line said where it listens.
    assert_eq!(run.stderr().matches("listening on http://").count(), 1);
}

#[test]
fn a_shutdown_finishes_the_event_in_hand_and_refuses_new_ones() {
    let api = TestApi::start_blocking();
    api.set_json("/payments/slow", json!({"id": "slow"}));
    api.set_json("/payments/late", json!({"id": "late"}));
    api.fail_next("/payments/slow", Fault::Delay(Duration::from_secs(2)));
    let p = Pipeline::new(&format!(
        r#"
service pay {{ base_url = "{}" }}
source payments from pay {{
  receive {{ path = "/hooks/pay"  verify = none  fetch = "/payments/{{id}}" }}
  key = id
  fields {{ id : string = $.id }}
}}
sink store = sled("store")
flow payments -> store
"#,
        api.url()
    ));
    let sender = Sender::new();
    let (mut run, url) = start(&p, &sender, false);
    let hook = format!("{url}/hooks/pay");
    let in_hand = {
        let hook = hook.clone();
        std::thread::spawn(move || {
            Sender::new().post(&hook, &json_headers(vec![]), br#"{"id": "slow"}"#)
        })
    };
    assert!(wait_until(
        || api.hits("/payments/slow") == 1,
        Duration::from_secs(30)
    ));
    let pid = run.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(wait_until(
        || sender
            .get(&format!("{url}/health"))
            .is_ok_and(|(s, _)| s == 503),
        Duration::from_secs(10)
    ));
    let late = sender
        .post(&hook, &json_headers(vec![]), br#"{"id": "late"}"#)
        .unwrap();
    assert_eq!(late.0, 503, "{late:?}");
    // The event in hand finishes within the grace: committed, and answered 200.
    assert_eq!(in_hand.join().unwrap().unwrap().0, 200);
    let status = run.terminate(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", run.stderr());
    assert_eq!(api.hits("/payments/late"), 0);
    assert_eq!(ids(&p.dump("store")), ["slow"]);
}

#[test]
fn concurrent_events_for_one_key_leave_the_last_committed() {
    let p = Pipeline::new(&format!(
        r#"
service pay {{ base_url = "http://127.0.0.1:9/unused" }}
source payments from pay {{
  receive {{ path = "/hooks/pay"  verify = token(value = "{SECRET}") }}
  key = id
  fields {{ id : string = $.id  n : int = $.n }}
}}
sink store = sled("store")
sink lines = jsonl("out/lines.jsonl")
flow payments -> store, lines
"#
    ));
    let sender = Sender::new();
    let (_run, url) = start(&p, &sender, false);
    let hook = format!("{url}/hooks/pay");
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let hook = hook.clone();
            std::thread::spawn(move || {
                let s = Sender::new();
                for i in 0..10 {
                    let n = t * 10 + i;
                    // Every event twice: the second is no change.
                    for _ in 0..2 {
                        let body = format!(r#"{{"id": "same", "n": {n}}}"#);
                        let h = vec![
                            ("content-type", "application/json".to_string()),
                            ("X-Token", SECRET.to_string()),
                        ];
                        assert_eq!(s.post(&hook, &h, body.as_bytes()).unwrap().0, 200);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each value was emitted at most twice (once, or again after another value came
    // between its two sends), and the store holds one record.
    let lines = p.jsonl("out/lines.jsonl");
    assert!(lines.len() >= 160 && lines.len() <= 320, "{}", lines.len());
    let stored = p.dump("store");
    assert_eq!(stored.len(), 1);
    // The store and the key state agree: sending the stored value again emits nothing.
    let last = stored[0]["n"].as_i64().unwrap();
    assert_eq!(lines.last().unwrap()["n"].as_i64().unwrap(), last);
    let body = format!(r#"{{"id": "same", "n": {last}}}"#);
    let h = json_headers(vec![("X-Token", SECRET.into())]);
    assert_eq!(sender.post(&hook, &h, body.as_bytes()).unwrap().0, 200);
    assert_eq!(p.jsonl("out/lines.jsonl").len(), lines.len());
}

#[test]
fn a_source_not_running_yet_answers_503_and_health_says_starting() {
    // The poll hangs while a reload changes the source: its replacement starts only once
    // the old unit has finished that poll, and until then its new path answers 503.
    let api = TestApi::start_blocking();
    api.set_records("/payments", records::make(1));
    let p_text = |path: &str| {
        format!(
            r#"
service pay {{ base_url = "{}" }}
source payments from pay {{
  get      = "/payments"
  schedule = every(500ms)
  receive  {{ path = "{path}"  verify = token(value = "{SECRET}") }}
{FIELDS}
}}
sink store = sled("store")
flow payments -> store
"#,
            api.url()
        )
    };
    let p = Pipeline::new(&p_text("/hooks/a"));
    let sender = Sender::new();
    let (mut run, url) = start(&p, &sender, true);
    let hits = api.hits("/payments");
    api.fail_next("/payments", Fault::Delay(Duration::from_secs(6)));
    assert!(wait_until(
        || api.hits("/payments") > hits,
        Duration::from_secs(30)
    ));
    p.rewrite(&p_text("/hooks/b"));
    run.wait_for_stderr_line(
        "the reload",
        |l| l.starts_with("reloaded:"),
        Duration::from_secs(60),
    );
    let headers = json_headers(vec![("X-Token", SECRET.into())]);
    let event = serde_json::to_vec(&records::record(7)).unwrap();
    let early = sender
        .post(&format!("{url}/hooks/b"), &headers, &event)
        .unwrap();
    assert_eq!(early.0, 503, "{early:?}");
    let health = sender.get(&format!("{url}/health")).unwrap();
    assert_eq!(health.0, 503, "{health:?}");
    let health: Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(health["status"], "starting");
    assert_eq!(health["sources"]["payments"]["accepting"], false);
    assert!(p.dump("store").iter().all(|r| r["id"] != records::id(7)));
    // Once the hanging poll is over, the new unit takes the event.
    assert!(wait_until(
        || sender
            .post(&format!("{url}/hooks/b"), &headers, &event)
            .is_ok_and(|(s, _)| s == 200),
        Duration::from_secs(30)
    ));
    assert!(p.dump("store").iter().any(|r| r["id"] == records::id(7)));
}

/// `hamstr demo` end to end: its payment provider's id-only webhooks reach the listener
/// and are fetched (payments newer than the first poll are stored, though the next poll
/// is a minute away), and the `exec` sink's `announce.sh` is handed every new order
/// exactly once: what it announced is what the archive holds.
#[test]
fn the_demo_receives_webhooks_and_announces_each_new_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("hamstr"))
        .args(["demo", "--port", "0", "--seconds", "9", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let announced: std::collections::BTreeSet<String> = stderr
        .lines()
        .filter_map(|l| l.split("new order: ").nth(1))
        .map(|order| {
            let order: Value =
                serde_json::from_str(order).unwrap_or_else(|e| panic!("{order}: {e}"));
            order["id"].as_str().unwrap().to_string()
        })
        .collect();
    let archive = std::fs::read_to_string(dir.path().join("out/orders.jsonl")).unwrap();
    let archived: Vec<String> = archive
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(archived.len() > 370, "{} orders archived", archived.len());
    assert_eq!(
        announced,
        archived.iter().cloned().collect(),
        "announced and archived differ"
    );
    // The first poll saw pay_00001..pay_00120; later ones came by webhook only.
    assert!(
        archived.iter().any(|id| id.as_str() > "pay_00120"),
        "no payment arrived by webhook: {stderr}"
    );
}
