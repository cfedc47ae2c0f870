//! `bulwark-authz`: runs the Authz service until SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    bulwark_kernel::run(
        bulwark_authz::SPEC,
        bulwark_authz::SCHEMA,
        bulwark_authz::app,
    )
    .await
}
