//! `bulwark-mesh`: the local mesh's supervisor, run by `deploy/local/mesh` once the tools
//! are installed and the workspace built (`up`, `down`, `status`, `logs`, `test`).

use std::process::ExitCode;

/// Set by `deploy/local/mesh`: how many numbered steps it printed before handing over.
const STEPS_DONE_VAR: &str = "BULWARK_MESH_STEPS_DONE";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps_done = std::env::var(STEPS_DONE_VAR)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    bulwark_e2e::local::run(&args, steps_done).await
}
