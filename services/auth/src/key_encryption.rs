//! Signing keys at rest. Each private key is sealed with AES-256-GCM under a
//! key-encryption key (KEK) from configuration, which never enters the database: a
//! dump of Auth's schema (a backup, a replica, a snapshot) holds no key that can sign.
//!
//! A sealed key is `nonce (12 bytes) ‖ ciphertext ‖ tag`, with the key's `kid` as
//! associated data (a sealed key copied onto another row does not open), and the row's
//! `kek_id` names the KEK. Several KEKs may be configured: `current` seals, the others
//! only open, so a KEK can be rotated without a moment where some instance cannot read
//! the keys (README, "Signing keys at rest").

use std::collections::BTreeMap;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const KEK_HEX_LEN: usize = 64;

/// The `[auth.key_encryption]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyEncryptionConfig {
    /// The id of the KEK that seals new keys and re-seals older ones at start.
    pub current: Option<String>,
    /// KEKs by id, each 32 random bytes as 64 hex digits
    /// (`BULWARK_AUTH__KEY_ENCRYPTION__KEYS__<ID>`).
    #[serde(skip_serializing)]
    pub keys: BTreeMap<String, SecretString>,
    /// KEKs by id read from files holding the 64 hex digits (a mounted secret).
    pub key_files: BTreeMap<String, PathBuf>,
}

/// What to write to `signing_keys`: the sealed bytes and the KEK that sealed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

/// Why a key could not be sealed or opened. The messages name the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyEncryptionError {
    #[error("configuration key `{key}` is invalid: {reason}")]
    Config { key: String, reason: String },
    #[error(
        "signing key {kid} is sealed under key-encryption key `{kek_id}`, which is not \
         configured: add it to auth.key_encryption.keys (or key_files)"
    )]
    UnknownKek { kid: String, kek_id: String },
    #[error(
        "signing key {kid} does not open with key-encryption key `{kek_id}`: the configured \
         key is not the one that sealed it (or the row was altered)"
    )]
    WrongKek { kid: String, kek_id: String },
    #[error("sealing signing key {kid} failed")]
    Seal { kid: String },
}

/// The configured KEKs.
pub struct KeyEncryption {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
    /// The current KEK's bytes, only to derive other keys from (see [`KeyEncryption::derive`]).
    current_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryption")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> KeyEncryptionError {
    KeyEncryptionError::Config {
        key: key.into(),
        reason: reason.into(),
    }
}

const HOW_TO: &str = "generate one with `od -An -N32 -tx1 /dev/urandom | tr -d ' \\n'` and set \
                      BULWARK_AUTH__KEY_ENCRYPTION__KEYS__<ID> and \
                      BULWARK_AUTH__KEY_ENCRYPTION__CURRENT=<id> (README, Signing keys at rest)";

