//! The rotated refresh token of an `oauth2` service, kept the moment the token endpoint
//! hands it out: a rotating server refuses the old one from then on, so losing the new
//! one would lock hamstr out. A single run keeps it in the data directory
//! (`oauth2/SERVICE.json`, mode 0600); an instance of a cluster keeps it in the state
//! store (the cluster database, key-value space `oauth2`), so the instance that takes a
//! unit over continues with the token the previous owner was given. What is kept names
//! the configuration it belongs to by a SHA-256 digest of the token URL, client id and
//! configured refresh token; one kept for another configuration (the configured token
//! was changed) is discarded.

use super::TokenHome;
use crate::check::OAuth2;
use crate::state::StateStore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The version of the file's layout.
const VERSION: u64 = 1;

/// The key-value space of the state store that holds the tokens, keyed by service.
pub const SPACE: &str = "oauth2";

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u64,
    /// Which configuration the token continues.
    configured: String,
    refresh_token: String,
    stored_at: String,
}

/// Where the token is kept.
#[derive(Clone)]
enum Place {
    File(PathBuf),
    /// Shared by every instance of a cluster.
    Store {
        store: Arc<dyn StateStore>,
        service: String,
    },
}

#[derive(Clone)]
pub struct RefreshStore {
    place: Place,
    configured: String,
}

impl RefreshStore {
    /// Where `home` keeps the token of `service`; `None` when it keeps none (memory
    /// only).
    pub fn new(
        home: &TokenHome,
        service: &str,
        cfg: &OAuth2,
        configured: &str,
    ) -> Option<RefreshStore> {
        let place = match home {
            TokenHome::Memory => return None,
            TokenHome::Dir(dir) => Place::File(dir.join("oauth2").join(format!("{service}.json"))),
            TokenHome::Store(store) => Place::Store {
                store: store.clone(),
                service: service.to_string(),
            },
        };
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
        Some(RefreshStore { place, configured })
    }

    /// Where the token is kept, for messages: the file, or the cluster's state.
    pub fn shown(&self) -> String {
        match &self.place {
            Place::File(path) => path.display().to_string(),
            Place::Store { service, .. } => {
                format!("the cluster database (key-value space `{SPACE}`, key `{service}`)")
            }
        }
    }

    /// Whether other processes keep the same token (a cluster's instances): then it is
    /// read again before each renewal, as another instance may have rotated it.
    pub fn shared(&self) -> bool {
        matches!(self.place, Place::Store { .. })
    }

    /// How to remove it, for a message.
    pub fn removal(&self) -> String {
        match &self.place {
            Place::File(path) => format!("remove {}", path.display()),
            Place::Store { .. } => {
                "reset it with a newly configured `refresh_token` (a changed one replaces it)"
                    .to_string()
            }
        }
    }

