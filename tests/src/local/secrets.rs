//! The mesh's secrets in `<state>/secrets/` (mode 600): random bytes in hex, made once and
//! reused by every later `up`; deleting one and running `up` again rotates it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::ui::failure;

/// The secrets of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The secret `name`: `bytes` random bytes in hex, made now if missing. It is written
    /// to a temporary file first, so an interrupted run never leaves a short secret.
    pub fn get(&self, name: &str, bytes: usize) -> anyhow::Result<String> {
        let path = self.path(name);
        if let Ok(value) = std::fs::read_to_string(&path)
            && !value.is_empty()
        {
            return Ok(value.trim_end().to_owned());
        }
        let value = crate::accounts::random_hex(bytes)?;
        let tmp = self.path(&format!("{name}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("could not write {}", tmp.display()))?;
        file.write_all(value.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok(value)
    }

    /// A 32-byte secret that must hold 64 hex digits; `fix` says what to do otherwise.
    pub fn key(&self, name: &str, shown: &str, fix: &str) -> anyhow::Result<String> {
        let value = self.get(name, 32)?;
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(value)
        } else {
            Err(failure(format!(
                "{shown} does not hold 64 hex digits; {fix}"
            )))
        }
    }

    /// The newest modification time among the named secrets.
    pub fn newest(&self, names: &[String]) -> Option<std::time::SystemTime> {
        names
            .iter()
            .filter_map(|name| std::fs::metadata(self.path(name)).ok()?.modified().ok())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_secret_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secrets = Secrets::new(dir.path());
        let first = secrets
            .get("client-auth", 32)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(first.len(), 64);
        assert_eq!(secrets.get("client-auth", 32).ok(), Some(first.clone()));
        let mode = std::fs::metadata(secrets.path("client-auth"))
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        std::fs::write(secrets.path("kek-local"), "short").unwrap_or_else(|e| panic!("{e}"));
        let err = secrets
            .key("kek-local", "kek-local", "restore it")
            .expect_err("a short key was taken");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
