//! The rotated refresh token of an `oauth2` service, kept in the data directory
//! (`oauth2/SERVICE.json`, mode 0600) the moment the token endpoint hands it out: a
//! rotating server refuses the old one from then on, so losing the new one would lock
//! hamstr out. The file names the configuration it belongs to by a SHA-256 digest of the
//! token URL, client id and configured refresh token; a file for another configuration
//! (the configured token was changed) is discarded.

use crate::check::OAuth2;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The version of the file's layout.
const VERSION: u64 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u64,
    /// Which configuration the token continues.
    configured: String,
    refresh_token: String,
    stored_at: String,
}

#[derive(Clone)]
pub struct RefreshStore {
    path: PathBuf,
    configured: String,
}

impl RefreshStore {
    pub fn new(data_dir: &Path, service: &str, cfg: &OAuth2, configured: &str) -> RefreshStore {
        let mut h = Sha256::new();
        for part in [cfg.token_url.as_str(), &cfg.client_id.value, configured] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let configured = h
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        RefreshStore {
            path: data_dir.join("oauth2").join(format!("{service}.json")),
            configured,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The refresh token stored for this configuration, if any. A file left by another
    /// configuration is removed.
    pub fn load(&self) -> Result<Option<String>, String> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let stored: Stored = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{} is not a stored refresh token ({e}); remove it to start again from the configured `refresh_token`",
                self.path.display()
            )
        })?;
        if stored.version > VERSION {
            return Err(format!(
                "{} was written by a newer hamstr (version {})",
                self.path.display(),
                stored.version
            ));
        }
        if stored.configured != self.configured {
            tracing::info!(file = %self.path.display(), "the configured refresh token changed: the rotated one stored before is discarded");
            std::fs::remove_file(&self.path)
                .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))?;
            return Ok(None);
        }
        Ok(Some(stored.refresh_token))
    }

    /// Stores `token` durably: a private temporary file, synced, renamed over the old
    /// one, and the folder synced, so that a crash leaves the old file or the new one.
    pub fn save(&self, token: &str) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let failed =
            |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", dir.display());
        create_private_dir(dir).map_err(|e| failed("create", e))?;
        let stored = Stored {
            version: VERSION,
            configured: self.configured.clone(),
            refresh_token: token.to_string(),
            stored_at: chrono::Utc::now().to_rfc3339(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = private_file(&tmp).map_err(|e| failed("write in", e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("write in", e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| failed("write in", e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed("sync", e))
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// A file only its owner may read or write (mode 0600), even one a crash left behind.
#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{ClientAuth, Text};

    fn cfg() -> OAuth2 {
        OAuth2 {
            token_url: "https://auth.example/token".into(),
            client_id: Text::plain("id").into_secret(),
            client_secret: Text::plain("secret").into_secret(),
            scope: None,
            audience: None,
            refresh_token: Some(Text::plain("first").into_secret()),
            client_auth: ClientAuth::Basic,
        }
    }

    #[test]
    fn a_stored_token_is_private_and_belongs_to_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let store = RefreshStore::new(dir.path(), "crm", &cfg(), "first");
        assert_eq!(store.load().unwrap(), None);
        store.save("second").unwrap();
        store.save("third").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("third"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // the same configuration, later: the rotated token
        let again = RefreshStore::new(dir.path(), "crm", &cfg(), "first");
        assert_eq!(again.load().unwrap().as_deref(), Some("third"));
        // another configured token: the stored one is discarded
        let changed = RefreshStore::new(dir.path(), "crm", &cfg(), "new-first");
        assert_eq!(changed.load().unwrap(), None);
        assert!(!store.path().exists());
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = RefreshStore::new(dir.path(), "crm", &cfg(), "first");
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), b"{\"version\":1,").unwrap();
        let e = store.load().unwrap_err();
        assert!(e.contains("is not a stored refresh token"), "{e}");
    }
}
