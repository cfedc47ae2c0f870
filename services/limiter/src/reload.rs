//! Loading the limit files and keeping them current: the path (a file, or a directory
//! whose `*.yaml`/`*.yml` files are one domain each) is read again every interval, and
//! changed content replaces the limits atomically. A refused file never drops limits:
//! the previous ones stay in force and the error goes to the error bus and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::limits::{DomainLimits, Limits, LimitsError};
use crate::metrics::{CONFIG_FILE_VALID, CONFIG_RELOADS_TOTAL};
use bulwark_kernel::error_bus::ErrorBus;

/// The limits in force; readers take a snapshot per decision, reloads swap it whole.
#[derive(Debug, Clone)]
pub struct LimitsHandle(Arc<ArcSwap<Limits>>);

impl LimitsHandle {
    pub fn new(limits: Limits) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(limits)))
    }

    pub fn current(&self) -> Arc<Limits> {
        self.0.load_full()
    }

    pub fn replace(&self, limits: Limits) {
        self.0.store(Arc::new(limits));
    }
}

/// The text of every limit file under the configured path, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot(Vec<(PathBuf, String)>);

impl Snapshot {
    async fn read(path: &Path) -> Result<Self, LimitsError> {
        let unreadable = |error: std::io::Error| LimitsError {
            file: path.display().to_string(),
            field: String::new(),
            reason: format!("cannot read: {error}"),
        };
        let metadata = tokio::fs::metadata(path).await.map_err(unreadable)?;
        if !metadata.is_dir() {
            let text = tokio::fs::read_to_string(path).await.map_err(unreadable)?;
            return Ok(Self(vec![(path.to_owned(), text)]));
        }
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(path).await.map_err(unreadable)?;
        while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
            let file = entry.path();
            let is_yaml = file
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            if is_yaml && entry.file_type().await.map_err(unreadable)?.is_file() {
                names.push(file);
            }
        }
        if names.is_empty() {
            return Err(LimitsError {
                file: path.display().to_string(),
                field: String::new(),
                reason: "the directory holds no .yaml or .yml file".to_owned(),
            });
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let text = tokio::fs::read_to_string(&name)
                .await
                .map_err(|error| LimitsError {
                    file: name.display().to_string(),
                    field: String::new(),
                    reason: format!("cannot read: {error}"),
                })?;
            files.push((name, text));
        }
        Ok(Self(files))
    }

    fn parse(&self) -> Result<Limits, LimitsError> {
        let domains = self
            .0
            .iter()
            .map(|(file, text)| {
                let file = file.display().to_string();
                DomainLimits::parse(&file, text).map(|domain| (file, domain))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Limits::from_domains(domains)
    }
}

/// Reads and validates the limits under `path` once.
pub async fn load(path: &Path) -> Result<Limits, LimitsError> {
    Snapshot::read(path).await?.parse()
}

/// The limits under a path, reloaded in the background until [`LimitsWatch::stop`].
#[derive(Debug)]
pub struct LimitsWatch {
    handle: LimitsHandle,
    task: JoinHandle<()>,
}

impl LimitsWatch {
    /// Loads the limits (a refused file stops the start, naming file and field) and
    /// polls the path every `every` for changed content.
    pub async fn start(
        path: PathBuf,
        every: Duration,
        errors: ErrorBus,
    ) -> Result<Self, LimitsError> {
        let snapshot = Snapshot::read(&path).await?;
        let limits = snapshot.parse()?;
        let label = path.display().to_string();
        log_loaded(&label, &limits, "limits loaded");
        metrics::gauge!(CONFIG_FILE_VALID, "path" => label.clone()).set(1.0);
        let handle = LimitsHandle::new(limits);
        let poller = Poller {
            path,
            label,
            handle: handle.clone(),
            errors,
            seen: Some(snapshot),
            last_error: None,
        };
        let task = tokio::spawn(poller.run(every));
        Ok(Self { handle, task })
    }

    pub fn handle(&self) -> LimitsHandle {
        self.handle.clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LimitsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Poller {
    path: PathBuf,
    label: String,
    handle: LimitsHandle,
    errors: ErrorBus,
    /// The content last read, whether it was accepted or not.
    seen: Option<Snapshot>,
    /// The last problem reported, so an unchanged broken file is reported once.
    last_error: Option<LimitsError>,
}

impl Poller {
    async fn run(mut self, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.poll().await;
        }
    }

    async fn poll(&mut self) {
        let snapshot = match Snapshot::read(&self.path).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                self.seen = None;
                self.refuse(error);
                return;
            }
        };
        if self.seen.as_ref() == Some(&snapshot) {
            return;
        }
        let parsed = snapshot.parse();
        self.seen = Some(snapshot);
        match parsed {
            Ok(limits) => {
                log_loaded(&self.label, &limits, "limits reloaded");
                self.handle.replace(limits);
                self.last_error = None;
                metrics::counter!(CONFIG_RELOADS_TOTAL, "path" => self.label.clone(), "outcome" => "ok")
                    .increment(1);
                metrics::gauge!(CONFIG_FILE_VALID, "path" => self.label.clone()).set(1.0);
            }
            Err(error) => self.refuse(error),
        }
    }

    fn refuse(&mut self, error: LimitsError) {
        metrics::gauge!(CONFIG_FILE_VALID, "path" => self.label.clone()).set(0.0);
        if self.last_error.as_ref() == Some(&error) {
            return;
        }
        metrics::counter!(CONFIG_RELOADS_TOTAL, "path" => self.label.clone(), "outcome" => "error")
            .increment(1);
        tracing::error!(%error, "limit file refused; the previous limits stay in force");
        self.errors.error("limits", &error);
        self.last_error = Some(error);
    }
}

fn log_loaded(path: &str, limits: &Limits, message: &'static str) {
    let mut domains: Vec<&str> = limits.domain_names().collect();
    domains.sort_unstable();
    tracing::info!(path, ?domains, "{message}");
}
