//! `bulwark-ratelimit`: runs the rate-limit service until SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    bulwark_kernel::run_stateless(bulwark_ratelimit::SPEC, bulwark_ratelimit::app).await
}
