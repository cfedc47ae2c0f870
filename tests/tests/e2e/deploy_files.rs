//! The deployment files that real tools read but that cannot run here (no Docker
//! engine, no Nomad, no Consul): the Compose file, its Envoy configuration, the Nomad
//! job and the Dockerfile. They are checked against each other, against the
//! configuration keys the kernel really reads and the services' default ports; the
//! Compose and mesh edge configurations also by the real Envoy (`--mode validate`).

/// The one service that creates the bootstrap admin from `admin_password` and so needs
/// it (`ServiceSpec::reading_admin_password` in `services/identity/src/lib.rs`); the
/// others must not be given it.
pub fn reads_admin_password(service: &str) -> bool {
    service == "identity"
}

/// The one service that signs checkpoints (Audit's `audit.checkpoint_key`, required
/// outside environment `local`) and writes their files (`audit.checkpoint_dir`); the
/// others must not be given the key.
pub fn signs_checkpoints(service: &str) -> bool {
    service == "audit"
}

/// Audit's checkpoint signing key and checkpoint directory settings.
pub const CHECKPOINT_KEY: &str = "BULWARK_AUDIT__CHECKPOINT_KEY";
pub const CHECKPOINT_DIR: &str = "BULWARK_AUDIT__CHECKPOINT_DIR";

/// A service that holds requests to limits counted in Redis (`redis.url`): the setting
/// naming its limits file, the file the repository ships, and the domain the file must
/// be for (the one the service, or for the rate-limit service the gateway filter, asks
/// about).
#[derive(Debug, Clone, Copy)]
pub struct LimitsFile {
    pub service: &'static str,
    pub setting: &'static str,
    pub shipped: &'static str,
    pub domain: &'static str,
}

/// The rate-limit service's edge limits (required by it everywhere) and Audit's own
/// limits (`audit.limits_path`, required outside environment `local`).
pub const LIMITS_FILES: [LimitsFile; 2] = [
    LimitsFile {
        service: "ratelimit",
        setting: "BULWARK_RATELIMIT__CONFIG_PATH",
        shipped: "services/ratelimit/limits.yaml",
        domain: "bulwark-edge",
    },
    LimitsFile {
        service: "audit",
        setting: "BULWARK_AUDIT__LIMITS_PATH",
        shipped: "services/audit/limits.yaml",
        domain: "bulwark-audit",
    },
];

/// The limits file `service` reads, if it has one.
pub fn limits_file(service: &str) -> Option<LimitsFile> {
    LIMITS_FILES
        .into_iter()
        .find(|file| file.service == service)
}

mod compose;
mod compose_edge;
mod dockerfile;
mod edge_mesh;
mod nomad;

use std::fmt::{Debug, Display};

use std::process::Command;

use bulwark_e2e::{envoy_binary, gateway_filter_wasm, workspace_root};
use bulwark_kernel::ServiceSpec;
use bulwark_kernel::config::KernelConfig;
use serde_json::Value;

/// The core services (each with a schema and a client setting).
const CORE: [&str; 4] = ["identity", "auth", "authz", "audit"];
/// Every service process, each with a Consul definition and a Nomad group: the core
/// services and the rate-limit service.
const EVERY: [&str; 5] = ["identity", "auth", "authz", "audit", "ratelimit"];

/// Where the images keep the binaries, the descriptor and the filter (Dockerfile).
const IMAGE_DIR: &str = "/opt/bulwark";
const IMAGE_DESCRIPTOR: &str = "/opt/bulwark/bulwark.pb";
const IMAGE_WASM: &str = "/opt/bulwark/bulwark_gateway_filter.wasm";
/// The Compose edge's listener and admin ports.
const EDGE_PORT: u16 = 8080;
const EDGE_ADMIN_PORT: u16 = 9901;

