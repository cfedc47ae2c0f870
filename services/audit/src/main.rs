//! `bulwark-audit`: runs the Audit service until SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    bulwark_kernel::run(
        bulwark_audit::SPEC,
        bulwark_audit::SCHEMA,
        bulwark_audit::app,
    )
    .await
}
