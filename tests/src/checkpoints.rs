//! Audit's checkpoint settings in one mesh: a signing key made fresh for every mesh (as
//! `deploy/local/mesh` makes one once under `.bulwark/secrets/`) and a checkpoint
//! directory in the mesh's temporary directory. Checkpoints are taken every second, so
//! that a test sees one soon after the events it made.

use std::path::{Path, PathBuf};

use crate::accounts::random_secret;

/// How often the mesh's Audit checkpoints its head.
const INTERVAL_SECONDS: u64 = 1;

#[derive(Debug, Clone)]
pub(crate) struct AuditCheckpoints {
    /// The Ed25519 private key: 32 random bytes in hex.
    key: String,
    dir: PathBuf,
}

impl AuditCheckpoints {
    /// A new key, and `<mesh dir>/audit-checkpoints` (Audit creates it).
    pub(crate) fn generate(mesh_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            key: random_secret()?,
            dir: mesh_dir.join("audit-checkpoints"),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Audit's `BULWARK_AUDIT__CHECKPOINT_*` settings.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BULWARK_AUDIT__CHECKPOINT_KEY".to_owned(), self.key.clone()),
            (
                "BULWARK_AUDIT__CHECKPOINT_DIR".to_owned(),
                self.dir.to_string_lossy().into_owned(),
            ),
            (
                "BULWARK_AUDIT__CHECKPOINT_INTERVAL_SECONDS".to_owned(),
                INTERVAL_SECONDS.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mesh_gets_its_own_key_and_a_directory_inside_it() {
        let first = AuditCheckpoints::generate(Path::new("/tmp/mesh-a")).expect("a key");
        let second = AuditCheckpoints::generate(Path::new("/tmp/mesh-b")).expect("a key");
        assert_ne!(first.key, second.key);
        assert_eq!(first.key.len(), 64);
        assert!(first.key.bytes().all(|b| b.is_ascii_hexdigit()));
        let env = first.env();
        let keys: Vec<&str> = env.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "BULWARK_AUDIT__CHECKPOINT_KEY",
                "BULWARK_AUDIT__CHECKPOINT_DIR",
                "BULWARK_AUDIT__CHECKPOINT_INTERVAL_SECONDS"
            ]
        );
        assert_eq!(env[1].1, "/tmp/mesh-a/audit-checkpoints");
    }
}
