//! What a `postgres` sink's URL may be: the checks `hamstr check` and the sink share, and
//! the URL as it may be shown (password masked).

use crate::masking::Masker;
use std::str::FromStr;
use tokio_postgres::Config;

/// The connection settings of a database URL, or why hamstr cannot use it (it asks for
/// TLS, or PostgreSQL's parser refuses it: an unknown option, say). The reason never
/// holds the password. `hamstr check` reports the same reasons.
pub fn usable_url(url: &str) -> Result<Config, String> {
    let (_, masker) = mask_for(url);
    let parsed = url::Url::parse(url).ok();
    if let Some(mode) = parsed.as_ref().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned())
    }) {
        if !matches!(mode.as_str(), "disable" | "allow" | "prefer") {
            return Err(format!(
                "asks for `sslmode={mode}`, but hamstr connects to PostgreSQL without TLS; \
                 use `sslmode=disable` (a local server, or a tunnel) or leave sslmode out"
            ));
        }
    }
    Config::from_str(url).map_err(|e| masker.mask(&format!("cannot be used: {}", with_causes(&e))))
}

/// The URL as it may be shown (password replaced by `***`), and a masker that hides
/// the password (as written and decoded) in any text.
pub fn mask_for(url: &str) -> (String, Masker) {
    let mut secrets = Vec::new();
    let shown = match url::Url::parse(url) {
        Ok(mut u) => {
            if let Some(pw) = u.password().map(str::to_string) {
                let decoded = percent_encoding::percent_decode_str(&pw)
                    .decode_utf8_lossy()
                    .into_owned();
                secrets.push(pw);
                secrets.push(decoded);
                let _ = u.set_password(Some("***"));
            }
            // PostgreSQL takes the password as `?password=` too.
            if u.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        if k == "password" {
                            secrets.push(v.clone().into_owned());
                            (k.into_owned(), "***".to_string())
                        } else {
                            (k.into_owned(), v.into_owned())
                        }
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string().replace("%2A%2A%2A", "***")
        }
        Err(_) => "the database URL".to_string(),
    };
    (shown, Masker::new(secrets))
}

/// An error and its causes, in one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

/// Which database a connection configuration reaches: first host, port and database
/// name (the user's name when none is given, as PostgreSQL does). A sink on the cluster's
/// own database is recognised by it.
pub fn database_key(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("{host}:{port}/{db}")
}
