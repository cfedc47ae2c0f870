//! `bulwark-auth`: runs the Auth service until SIGTERM/SIGINT.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    bulwark_kernel::run(bulwark_auth::SPEC, bulwark_auth::SCHEMA, bulwark_auth::app).await
}
