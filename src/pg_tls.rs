//! Connections to PostgreSQL as libpq reads a connection URL, TLS included: `sslmode`
//! (`disable`, `allow`, `prefer` (the default), `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert` (a PEM file of CA certificates, or `system` for the system's trusted
//! ones), through rustls with the ring provider. Managed databases require TLS.
//!
//! [`parse`] reads a URL without touching the disk (what `hamstr check` reports);
//! [`connect_parts`] also loads the CA certificates and builds the connector. Every
//! PostgreSQL connection hamstr makes goes through here: the `postgres` sink, the
//! cluster database. Errors never hold the URL's password.

use crate::masking::Masker;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::Config;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// `sslmode`, as libpq reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// libpq tries without TLS first; here it is [`SslMode::Prefer`] (TLS when the
    /// server offers it), which reaches every server `allow` reaches.
    Allow,
    /// TLS when the server offers it, its certificate not checked (libpq's default).
    Prefer,
    /// TLS, the certificate not checked, unless `sslrootcert` names CAs: then as
    /// `verify-ca` (as libpq does when a root certificate file exists).
    Require,
    /// TLS, the certificate signed by a CA of `sslrootcert`; the host name not checked.
    VerifyCa,
    /// TLS, the certificate signed by a CA of `sslrootcert` and valid for the host.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// Not given: libpq's default file, `~/.postgresql/root.crt`, when it exists.
    Default,
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `system`: the system's trusted CAs.
    System,
}

/// The TLS settings of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    pub root: RootCert,
}

/// A URL read: the settings tokio-postgres takes (TLS mode set), and the TLS settings.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: Config,
    pub tls: Tls,
}

/// Reads a `postgres://` URL without touching the disk: `sslmode` and `sslrootcert` are
/// taken out (tokio-postgres knows neither `verify-*` nor `sslrootcert`), the rest is
/// read by tokio-postgres. `Err` says why the URL cannot be used, password masked.
pub fn parse(url: &str) -> Result<Target, String> {
    let (_, masker) = mask_for(url);
    let mut rest = url.to_string();
    let mut tls = Tls {
        mode: SslMode::Prefer,
        root: RootCert::Default,
    };
    if let Ok(mut u) = url::Url::parse(url) {
        let mut kept = Vec::new();
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    tls.mode = SslMode::parse(&v).ok_or_else(|| {
                        format!(
                            "has `sslmode={v}`; the modes are disable, allow, prefer, require, \
                             verify-ca and verify-full"
                        )
                    })?
                }
                "sslrootcert" if v == "system" => tls.root = RootCert::System,
                "sslrootcert" if v.is_empty() => {
                    return Err("has an empty `sslrootcert`".to_string())
                }
                "sslrootcert" => tls.root = RootCert::File(PathBuf::from(v.as_ref())),
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                    return Err(format!(
                        "has `{k}`: client certificates and revocation lists are not supported"
                    ))
                }
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
        rest = u.to_string();
    }
    if tls.root == RootCert::System && tls.mode != SslMode::VerifyFull {
        // As libpq 16: the system's CAs vouch for names, so only the full check is safe.
        return Err(format!(
            "has `sslrootcert=system` with a weaker `sslmode` than verify-full; use \
             `sslmode=verify-full`{}",
            if url.contains("sslmode") {
                ""
            } else {
                " (the default mode, prefer, checks no certificate)"
            }
        ));
    }
    let mut config = Config::from_str(&rest)
        .map_err(|e| masker.mask(&format!("cannot be used: {}", with_causes(&e))))?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    Ok(Target { config, tls })
}

/// The settings and the TLS connector for a URL: what `Config::connect` takes. `Err` says
/// why not (the URL, or the CA certificates that cannot be read), password masked.
pub fn connect_parts(url: &str) -> Result<(Config, MakeRustlsConnect), String> {
    let target = parse(url)?;
    let connector = target.tls.connector()?;
    Ok((target.config, connector))
}

