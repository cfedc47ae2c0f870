//! The check that a 100/s case's limit really applies: one user sends well over its limit
//! through the case's Envoy and must get 429s, and no more admitted than the limit
//! allows. Without it, a case whose limit silently did not apply (a descriptor the
//! service has no rule for, say) would be measured as if it were limited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};

use super::http_client::http_get;
use super::ratelimit::{BEARER_LEASE, BEARER_RATE};

/// Concurrent senders: each waits for its answer, so the rate is what the edge serves.
const SENDERS: usize = 8;
/// Stop once this many were refused: the limit evidently applies.
const ENOUGH_REFUSED: u64 = 50;
const TIME_LIMIT: Duration = Duration::from_secs(3);

/// What one user sending over its limit got back.
#[derive(Debug, Clone)]
pub struct OverLimitCheck {
    pub admitted: u64,
    pub refused: u64,
    pub seconds: f64,
    /// The most the limit may admit in that time: the burst, the rate over the time,
    /// and a lease per Envoy that leases.
    pub bound: u64,
}

impl OverLimitCheck {
    pub fn describe(&self) -> String {
        format!(
            "one user over its limit: {} admitted (at most {}), {} refused with 429 in {:.2} s",
            self.admitted, self.bound, self.refused, self.seconds
        )
    }
}

/// Sends requests of `token`'s user through the Envoy on `port` from [`SENDERS`]
/// senders until [`ENOUGH_REFUSED`] were refused (or [`TIME_LIMIT`]); fails unless
/// some were refused, and admitted stayed within the limit. `leasing_envoys` Envoys may
/// hold a lease of the user's limit.
pub async fn over_limit_check(
    port: u16,
    token: &str,
    leasing_envoys: u64,
) -> anyhow::Result<OverLimitCheck> {
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (admitted, refused, stop) = (
            Arc::clone(&admitted),
            Arc::clone(&refused),
            Arc::clone(&stop),
        );
        let token = token.to_owned();
        senders.spawn(async move {
            while !stop.load(Ordering::Relaxed) && started.elapsed() < TIME_LIMIT {
                let reply = http_get(port, "/bench", Some(&token)).await?;
                match reply.status {
                    200 => admitted.fetch_add(1, Ordering::Relaxed),
                    429 => {
                        if refused.fetch_add(1, Ordering::Relaxed) + 1 >= ENOUGH_REFUSED {
                            stop.store(true, Ordering::Relaxed);
                        }
                        0
                    }
                    other => bail!(
                        "a request over the limit got {other}, not 200 or 429: {}",
                        reply.body
                    ),
                };
            }
            anyhow::Ok(())
        });
    }
    while let Some(sender) = senders.join_next().await {
        sender??;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a few seconds' worth of a small rate"
    )]
    let drained = (BEARER_RATE as f64 * seconds).ceil() as u64;
    let check = OverLimitCheck {
        admitted: admitted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        seconds,
        bound: BEARER_RATE + drained + leasing_envoys * BEARER_LEASE,
    };
    ensure!(
        check.refused > 0,
        "one user sent {} requests in {seconds:.2} s (over {BEARER_RATE}/s) and none was \
         refused: the 100/s limit does not apply",
        check.admitted
    );
    ensure!(
        check.admitted <= check.bound,
        "one user over its limit was admitted {} times in {seconds:.2} s, more than the \
         limit allows ({})",
        check.admitted,
        check.bound
    );
    Ok(check)
}
