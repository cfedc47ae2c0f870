//! Polling with a deadline, so every wait ends with an error naming what never came.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `check` every 100 ms until it returns `Ok`, or fails after `timeout` with the
/// last reason `check` gave (`Err(reason)` means "not yet").
pub async fn poll_until<F, Fut, T>(what: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    poll_until_or(what, timeout, || None, check).await
}

/// [`poll_until`], but `hopeless` is asked before every check: the error it gives ends
/// the wait at once (a process that exited will not become ready).
pub(crate) async fn poll_until_or<H, F, Fut, T>(
    what: &str,
    timeout: Duration,
    mut hopeless: H,
    mut check: F,
) -> anyhow::Result<T>
where
    H: FnMut() -> Option<anyhow::Error>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(reason) = hopeless() {
            return Err(reason.context(format!("{what}: given up")));
        }
        match check().await {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => {
                anyhow::bail!("{what}: not reached within {timeout:?}; last observation: {reason}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
