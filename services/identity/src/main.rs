//! `bulwark-identity`: runs the Identity service until SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    bulwark_kernel::run(
        bulwark_identity::SPEC,
        bulwark_identity::SCHEMA,
        bulwark_identity::app,
    )
    .await
}
