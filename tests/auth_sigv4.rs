//! `aws_sigv4(...)`: hamstr's signatures checked against AWS's published SigV4 test
//! suite, each one recomputed here by the tests' own implementation of the algorithm
//! (`support/sigv4.rs`, from AWS's documentation); and a run against a local API that
//! serves only requests whose signature it confirms.

mod support;

use std::time::{Duration, SystemTime};

use hamstr::check::{AwsSigV4, Text};
use hamstr::nodes::auth::sigv4::Signer;
use support::cli::{sorted_ids, stderr, stdout, text, Pipeline};
use support::sigv4::{
    parse_authorization, signature, string_to_sign, verify, AwsKeys, Canonical, SigV4Api,
};

/// The credentials, region, service and time of AWS's SigV4 test suite.
const SUITE_ACCESS_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_TIME: u64 = 1_440_938_160; // 2015-08-30T12:36:00Z

fn suite_signer(session_token: Option<&str>) -> Signer {
    Signer::new(&AwsSigV4 {
        region: "us-east-1".into(),
        service: "service".into(),
        access_key: Text::plain(SUITE_ACCESS_KEY).into_secret(),
        secret_key: Text::plain(SUITE_SECRET).into_secret(),
        session_token: session_token.map(|t| Text::plain(t).into_secret()),
    })
}

/// The request as the signature covers it: the method, the URL as sent, its headers
/// (with `Host` as the client will send it) and its body.
fn seen(req: &reqwest::Request) -> (String, String, String, Vec<(String, String)>, Vec<u8>) {
    let url = req.url();
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap()),
        None => url.host_str().unwrap().to_string(),
    };
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    headers.push(("host".into(), host));
    let body = req
        .body()
        .and_then(|b| b.as_bytes())
        .unwrap_or_default()
        .to_vec();
    (
        req.method().to_string(),
        url.path().to_string(),
        url.query().unwrap_or("").to_string(),
        headers,
        body,
    )
}

/// Signs `req` as the suite does, recomputes the signature independently from what
/// was signed, and returns (hamstr's signature, the recomputed one, SignedHeaders).
fn sign_and_recompute(mut req: reqwest::Request, token: Option<&str>) -> (String, String, String) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(SUITE_TIME);
    suite_signer(token).sign(&mut req, time).expect("signed");
    let auth = req.headers()["authorization"].to_str().unwrap().to_string();
    let auth = parse_authorization(&auth).expect("a SigV4 Authorization header");
    assert_eq!(auth.access_key, SUITE_ACCESS_KEY);
    assert_eq!(auth.scope, "20150830/us-east-1/service/aws4_request");
    let amz_date = req.headers()["x-amz-date"].to_str().unwrap().to_string();
    assert_eq!(amz_date, "20150830T123600Z");
    let (method, path, query, headers, body) = seen(&req);
    let canonical = Canonical {
        method: &method,
        path: &path,
        query: &query,
        headers,
        body: &body,
    }
    .request(&auth.signed_headers);
    let to_sign = string_to_sign(&amz_date, "us-east-1", "service", &canonical);
    let recomputed = signature(SUITE_SECRET, &amz_date, "us-east-1", "service", &to_sign);
    (auth.signature, recomputed, auth.signed_headers)
}

fn request(method: reqwest::Method, url: &str) -> reqwest::Request {
    reqwest::Request::new(method, url.parse().unwrap())
}