impl Tls {
    /// The rustls connector these settings ask for; reads `sslrootcert` (or libpq's
    /// default file).
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let roots = match &self.root {
            RootCert::System => None,
            RootCert::File(path) => Some(load_roots(path)?),
            RootCert::Default => match default_root_file() {
                Some(path) if path.exists() => Some(load_roots(&path)?),
                _ => None,
            },
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(NoCheck(provider.signature_verification_algorithms))
            }
            (SslMode::VerifyFull, _) if self.root == RootCert::System => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| format!("cannot read the system's trusted CAs: {e}"))?,
            ),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                let file = default_root_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.postgresql/root.crt".into());
                return Err(format!(
                    "asks to check the server's certificate, but no CA certificate was given \
                     and {file} does not exist: give `sslrootcert=/path/to/ca.crt` (or \
                     `sslrootcert=system` with verify-full), or use `sslmode=require`"
                ));
            }
            (mode, Some(roots)) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("cannot use the CA certificates: {e}"))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// libpq's default CA file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql").join("root.crt"))
}

/// The certificates of a PEM file, as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("sslrootcert {shown} is not PEM: {e}"))?;
        roots.add(cert).map_err(|e| {
            format!("sslrootcert {shown} holds a certificate that cannot be used: {e}")
        })?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown} holds no certificate"));
    }
    Ok(roots)
}

/// `prefer` and `require` as libpq does them: encryption without checking who the
/// server is. The handshake's signatures are still verified.
#[derive(Debug)]
struct NoCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain up to a trusted CA is checked (dates and usage too), the name
/// is not. webpki checks the chain before the name, so a name error means the chain
/// passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection error in one line, with what a refused certificate means in words.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            out.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            out.push_str(&format!("; hint: {h}"));
        }
        return out;
    }
    let mut out = e.to_string();
    let mut why = None;
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        why = why.or_else(|| certificate_refused(s));
        cur = s.source();
    }
    match why {
        Some(why) => format!("{why} ({out})"),
        None => out,
    }
}

/// What a TLS error wrapped in an I/O error says about the server's certificate.
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let io = e.downcast_ref::<std::io::Error>()?;
    let rustls::Error::InvalidCertificate(c) = io.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    Some(match c {
        CertificateError::UnknownIssuer => "the server's TLS certificate is not signed by a CA \
             that sslrootcert trusts: refused"
            .to_string(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's TLS certificate is not valid for the host name of the URL \
             (sslmode=verify-full checks it): refused"
                .to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's TLS certificate has expired: refused".to_string()
        }
        other => format!("the server's TLS certificate was refused: {other:?}"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Tls {
        parse(url).unwrap().tls
    }

    #[test]
    fn modes_and_root_certificates_as_libpq_reads_them() {
        let t = tls("postgres://u@h/db");
        assert_eq!((t.mode, t.root), (SslMode::Prefer, RootCert::Default));
        let t = tls("postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem");
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root, RootCert::File("/etc/ca.pem".into()));
        let t = tls("postgres://u@h/db?sslrootcert=system&sslmode=verify-full");
        assert_eq!(t.root, RootCert::System);
        for (mode, pg) in [
            ("disable", PgSslMode::Disable),
            ("allow", PgSslMode::Prefer),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
            ("verify-ca", PgSslMode::Require),
        ] {
            let t = parse(&format!(
                "postgres://u@h/db?sslmode={mode}&connect_timeout=3"
            ))
            .unwrap();
            assert_eq!(t.config.get_ssl_mode(), pg, "{mode}");
            assert_eq!(
                t.config.get_connect_timeout(),
                Some(&std::time::Duration::from_secs(3)),
                "the other options are kept"
            );
        }
    }

    #[test]
    fn what_cannot_be_used_is_said_without_the_password() {
        let err = |url: &str| parse(url).unwrap_err();
        assert!(err("postgres://u:pw@h/db?sslmode=sometimes").contains("`sslmode=sometimes`"));
        assert!(err("postgres://u@h/db?sslrootcert=system").contains("verify-full"));
        assert!(err("postgres://u@h/db?sslmode=require&sslrootcert=system").contains("verify-full"));
        assert!(err("postgres://u@h/db?sslcert=c.pem").contains("client certificates"));
        let e = err("postgres://u:hunter2@h/db?port=x");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn checking_a_certificate_needs_a_ca() {
        let t = Tls {
            mode: SslMode::VerifyFull,
            root: RootCert::File("/nonexistent/ca.crt".into()),
        };
        let e = t.connector().err().unwrap();
        assert!(
            e.contains("cannot read sslrootcert /nonexistent/ca.crt"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let t = Tls {
            mode: SslMode::VerifyCa,
            root: RootCert::File(empty.clone()),
        };
        let e = t.connector().err().unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(Tls {
            mode: SslMode::Require,
            root: RootCert::Default
        }
        .connector()
        .is_ok());
    }
}
