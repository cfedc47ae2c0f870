//! The `[audit]` configuration section (`BULWARK_AUDIT__*`): the key that signs
//! checkpoints of the chain head, the keys older checkpoints verify under, where the
//! checkpoint files go and how often one is taken; and Audit's own limits file.
//!
//! The key is a secret from configuration, never stored in the database: whoever can
//! rewrite the database must not be able to sign a checkpoint for the rewrite. It is
//! the Ed25519 private key (the 32-byte RFC 8032 seed) as 64 hex digits, the shape of
//! Bulwark's other generated secrets (`openssl rand -hex 32`), given either inline
//! (`audit.checkpoint_key`) or in a file (`audit.checkpoint_key_file`, e.g. a mounted
//! secret).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_kernel::bootstrap::LOCAL_ENVIRONMENT;
use bulwark_kernel::config::ConfigError;
use ed25519_dalek::VerifyingKey;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::checkpoint::{CheckpointKeys, CheckpointSigner, from_hex};

/// Longest interval between checkpoints accepted (a day).
const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;

/// The `[audit]` section as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// The checkpoint signing key, 64 hex digits (`BULWARK_AUDIT__CHECKPOINT_KEY`).
    #[serde(skip_serializing)]
    pub checkpoint_key: Option<SecretString>,
    /// A file holding the checkpoint signing key instead (surrounding whitespace is
    /// ignored).
    pub checkpoint_key_file: Option<PathBuf>,
    /// Public keys (64 hex digits each) of earlier signing keys, whose checkpoints
    /// `VerifyChain` still accepts after a key rotation.
    pub checkpoint_retired_public_keys: Vec<String>,
    /// Where a file is written for each checkpoint (created if missing).
    pub checkpoint_dir: Option<PathBuf>,
    /// How often the head is checkpointed (when it moved); 60 s by default.
    pub checkpoint_interval_seconds: u64,
    /// Audit's own limits file (domain `bulwark-audit`, see `limits.yaml`): how many
    /// `VerifyChain` calls each caller may start. Counted in Redis, so it needs
    /// `redis.url`.
    pub limits_path: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_key: None,
            checkpoint_key_file: None,
            checkpoint_retired_public_keys: Vec::new(),
            checkpoint_dir: None,
            checkpoint_interval_seconds: 60,
            limits_path: None,
        }
    }
}