/// The suite's cases: hamstr's signature equals the one recomputed here, and both equal
/// the signature AWS publishes for the case (which checks the recomputation itself).
#[test]
fn signatures_match_the_aws_sigv4_test_suite() {
    let cases: [(&str, reqwest::Request, Option<&str>, &str, &str); 4] = [
        (
            "get-vanilla",
            request(reqwest::Method::GET, "https://example.amazonaws.com/"),
            None,
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-vanilla-query-order-key-case",
            request(
                reqwest::Method::GET,
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            ),
            None,
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "get-vanilla-with-session-token",
            request(reqwest::Method::GET, "https://example.amazonaws.com/"),
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
        (
            "post-vanilla",
            request(reqwest::Method::POST, "https://example.amazonaws.com/"),
            None,
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
    ];
    for (name, req, token, signed_headers, published) in cases {
        let (ours, recomputed, signed) = sign_and_recompute(req, token);
        assert_eq!(signed, signed_headers, "{name}: SignedHeaders");
        assert_eq!(
            ours, recomputed,
            "{name}: hamstr's signature against the recomputed one"
        );
        assert_eq!(
            recomputed, published,
            "{name}: the recomputation against AWS's published signature"
        );
    }
}

/// A request as hamstr sends them (headers, an encoded query, a JSON body) is signed
/// over all of it: the recomputation agrees, and changing any part breaks it.
#[test]
fn a_request_with_headers_query_and_body_is_signed_over_all_of_them() {
    let mut req = request(
        reqwest::Method::POST,
        "https://api.example.com:8443/prod/orders?status=open%20now&from=2024-01-01T00%3A00%3A00Z&page=2",
    );
    req.headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    req.headers_mut()
        .insert("x-client", "  hamstr   test ".parse().unwrap());
    *req.body_mut() = Some(br#"{"filter":{"status":"open"}}"#.to_vec().into());
    let (ours, recomputed, signed) = sign_and_recompute(req, Some("session-Tok/en+1"));
    assert_eq!(
        signed,
        "accept;content-type;host;x-amz-date;x-amz-security-token;x-client"
    );
    assert_eq!(ours, recomputed);

    let keys = AwsKeys {
        access_key: SUITE_ACCESS_KEY.into(),
        secret_key: SUITE_SECRET.into(),
        session_token: Some("session-Tok/en+1".into()),
        region: "us-east-1".into(),
        service: "service".into(),
    };
    let mut req = request(
        reqwest::Method::POST,
        "https://api.example.com/prod/orders?a=1",
    );
    *req.body_mut() = Some(b"{}".to_vec().into());
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(SUITE_TIME);
    suite_signer(Some("session-Tok/en+1"))
        .sign(&mut req, time)
        .unwrap();
    let (method, path, query, headers, body) = seen(&req);
    let c = |method: &str, path: &str, query: &str, body: &[u8]| {
        verify(
            &keys,
            &Canonical {
                method,
                path,
                query,
                headers: headers.clone(),
                body,
            },
        )
    };
    assert_eq!(c(&method, &path, &query, &body), Ok(()));
    assert!(
        c("GET", &path, &query, &body).is_err(),
        "the method is signed"
    );
    assert!(
        c(&method, "/prod/other", &query, &body).is_err(),
        "the path is signed"
    );
    assert!(
        c(&method, &path, "a=2", &body).is_err(),
        "the query is signed"
    );
    assert!(
        c(&method, &path, &query, b"{ }").is_err(),
        "the body is signed"
    );
}

const ACCESS_KEY: &str = "AKIA-Hamstr-Test-01";
const SECRET_KEY: &str = "sk-Sig/v4+Secret=Key-9";
const SESSION_TOKEN: &str = "st-Session/Token+Value=1";

fn keys() -> AwsKeys {
    AwsKeys {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        session_token: Some(SESSION_TOKEN.into()),
        region: "eu-west-1".into(),
        service: "execute-api".into(),
    }
}

fn pipeline(api: &SigV4Api) -> Pipeline {
    Pipeline::new(&format!(
        r#"service gateway {{
  base_url = "{url}"
  auth = aws_sigv4(region        = "eu-west-1",
                   service       = "execute-api",
                   access_key    = env("T_AWS_ACCESS_KEY_ID"),
                   secret_key    = env("T_AWS_SECRET_ACCESS_KEY"),
                   session_token = env("T_AWS_SESSION_TOKEN"))
  headers {{ "X-Client" = "hamstr" }}
  retry {{ attempts = 2  backoff = 50ms }}
}}

source orders from gateway {{
  get      = "/orders"
  schedule = once
  query    {{ status = "open shipped"  since = "2024-01-01T00:00:00Z" }}
  paginate = page(param = "page", total_pages = $.total_pages)
  records  = $.Items[*]
  key      = id
  fields {{ id : string = $.id }}
}}

source search from gateway {{
  post     = "/orders"
  body     {{ filter = "status = 'open'"  limit = 5 }}
  schedule = once
  records  = $.Items[*]
  key      = id
  fields {{ id : string = $.id }}
}}

sink lines = jsonl("out/orders.jsonl")
sink found = jsonl("out/search.jsonl")
flow orders -> lines
flow search -> found
"#,
        url = api.url()
    ))
}

fn run(p: &Pipeline, secret: &str) -> std::process::Output {
    p.run_once_with(&[
        ("T_AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("T_AWS_SECRET_ACCESS_KEY", secret),
        ("T_AWS_SESSION_TOKEN", SESSION_TOKEN),
        ("RUST_LOG", "trace"),
    ])
}

#[test]
fn a_run_against_an_api_that_checks_every_signature() {
    let api = SigV4Api::start(keys(), 4);
    let p = pipeline(&api);
    let out = run(&p, SECRET_KEY);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let expected: Vec<String> = (1..=20).map(|n| format!("o{n:04}")).collect();
    assert_eq!(sorted_ids(&p.jsonl("out/orders.jsonl")), expected);
    assert_eq!(
        sorted_ids(&p.jsonl("out/search.jsonl")),
        expected[..5].to_vec()
    );
    let received = api.received();
    assert!(received
        .iter()
        .any(|r| r.method == "POST" && r.body.contains("status = 'open'")));
    assert!(received.iter().any(|r| r.target.contains("status=open")));
    for r in &received {
        assert_eq!(r.verdict, Ok(()), "{} {}", r.method, r.target);
    }
    // the secret key never leaves hamstr; neither it nor the token is printed
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for secret in [SECRET_KEY, SESSION_TOKEN, ACCESS_KEY] {
        assert!(!all.contains(secret), "{secret:?} appears in:\n{all}");
    }
}

/// The local API does check: a wrong secret key gets 403 and the run fails, saying so.
#[test]
fn a_wrong_secret_key_is_refused() {
    let api = SigV4Api::start(keys(), 2);
    let p = pipeline(&api);
    let wrong = "sk-Wrong/Secret+Key-0";
    let out = run(&p, wrong);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("HTTP 403"), "{all}");
    assert!(!all.contains(wrong), "{all}");
    let received = api.received();
    assert!(!received.is_empty());
    assert!(received.iter().all(|r| r
        .verdict
        .as_ref()
        .is_err_and(|e| e.contains("signature mismatch"))));
}
