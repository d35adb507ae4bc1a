//! Secrets in the OS keychain, and only there: macOS Keychain, Windows Credential Manager,
//! Secret Service on Linux, through keyring-core stores. There is no plaintext fallback: if
//! no keychain works the broker refuses to start and says why.
//!
//! Layout (PROTOCOL.md §1a): service `keycard-broker`, one entry per secret, the user field
//! namespaced by profile so several broker homes can share one keychain.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use secrecy::{ExposeSecret, SecretString};

pub const SERVICE: &str = "keycard-broker";

/// Which secret an entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretKey {
    /// The zone session's refresh token (login round).
    Session,
    /// One connection's refresh token, by resource identifier.
    Connection(String),
    /// The confidential application's client secret.
    ClientSecret,
    /// A client secret a zone handed out at dynamic registration.
    RegistrationSecret,
    /// An agent client's bearer token, kept only for stdio-only clients whose bridge
    /// (`keycard-broker stdio --client NAME`) must present it.
    ClientToken(String),
}

impl SecretKey {
    fn user(&self, profile: &str) -> String {
        match self {
            SecretKey::Session => format!("{profile}/session"),
            SecretKey::Connection(resource) => format!("{profile}/connection/{resource}"),
            SecretKey::ClientSecret => format!("{profile}/client-secret"),
            SecretKey::RegistrationSecret => format!("{profile}/registration-secret"),
            SecretKey::ClientToken(name) => format!("{profile}/client/{name}"),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the keychain refused access (is it locked?): {0}")]
    Locked(String),
    #[error("the keychain entry {0} is not readable text")]
    Corrupt(String),
    #[error("keychain operation failed: {0}")]
    Failed(String),
}

/// Handle to this profile's keychain entries. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    store: Arc<CredentialStore>,
    profile: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store.vendor())
            .field("profile", &self.profile)
            .finish()
    }
}

impl Vault {
    /// Opens the platform keychain and proves it works with a real write + delete
    /// (a Secret Service can report healthy and still refuse the first write).
    pub async fn open_native(profile: &str) -> Result<Vault, VaultError> {
        let profile = profile.to_string();
        blocking(move || {
            let store = native_store()?;
            let vault = Vault { store, profile };
            vault.probe_sync()?;
            Ok(vault)
        })
        .await
    }

    /// A vault over any store (the mock store in unit tests).
    pub fn with_store(store: Arc<CredentialStore>, profile: &str) -> Vault {
        Vault {
            store,
            profile: profile.to_string(),
        }
    }

    /// Human name of the backend, for status displays.
    pub fn backend(&self) -> String {
        let vendor = self.store.vendor();
        let name = if vendor.starts_with("Secret Service") {
            "Secret Service (GNOME Keyring / KWallet)"
        } else if vendor.to_ascii_lowercase().contains("mock") {
            "in-memory test store"
        } else if cfg!(target_os = "macos") {
            "macOS Keychain"
        } else if cfg!(target_os = "windows") {
            "Windows Credential Manager"
        } else {
            return vendor;
        };
        name.to_string()
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The keychain `user` field of an entry (tests and diagnostics look entries up by it).
    pub fn entry_user(&self, key: &SecretKey) -> String {
        key.user(&self.profile)
    }

    fn probe_sync(&self) -> Result<(), VaultError> {
        let entry = self.entry(&SecretKey::Connection("__probe__".into()))?;
        entry.set_password("probe").map_err(map_error)?;
        let read = entry.get_password().map_err(map_error)?;
        entry.delete_credential().map_err(map_error)?;
        if read != "probe" {
            return Err(VaultError::Failed(
                "the keychain returned a different value than was written".into(),
            ));
        }
        Ok(())
    }

    fn entry(&self, key: &SecretKey) -> Result<Entry, VaultError> {
        Entry::new_in_store(&self.store, SERVICE, &key.user(&self.profile)).map_err(map_error)
    }

    pub async fn put(&self, key: SecretKey, value: SecretString) -> Result<(), VaultError> {
        let vault = self.clone();
        blocking(move || {
            vault
                .entry(&key)?
                .set_password(value.expose_secret())
                .map_err(map_error)
        })
        .await
    }

    /// `Ok(None)` when there is no such entry.
    pub async fn get(&self, key: SecretKey) -> Result<Option<SecretString>, VaultError> {
        let vault = self.clone();
        blocking(move || match vault.entry(&key)?.get_password() {
            Ok(value) => Ok(Some(SecretString::from(value))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(KeyringError::BadEncoding(_)) => Err(VaultError::Corrupt(key.user(&vault.profile))),
            Err(e) => Err(map_error(e)),
        })
        .await
    }

    /// Deleting a missing entry is not an error (wipes are idempotent).
    pub async fn delete(&self, key: SecretKey) -> Result<(), VaultError> {
        let vault = self.clone();
        blocking(move || match vault.entry(&key)?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(map_error(e)),
        })
        .await
    }
}

/// Keychain stores are synchronous (and may block on D-Bus); keep them off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VaultError> + Send + 'static,
) -> Result<T, VaultError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VaultError::Failed(format!("keychain worker stopped: {e}")))?
}

fn map_error(e: KeyringError) -> VaultError {
    match e {
        KeyringError::NoStorageAccess(inner) => VaultError::Locked(inner.to_string()),
        KeyringError::PlatformFailure(inner) => VaultError::Unavailable(platform_hint(&*inner)),
        other => VaultError::Failed(other.to_string()),
    }
}

#[cfg(target_os = "linux")]
fn platform_hint(inner: &(dyn std::error::Error + Send + Sync)) -> String {
    format!("no Secret Service on this session bus: {inner}")
}

#[cfg(not(target_os = "linux"))]
fn platform_hint(inner: &(dyn std::error::Error + Send + Sync)) -> String {
    format!("the OS keychain is not available: {inner}")
}

#[cfg(target_os = "linux")]
fn native_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(map_error)?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn native_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store = apple_native_keyring_store::keychain::Store::new().map_err(map_error)?;
    Ok(store)
}

#[cfg(target_os = "windows")]
fn native_store() -> Result<Arc<CredentialStore>, VaultError> {
    let store = windows_native_keyring_store::Store::new().map_err(map_error)?;
    Ok(store)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn native_store() -> Result<Arc<CredentialStore>, VaultError> {
    Err(VaultError::Unavailable(
        "no supported OS keychain on this platform".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> Vault {
        let store: Arc<CredentialStore> = keyring_core::mock::Store::new().unwrap();
        Vault::with_store(store, "p1")
    }

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let vault = mock();
        let key = SecretKey::Connection("https://api.github.com".into());
        assert!(vault.get(key.clone()).await.unwrap().is_none());
        vault
            .put(key.clone(), SecretString::from("rt-1"))
            .await
            .unwrap();
        let got = vault.get(key.clone()).await.unwrap().unwrap();
        assert_eq!(got.expose_secret(), "rt-1");
        vault.delete(key.clone()).await.unwrap();
        vault.delete(key.clone()).await.unwrap();
        assert!(vault.get(key).await.unwrap().is_none());
    }

    #[test]
    fn entries_are_namespaced_by_profile() {
        assert_eq!(SecretKey::Session.user("p1"), "p1/session");
        assert_ne!(SecretKey::Session.user("p1"), SecretKey::Session.user("p2"));
    }
}
