//! `deploy/compose/compose.yaml`: every service, its settings, files and dependencies
//! (the limits files of the rate-limit service and Audit among them), health checks
//! (Postgres asked over TCP, the edge's Envoy on its admin `/ready`), pinned images, and
//! the database roles, service accounts, bootstrap admin and Audit's checkpoint key,
//! whose secrets the user must supply.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bulwark_e2e::workspace_root;
use bulwark_kernel::bootstrap::LOCAL_ENVIRONMENT;

use super::{
    CHECKPOINT_DIR, CHECKPOINT_KEY, LIMITS_FILES, LimitsFile, reads_admin_password,
    signs_checkpoints,
};
use serde_json::{Map, Value};

use super::{
    CORE, EDGE_ADMIN_PORT, EDGE_PORT, EVERY, Problems, check_env_key, kernel_keys, read, spec,
};

const COMPOSE: &str = "deploy/compose/compose.yaml";
const DOCKERFILE: &str = "deploy/docker/Dockerfile";
const POSTGRES_INIT: &str = "deploy/compose/postgres-init.sh";
const INTERPOLATION_DOC: &str =
    "https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/";
const HEALTHCHECK_DOC: &str =
    "https://docs.docker.com/reference/compose-file/services/#healthcheck";
/// The Postgres image runs its init scripts against a temporary server that listens on
/// the Unix socket only; over TCP `pg_isready` answers once the real server is up.
const POSTGRES_IMAGE_DOC: &str = "https://hub.docker.com/_/postgres (Initialization scripts)";

fn compose_dir() -> PathBuf {
    workspace_root().join("deploy/compose")
}

/// The file with its `<<: *anchor` merge keys resolved, as Compose reads it.
fn compose() -> Value {
    let text = read(COMPOSE);
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|err| panic!("{COMPOSE} is not YAML: {err}"));
    yaml.apply_merge()
        .unwrap_or_else(|err| panic!("{COMPOSE}: merge keys: {err}"));
    serde_json::to_value(&yaml).unwrap_or_else(|err| panic!("{COMPOSE} as JSON: {err}"))
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), value)
        })
        .collect()
}

/// `(source, target)` of each `source:target[:mode]` mount of a file next to compose.yaml.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|volume| volume.starts_with('.'))
        .filter_map(|volume| {
            let mut parts = volume.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// The database roles of `postgres-init.sh`: `role -> environment variable` of each
/// `CREATE ROLE <role> LOGIN PASSWORD :'<psql variable>'` whose psql variable is set
/// with `-v <variable>="${<ENV>:?}"`, and `(schema, owner)` of each
/// `CREATE SCHEMA <schema> AUTHORIZATION <owner>`.
fn postgres_init() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let text = read(POSTGRES_INIT);
    let psql_variables: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_prefix("-v ")?.split_once('=')?;
            // The value is the first word: a `\` or the heredoc may follow it.
            let env = value
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .strip_prefix("${")?
                .strip_suffix(":?}")?;
            Some((name.to_owned(), env.to_owned()))
        })
        .collect();
    let mut roles = BTreeMap::new();
    let mut schemas = BTreeMap::new();
    for statement in text.split(';') {
        let words: Vec<&str> = statement
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .collect();
        match words.as_slice() {
            [.., "CREATE", "ROLE", role, "LOGIN", "PASSWORD", password] => {
                let variable = password
                    .strip_prefix(":'")
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or_else(|| {
                        panic!(
                            "{POSTGRES_INIT}: {role}'s password {password} is written in the file"
                        )
                    });
                let env = psql_variables.get(variable).unwrap_or_else(|| {
                    panic!(
                        "{POSTGRES_INIT}: psql variable {variable} is not set from the environment"
                    )
                });
                roles.insert((*role).to_owned(), env.clone());
            }
            [.., "CREATE", "SCHEMA", schema, "AUTHORIZATION", owner] => {
                schemas.insert((*schema).to_owned(), (*owner).to_owned());
            }
            _ => {}
        }
    }
    assert!(
        roles.len() >= 8,
        "{POSTGRES_INIT}: found only the roles {roles:?}"
    );
    (roles, schemas)
}

fn healthy(service: &Value, dependency: &str) -> bool {
    service["depends_on"][dependency]["condition"] == "service_healthy"
}

