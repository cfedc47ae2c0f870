//! `deploy/docker/Dockerfile`: it builds and ships every binary the Compose and Nomad
//! files run, the API descriptor and the Wasm filter, where the other files expect them.

use std::collections::BTreeSet;
use std::process::Command;

use bulwark_e2e::workspace_root;
use serde_json::Value;

use super::{EVERY, IMAGE_DESCRIPTOR, IMAGE_DIR, IMAGE_WASM, Problems, read};

const DOCKERFILE: &str = "deploy/docker/Dockerfile";

/// One build stage: its `FROM` arguments and instructions (continuation lines joined,
/// whitespace collapsed).
struct Stage {
    from: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn has(&self, keyword: &str, args: &str) -> bool {
        self.instructions
            .iter()
            .any(|(k, a)| k == keyword && a == args)
    }
}

fn stages() -> Vec<Stage> {
    let text = read(DOCKERFILE).replace("\\\n", " ");
    let mut stages: Vec<Stage> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        if keyword.eq_ignore_ascii_case("FROM") {
            stages.push(Stage {
                from: args,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword.to_uppercase(), args));
        }
    }
    stages
}

/// Binaries the workspace builds (`cargo metadata`), so that a name in a deploy file is
/// a real `[[bin]]`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|err| panic!("running cargo metadata: {err}"));
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("cargo metadata output is not JSON: {err}"));
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect()
}

/// The build stage compiles every binary and the filter, writes the descriptor and
/// gathers them in /out/.
fn check_build_stage(stage: &Stage, binaries: &BTreeSet<String>, problems: &mut Problems) {
    let script = stage
        .instructions
        .iter()
        .filter(|(keyword, _)| keyword == "RUN")
        .map(|(_, args)| args.as_str())
        .collect::<Vec<_>>()
        .join(" && ");
    let commands: Vec<&str> = script.split("&&").map(str::trim).collect();
    match commands
        .iter()
        .find(|c| c.starts_with("cargo build") && c.contains("--release"))
    {
        None => problems.push("no `cargo build --release`"),
        Some(command) => {
            for bin in binaries {
                if !command.contains("--bins") && !command.contains(&format!("--bin {bin}")) {
                    problems.push(format!("`{command}` does not build {bin}"));
                }
            }
        }
    }
    let copied: BTreeSet<&str> = commands
        .iter()
        .filter(|c| c.starts_with("cp ") && c.ends_with(" /out/"))
        .flat_map(|c| c.split_whitespace())
        .filter_map(|word| word.strip_prefix("target/release/"))
        .collect();
    for name in EVERY {
        let bin = format!("bulwark-{name}");
        if !copied.contains(bin.as_str()) {
            problems.push(format!("{bin} is not copied into the image (/out/)"));
        }
    }
    if !commands.contains(&"target/release/bulwark-descriptor /out/bulwark.pb") {
        problems.push("the build does not write /out/bulwark.pb with bulwark-descriptor");
    }
    let builds_wasm = commands.iter().any(|c| {
        c.starts_with("cargo build")
            && c.contains("-p bulwark-gateway-filter")
            && c.contains("--target wasm32-wasip1")
            && c.contains("--profile wasm")
    });
    if !builds_wasm {
        problems.push("the Wasm filter is not built (wasm32-wasip1, profile wasm)");
    }
    if !commands.contains(&"cp target/wasm32-wasip1/wasm/bulwark_gateway_filter.wasm /out/") {
        problems.push("the Wasm filter is not copied into /out/");
    }
}

#[test]
fn dockerfile_builds_every_binary_the_deploy_files_run() {
    // What Compose and Nomad run (their tests check they run bulwark-<service>), and
    // the descriptor writer the build runs.
    let binaries: BTreeSet<String> = EVERY
        .iter()
        .map(|name| format!("bulwark-{name}"))
        .chain(["bulwark-descriptor".to_owned()])
        .collect();
    let built = workspace_binaries();
    let unknown: Vec<&String> = binaries
        .iter()
        .filter(|bin| !built.contains(*bin))
        .collect();
    assert!(
        unknown.is_empty(),
        "not binaries of the workspace: {unknown:?} (it builds {built:?})"
    );

    let stages = stages();
    let mut problems = Problems::default();
    match stages
        .iter()
        .find(|stage| stage.from.ends_with(" AS build"))
    {
        None => problems.push("no `AS build` stage"),
        Some(build) => check_build_stage(build, &binaries, &mut problems),
    }
    // The services' image is the default (last) target and puts the binaries on PATH.
    match stages.last() {
        None => problems.push("no stage"),
        Some(services) => {
            if !services.has("COPY", &format!("--from=build /out/ {IMAGE_DIR}/")) {
                problems.push(format!(
                    "the last stage does not copy /out/ to {IMAGE_DIR}/"
                ));
            }
            let path = format!("PATH={IMAGE_DIR}:");
            if !services
                .instructions
                .iter()
                .any(|(k, a)| k == "ENV" && a.starts_with(&path))
            {
                problems.push(format!("the last stage does not put {IMAGE_DIR} on PATH"));
            }
        }
    }
    // The edge image: Envoy 1.40 (envoy/edge.yaml's version) with the two files that
    // envoy-compose.yaml names.
    match stages.iter().find(|stage| stage.from.ends_with(" AS edge")) {
        None => problems.push("no `AS edge` stage for the Compose edge"),
        Some(edge) => {
            if !edge.from.starts_with("envoyproxy/envoy:v1.40") {
                problems.push(format!("the edge stage is {:?}, not Envoy 1.40", edge.from));
            }
            let copy = format!(
                "--from=build /out/bulwark.pb /out/bulwark_gateway_filter.wasm {IMAGE_DIR}/"
            );
            if !edge.has("COPY", &copy) {
                problems.push(format!(
                    "the edge stage does not copy the descriptor and the filter to {IMAGE_DESCRIPTOR} and {IMAGE_WASM}"
                ));
            }
        }
    }
    // `COPY . .` must not send the local build output or the local mesh's state.
    let ignore = read(&format!("{DOCKERFILE}.dockerignore"));
    for excluded in ["target/", ".bulwark/"] {
        if !ignore.lines().any(|line| line.trim() == excluded) {
            problems.push(format!(
                "{DOCKERFILE}.dockerignore does not exclude {excluded}"
            ));
        }
    }
    problems.assert_none(DOCKERFILE);
}