/// Checkpointing, ready to run.
#[derive(Debug)]
pub struct Checkpointing {
    pub signer: CheckpointSigner,
    pub keys: CheckpointKeys,
    pub dir: PathBuf,
    pub interval: Duration,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

const KEY_FORMAT: &str = "must be an Ed25519 private key as 64 hex digits \
     (32 random bytes, e.g. `openssl rand -hex 32`)";

impl AuditConfig {
    /// Validates the section and loads the key. `None` when no key is configured,
    /// which only `service.environment` `local` accepts: elsewhere a log without
    /// checkpoints can be rewritten unnoticed.
    pub fn checkpointing(&self, environment: &str) -> Result<Option<Checkpointing>, ConfigError> {
        if !(1..=MAX_INTERVAL_SECONDS).contains(&self.checkpoint_interval_seconds) {
            return Err(invalid(
                "audit.checkpoint_interval_seconds",
                format!("must be between 1 and {MAX_INTERVAL_SECONDS}"),
            ));
        }
        let retired = self
            .checkpoint_retired_public_keys
            .iter()
            .enumerate()
            .map(|(index, text)| {
                from_hex::<32>(text.trim())
                    .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
                    .ok_or_else(|| {
                        invalid(
                            &format!("audit.checkpoint_retired_public_keys[{index}]"),
                            "must be an Ed25519 public key as 64 hex digits",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(seed) = self.seed()? else {
            if environment == LOCAL_ENVIRONMENT {
                return Ok(None);
            }
            return Err(invalid(
                "audit.checkpoint_key",
                format!(
                    "is required outside service.environment `{LOCAL_ENVIRONMENT}` (here it \
                     is `{environment}`): without signed checkpoints a rewritten or truncated \
                     audit log goes unnoticed; set BULWARK_AUDIT__CHECKPOINT_KEY or \
                     audit.checkpoint_key_file (README, Audit checkpoints)"
                ),
            ));
        };
        let dir = self.checkpoint_dir.clone().ok_or_else(|| {
            invalid(
                "audit.checkpoint_dir",
                "is required with a checkpoint key: a directory outside the database for the \
                 checkpoint files",
            )
        })?;
        prepare_dir(&dir)?;
        let signer = CheckpointSigner::from_seed(&seed);
        let keys = CheckpointKeys::new(signer.public_key(), retired);
        Ok(Some(Checkpointing {
            signer,
            keys,
            dir,
            interval: Duration::from_secs(self.checkpoint_interval_seconds),
        }))
    }

    /// The limits file, when Audit holds callers to limits. `None` when it is unset,
    /// which only `service.environment` `local` accepts: elsewhere anyone with
    /// `audit:read` could keep Audit busy walking the whole log. The file is counted in
    /// Redis, so it needs `redis.url` (`has_redis`).
    pub fn limiting(
        &self,
        environment: &str,
        has_redis: bool,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = &self.limits_path else {
            if environment == LOCAL_ENVIRONMENT {
                return Ok(None);
            }
            return Err(invalid(
                "audit.limits_path",
                format!(
                    "is required outside service.environment `{LOCAL_ENVIRONMENT}` (here it \
                     is `{environment}`): without it every caller may start as many \
                     VerifyChain walks of the whole log as it likes; set \
                     BULWARK_AUDIT__LIMITS_PATH to Audit's limits file, e.g. \
                     services/audit/limits.yaml (README, Per-service limits)"
                ),
            ));
        };
        if !has_redis {
            return Err(invalid(
                "redis.url",
                format!(
                    "is required with audit.limits_path ({}): Audit counts its limits in \
                     Redis; set BULWARK_REDIS__URL",
                    path.display()
                ),
            ));
        }
        Ok(Some(path.clone()))
    }

    /// The configured key's 32 bytes, from the setting or the file.
    fn seed(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        let (key, text) = match (&self.checkpoint_key, &self.checkpoint_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "audit.checkpoint_key_file",
                    "must not be set together with audit.checkpoint_key: set one of them",
                ));
            }
            (None, None) => return Ok(None),
            (Some(inline), None) => (
                "audit.checkpoint_key",
                SecretString::from(inline.expose_secret().trim().to_owned()),
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "audit.checkpoint_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                (
                    "audit.checkpoint_key_file",
                    SecretString::from(text.trim().to_owned()),
                )
            }
        };
        from_hex::<32>(text.expose_secret())
            .map(Some)
            .ok_or_else(|| invalid(key, KEY_FORMAT))
    }
}

/// Creates the checkpoint directory if needed and checks that files can be written
/// there, so that a wrong path stops the start instead of the first checkpoint.
fn prepare_dir(dir: &Path) -> Result<(), ConfigError> {
    let refuse = |what: &str, e: std::io::Error| {
        invalid(
            "audit.checkpoint_dir",
            format!("{what} {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| refuse("cannot create", e))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"").map_err(|e| refuse("cannot write files in", e))?;
    std::fs::remove_file(&probe).map_err(|e| refuse("cannot remove files in", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn error_of(config: &AuditConfig, environment: &str) -> String {
        match config.checkpointing(environment) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        }
    }

    fn with_key(dir: &Path) -> AuditConfig {
        AuditConfig {
            checkpoint_key: Some(SecretString::from(format!(" {SEED}\n"))),
            checkpoint_dir: Some(dir.to_owned()),
            ..AuditConfig::default()
        }
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"))
    }

    #[test]
    fn without_a_key_only_local_runs_and_without_checkpoints() {
        let config = AuditConfig::default();
        assert!(matches!(config.checkpointing("local"), Ok(None)));
        for environment in ["production", "compose", "Local"] {
            let error = error_of(&config, environment);
            assert!(
                error.contains("audit.checkpoint_key")
                    && error.contains("is required outside service.environment `local`"),
                "{environment}: {error}"
            );
        }
    }

    #[test]
    fn a_key_inline_or_in_a_file_signs_and_creates_the_directory() {
        let temp = temp_dir();
        let dir = temp.path().join("checkpoints");
        let inline = with_key(&dir)
            .checkpointing("production")
            .unwrap_or_else(|e| panic!("refused: {e}"))
            .unwrap_or_else(|| panic!("no checkpointing"));
        assert!(dir.is_dir(), "the directory was not created");
        assert_eq!(
            crate::domain::checkpoint::hex(inline.signer.public_key().as_bytes()),
            PUBLIC
        );
        assert_eq!(inline.interval, Duration::from_secs(60));

        let file = temp.path().join("key");
        std::fs::write(&file, format!("{SEED}\n")).unwrap_or_else(|e| panic!("{e}"));
        let from_file = AuditConfig {
            checkpoint_key_file: Some(file),
            checkpoint_dir: Some(dir),
            ..AuditConfig::default()
        }
        .checkpointing("production")
        .unwrap_or_else(|e| panic!("refused: {e}"))
        .unwrap_or_else(|| panic!("no checkpointing"));
        assert_eq!(from_file.signer.key_id(), inline.signer.key_id());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let temp = temp_dir();
        let dir = temp.path().to_owned();
        type Mutation = fn(&mut AuditConfig, &Path);
        let cases: [(&str, &str, Mutation); 7] = [
            ("audit.checkpoint_key", "64 hex digits", |c, _| {
                c.checkpoint_key = Some(SecretString::from("abc"));
            }),
            ("audit.checkpoint_key_file", "together with", |c, d| {
                c.checkpoint_key_file = Some(d.join("key"));
            }),
            ("audit.checkpoint_key_file", "cannot read", |c, d| {
                c.checkpoint_key = None;
                c.checkpoint_key_file = Some(d.join("missing"));
            }),
            ("audit.checkpoint_dir", "is required", |c, _| {
                c.checkpoint_dir = None;
            }),
            ("audit.checkpoint_dir", "cannot create", |c, _| {
                c.checkpoint_dir = Some(PathBuf::from("/proc/bulwark-no/such"));
            }),
            ("audit.checkpoint_interval_seconds", "between 1", |c, _| {
                c.checkpoint_interval_seconds = 0;
            }),
            (
                "audit.checkpoint_retired_public_keys[1]",
                "public key",
                |c, _| {
                    c.checkpoint_retired_public_keys = vec![PUBLIC.into(), "00".into()];
                },
            ),
        ];
        for (key, rule, mutate) in cases {
            let mut config = with_key(&dir);
            mutate(&mut config, &dir);
            let error = error_of(&config, "production");
            assert!(
                error.contains(&format!("`{key}`")) && error.contains(rule),
                "expected {key} / {rule}, got {error:?}"
            );
            assert!(!error.contains(SEED), "the key leaked into {error:?}");
        }
    }

    fn limiting_error(config: &AuditConfig, environment: &str, has_redis: bool) -> String {
        match config.limiting(environment, has_redis) {
            Ok(path) => panic!("accepted in {environment} (redis: {has_redis}): {path:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn without_a_limits_file_only_local_runs_and_unlimited() {
        let config = AuditConfig::default();
        assert!(matches!(config.limiting("local", false), Ok(None)));
        assert!(matches!(config.limiting("local", true), Ok(None)));
        for environment in ["production", "compose", "Local"] {
            let error = limiting_error(&config, environment, true);
            assert!(
                error.contains("`audit.limits_path`")
                    && error.contains("is required outside service.environment `local`")
                    && error.contains("BULWARK_AUDIT__LIMITS_PATH"),
                "{environment}: {error}"
            );
        }
    }

    #[test]
    fn a_limits_file_needs_redis_in_every_environment() {
        let config = AuditConfig {
            limits_path: Some(PathBuf::from("services/audit/limits.yaml")),
            ..AuditConfig::default()
        };
        for environment in ["local", "production"] {
            let error = limiting_error(&config, environment, false);
            assert!(
                error.contains("`redis.url`")
                    && error.contains("audit.limits_path")
                    && error.contains("BULWARK_REDIS__URL"),
                "{environment}: {error}"
            );
            let path = config
                .limiting(environment, true)
                .unwrap_or_else(|e| panic!("{environment}: refused with Redis: {e}"));
            assert_eq!(path, config.limits_path, "{environment}");
        }
    }

    #[test]
    fn retired_keys_verify_besides_the_current_one() {
        let temp = temp_dir();
        let mut config = with_key(temp.path());
        config.checkpoint_key = Some(SecretString::from("11".repeat(32)));
        config.checkpoint_retired_public_keys = vec![PUBLIC.to_owned()];
        let checkpointing = config
            .checkpointing("production")
            .unwrap_or_else(|e| panic!("refused: {e}"))
            .unwrap_or_else(|| panic!("no checkpointing"));
        let keys: Vec<bool> = checkpointing
            .keys
            .all()
            .iter()
            .map(|key| key.current)
            .collect();
        assert_eq!(keys, [true, false]);
    }
}