impl KeyEncryption {
    /// Reads and checks the KEKs: at least one, `current` among them, each exactly 32
    /// bytes in hex, ids of `[a-z0-9_-]`, files readable.
    pub fn from_config(config: &KeyEncryptionConfig) -> Result<Self, KeyEncryptionError> {
        let mut keys = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for (id, secret) in &config.keys {
            let key = format!("auth.key_encryption.keys.{id}");
            let (cipher, raw) = cipher(&key, id, secret.expose_secret())?;
            keys.insert(id.clone(), cipher);
            secrets.insert(id.clone(), raw);
        }
        for (id, path) in &config.key_files {
            let key = format!("auth.key_encryption.key_files.{id}");
            if keys.contains_key(id) {
                return Err(invalid(
                    key,
                    format!("KEK `{id}` is also set in auth.key_encryption.keys"),
                ));
            }
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid(&key, format!("cannot read {}: {e}", path.display())))?,
            );
            let (cipher, raw) = cipher(&key, id, text.trim())?;
            keys.insert(id.clone(), cipher);
            secrets.insert(id.clone(), raw);
        }
        if keys.is_empty() {
            return Err(invalid(
                "auth.key_encryption.keys",
                format!(
                    "no key-encryption key is configured: Auth seals its signing keys with one; {HOW_TO}"
                ),
            ));
        }
        let current = match (&config.current, keys.len()) {
            (Some(current), _) => current.clone(),
            (None, 1) => keys.keys().next().cloned().unwrap_or_default(),
            (None, _) => {
                return Err(invalid(
                    "auth.key_encryption.current",
                    "several key-encryption keys are configured: name the one that seals",
                ));
            }
        };
        if !keys.contains_key(&current) {
            return Err(invalid(
                "auth.key_encryption.current",
                format!(
                    "`{current}` is not among the configured keys ({})",
                    ids(&keys)
                ),
            ));
        }
        let current_secret = secrets.remove(&current).unwrap_or_default();
        Ok(Self {
            current,
            keys,
            current_secret,
        })
    }

    /// A key for another purpose (`label`), derived from the current KEK with
    /// HMAC-SHA256: the same on every Auth instance, and nothing to configure besides
    /// the KEK. It changes when the current KEK does.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.current_secret.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"bulwark auth derived key\0");
        mac.update(label.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The id of the KEK that seals.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Seals the private key of `kid` under the current KEK.
    pub fn seal(&self, kid: &str, private_der: &[u8]) -> Result<Sealed, KeyEncryptionError> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| KeyEncryptionError::Seal {
                kid: kid.to_owned(),
            })?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: private_der,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| KeyEncryptionError::Seal {
                kid: kid.to_owned(),
            })?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            kek_id: self.current.clone(),
            bytes,
        })
    }

    /// Opens the sealed private key of `kid`, sealed under `kek_id`.
    pub fn open(
        &self,
        kid: &str,
        kek_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyEncryptionError> {
        let cipher = self
            .keys
            .get(kek_id)
            .ok_or_else(|| KeyEncryptionError::UnknownKek {
                kid: kid.to_owned(),
                kek_id: kek_id.to_owned(),
            })?;
        let wrong = || KeyEncryptionError::WrongKek {
            kid: kid.to_owned(),
            kek_id: kek_id.to_owned(),
        };
        let (Some(nonce), Some(ciphertext)) = (sealed.get(..NONCE_LEN), sealed.get(NONCE_LEN..))
        else {
            return Err(wrong());
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| wrong())
    }
}

