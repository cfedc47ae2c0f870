//! Checkpoints at work: signing the chain head at an interval (when it moved), storing
//! each one in the database and as a file in the checkpoint directory, and gathering
//! every checkpoint `VerifyChain` compares the chain with.
//!
//! The database copy lets every instance list the same checkpoints; the file is the
//! copy outside the database, for an operator to ship to a store the audited services
//! cannot touch. Neither is trusted as such: only the signature is, checked against
//! the configured keys.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulwark_kernel::Kernel;
use bulwark_kernel::db::Database;
use bulwark_kernel::error_bus::ErrorBus;
use bulwark_proto::audit::v1 as proto;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use tokio::sync::Notify;

use crate::config::Checkpointing;
use crate::domain::checkpoint::{Checkpoint, CheckpointKeys, CheckpointSigner, HASH_BYTES};
use crate::domain::checkpoint_file::{self, FILE_PREFIX, FILE_SUFFIX};
use crate::error::Error;
use crate::store;

/// Most invalid checkpoints one `VerifyChain` answer lists.
const MAX_INVALID_LISTED: usize = 100;

/// A checkpoint that was refused, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub source: String,
    /// The sequence it claims; 0 when unreadable.
    pub sequence: i64,
    pub reason: String,
}

/// The checkpoints a verification compares the chain with.
#[derive(Debug, Default)]
pub struct Gathered {
    /// (sequence, hash) of each genuine checkpoint.
    pub genuine: Vec<(i64, [u8; HASH_BYTES])>,
    /// The refused ones, at most [`MAX_INVALID_LISTED`].
    pub invalid: Vec<Invalid>,
}

impl Gathered {
    fn judge(&mut self, keys: &CheckpointKeys, source: String, read: Result<Checkpoint, String>) {
        let refusal = match read {
            Ok(checkpoint) => match keys.verify(&checkpoint) {
                Ok(()) => {
                    self.genuine.push((checkpoint.sequence, checkpoint.hash));
                    return;
                }
                Err(refusal) => (checkpoint.sequence, refusal.to_string()),
            },
            Err(reason) => (0, reason),
        };
        let (sequence, reason) = refusal;
        tracing::warn!(%source, sequence, %reason, "invalid audit checkpoint");
        if self.invalid.len() < MAX_INVALID_LISTED {
            self.invalid.push(Invalid {
                source,
                sequence,
                reason,
            });
        }
    }
}

/// Signs, stores and gathers the checkpoints of one Audit instance.
#[derive(Debug)]
pub struct Checkpoints {
    db: Database,
    signer: CheckpointSigner,
    keys: CheckpointKeys,
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(db: Database, setup: Checkpointing) -> Self {
        Self {
            db,
            signer: setup.signer,
            keys: setup.keys,
            dir: setup.dir,
        }
    }

    /// The keys checkpoints verify under, the current one first.
    pub fn keys(&self) -> &CheckpointKeys {
        &self.keys
    }

    /// Signs the current head, stores it and writes its file; `None` when the log is
    /// empty or this head is checkpointed already. Instances take turns (an advisory
    /// lock), so a head is signed once however many run. The file is written before the
    /// row commits: a checkpoint in the table always has its file (unless the file was
    /// removed later).
    pub async fn take(&self) -> Result<Option<Checkpoint>, Error> {
        let mut conn = self.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            store::lock_checkpoints(conn).await?;
            let Some((sequence, hash)) = store::head(conn).await? else {
                return Ok(None);
            };
            // The table's check makes every hash 32 bytes; a row that is not was
            // tampered with, which VerifyChain reports, so there is nothing to sign.
            let Ok(hash) = <[u8; HASH_BYTES]>::try_from(hash.as_slice()) else {
                return Ok(None);
            };
            if store::is_checkpointed(conn, sequence, &hash).await? {
                return Ok(None);
            }
            let checkpoint = self.signer.sign(sequence, hash, chrono::Utc::now());
            store::insert_checkpoint(conn, &checkpoint).await?;
            write_file(&self.dir, &checkpoint).await?;
            Ok(Some(checkpoint))
        })
        .await
    }

    /// The genuine and the refused checkpoints among those of the request, the
    /// database and the checkpoint directory.
    pub async fn gather(
        &self,
        conn: &mut AsyncPgConnection,
        kept: Vec<proto::Checkpoint>,
    ) -> Result<Gathered, Error> {
        let mut gathered = Gathered::default();
        for (index, message) in kept.into_iter().enumerate() {
            let read = checkpoint_file::from_message(message);
            gathered.judge(&self.keys, format!("request[{index}]"), read);
        }
        for row in store::all_checkpoints(conn).await? {
            let read = row
                .checkpoint()
                .ok_or_else(|| "hash or signature has the wrong length".to_owned());
            gathered.judge(&self.keys, format!("database (id {})", row.id), read);
        }
        for (name, read) in read_files(&self.dir).await? {
            gathered.judge(&self.keys, format!("file {name}"), read);
        }
        Ok(gathered)
    }

    /// Checkpoints the head every `interval` until shutdown, and once more then (after
    /// in-flight appends have drained). A failure is reported once until a checkpoint
    /// succeeds again.
    pub fn start(self: Arc<Self>, kernel: &Kernel, interval: Duration) {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(self, interval, kernel.errors.clone(), stop.clone()));
        kernel.on_shutdown("audit checkpoints", move || async move {
            stop.notify_one();
            let _ = task.await;
        });
    }
}

async fn run(checkpoints: Arc<Checkpoints>, interval: Duration, bus: ErrorBus, stop: Arc<Notify>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = stop.notified() => true,
            _ = ticker.tick() => false,
        };
        match checkpoints.take().await {
            Ok(taken) => {
                if let Some(checkpoint) = taken {
                    tracing::info!(
                        sequence = checkpoint.sequence,
                        key_id = %checkpoint.key_id,
                        "audit checkpoint signed"
                    );
                    metrics::counter!("audit_checkpoints_total").increment(1);
                }
                failing = false;
            }
            Err(error) => {
                if !failing {
                    bus.error("checkpoints", &error);
                    failing = true;
                }
                metrics::counter!("audit_checkpoint_failures_total").increment(1);
            }
        }
        if stopping {
            return;
        }
    }
}

/// Writes `checkpoint`'s file: a temporary file, flushed, then renamed into place, so
/// a reader never sees half a file, and the directory synced so the name survives a
/// crash.
async fn write_file(dir: &Path, checkpoint: &Checkpoint) -> Result<(), Error> {
    let name = checkpoint_file::file_name(checkpoint);
    let text = checkpoint_file::to_json(checkpoint);
    let dir = dir.to_owned();
    blocking(&dir.clone(), move || {
        let temporary = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(&name))?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
}

/// Every checkpoint file in `dir` (`checkpoint-*.json`), by name, read or not.
async fn read_files(dir: &Path) -> Result<Vec<(String, Result<Checkpoint, String>)>, Error> {
    let dir_owned = dir.to_owned();
    blocking(dir, move || {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir_owned)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX)) {
                continue;
            }
            let read = std::fs::read_to_string(entry.path())
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(|text| checkpoint_file::from_json(&text));
            files.push((name, read));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    })
    .await
}

/// Runs file work off the async threads; errors name `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|result| result)
        .map_err(|e| Error::io(path, e))
}