    /// The refresh token stored for this configuration, if any. One left by another
    /// configuration is removed.
    pub fn load(&self) -> Result<Option<String>, String> {
        let shown = self.shown();
        let text = match &self.place {
            Place::File(path) => match std::fs::read(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("cannot read {shown}: {e}")),
            },
            Place::Store { store, service } => {
                match store
                    .kv_get(SPACE, service.as_bytes())
                    .map_err(|e| format!("cannot read the stored refresh token: {e}"))?
                {
                    Some(t) => t,
                    None => return Ok(None),
                }
            }
        };
        let stored: Stored = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{shown} is not a stored refresh token ({e}); {} to start again from the configured `refresh_token`",
                self.removal()
            )
        })?;
        if stored.version > VERSION {
            return Err(format!(
                "{shown} was written by a newer hamstr (version {})",
                stored.version
            ));
        }
        if stored.configured != self.configured {
            tracing::info!(at = %shown, "the configured refresh token changed: the rotated one stored before is discarded");
            match &self.place {
                Place::File(path) => std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?,
                Place::Store { store, service } => store
                    .kv_apply(SPACE, &[(service.as_bytes().to_vec(), None)])
                    .map_err(|e| format!("cannot remove the stored refresh token: {e}"))?,
            }
            return Ok(None);
        }
        Ok(Some(stored.refresh_token))
    }

    /// Stores `token` durably. In a file: a private temporary file, synced, renamed over
    /// the old one, and the folder synced, so that a crash leaves the old file or the new
    /// one. In the state store: one transaction, not fenced (the token endpoint has
    /// already revoked the old token, whoever holds the lease now).
    pub fn save(&self, token: &str) -> Result<(), String> {
        let stored = Stored {
            version: VERSION,
            configured: self.configured.clone(),
            refresh_token: token.to_string(),
            stored_at: chrono::Utc::now().to_rfc3339(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
        let path = match &self.place {
            Place::File(path) => path,
            Place::Store { store, service } => {
                return store
                    .kv_apply(SPACE, &[(service.as_bytes().to_vec(), Some(bytes))])
                    .map_err(|e| format!("cannot store the refresh token: {e}"));
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let failed =
            |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", dir.display());
        create_private_dir(dir).map_err(|e| failed("create", e))?;
        let tmp = path.with_extension("json.tmp");
        let mut file = private_file(&tmp).map_err(|e| failed("write in", e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("write in", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| failed("write in", e))?;
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
        let home = TokenHome::Dir(dir.path().to_path_buf());
        let store = RefreshStore::new(&home, "crm", &cfg(), "first").unwrap();
        let path = dir.path().join("oauth2").join("crm.json");
        assert_eq!(store.load().unwrap(), None);
        store.save("second").unwrap();
        store.save("third").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("third"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // the same configuration, later: the rotated token
        let again = RefreshStore::new(&home, "crm", &cfg(), "first").unwrap();
        assert_eq!(again.load().unwrap().as_deref(), Some("third"));
        // another configured token: the stored one is discarded
        let changed = RefreshStore::new(&home, "crm", &cfg(), "new-first").unwrap();
        assert_eq!(changed.load().unwrap(), None);
        assert!(!path.exists());
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let home = TokenHome::Dir(dir.path().to_path_buf());
        let store = RefreshStore::new(&home, "crm", &cfg(), "first").unwrap();
        let path = dir.path().join("oauth2").join("crm.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{\"version\":1,").unwrap();
        let e = store.load().unwrap_err();
        assert!(e.contains("is not a stored refresh token"), "{e}");
    }

    /// In a cluster the token is in the state store: every instance's store of the
    /// same database sees the token another stored; another configuration discards it.
    #[test]
    fn in_the_state_store_the_token_is_shared_and_belongs_to_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::state::SledStore::open(dir.path()).unwrap());
        let home = TokenHome::Store(store.clone());
        let a = RefreshStore::new(&home, "crm", &cfg(), "first").unwrap();
        let b = RefreshStore::new(&home, "crm", &cfg(), "first").unwrap();
        assert!(a.shared());
        assert_eq!(b.load().unwrap(), None);
        a.save("second").unwrap();
        assert_eq!(b.load().unwrap().as_deref(), Some("second"));
        assert!(
            !dir.path().join("oauth2").exists(),
            "nothing in the data directory"
        );
        let other = RefreshStore::new(&home, "other", &cfg(), "first").unwrap();
        assert_eq!(other.load().unwrap(), None, "one token per service");
        let changed = RefreshStore::new(&home, "crm", &cfg(), "new-first").unwrap();
        assert_eq!(changed.load().unwrap(), None);
        assert_eq!(store.kv_get(SPACE, b"crm").unwrap(), None, "removed");
        store
            .kv_apply(SPACE, &[(b"crm".to_vec(), Some(b"{".to_vec()))])
            .unwrap();
        let e = a.load().unwrap_err();
        assert!(e.contains("is not a stored refresh token"), "{e}");
    }
}
