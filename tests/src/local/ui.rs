//! What the mesh command prints: numbered steps, indented details, warnings, and the
//! failure that names a log and quotes its end; coloured only on a terminal.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::process::tail;

/// Lines of its log a failure quotes.
const FAILURE_LOG_LINES: usize = 20;

static STEP: AtomicUsize = AtomicUsize::new(0);
static STEPS: AtomicUsize = AtomicUsize::new(0);

/// The terminal's colour codes, empty when standard output is not a terminal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Colours {
    pub bold: &'static str,
    pub red: &'static str,
    pub green: &'static str,
    pub yellow: &'static str,
    pub reset: &'static str,
}

pub(crate) fn colours() -> Colours {
    static COLOURS: OnceLock<Colours> = OnceLock::new();
    *COLOURS.get_or_init(|| {
        if std::io::stdout().is_terminal() {
            Colours {
                bold: "\x1b[1m",
                red: "\x1b[31m",
                green: "\x1b[32m",
                yellow: "\x1b[33m",
                reset: "\x1b[0m",
            }
        } else {
            Colours {
                bold: "",
                red: "",
                green: "",
                yellow: "",
                reset: "",
            }
        }
    })
}

/// Numbers the steps from `done + 1` (the shell part has printed `done` of them) up to
/// `done + own`.
pub(crate) fn plan_steps(done: usize, own: usize) {
    STEP.store(done, Ordering::Relaxed);
    STEPS.store(done + own, Ordering::Relaxed);
}

/// `[k/N] what`, in bold.
pub(crate) fn step(what: &str) {
    let step = STEP.fetch_add(1, Ordering::Relaxed) + 1;
    let total = STEPS.load(Ordering::Relaxed).max(step);
    let c = colours();
    println!("{}[{step}/{total}] {what}{}", c.bold, c.reset);
}

/// A detail of the current step.
pub(crate) fn info(what: &str) {
    println!("      {what}");
}

/// A problem that does not stop the command.
pub(crate) fn warn(what: &str) {
    let c = colours();
    eprintln!("      {}warning:{} {what}", c.yellow, c.reset);
}

/// A failure that ends the command: its message and, when a log explains it, that log.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    log: Option<PathBuf>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error that stops the command with `message`.
pub(crate) fn failure(message: impl Into<String>) -> anyhow::Error {
    Failure {
        message: message.into(),
        log: None,
    }
    .into()
}

/// An error that stops the command with `message`, naming `log` and quoting its end.
pub(crate) fn failure_with_log(message: impl Into<String>, log: &Path) -> anyhow::Error {
    Failure {
        message: message.into(),
        log: Some(log.to_path_buf()),
    }
    .into()
}

/// Prints an error that ended the command: `FAILED: ...`, then the log it names.
pub(crate) fn report_failure(error: &anyhow::Error, root: &Path) {
    let c = colours();
    let failure = error.downcast_ref::<Failure>();
    let message = match failure {
        Some(failure) => failure.message.clone(),
        None => format!("{error:#}"),
    };
    eprintln!("{}FAILED:{} {message}", c.red, c.reset);
    if let Some(log) = failure.and_then(|f| f.log.as_deref()) {
        eprintln!("       log: {}", relative(root, log));
        if std::fs::metadata(log).is_ok_and(|meta| meta.len() > 0) {
            eprintln!("       last lines:");
            for line in tail(log, FAILURE_LOG_LINES).lines() {
                eprintln!("         | {line}");
            }
        }
    }
}

/// `path` relative to the checkout when it lies inside it, as the messages name files.
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
