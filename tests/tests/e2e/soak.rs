//! Two minutes of the fault soak (`cargo xtask soak` runs it for longer and writes the
//! report): mixed traffic through two Envoys in front of two replicas of every service
//! while replicas are SIGKILLed, Redis and PostgreSQL restarted and the rate-limit
//! service paused; no audit event lost or duplicated, the chain intact, no refresh
//! token redeemed twice, no 5xx outside the faults' windows.

use std::time::Duration;

use bulwark_e2e::soak::{self, SoakPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minutes_of_faults_lose_nothing_and_fail_nothing_outside_the_faults() {
    let report = soak::run(SoakPlan::new(Duration::from_secs(120)), |line| {
        eprintln!("soak: {line}");
    })
    .await
    .unwrap_or_else(|err| panic!("the soak could not run: {err:#}"));
    for window in &report.windows {
        eprintln!(
            "{:<34} {:>5} requests, {:>4} failed ({:>5.1} %), recovered {:.2} s after it was back",
            window.fault,
            window.requests,
            window.failed,
            window.error_rate() * 100.0,
            window.recovery.as_secs_f64()
        );
    }
    eprintln!(
        "{} requests; audit: {} successful logins and refreshes, {} lost, {} duplicated, {} committed without an answer, chain ok: {}",
        report.traffic.outcomes.len(),
        report.audit.succeeded,
        report.audit.lost,
        report.audit.duplicated,
        report.audit.committed_unanswered,
        report.audit.chain_ok
    );
    assert!(
        report.windows.len() >= 4,
        "only {} faults in two minutes",
        report.windows.len()
    );
    assert!(
        report.audit.succeeded > 100,
        "only {} logins and refreshes succeeded",
        report.audit.succeeded
    );
    let problems = report.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