/// Dependencies exist (with a healthcheck when waited for), mounted files and
/// Dockerfiles exist.
fn check_references(services: &Map<String, Value>, problems: &mut Problems) {
    for (name, service) in services {
        for target in service["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, _)| t)
        {
            if !services.contains_key(target) {
                problems.push(format!(
                    "{name} depends on {target}, which is not a service"
                ));
            } else if healthy(service, target) && services[target]["healthcheck"].is_null() {
                problems.push(format!(
                    "{name} waits for {target} to be healthy; it has no healthcheck"
                ));
            }
        }
        for (source, _) in bind_mounts(service) {
            if !compose_dir().join(&source).is_file() {
                problems.push(format!("{name} mounts {source}, which does not exist"));
            }
        }
        if let Some(build) = service["build"].as_object() {
            let context = compose_dir().join(build["context"].as_str().unwrap_or("."));
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            if !dockerfile.is_file() {
                problems.push(format!(
                    "{name} builds from {}, which does not exist",
                    dockerfile.display()
                ));
            }
        }
    }
}

/// A Bulwark service runs its binary with real kernel keys, the default ports on every
/// interface, the other services by host name, and a healthcheck on `/ready`.
fn check_service(name: &str, service: &Value, kernel: &Value, problems: &mut Problems) {
    let spec = spec(name);
    let env = env_of(service);
    problems.expect(
        format_args!("{name}'s command"),
        &service["command"],
        &serde_json::json!([format!("bulwark-{name}")]),
    );
    for key in env.keys() {
        if let Err(err) = check_env_key(kernel, name, key) {
            problems.push(format!("{name}: {err}"));
        }
    }
    let setting = |key: &str| env.get(key).cloned();
    problems.expect(
        format_args!("{name}: BULWARK_GRPC__LISTEN"),
        setting("BULWARK_GRPC__LISTEN"),
        Some(format!("0.0.0.0:{}", spec.grpc)),
    );
    problems.expect(
        format_args!("{name}: BULWARK_HTTP__LISTEN"),
        setting("BULWARK_HTTP__LISTEN"),
        Some(format!("0.0.0.0:{}", spec.admin)),
    );
    for client in CORE {
        let key = format!("BULWARK_CLIENTS__{}", client.to_uppercase());
        problems.expect(
            format_args!("{name}: {key}"),
            setting(&key),
            Some(format!("http://{client}:{}", super::spec(client).grpc)),
        );
    }
    let health = service["healthcheck"]["test"].to_string();
    let ready = format!("http://127.0.0.1:{}/ready", spec.admin);
    if !health.contains(&ready) {
        problems.push(format!("{name}: healthcheck {health} does not ask {ready}"));
    }
}

/// A database URL `postgres://<role>:${VARIABLE:?...}@postgres:5432/bulwark` whose
/// password is the variable `role` was created with (`roles`), which Postgres is given
/// too (`postgres_env`); no password is written in the file.
fn check_url(
    what: &str,
    url: Option<String>,
    (role, roles, postgres_env): (&str, &BTreeMap<String, String>, &BTreeMap<String, String>),
    problems: &mut Problems,
) {
    let expected = roles.get(role).map(String::as_str);
    let variable = url.as_deref().and_then(|url| {
        let password = url
            .strip_prefix(&format!("postgres://{role}:"))?
            .strip_suffix("@postgres:5432/bulwark")?;
        required_variable(password)
    });
    problems.expect(
        format_args!("{what}: the variable of {role}'s password in the URL ({INTERPOLATION_DOC})"),
        variable,
        expected,
    );
    problems.expect(
        format_args!(
            "postgres: {} (read by {POSTGRES_INIT})",
            expected.unwrap_or("?")
        ),
        expected
            .and_then(|variable| postgres_env.get(variable))
            .and_then(|value| required_variable(value)),
        expected,
    );
}

/// A core service runs as `<svc>_svc`, which owns nothing, after its `<svc>-migrate`
/// job applied the migrations as `<svc>_owner`, the owner of schema `<svc>`; only the
/// job gets the owner's URL.
fn check_database(name: &str, services: &Map<String, Value>, problems: &mut Problems) {
    let (roles, schemas) = postgres_init();
    let (runtime, owner) = (format!("{name}_svc"), format!("{name}_owner"));
    let postgres_env = env_of(&services["postgres"]);
    let service = &services[name];
    check_url(
        &format!("{name}: BULWARK_DATABASE__URL"),
        env_of(service).get("BULWARK_DATABASE__URL").cloned(),
        (&runtime, &roles, &postgres_env),
        problems,
    );
    if env_of(service).contains_key("BULWARK_DATABASE__OWNER_URL") {
        problems.push(format!("{name} is given the schema owner's URL"));
    }
    // The kernel's default schema is the service's name.
    problems.expect(
        format_args!("the owner of schema {name} in {POSTGRES_INIT}"),
        schemas.get(name),
        Some(&owner),
    );
    if !healthy(service, "postgres") {
        problems.push(format!("{name} does not wait for a healthy postgres"));
    }
    let job = format!("{name}-migrate");
    if service["depends_on"][&job]["condition"] != "service_completed_successfully" {
        problems.push(format!("{name} does not wait for {job} to complete"));
    }
    let migrate = &services[&job];
    problems.expect(
        format_args!("{job}'s command"),
        &migrate["command"],
        &serde_json::json!([format!("bulwark-{name}"), "migrate"]),
    );
    let env = env_of(migrate);
    check_url(
        &format!("{job}: BULWARK_DATABASE__OWNER_URL"),
        env.get("BULWARK_DATABASE__OWNER_URL").cloned(),
        (&owner, &roles, &postgres_env),
        problems,
    );
    // The job reads only the runtime role's name from BULWARK_DATABASE__URL.
    let runtime_user = env
        .get("BULWARK_DATABASE__URL")
        .and_then(|url| url.strip_prefix("postgres://"))
        .and_then(|rest| rest.split(['@', ':']).next())
        .map(str::to_owned);
    problems.expect(
        format_args!("{job}: the user of BULWARK_DATABASE__URL"),
        runtime_user,
        Some(runtime.clone()),
    );
    if !healthy(migrate, "postgres") {
        problems.push(format!("{job} does not wait for a healthy postgres"));
    }
    if migrate["restart"] != "no" {
        problems.push(format!("{job} must run once (restart: \"no\")"));
    }
}

const CLIENT_ID: &str = "BULWARK_SERVICE_ACCOUNT__CLIENT_ID";
const CLIENT_SECRET: &str = "BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET";
const SERVICE_CLIENTS: &str = "BULWARK_AUTH__SERVICE_CLIENTS__";

/// The variable of the Compose user's environment (or `.env`) that holds a service's
/// client secret.
fn secret_variable(service: &str) -> String {
    format!("BULWARK_{}_CLIENT_SECRET", service.to_uppercase())
}

/// The variable that a `${NAME:?message}` value requires: set, non-empty, with no
/// default and a message that tells the user what to do when it is missing.
fn required_variable(value: &str) -> Option<&str> {
    let (name, message) = value
        .strip_prefix("${")?
        .strip_suffix('}')?
        .split_once(":?")?;
    let is_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    (is_name && !message.trim().is_empty()).then_some(name)
}

/// A core service logs in as its own client, with a secret that the user must supply
/// (the file holds none) and that only this service and Auth receive; Auth receives
/// every core service's secret, the same value that service gets.
fn check_service_account(name: &str, services: &Map<String, Value>, problems: &mut Problems) {
    let env = env_of(&services[name]);
    problems.expect(
        format_args!("{name}: {CLIENT_ID}"),
        env.get(CLIENT_ID).map(String::as_str),
        Some(name),
    );
    let secret = env.get(CLIENT_SECRET).cloned().unwrap_or_default();
    let variable = secret_variable(name);
    problems.expect(
        format_args!(
            "{name}: the variable {CLIENT_SECRET} requires (as ${{{variable}:?<what to do>}})"
        ),
        required_variable(&secret),
        Some(variable.as_str()),
    );
    let clients: BTreeMap<String, String> = env
        .iter()
        .filter_map(|(key, value)| {
            Some((
                key.strip_prefix(SERVICE_CLIENTS)?.to_lowercase(),
                value.clone(),
            ))
        })
        .collect();
    if name != "auth" {
        problems.expect(
            format_args!("{name}: {SERVICE_CLIENTS}* (only Auth checks client secrets)"),
            clients,
            BTreeMap::new(),
        );
        return;
    }
    let expected: BTreeMap<String, String> = CORE
        .into_iter()
        .map(|client| {
            let own = env_of(&services[client])
                .get(CLIENT_SECRET)
                .cloned()
                .unwrap_or_else(|| format!("<{client} has no {CLIENT_SECRET}>"));
            (client.to_owned(), own)
        })
        .collect();
    problems.expect(
        format_args!(
            "auth: {SERVICE_CLIENTS}<ID> (each the value that service gets as {CLIENT_SECRET})"
        ),
        clients,
        expected,
    );
}

const ADMIN_PASSWORD: &str = "BULWARK_ADMIN_PASSWORD";
const ENVIRONMENT: &str = "BULWARK_SERVICE__ENVIRONMENT";

/// Every service runs outside `local`, so the one that creates the bootstrap admin
/// (Identity) refuses the documented default password; it gets a password the user must
/// supply (the file holds none), and no other service gets it.
fn check_admin_password(name: &str, service: &Value, problems: &mut Problems) {
    let env = env_of(service);
    match env.get(ENVIRONMENT) {
        Some(environment) if environment != LOCAL_ENVIRONMENT => {}
        other => problems.push(format!(
            "{name}: {ENVIRONMENT} is {other:?}; outside `{LOCAL_ENVIRONMENT}` the default \
             admin password is refused, which Compose relies on"
        )),
    }
    let password = env.get(ADMIN_PASSWORD).map(String::as_str);
    if reads_admin_password(name) {
        problems.expect(
            format_args!(
                "{name}: the variable {ADMIN_PASSWORD} requires (as ${{{ADMIN_PASSWORD}:?<what to do>}})"
            ),
            password.and_then(required_variable),
            Some(ADMIN_PASSWORD),
        );
    } else if let Some(password) = password {
        problems.push(format!(
            "{name} gets {ADMIN_PASSWORD} ({password:?}) but never reads it; only Identity may"
        ));
    }
}

/// The variable of the user's environment that holds Audit's checkpoint key.
const CHECKPOINT_KEY_VARIABLE: &str = "BULWARK_AUDIT_CHECKPOINT_KEY";

/// Audit gets a checkpoint key the user must supply (the file holds none; outside
/// `local` Audit refuses to start without one) and writes its checkpoint files to a
/// named volume of their own, whose mount point the image creates for its user so that
/// the fresh volume is writable; no other service gets the key.
fn check_checkpoints(name: &str, service: &Value, volumes: &Value, problems: &mut Problems) {
    let env = env_of(service);
    if !signs_checkpoints(name) {
        if let Some(key) = env.keys().find(|key| key.starts_with("BULWARK_AUDIT__")) {
            problems.push(format!(
                "{name} gets {key} but only Audit signs checkpoints"
            ));
        }
        return;
    }
    problems.expect(
        format_args!(
            "{name}: the variable {CHECKPOINT_KEY} requires (as ${{{CHECKPOINT_KEY_VARIABLE}:?<what to do>}})"
        ),
        env.get(CHECKPOINT_KEY).map(String::as_str).and_then(required_variable),
        Some(CHECKPOINT_KEY_VARIABLE),
    );
    let dir = env.get(CHECKPOINT_DIR).cloned().unwrap_or_default();
    let volume = service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|mount| {
            let (source, target) = mount.split_once(':')?;
            (target == dir && !source.starts_with('.') && !source.starts_with('/'))
                .then(|| source.to_owned())
        });
    let Some(volume) = volume else {
        problems.push(format!(
            "{name}: {CHECKPOINT_DIR} is {dir:?}, where no named volume is mounted"
        ));
        return;
    };
    if volumes.get(&volume).is_none() {
        problems.push(format!(
            "{name} mounts volume {volume:?}, which is not declared"
        ));
    }
    let creates = format!("install -d -o bulwark -g bulwark -m 0750 {dir}");
    if !read(DOCKERFILE).contains(&creates) {
        problems.push(format!(
            "{DOCKERFILE} does not make {dir} for the user bulwark (`{creates}`), so the new \
             volume would be root's"
        ));
    }
}

