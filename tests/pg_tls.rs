//! TLS to PostgreSQL (`sslmode`, `sslrootcert` as libpq reads them) against the local
//! server of `tests/pg_setup.sh`, which has ssl=on with a certificate for 127.0.0.1 and
//! localhost signed by its own CA, and a second CA that signed nothing. Through
//! `hamstr::pg_tls` (what the sink and the cluster database use) and through a whole
//! pipeline's `postgres` sink. Without `DATABASE_URL` these tests are skipped, except
//! under `CI`.

mod support;

use std::path::PathBuf;
use support::cli::{stderr, text, Pipeline};
use support::{records, Paging, TestApi};
use tokio_postgres::NoTls;

/// The test database's URL, or `None` (with a note) when there is none outside CI.
fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DATABASE_URL is not set: CI must start PostgreSQL (tests/pg_setup.sh)")
        }
        _ => {
            eprintln!("skipped: DATABASE_URL is not set (start one with tests/pg_setup.sh)");
            None
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The folder of the server's certificates (`ca.crt`, `wrong-ca.crt`), asked of the
/// server itself; the server must have TLS on.
fn tls_dir(url: &str) -> PathBuf {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(conn);
        let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        assert_eq!(
            ssl, "on",
            "the test server has no TLS: run tests/pg_setup.sh again (it turns TLS on)"
        );
        let cert: String = client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0);
        PathBuf::from(cert)
            .parent()
            .expect("a folder")
            .to_path_buf()
    })
}

/// `url` with query parameters added.
fn with(url: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL parses");
    u.query_pairs_mut().extend_pairs(params);
    u.to_string()
}

/// Connects as hamstr does; on success, whether the session is encrypted.
fn connect(url: &str) -> Result<bool, String> {
    let (config, tls) = hamstr::pg_tls::connect_parts(url)?;
    runtime().block_on(async {
        let (client, conn) = config
            .connect(tls)
            .await
            .map_err(|e| hamstr::pg_tls::error_text(&e))?;
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| hamstr::pg_tls::error_text(&e))?;
        Ok(row.get::<_, bool>(0))
    })
}

#[test]
fn each_sslmode_connects_as_libpq_would() {
    let Some(url) = database_url() else { return };
    let dir = tls_dir(&url);
    let ca = dir.join("ca.crt").display().to_string();
    assert_eq!(
        connect(&url),
        Ok(true),
        "prefer (the default) uses TLS when offered"
    );
    assert_eq!(connect(&with(&url, &[("sslmode", "disable")])), Ok(false));
    assert_eq!(connect(&with(&url, &[("sslmode", "require")])), Ok(true));
    assert_eq!(
        connect(&with(
            &url,
            &[("sslmode", "verify-full"), ("sslrootcert", &ca)]
        )),
        Ok(true)
    );
    assert_eq!(
        connect(&with(
            &url,
            &[("sslmode", "verify-ca"), ("sslrootcert", &ca)]
        )),
        Ok(true)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let Some(url) = database_url() else { return };
    let dir = tls_dir(&url);
    let wrong = dir.join("wrong-ca.crt").display().to_string();
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = connect(&with(&url, &[("sslmode", mode), ("sslrootcert", &wrong)]))
            .expect_err("a certificate the CA did not sign");
        assert!(
            e.starts_with("the server's TLS certificate is not signed by a CA that sslrootcert trusts: refused"),
            "{mode}: {e}"
        );
    }
    let e = connect(&with(&url, &[("sslmode", "verify-full")])).expect_err("no CA");
    assert!(e.contains("no CA certificate was given"), "{e}");
}

/// The certificate is for 127.0.0.1 and localhost: a connection to 127.0.0.1 under
/// another name is refused by verify-full (which checks the name) but not by
/// verify-ca (which does not).
#[test]
fn verify_full_checks_the_host_name() {
    let Some(url) = database_url() else { return };
    let dir = tls_dir(&url);
    let ca = dir.join("ca.crt").display().to_string();
    let mut other = url::Url::parse(&url).unwrap();
    other.set_host(Some("db.invalid")).unwrap();
    let other = with(
        other.as_str(),
        &[("hostaddr", "127.0.0.1"), ("sslrootcert", &ca)],
    );
    let e = connect(&with(&other, &[("sslmode", "verify-full")])).expect_err("wrong name");
    assert!(
        e.starts_with("the server's TLS certificate is not valid for the host name"),
        "{e}"
    );
    assert_eq!(
        connect(&with(&other, &[("sslmode", "verify-ca")])),
        Ok(true)
    );
    let mut local = url::Url::parse(&url).unwrap();
    local.set_host(Some("localhost")).unwrap();
    assert_eq!(
        connect(&with(
            local.as_str(),
            &[
                ("hostaddr", "127.0.0.1"),
                ("sslrootcert", &ca),
                ("sslmode", "verify-full")
            ]
        )),
        Ok(true)
    );
}

/// A pipeline into `postgres(env("PG_URL"), table = ...)`: records arrive over
/// verify-full with the right CA; with the wrong CA the run says why and the records
/// wait in the sink's queue, and go out once the URL names the right CA.
#[test]
fn the_postgres_sink_speaks_tls() {
    let Some(url) = database_url() else { return };
    let dir = tls_dir(&url);
    let table = format!("t_tls_{}", std::process::id());
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
            .await
            .unwrap();
    });
    let api = TestApi::start_blocking();
    api.set_records("/orders", records::make(7));
    api.serve("/orders", Paging::page(5));
    let p = Pipeline::new(&format!(
        r#"
service api {{ base_url = "{api}" }}

source orders from api {{
  get      = "/orders"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 5)
  records  = $.data[*]
  key      = id
  fields {{ id : string = $.id  seq : int = $.seq }}
}}

sink db = postgres(env("PG_URL"), table = "{table}")
flow orders -> db
"#,
        api = api.url()
    ));
    let pg_url = |ca: &str| {
        with(
            &url,
            &[
                ("sslmode", "verify-full"),
                ("sslrootcert", &dir.join(ca).display().to_string()),
            ],
        )
    };
    let out = p.run_once_with(&[("PG_URL", &pg_url("wrong-ca.crt"))]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out)
            .contains("the server's TLS certificate is not signed by a CA that sslrootcert trusts"),
        "{}",
        text(&out)
    );
    assert!(
        stderr(&out).contains("sink db: 2 pages still wait"),
        "{}",
        text(&out)
    );

    let out = p.run_once_with(&[("PG_URL", &pg_url("ca.crt"))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let count: i64 = runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let n = client
            .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
            .await
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!("DROP TABLE \"{table}\""))
            .await
            .unwrap();
        n
    });
    assert_eq!(count, 7);
}