/// `envoy --mode validate` on an edge configuration rendered for an image, with the
/// image's two files (descriptor and filter) replaced by local ones, the only values
/// naming files that exist only inside the image. `render(descriptor, wasm)` renders
/// it; `expected` is the committed rendering (`name` in messages).
fn validate_image_config_with_envoy(
    name: &str,
    expected: &str,
    render: impl Fn(&str, &str) -> String,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("temporary directory: {err}"));
    let descriptor = dir.path().join("bulwark.pb");
    std::fs::write(&descriptor, bulwark_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|err| panic!("writing the descriptor: {err}"));
    let wasm = gateway_filter_wasm().unwrap_or_else(|err| panic!("{err:#}"));
    let (descriptor, wasm) = (descriptor.display().to_string(), wasm.display().to_string());
    let local = render(&descriptor, &wasm);
    assert_eq!(
        local
            .replace(&descriptor, IMAGE_DESCRIPTOR)
            .replace(&wasm, IMAGE_WASM),
        expected,
        "the validated variant differs from {name} in more than the two file paths"
    );
    // Envoy picks the parser by the extension.
    let config = dir.path().join("edge.yaml");
    std::fs::write(&config, &local).unwrap_or_else(|err| panic!("writing the config: {err}"));
    let envoy = envoy_binary().unwrap_or_else(|err| panic!("{err:#}"));
    let output = Command::new(&envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&config)
        .output()
        .unwrap_or_else(|err| panic!("running {} --mode validate: {err}", envoy.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains(" OK"),
        "envoy --mode validate rejects {name} ({}):\n{text}",
        output.status
    );
}

/// The values of `envoy/edge.yaml` for an image's edge (Compose and the mesh edge): the
/// listener on every interface, the image's files, the local mesh's CORS origins, no
/// trace collector (a client's sampled traceparent is still followed; point OTLP_HOST
/// and OTLP_PORT at a collector and set TRACE_SAMPLING to 100 to trace), the shipped
/// rate-limit budget, and each service at `(name, host, port)` found by `cluster_type`.
fn image_edge_values(
    cluster_type: &str,
    descriptor: &str,
    wasm: &str,
    upstreams: impl IntoIterator<Item = (String, String, u16)>,
) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = [
        ("EDGE_ADDRESS", "0.0.0.0".to_owned()),
        ("EDGE_PORT", EDGE_PORT.to_string()),
        ("ADMIN_PORT", EDGE_ADMIN_PORT.to_string()),
        ("CLUSTER_TYPE", cluster_type.to_owned()),
        ("DESCRIPTOR", descriptor.to_owned()),
        ("WASM", wasm.to_owned()),
        (
            "CORS_ORIGIN_REGEX",
            bulwark_e2e::CORS_ORIGIN_REGEX.to_owned(),
        ),
        ("OTLP_HOST", "127.0.0.1".to_owned()),
        ("OTLP_PORT", "4317".to_owned()),
        ("TRACE_SAMPLING", "0".to_owned()),
        (
            "RATELIMIT_TIMEOUT_MS",
            bulwark_e2e::RATELIMIT_TIMEOUT.as_millis().to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    for (name, host, port) in upstreams {
        values.push((
            format!("{}_ENDPOINTS", name.to_uppercase()),
            bulwark_e2e::endpoints_value([(host.as_str(), port)]),
        ));
    }
    values
}

/// A file of the workspace, by its path relative to the root.
fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// A service's default ports.
#[derive(Debug, Clone, Copy)]
struct Spec {
    grpc: u16,
    admin: u16,
}

/// The ports of `ServiceSpec::new("<name>", <grpc>, <admin>)` in `services/<name>/src/lib.rs`.
fn spec(name: &str) -> Spec {
    let file = format!("services/{name}/src/lib.rs");
    let text = read(&file);
    let needle = format!("ServiceSpec::new(\"{name}\",");
    let args = text
        .split_once(&needle)
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(args, _)| args)
        .unwrap_or_else(|| panic!("{file} has no `{needle} <grpc>, <admin>)`"));
    let ports: Vec<u16> = args
        .split(',')
        .map(|port| {
            port.trim()
                .parse()
                .unwrap_or_else(|err| panic!("{file}: port {port:?} of the SPEC: {err}"))
        })
        .collect();
    match ports.as_slice() {
        [grpc, admin] => Spec {
            grpc: *grpc,
            admin: *admin,
        },
        _ => panic!("{file}: SPEC has ports {ports:?}, expected gRPC and admin"),
    }
}

/// The kernel's configuration tree (every section and key it reads), from its defaults.
fn kernel_keys() -> Value {
    let defaults = KernelConfig::defaults(&ServiceSpec::new("any", 1, 2));
    serde_json::to_value(&defaults).unwrap_or_else(|err| panic!("serialising the defaults: {err}"))
}

/// Files that read top-level settings with `Settings::value`.
const TOP_LEVEL_READERS: [&str; 2] = [
    "services/kernel/src/bootstrap.rs",
    "services/identity/src/bootstrap.rs",
];