/// The rate-limit service calls no other service: no account, no client secrets.
fn check_no_account(name: &str, service: &Value, problems: &mut Problems) {
    let keys: Vec<String> = env_of(service)
        .into_keys()
        .filter(|key| {
            key.starts_with("BULWARK_SERVICE_ACCOUNT__") || key.starts_with(SERVICE_CLIENTS)
        })
        .collect();
    problems.expect(
        format_args!("{name}: service-account settings"),
        keys,
        Vec::new(),
    );
}

/// A service with limits of its own (the rate-limit service, Audit) counts them in the
/// Compose Redis, once it is healthy, and reads the repository's limits file, mounted,
/// for the domain it asks about.
fn check_limits(service: &Value, limits: LimitsFile, problems: &mut Problems) {
    let name = limits.service;
    let env = env_of(service);
    problems.expect(
        format_args!("{name}: BULWARK_REDIS__URL"),
        env.get("BULWARK_REDIS__URL").map(String::as_str),
        Some("redis://redis:6379"),
    );
    if !healthy(service, "redis") {
        problems.push(format!("{name} does not wait for a healthy redis"));
    }
    let limits_path = env.get(limits.setting).cloned().unwrap_or_default();
    let Some((source, _)) = bind_mounts(service)
        .into_iter()
        .find(|(_, target)| *target == limits_path)
    else {
        problems.push(format!(
            "{name} reads its limits from {limits_path:?} ({}), which no volume mounts",
            limits.setting
        ));
        return;
    };
    problems.expect(
        format_args!("{name}: the file mounted at {limits_path}"),
        compose_dir().join(&source).canonicalize().ok(),
        workspace_root().join(limits.shipped).canonicalize().ok(),
    );
    let text = std::fs::read_to_string(compose_dir().join(&source)).unwrap_or_default();
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
    problems.expect(
        format_args!("the domain of the limits file {source}"),
        file["domain"].as_str(),
        Some(limits.domain),
    );
}

