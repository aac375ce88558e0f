//! `oauth2(...)` end to end against a local authorization server and API
//! (`support/oauth.rs`): tokens that expire every 2 seconds during a 30-page run, shared
//! by three sources; a rotated refresh token that survives a SIGKILL; a token endpoint
//! that refuses, with no secret printed at `RUST_LOG=trace`; in a cluster (`DATABASE_URL`),
//! the rotated token kept in the database for the instance that takes over and for
//! instances sharing the service.

mod support;

use std::process::Output;
use std::time::Duration;

use support::cli::{hamstr_process, sorted_ids, stderr, stdout, text, Pipeline};
use support::oauth::{all_ids, OAuthOptions, OAuthServer};
use support::{base64_encode, wait_until, RunningHamstr};

const CLIENT_ID: &str = "client-Id-4711";
const CLIENT_SECRET: &str = "cs-Sec+ret/9=";

/// A service `api` on the server's API with `auth`, and `sources` sources reading all its
/// pages into `out/SOURCE.jsonl`.
fn pipeline(srv: &OAuthServer, auth_extra: &str, sources: &[&str]) -> String {
    let mut text = format!(
        r#"service api {{
  base_url = "{api}"
  auth = oauth2(token_url     = "{token}",
                client_id     = env("T_CLIENT_ID"),
                client_secret = env("T_CLIENT_SECRET"),
                scope         = "items.read"{auth_extra})
  retry {{ attempts = 3  backoff = 50ms  max_backoff = 200ms }}
  # Three requests at a time, as three sources asking one page at a time made before
  # pages were in flight: a run lasts as long as the tokens it must outlive need.
  concurrency = 3
}}
"#,
        api = srv.api_url(),
        token = srv.token_url(),
    );
    for name in sources {
        text.push_str(&format!(
            r#"
source {name} from api {{
  get      = "/items"
  schedule = once
  paginate = page(param = "page", total_pages = $.total_pages)
  records  = $.data[*]
  key      = id
  fields {{
    id : string = $.id
    n  : int    = $.n
  }}
}}
sink {name}_lines = jsonl("out/{name}.jsonl")
flow {name} -> {name}_lines
"#
        ));
    }
    text
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("T_CLIENT_ID", CLIENT_ID),
        ("T_CLIENT_SECRET", CLIENT_SECRET),
    ]
}

fn run_once(p: &Pipeline, extra: &[(&str, &str)]) -> Output {
    let mut env = env();
    env.extend_from_slice(extra);
    p.run_once_with(&env)
}

/// Every form a secret may take in a text: as written, URL-encoded, and inside the
/// Basic header the token endpoint gets.
fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    ]
}

#[track_caller]
fn assert_hidden(all: &str, secrets: &[&str]) {
    for s in secrets {
        for f in forms(s) {
            assert!(!all.contains(&f), "{f:?} (of {s:?}) appears in:\n{all}");
        }
    }
}