/// The Rust sources of one service (`services/<name>/src/**/*.rs`), concatenated.
fn service_sources(service: &str) -> String {
    fn collect(dir: &std::path::Path, text: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                collect(&path, text);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                text.push('\n');
            }
        }
    }
    let mut text = String::new();
    collect(
        &workspace_root().join(format!("services/{service}/src")),
        &mut text,
    );
    text
}

/// `Err` unless `BULWARK_<KEY>` is a setting `service` reads: a kernel key
/// (`grpc.listen`), a top-level key read with `Settings::value` (`admin_email`), a
/// field of the service's own section (`ratelimit.config_path`), or an entry of a map
/// field of that section (`auth.service_clients.identity`). The kernel ignores unknown
/// keys, so a misspelt one would otherwise go unnoticed.
fn check_env_key(kernel: &Value, service: &str, env_key: &str) -> Result<(), String> {
    let dotted = env_key
        .strip_prefix("BULWARK_")
        .ok_or_else(|| format!("{env_key} is not a BULWARK_* setting"))?
        .to_lowercase()
        .replace("__", ".");
    let path: Vec<&str> = dotted.split('.').collect();
    if let Some(section) = kernel.get(path[0]) {
        let leaf = path[1..]
            .iter()
            .try_fold(section, |node, key| node.get(key))
            .filter(|node| !node.is_object());
        return match (path.len(), leaf) {
            (2.., Some(_)) => Ok(()),
            _ => Err(format!(
                "{env_key} (`{dotted}`) is not a kernel key; section `{}` has {}",
                path[0],
                section
                    .as_object()
                    .map(|keys| keys.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )),
        };
    }
    if let [key] = path.as_slice() {
        let read_somewhere = TOP_LEVEL_READERS.iter().any(|file| {
            let text = read(file);
            text.contains(&format!("value::<String>(\"{key}\")"))
                || text.contains(&format!(".value(\"{key}\")"))
        });
        return if read_somewhere {
            Ok(())
        } else {
            Err(format!(
                "{env_key} (`{dotted}`) is no kernel section and no top-level key read in {}",
                TOP_LEVEL_READERS.join(" or ")
            ))
        };
    }
    let text = service_sources(service);
    let reads_field = |section: &str, field: &str| {
        text.contains(&format!(".section(\"{section}\")"))
            && text.contains(&format!("pub {field}:"))
    };
    // A map field (`pub field: BTreeMap<..>`, `HashMap<..>`) takes one entry per key.
    let reads_map = |section: &str, field: &str| {
        let declaration = format!("pub {field}:");
        text.contains(&format!(".section(\"{section}\")"))
            && text
                .lines()
                .any(|line| line.trim_start().starts_with(&declaration) && line.contains("Map<"))
    };
    // A nested table (`pub table: TableConfig`) is a field whose own fields follow it.
    let declares = |field: &str| text.contains(&format!("pub {field}:"));
    let nested = |section: &str, fields: &[&str]| match fields {
        [tables @ .., field] => {
            tables.iter().all(|table| declares(table)) && reads_field(section, field)
        }
        [] => false,
    };
    let nested_map = |section: &str, fields: &[&str]| match fields {
        [tables @ .., map, entry] => {
            !entry.is_empty()
                && tables.iter().all(|table| declares(table))
                && reads_map(section, map)
        }
        _ => false,
    };
    match path.as_slice() {
        [section, field] if reads_field(section, field) => Ok(()),
        [section, field, entry] if !entry.is_empty() && reads_map(section, field) => Ok(()),
        [section, fields @ ..] if nested(section, fields) || nested_map(section, fields) => Ok(()),
        _ => Err(format!(
            "{env_key} (`{dotted}`) is neither a kernel key nor a field (or map entry) of a \
             section {service} reads (services/{service}/src)"
        )),
    }
}

/// What is wrong with one file, collected so that a failure lists everything at once.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Records `what` unless `actual == expected`.
    fn expect<T: PartialEq + Debug>(&mut self, what: impl Display, actual: T, expected: T) {
        if actual != expected {
            self.push(format!("{what} is {actual:?}, expected {expected:?}"));
        }
    }

    /// Panics listing every problem found in `file`.
    fn assert_none(self, file: &str) {
        assert!(self.0.is_empty(), "{file}:\n  {}", self.0.join("\n  "));
    }
}
