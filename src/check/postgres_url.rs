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