/// The edge waits for every service, runs the mounted rendered configuration from the
/// Dockerfile's `edge` image and publishes its port on loopback.
fn check_edge(edge: &Value, problems: &mut Problems) {
    for name in EVERY {
        if !healthy(edge, name) {
            problems.push(format!("edge does not wait for a healthy {name}"));
        }
    }
    let config = edge["command"]
        .as_array()
        .and_then(|args| args.windows(2).find(|pair| pair[0] == "-c"))
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_default()
        .to_owned();
    let mounts = bind_mounts(edge);
    if !mounts.contains(&("./envoy-compose.yaml".to_owned(), config.clone())) {
        problems.push(format!(
            "edge runs envoy -c {config:?} but mounts {mounts:?}, not ./envoy-compose.yaml there"
        ));
    }
    problems.expect(
        "edge's build target",
        &edge["build"]["target"],
        &Value::from("edge"),
    );
    let published = format!("127.0.0.1:{EDGE_PORT}:{EDGE_PORT}");
    if !edge["ports"]
        .as_array()
        .is_some_and(|ports| ports.iter().any(|p| *p == published.as_str()))
    {
        problems.push(format!(
            "edge does not publish {published}: {}",
            edge["ports"]
        ));
    }
}

/// The image of every service names a release (never `latest`, never a bare major),
/// and Bulwark's own images default to the workspace's version.
fn check_images(services: &Map<String, Value>, problems: &mut Problems) {
    let manifest = read("Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("Cargo.toml: no workspace version"));
    for (name, service) in services {
        let image = service["image"].as_str().unwrap_or_default();
        let Some((repository, tag)) = image.split_once(':') else {
            problems.push(format!("{name}: image {image:?} has no tag"));
            continue;
        };
        let tag = if repository.starts_with("bulwark") {
            let default = tag
                .strip_prefix("${BULWARK_VERSION:-")
                .and_then(|t| t.strip_suffix('}'));
            problems.expect(
                format_args!("{name}: the default tag of {repository} (${{BULWARK_VERSION:-...}})"),
                default,
                Some(version),
            );
            default.unwrap_or_default()
        } else {
            tag
        };
        if tag == "latest" || !tag.contains('.') {
            problems.push(format!(
                "{name}: image {image:?} is not pinned to a release (major.minor at least)"
            ));
        }
    }
}

/// Postgres is healthy when its real server answers over TCP, the superuser's password
/// is required from the user, and the edge is healthy when Envoy's admin `/ready` says so.
fn check_health(services: &Map<String, Value>, problems: &mut Problems) {
    let postgres = &services["postgres"];
    let test: Vec<&str> = postgres["healthcheck"]["test"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let host = test
        .windows(2)
        .find(|pair| pair[0] == "-h")
        .map(|pair| pair[1]);
    if !(test.contains(&"pg_isready") && matches!(host, Some("127.0.0.1" | "localhost"))) {
        problems.push(format!(
            "postgres: healthcheck {test:?} must run pg_isready -h 127.0.0.1 (TCP) \
             ({POSTGRES_IMAGE_DOC})"
        ));
    }
    problems.expect(
        "postgres: the variable POSTGRES_PASSWORD requires",
        env_of(postgres)
            .get("POSTGRES_PASSWORD")
            .and_then(|value| required_variable(value).map(str::to_owned)),
        Some("POSTGRES_PASSWORD".to_owned()),
    );
    let edge = services["edge"]["healthcheck"]["test"].to_string();
    let ready = format!("127.0.0.1/{EDGE_ADMIN_PORT}");
    if !(edge.contains(&ready) && edge.contains("GET /ready")) {
        problems.push(format!(
            "edge: healthcheck {edge} does not ask Envoy's /ready on {ready} ({HEALTHCHECK_DOC})"
        ));
    }
}

#[test]
fn compose_file_runs_every_service_with_consistent_settings() {
    let compose = compose();
    let services = compose["services"]
        .as_object()
        .unwrap_or_else(|| panic!("{COMPOSE} has no services mapping"));
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        ["postgres", "redis", "edge"]
            .into_iter()
            .map(str::to_owned)
            .chain(EVERY.iter().map(|name| (*name).to_owned()))
            .chain(CORE.iter().map(|name| format!("{name}-migrate")))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
        "{COMPOSE}: the set of services"
    );

    let kernel = kernel_keys();
    let mut problems = Problems::default();
    check_references(services, &mut problems);
    problems.expect(
        "postgres's POSTGRES_DB",
        &services["postgres"]["environment"]["POSTGRES_DB"],
        &Value::from("bulwark"),
    );
    for name in EVERY {
        check_service(name, &services[name], &kernel, &mut problems);
        check_admin_password(name, &services[name], &mut problems);
        check_checkpoints(name, &services[name], &compose["volumes"], &mut problems);
    }
    for name in CORE {
        check_database(name, services, &mut problems);
        check_service_account(name, services, &mut problems);
    }
    // Auth seals its signing keys under a key-encryption key that has no default.
    problems.expect(
        "auth: the variable BULWARK_AUTH__KEY_ENCRYPTION__KEYS__PRIMARY requires",
        env_of(&services["auth"])
            .get("BULWARK_AUTH__KEY_ENCRYPTION__KEYS__PRIMARY")
            .and_then(|value| required_variable(value).map(str::to_owned)),
        Some("BULWARK_AUTH_KEK".to_owned()),
    );
    for limits in LIMITS_FILES {
        check_limits(&services[limits.service], limits, &mut problems);
    }
    check_no_account("ratelimit", &services["ratelimit"], &mut problems);
    check_edge(&services["edge"], &mut problems);
    check_images(services, &mut problems);
    check_health(services, &mut problems);
    problems.assert_none(COMPOSE);
}

#[test]
fn required_variable_accepts_only_a_mandatory_variable_with_a_message() {
    assert_eq!(
        required_variable("${BULWARK_AUTH_CLIENT_SECRET:?set it in .env}"),
        Some("BULWARK_AUTH_CLIENT_SECRET")
    );
    for refused in [
        "${BULWARK_AUTH_CLIENT_SECRET}",
        "${BULWARK_AUTH_CLIENT_SECRET:-0123456789abcdef0123456789abcdef}",
        "${BULWARK_AUTH_CLIENT_SECRET:?}",
        "${BULWARK_AUTH_CLIENT_SECRET?set it}",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "prefix-${BULWARK_AUTH_CLIENT_SECRET:?set it}",
    ] {
        assert_eq!(required_variable(refused), None, "{refused}");
    }
}
