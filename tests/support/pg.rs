//! A fresh PostgreSQL database per test on the server of `tests/pg_setup.sh`
//! (`DATABASE_URL`), so that tests running at once do not meet.

use tokio_postgres::{NoTls, Row};

/// `DATABASE_URL`, or `None` (with a note) when it is not set outside CI.
pub fn database_url() -> Option<String> {
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

/// Runs SQL on `url`; every call has its own runtime and connection.
pub fn sql(url: &str, query: &str) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to the database");
        tokio::spawn(conn);
        if query.trim_start().starts_with("SELECT") {
            client.query(query, &[]).await.expect(query)
        } else {
            client.batch_execute(query).await.expect(query);
            Vec::new()
        }
    })
}

/// A new empty database named after `tag` and this process; its URL.
pub fn fresh_database(url: &str, tag: &str) -> String {
    let name = format!("cl_{tag}_{}", std::process::id());
    sql(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    sql(url, &format!("CREATE DATABASE {name}"));
    let mut u = url::Url::parse(url).expect("DATABASE_URL parses");
    u.set_path(&format!("/{name}"));
    u.to_string()
}
