//! What a `postgres` sink's URL may be: the checks `hamstr check` and the sink share
//! (read by [`crate::pg_tls`], as libpq reads it, TLS settings included), and the URL as
//! it may be shown (password masked).

pub use crate::pg_tls::mask_for;

/// The connection settings of a database URL, or why hamstr cannot use it (an unknown
/// `sslmode`, client certificates, or PostgreSQL's parser refuses it: an unknown option,
/// say). The reason never holds the password. `hamstr check` reports the same reasons;
/// whether `sslrootcert` can be read is found out when connecting.
pub fn usable_url(url: &str) -> Result<crate::pg_tls::Target, String> {
    crate::pg_tls::parse(url)
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