fn ids(keys: &BTreeMap<String, Aes256Gcm>) -> String {
    keys.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn cipher(
    key: &str,
    id: &str,
    hex: &str,
) -> Result<(Aes256Gcm, Zeroizing<[u8; 32]>), KeyEncryptionError> {
    let valid_id = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_id {
        return Err(invalid(key, "a KEK id is 1 to 32 of a-z, 0-9, '-' and '_'"));
    }
    if hex.len() != KEK_HEX_LEN {
        return Err(invalid(
            key,
            format!("must be 32 bytes as {KEK_HEX_LEN} hex digits; {HOW_TO}"),
        ));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok();
        let byte = digits.and_then(|d| u8::from_str_radix(d, 16).ok());
        match (byte, bytes.get_mut(i)) {
            (Some(byte), Some(slot)) => *slot = byte,
            _ => return Err(invalid(key, format!("must be {KEK_HEX_LEN} hex digits"))),
        }
    }
    let cipher = Aes256Gcm::new_from_slice(bytes.as_slice())
        .map_err(|_| invalid(key, "must be 32 bytes"))?;
    Ok((cipher, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";

    fn config(keys: &[(&str, &str)], current: Option<&str>) -> KeyEncryptionConfig {
        KeyEncryptionConfig {
            current: current.map(str::to_owned),
            keys: keys
                .iter()
                .map(|(id, hex)| ((*id).to_owned(), SecretString::from(*hex)))
                .collect(),
            key_files: BTreeMap::new(),
        }
    }

    fn ring(keys: &[(&str, &str)], current: Option<&str>) -> KeyEncryption {
        KeyEncryption::from_config(&config(keys, current)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refusal(keys: &[(&str, &str)], current: Option<&str>) -> String {
        KeyEncryption::from_config(&config(keys, current))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted {keys:?} / {current:?}"))
    }

    #[test]
    fn sealed_keys_open_with_their_kek_and_kid_only() {
        let ring = ring(&[("k1", K1)], None);
        let sealed = ring
            .seal("kid-a", b"private der")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sealed.kek_id, "k1");
        assert!(
            !sealed.bytes.windows(11).any(|w| w == b"private der"),
            "plaintext in the row"
        );
        assert_eq!(
            ring.open("kid-a", "k1", &sealed.bytes).map(|b| b.to_vec()),
            Ok(b"private der".to_vec())
        );
        // Moved to another row, or altered, it does not open.
        assert!(matches!(
            ring.open("kid-b", "k1", &sealed.bytes),
            Err(KeyEncryptionError::WrongKek { .. })
        ));
        let mut altered = sealed.bytes.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(
            ring.open("kid-a", "k1", &altered),
            Err(KeyEncryptionError::WrongKek { .. })
        ));
        assert!(matches!(
            ring.open("kid-a", "k1", &[1, 2, 3]),
            Err(KeyEncryptionError::WrongKek { .. })
        ));
        // Two seals of one key differ (a fresh nonce each).
        let again = ring
            .seal("kid-a", b"private der")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(again.bytes, sealed.bytes);
    }

    #[test]
    fn a_wrong_or_missing_kek_is_named() {
        let sealed = ring(&[("k1", K1)], None)
            .seal("kid", b"der")
            .unwrap_or_else(|e| panic!("{e}"));
        let other = ring(&[("k1", K2)], None);
        let wrong = other
            .open("kid", "k1", &sealed.bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            wrong.contains("does not open with key-encryption key `k1`"),
            "{wrong}"
        );
        let missing = ring(&[("k2", K2)], None)
            .open("kid", "k1", &sealed.bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.contains("`k1`, which is not configured"),
            "{missing}"
        );
    }

    #[test]
    fn the_current_kek_seals_and_the_others_still_open() {
        let old = ring(&[("k1", K1)], None)
            .seal("kid", b"der")
            .unwrap_or_else(|e| panic!("{e}"));
        let rotated = ring(&[("k1", K1), ("k2", K2)], Some("k2"));
        assert_eq!(
            rotated.open("kid", "k1", &old.bytes).map(|b| b.to_vec()),
            Ok(b"der".to_vec())
        );
        assert_eq!(
            rotated.seal("kid", b"der").map(|s| s.kek_id),
            Ok("k2".to_owned())
        );
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_key() {
        assert!(refusal(&[], None).contains("auth.key_encryption.keys"));
        assert!(refusal(&[], None).contains("od -An -N32"));
        assert!(refusal(&[("k1", "abcd")], None).contains("auth.key_encryption.keys.k1"));
        assert!(refusal(&[("k1", &K1.replace('0', "g"))], None).contains("hex digits"));
        assert!(refusal(&[("K1!", K1)], None).contains("KEK id"));
        assert!(refusal(&[("k1", K1), ("k2", K2)], None).contains("auth.key_encryption.current"));
        assert!(
            refusal(&[("k1", K1)], Some("k9"))
                .contains("`k9` is not among the configured keys (k1)")
        );
    }

    #[test]
    fn keks_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("kek");
        std::fs::write(&path, format!("{K1}\n")).unwrap_or_else(|e| panic!("{e}"));
        let mut with_file = config(&[], None);
        with_file.key_files.insert("k1".into(), path.clone());
        let ring = KeyEncryption::from_config(&with_file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.current(), "k1");
        with_file
            .key_files
            .insert("k2".into(), dir.path().join("absent"));
        let error = KeyEncryption::from_config(&with_file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("auth.key_encryption.key_files.k2") && error.contains("cannot read"),
            "{error}"
        );
    }
}