#[test]
fn tokens_expiring_every_two_seconds_during_a_thirty_page_run_lose_nothing() {
    let opts = OAuthOptions {
        lifetime: Duration::from_secs(2),
        pages: 30,
        page_size: 10,
        page_delay: Duration::from_millis(250),
        // a renewal takes a while, so that requests finding the token stale overlap
        token_delay: Duration::from_millis(300),
        // now and then the API revokes a token before it expires: the 401 path
        revoke_every: Some(17),
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let sources = ["a", "b", "c"];
    let p = Pipeline::new(&pipeline(&srv, "", &sources));
    let started = std::time::Instant::now();
    let out = run_once(&p, &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for s in sources {
        assert_eq!(
            sorted_ids(&p.jsonl(&format!("out/{s}.jsonl"))),
            all_ids(&opts),
            "source {s}"
        );
    }
    assert!(
        took > Duration::from_secs(7),
        "the run outlived several tokens: {took:?}"
    );
    let grants = srv.grants();
    assert!(grants
        .iter()
        .all(|g| g.accepted && g.grant_type == "client_credentials"));
    assert!(
        grants.iter().all(|g| g.client_auth == "basic"),
        "{grants:?}"
    );
    let requests = srv.api_requests();
    // a revoked token was refused, renewed once, and the request sent again
    let refused = requests.iter().filter(|r| r.status == 401).count();
    assert!(
        refused >= 1,
        "the API revoked tokens, so some requests were refused"
    );
    // renewed as tokens ran out (every 1.8 s) or were refused, once for all three
    // sources: not once per source or per request
    let renewals = grants.len();
    let bound = (took.as_secs_f64() / 1.8).ceil() as usize + refused + 1;
    assert!(
        renewals >= 4 && renewals <= bound,
        "{renewals} grants (at most {bound}) for {} requests, {refused} refused, in {took:?}",
        requests.len()
    );
    // the three sources' requests never renewed side by side
    assert_eq!(srv.max_concurrent_grants(), 1);
    assert_eq!(
        requests.iter().filter(|r| r.status == 200).count(),
        3 * opts.pages,
        "each page was served once per source"
    );
    // the client secret only to the token endpoint; the access tokens only to the API
    let (auth_side, api_side) = srv.everything_received();
    let basic = base64_encode(format!("{CLIENT_ID}:{}", forms(CLIENT_SECRET)[1]).as_bytes());
    assert!(auth_side.contains(&basic), "client_auth = basic by default");
    assert_hidden(&api_side, &[CLIENT_ID, CLIENT_SECRET, &basic]);
    assert!(
        !auth_side.contains("Bearer"),
        "no access token went to the token endpoint"
    );
}

/// The `hamstr run --once` process with the client's secrets in its environment.
fn spawn_once(p: &Pipeline) -> RunningHamstr {
    let mut c = hamstr_process();
    c.arg("run")
        .arg("--once")
        .arg(&p.file)
        .arg("--data-dir")
        .arg(&p.data);
    for (k, v) in env() {
        c.env(k, v);
    }
    RunningHamstr::start(c)
}

#[test]
fn a_rotated_refresh_token_survives_a_kill_right_after_the_rotation() {
    let first = "rt-Initial-0001";
    let opts = OAuthOptions {
        refresh_token: Some(first.into()),
        rotate: true,
        pages: 3,
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let extra = format!(",\n                refresh_token = \"{first}\"");
    let p = Pipeline::new(&pipeline(&srv, &extra, &["a"]));
    // The first request made with the rotated grant's token is held: the process is
    // killed while it waits for it, right after the rotation.
    srv.hold_after_rotation(true);
    let mut run = spawn_once(&p);
    assert!(
        wait_until(|| srv.saw_token_after_rotation(), Duration::from_secs(30)),
        "the run used a token from the rotated grant; stderr:\n{}",
        run.stderr()
    );
    run.kill();
    assert_eq!(srv.rotations(), 1);
    let rotated = srv.valid_refresh_tokens();
    assert_eq!(rotated.len(), 1);
    assert_ne!(rotated[0], first);

    let stored = p.data.join("oauth2").join("api.json");
    let text_ = std::fs::read_to_string(&stored).expect("the rotated token is stored");
    assert!(
        text_.contains(&rotated[0]) && !text_.contains(first),
        "{text_}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{stored:?} is private");
    }

    // The next run starts from the stored token (the server refuses the old one now).
    srv.hold_after_rotation(false);
    let out = run_once(&p, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sorted_ids(&p.jsonl("out/a.jsonl")), all_ids(&opts));
    let grants = srv.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(
        grants[1].refresh_token.as_deref(),
        Some(rotated[0].as_str())
    );
    assert!(grants.iter().all(|g| g.accepted), "{grants:?}");

    // Without the stored token, the configured one is spent: a clear refusal.
    let fresh = Pipeline::new(&std::fs::read_to_string(&p.file).unwrap());
    let out = run_once(&fresh, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("oauth2") && err.contains("invalid_grant"),
        "{err}"
    );
    assert!(!srv.grants().last().unwrap().accepted);
    assert_hidden(
        &format!("{}{err}", stdout(&out)),
        &[first, &rotated[0], CLIENT_SECRET],
    );

    // A newly configured refresh token (the user authorized again) replaces the stored one.
    let again = "rt-Reauthorized-0002";
    srv.add_refresh_token(again);
    p.rewrite(
        &std::fs::read_to_string(&p.file)
            .unwrap()
            .replace(first, again),
    );
    let out = run_once(&p, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let last = srv.grants().pop().unwrap();
    assert_eq!(last.refresh_token.as_deref(), Some(again));
    assert!(last.accepted);
    let text_ = std::fs::read_to_string(&stored).unwrap();
    assert!(
        !text_.contains(again),
        "the file holds the token rotated from it"
    );
    assert_eq!(srv.valid_refresh_tokens().len(), 2);
    assert!(srv
        .valid_refresh_tokens()
        .iter()
        .any(|t| text_.contains(t.as_str())));
}

#[test]
fn a_token_endpoint_that_refuses_is_a_clear_error_without_secrets_at_trace_level() {
    let srv = OAuthServer::start(OAuthOptions {
        refuse: Some((
            401,
            "invalid_client".into(),
            "Client authentication failed (unknown client or wrong secret)".into(),
        )),
        ..OAuthOptions::default()
    });
    let p = Pipeline::new(&pipeline(&srv, "", &["a"]));
    let out = run_once(&p, &[("RUST_LOG", "trace")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("oauth2")
            && all.contains(
                "invalid_client: Client authentication failed (unknown client or wrong secret)"
            )
            && all.contains("HTTP 401"),
        "{all}"
    );
    let basic = base64_encode(format!("{CLIENT_ID}:{}", forms(CLIENT_SECRET)[1]).as_bytes());
    assert!(
        srv.everything_received().0.contains(&basic),
        "the secret was sent"
    );
    assert_hidden(&all, &[CLIENT_ID, CLIENT_SECRET, &basic]);
    // the error kept in the state says why, and shows no secret either
    let mut state = p.cmd(&["state", "--data-dir"]);
    state.arg(&p.data);
    for (k, v) in env() {
        state.env(k, v);
    }
    let out = state.output().unwrap();
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(shown.contains("invalid_client"), "{shown}");
    assert_hidden(&shown, &[CLIENT_ID, CLIENT_SECRET, &basic]);
    assert!(
        srv.api_requests().is_empty(),
        "no request went out without a token"
    );
}

#[test]
fn tokens_learnt_during_a_run_are_not_printed_at_trace_level() {
    let first = "rt-Trace-Initial-77";
    let opts = OAuthOptions {
        refresh_token: Some(first.into()),
        rotate: true,
        lifetime: Duration::from_secs(1),
        pages: 8,
        page_delay: Duration::from_millis(300),
        revoke_every: Some(3),
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let extra = ",\n                refresh_token = env(\"T_REFRESH\"),\n                client_auth = \"body\"";
    // One page at a time: eight pages of 300 ms outlive several one-second tokens.
    let text_ = pipeline(&srv, extra, &["a"]).replace("concurrency = 3", "concurrency = 1");
    let p = Pipeline::new(&text_);
    let out = run_once(&p, &[("RUST_LOG", "trace"), ("T_REFRESH", first)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sorted_ids(&p.jsonl("out/a.jsonl")), all_ids(&opts));
    let grants = srv.grants();
    assert!(
        grants.len() >= 3 && grants.iter().all(|g| g.client_auth == "body"),
        "{grants:?}\n{:?}",
        srv.api_requests()
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    // every access token the API received, every refresh token the run held
    let mut secrets: Vec<String> = srv
        .api_requests()
        .into_iter()
        .filter_map(|r| r.token)
        .collect();
    secrets.extend(grants.iter().filter_map(|g| g.refresh_token.clone()));
    secrets.extend(srv.valid_refresh_tokens());
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() >= 5, "{secrets:?}");
    let mut refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    refs.extend([CLIENT_ID, CLIENT_SECRET, first]);
    assert_hidden(&all, &refs);
}

/// `hamstr try` against a token endpoint that rotates refresh tokens: the token it is
/// given replaces the configured one in the data directory, so the next run is not left
/// with the spent one (before, `try` kept the rotated token in memory only and the run
/// after it was refused with `invalid_grant`).
#[test]
fn a_refresh_token_rotated_by_try_is_kept_for_the_next_run() {
    let first = "rt-Initial-0003";
    let opts = OAuthOptions {
        refresh_token: Some(first.into()),
        rotate: true,
        pages: 2,
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let extra = format!(",\n                refresh_token = \"{first}\"");
    let p = Pipeline::new(&pipeline(&srv, &extra, &["a"]));
    let mut try_cmd = p.cmd(&["try", "a", "--data-dir"]);
    try_cmd.arg(&p.data);
    for (k, v) in env() {
        try_cmd.env(k, v);
    }
    let out = try_cmd.output().expect("run hamstr try");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(srv.rotations(), 1);

    let out = run_once(&p, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sorted_ids(&p.jsonl("out/a.jsonl")), all_ids(&opts));
    assert!(
        srv.grants().iter().all(|g| g.accepted),
        "{:?}",
        srv.grants()
    );
}

/// `hamstr run FILE --cluster DB` with the client's secrets, its own data directory,
/// once it has joined.
fn spawn_instance(p: &Pipeline, db: &str) -> RunningHamstr {
    let mut c = hamstr_process();
    c.arg("run")
        .arg(&p.file)
        .args(["--cluster", db, "--lease", "2s", "--no-watch", "--data-dir"])
        .arg(&p.data);
    for (k, v) in env() {
        c.env(k, v);
    }
    let mut run = RunningHamstr::start(c);
    run.wait_for_stderr_line(
        "joining the cluster",
        |l| l.starts_with("joined the cluster as instance"),
        Duration::from_secs(60),
    );
    run
}

/// The refresh token kept in the cluster database for service `api`, as stored.
fn stored_in_database(db: &str) -> Option<String> {
    support::pg::sql(
        db,
        "SELECT value FROM hamstr_state WHERE kind = 'kv' AND name = 'oauth2' AND key = 'api'::bytea",
    )
    .first()
    .map(|r| String::from_utf8(r.get::<_, Vec<u8>>(0)).expect("UTF-8"))
}

/// In a cluster the rotated refresh token lives in the database (spec §14): instance A
/// rotates it and is killed right after; instance B, with a data directory of its own,
/// takes the unit over and continues with the rotated token (the server refuses the
/// configured one by then). Neither data directory holds a token.
#[test]
fn in_a_cluster_the_instance_taking_over_continues_with_the_rotated_token() {
    let Some(url) = support::pg::database_url() else {
        return;
    };
    let db = support::pg::fresh_database(&url, "oauth");
    let first = "rt-Initial-0001";
    let opts = OAuthOptions {
        refresh_token: Some(first.into()),
        rotate: true,
        pages: 3,
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let extra = format!(",\n                refresh_token = \"{first}\"");
    let text_ = pipeline(&srv, &extra, &["a"]).replace("schedule = once", "schedule = every(1s)");
    let (pa, pb) = (Pipeline::new(&text_), Pipeline::new(&text_));
    // A's first request with the rotated grant's token is held: it is killed right
    // after the rotation, with nothing collected.
    srv.hold_after_rotation(true);
    let mut a = spawn_instance(&pa, &db);
    assert!(
        wait_until(|| srv.saw_token_after_rotation(), Duration::from_secs(60)),
        "instance A used a token of the rotated grant; stderr:\n{}",
        a.stderr()
    );
    a.kill();
    assert_eq!(srv.rotations(), 1);
    let rotated = srv.valid_refresh_tokens();
    assert_eq!(rotated.len(), 1);
    assert_ne!(rotated[0], first);
    let kept = stored_in_database(&db).expect("the rotated token is in the database");
    assert!(
        kept.contains(&rotated[0]) && !kept.contains(first),
        "{kept}"
    );

    srv.hold_after_rotation(false);
    let b = spawn_instance(&pb, &db);
    assert!(
        wait_until(
            || sorted_ids(&pb.jsonl("out/a.jsonl")) == all_ids(&opts),
            Duration::from_secs(60)
        ),
        "instance B did not collect every record; stderr:\n{}",
        b.stderr()
    );
    let grants = srv.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(
        grants[1].refresh_token.as_deref(),
        Some(rotated[0].as_str()),
        "B sent the token A was given"
    );
    assert!(grants.iter().all(|g| g.accepted), "{grants:?}");
    // B's grant rotated the token again: the database holds the newest.
    let newest = srv.valid_refresh_tokens();
    assert_eq!(newest.len(), 1);
    assert!(
        wait_until(
            || stored_in_database(&db).is_some_and(|k| k.contains(&newest[0])),
            Duration::from_secs(10)
        ),
        "{:?}",
        stored_in_database(&db)
    );
    for p in [&pa, &pb] {
        assert!(
            !p.data.join("oauth2").exists(),
            "a token in the data directory"
        );
    }
    assert_hidden(
        &b.stderr(),
        &[first, &rotated[0], &newest[0], CLIENT_SECRET],
    );
}

/// Two live instances each run one unit of the same service, whose access tokens last
/// 2 s and whose every refresh rotates the refresh token: each renewal reads the token
/// the other instance stored, so both keep renewing (a token read once would be spent
/// by the other's first rotation), and the database ends with the one valid token.
#[test]
fn two_instances_sharing_a_rotating_service_keep_renewing() {
    let Some(url) = support::pg::database_url() else {
        return;
    };
    let db = support::pg::fresh_database(&url, "oauthtwo");
    let first = "rt-Initial-0002";
    let opts = OAuthOptions {
        refresh_token: Some(first.into()),
        rotate: true,
        lifetime: Duration::from_secs(2),
        pages: 2,
        ..OAuthOptions::default()
    };
    let srv = OAuthServer::start(opts.clone());
    let extra = format!(",\n                refresh_token = \"{first}\"");
    let text_ =
        pipeline(&srv, &extra, &["a", "b"]).replace("schedule = once", "schedule = every(1s)");
    let (pa, pb) = (Pipeline::new(&text_), Pipeline::new(&text_));
    let a = spawn_instance(&pa, &db);
    let b = spawn_instance(&pb, &db);
    let held = || -> Vec<i64> {
        support::pg::sql(
            &db,
            "SELECT owner FROM hamstr_units WHERE owner IS NOT NULL AND lease_until > now() ORDER BY unit",
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert!(
        wait_until(
            || {
                let h = held();
                h.len() == 2 && h[0] != h[1]
            },
            Duration::from_secs(60)
        ),
        "one unit each: {:?}\n{}",
        held(),
        a.stderr()
    );
    let stored = |r: &RunningHamstr| r.stderr().matches("the new one is stored").count();
    assert!(
        wait_until(
            || stored(&a) >= 4 && stored(&b) >= 4,
            Duration::from_secs(90)
        ),
        "both instances renew: A stored {} tokens, B {}\nA:\n{}\nB:\n{}",
        stored(&a),
        stored(&b),
        a.stderr(),
        b.stderr()
    );
    let h = held();
    assert!(h.len() == 2 && h[0] != h[1], "still one unit each: {h:?}");
    let valid = srv.valid_refresh_tokens();
    assert_eq!(valid.len(), 1, "one chain of tokens");
    assert!(
        wait_until(
            || stored_in_database(&db).is_some_and(|k| k.contains(&valid[0])),
            Duration::from_secs(10)
        ) || srv.valid_refresh_tokens() != valid,
        "the database holds the valid token"
    );
}
