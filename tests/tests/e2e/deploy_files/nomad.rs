//! `deploy/nomad/bulwark.nomad.hcl`: one group per Consul service, each with its
//! Connect sidecar and upstreams as in `consul/services/` and every client pointing at
//! one of them, the admin listener on loopback with `/ready` (the check, restarting the
//! task when it keeps failing) and `/metrics` exposed through the sidecar, a kill
//! timeout above the drain, secrets (database, service-account secrets, Identity's
//! admin password, Audit's checkpoint key, Redis) from its own Nomad variable only,
//! outside the `local` environment, only settings the service reads, and the default
//! limits of the rate-limit service and Audit embedded as they are in the repository;
//! and the edge group, the way in. Each rule names the Nomad page it follows.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_kernel::bootstrap::LOCAL_ENVIRONMENT;

use super::{CHECKPOINT_DIR, CHECKPOINT_KEY, limits_file, reads_admin_password, signs_checkpoints};
use serde_json::Value;

use super::{
    CORE, EDGE_ADMIN_PORT, EDGE_PORT, EVERY, Problems, check_env_key, kernel_keys, read, spec,
};

const NOMAD_JOB: &str = "deploy/nomad/bulwark.nomad.hcl";
/// The group of the Envoy edge and its Consul service name.
const EDGE_GROUP: &str = "edge";
const EDGE_SERVICE: &str = "bulwark-edge";

const EXPOSE_DOC: &str = "https://developer.hashicorp.com/nomad/docs/job-specification/expose";
const CHECK_DOC: &str = "https://developer.hashicorp.com/nomad/docs/job-specification/check";
const CHECK_RESTART_DOC: &str =
    "https://developer.hashicorp.com/nomad/docs/job-specification/check_restart";
const KILL_TIMEOUT_DOC: &str =
    "https://developer.hashicorp.com/nomad/docs/job-specification/task#kill_timeout";
const SHUTDOWN_DELAY_DOC: &str =
    "https://developer.hashicorp.com/nomad/docs/job-specification/group#shutdown_delay";
const NETWORK_DOC: &str = "https://developer.hashicorp.com/nomad/docs/job-specification/network";
/// Nomad clients refuse a kill timeout above their `max_kill_timeout`, 30 s by default
/// (<https://developer.hashicorp.com/nomad/docs/configuration/client#max_kill_timeout>).
const MAX_KILL_TIMEOUT_MS: u64 = 30_000;

type Upstreams = BTreeSet<(String, u16)>;

fn text_of(expr: &hcl::Expression) -> Option<String> {
    match expr {
        hcl::Expression::String(text) => Some(text.clone()),
        hcl::Expression::TemplateExpr(template) => Some(template.to_string()),
        hcl::Expression::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn attribute(body: &hcl::Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|attribute| attribute.key() == key)
        .and_then(|attribute| text_of(attribute.expr()))
}

fn blocks<'a>(body: &'a hcl::Body, identifier: &'a str) -> impl Iterator<Item = &'a hcl::Block> {
    body.blocks()
        .filter(move |block| block.identifier() == identifier)
}

fn block<'a>(body: &'a hcl::Body, identifier: &'a str) -> Option<&'a hcl::Body> {
    blocks(body, identifier).next().map(hcl::Block::body)
}

fn labelled<'a>(body: &'a hcl::Body, identifier: &'a str, label: &str) -> Option<&'a hcl::Body> {
    blocks(body, identifier)
        .find(|block| label_of(block) == label)
        .map(hcl::Block::body)
}

fn label_of(block: &hcl::Block) -> &str {
    block.labels().first().map_or("", |label| label.as_str())
}

/// `(destination_name, local_bind_port)` of each upstream of a Consul definition.
fn consul_upstreams(name: &str) -> Upstreams {
    let name = if name == EDGE_GROUP {
        EDGE_SERVICE
    } else {
        name
    };
    let file = format!("consul/services/{name}.json");
    let definition: Value = serde_json::from_str(&read(&file))
        .unwrap_or_else(|err| panic!("{file} is not JSON: {err}"));
    definition["service"]["connect"]["sidecar_service"]["proxy"]["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|upstream| {
            let port = upstream["local_bind_port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok());
            (
                upstream["destination_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                port.unwrap_or_default(),
            )
        })
        .collect()
}

const CLIENT_ID: &str = "BULWARK_SERVICE_ACCOUNT__CLIENT_ID";
const CLIENT_SECRET: &str = "BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET";
const SERVICE_CLIENTS: &str = "BULWARK_AUTH__SERVICE_CLIENTS__";
const ADMIN_PASSWORD: &str = "BULWARK_ADMIN_PASSWORD";
const ENVIRONMENT: &str = "BULWARK_SERVICE__ENVIRONMENT";

/// Whether the service creates the bootstrap admin and so needs `admin_password`.
fn needs_admin_password(name: &str) -> bool {
    reads_admin_password(name)
}

/// The settings a service cannot run without, set in `env` or by a template: the core
/// services' database and service account (and Auth's copy of every built-in client's
/// secret), Identity's admin password, Audit's checkpoint key and directory, and the
/// Redis and limits file of the rate-limit service and Audit.
fn required_settings(name: &str) -> Vec<String> {
    let mut settings: Vec<String> = match name {
        "ratelimit" => Vec::new(),
        _ => vec![
            "BULWARK_DATABASE__URL".into(),
            CLIENT_ID.into(),
            CLIENT_SECRET.into(),
        ],
    };
    if let Some(limits) = limits_file(name) {
        settings.extend(["BULWARK_REDIS__URL".into(), limits.setting.into()]);
    }
    if name == "auth" {
        settings.extend(
            CORE.iter()
                .map(|client| format!("{SERVICE_CLIENTS}{}", client.to_uppercase())),
        );
        settings.push(format!("{KEK_KEYS}PRIMARY"));
    }
    if needs_admin_password(name) {
        settings.push(ADMIN_PASSWORD.into());
    }
    if signs_checkpoints(name) {
        settings.extend([CHECKPOINT_KEY.into(), CHECKPOINT_DIR.into()]);
    }
    settings
}

/// Settings that hold secrets: only a template may set them, from a Nomad variable;
/// never the job file's `env`.
fn is_secret_setting(key: &str) -> bool {
    [
        "BULWARK_DATABASE__URL",
        "BULWARK_REDIS__URL",
        CLIENT_SECRET,
        ADMIN_PASSWORD,
        CHECKPOINT_KEY,
    ]
    .contains(&key)
        || key.starts_with(SERVICE_CLIENTS)
        || key.starts_with(KEK_KEYS)
}

/// Auth's key-encryption keys (`auth.key_encryption.keys.<id>`).
const KEK_KEYS: &str = "BULWARK_AUTH__KEY_ENCRYPTION__KEYS__";

/// `KEY -> item` of each `KEY={{ .item }}` line of a template's data.
fn template_items(data: &str) -> BTreeMap<String, String> {
    data.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once('=')?;
            let item = value
                .trim()
                .strip_prefix("{{")?
                .strip_suffix("}}")?
                .trim()
                .strip_prefix('.')?;
            Some((key.to_owned(), item.to_owned()))
        })
        .collect()
}

/// The item of the group's Nomad variable that each secret setting comes from: the
/// service's own `client_secret`; for Auth also `<id>_client_secret` of every other
/// core service (which holds the value of that service's `client_secret`); for Identity
/// also `admin_password`; for Audit also `checkpoint_key`; for the services with limits
/// of their own (the rate-limit service, Audit) `redis_url`.
fn expected_secret_items(name: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    if limits_file(name).is_some() {
        items.insert("BULWARK_REDIS__URL".to_owned(), "redis_url".to_owned());
    }
    if name == "ratelimit" {
        return items;
    }
    items.insert(CLIENT_SECRET.to_owned(), "client_secret".to_owned());
    if needs_admin_password(name) {
        items.insert(ADMIN_PASSWORD.to_owned(), "admin_password".to_owned());
    }
    if signs_checkpoints(name) {
        items.insert(CHECKPOINT_KEY.to_owned(), "checkpoint_key".to_owned());
    }
    if name == "auth" {
        for client in CORE {
            let item = if client == "auth" {
                "client_secret".to_owned()
            } else {
                format!("{client}_client_secret")
            };
            items.insert(format!("{SERVICE_CLIENTS}{}", client.to_uppercase()), item);
        }
        items.insert(format!("{KEK_KEYS}PRIMARY"), "kek_primary".to_owned());
        // Failed logins lock accounts, counted in Redis (required outside local).
        items.insert("BULWARK_REDIS__URL".to_owned(), "redis_url".to_owned());
    }
    items
}

/// Each core service logs in as its own client (its name), with secrets that come from
/// its group's Nomad variable only; the rate-limit service has no account.
fn check_service_account(
    name: &str,
    env: &BTreeMap<String, String>,
    items: &BTreeMap<String, String>,
    problems: &mut Problems,
) {
    problems.expect(
        format_args!("{name}: {CLIENT_ID} in env"),
        env.get(CLIENT_ID).map(String::as_str),
        CORE.contains(&name).then_some(name),
    );
    for key in env.keys().filter(|key| is_secret_setting(key)) {
        problems.push(format!(
            "{name}: {key} is set in env; secrets come from a template reading a Nomad variable"
        ));
    }
    let secret_items: BTreeMap<String, String> = items
        .iter()
        .filter(|(key, _)| is_secret_setting(key) && *key != "BULWARK_DATABASE__URL")
        .map(|(key, item)| (key.clone(), item.clone()))
        .collect();
    problems.expect(
        format_args!("{name}: secrets (setting -> item of nomad/jobs/bulwark/{name})"),
        secret_items,
        expected_secret_items(name),
    );
}

/// The `BULWARK_*` keys a template's data sets (`KEY=value`, Go templates around it).
fn template_env_keys(data: &str) -> Vec<String> {
    data.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '='))
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .filter(|key| key.starts_with("BULWARK_"))
        .map(str::to_owned)
        .collect()
}

/// Bridge networking (Connect needs it) with a dynamic port for the sidecar's expose
/// listener (the same number inside and outside, `to = -1`), never a static host port
/// for the admin interface.
fn check_network(name: &str, group: &hcl::Body, problems: &mut Problems) {
    let network = block(group, "network");
    problems.expect(
        format_args!("{name}: network mode"),
        network.and_then(|n| attribute(n, "mode")),
        Some("bridge".to_owned()),
    );
    let admin = network.and_then(|n| labelled(n, "port", "admin"));
    problems.expect(
        format_args!("{name}: port \"admin\" (to, static) ({NETWORK_DOC})"),
        admin.map(|port| (attribute(port, "to"), attribute(port, "static"))),
        Some((Some("-1".to_owned()), None)),
    );
}

/// A duration of Nomad's syntax (`500ms`, `20s`, `1m`) in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(number),
        "s" => Some(number * 1_000),
        "m" => Some(number * 60_000),
        _ => None,
    }
}

/// The admin interface is reached only through the sidecar: `/ready` (the check) and the
/// metrics path exposed on the `admin` port towards the loopback admin listener
/// (`admin_port`), whose host port the service announces in `admin_port` meta, as the
/// shipped Prometheus configuration expects; the check restarts its task when it keeps
/// failing.
fn check_admin_exposed(
    name: &str,
    service: &hcl::Body,
    proxy: Option<&hcl::Body>,
    admin_port: u16,
    metrics_path: &str,
    problems: &mut Problems,
) {
    let paths: BTreeSet<(String, String, String, String)> = proxy
        .and_then(|proxy| block(proxy, "expose"))
        .into_iter()
        .flat_map(|expose| blocks(expose, "path"))
        .map(|path| {
            let body = path.body();
            let get = |key| attribute(body, key).unwrap_or_default();
            (
                get("path"),
                get("protocol"),
                get("local_path_port"),
                get("listener_port"),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String, String)> = ["/ready", metrics_path]
        .into_iter()
        .map(|path| {
            (
                path.to_owned(),
                "http".to_owned(),
                admin_port.to_string(),
                "admin".to_owned(),
            )
        })
        .collect();
    problems.expect(
        format_args!(
            "{name}: expose paths (path, protocol, local_path_port, listener_port) ({EXPOSE_DOC})"
        ),
        paths,
        expected,
    );
    problems.expect(
        format_args!("{name}: meta admin_port (observability/prometheus/prometheus.yml)"),
        block(service, "meta").and_then(|meta| attribute(meta, "admin_port")),
        Some("${NOMAD_HOST_PORT_admin}".to_owned()),
    );
    let ready = blocks(service, "check")
        .map(hcl::Block::body)
        .find(|check| attribute(check, "path").as_deref() == Some("/ready"));
    problems.expect(
        format_args!("{name}: the /ready check (type, port) ({CHECK_DOC})"),
        ready.map(|check| (attribute(check, "type"), attribute(check, "port"))),
        Some((Some("http".to_owned()), Some("admin".to_owned()))),
    );
    let task = if name == EDGE_GROUP { "edge" } else { name };
    problems.expect(
        format_args!(
            "{name}: the /ready check's task, whose check_restart applies to it ({CHECK_DOC})"
        ),
        ready.and_then(|check| attribute(check, "task")),
        Some(task.to_owned()),
    );
    let restart = ready.and_then(|check| block(check, "check_restart"));
    let limit = restart
        .and_then(|r| attribute(r, "limit"))
        .and_then(|l| l.parse::<u32>().ok());
    if limit.is_none_or(|limit| limit == 0) {
        problems.push(format!(
            "{name}: the /ready check has no check_restart with a limit ({CHECK_RESTART_DOC})"
        ));
    }
}

/// Consul deregisters the group before its tasks get a signal (`shutdown_delay`), and
/// the task's kill timeout lets the service finish its drain
/// (`grpc.drain_delay_ms` and `grpc.shutdown_grace_ms`) before Nomad kills it, within what a client allows.
fn check_shutdown(
    name: &str,
    group: &hcl::Body,
    task: &hcl::Body,
    grace_ms: u64,
    problems: &mut Problems,
) {
    let delay = attribute(group, "shutdown_delay").and_then(|d| duration_ms(&d));
    if delay.is_none_or(|delay| delay == 0) {
        problems.push(format!(
            "{name}: no group shutdown_delay, so callers still pick an instance that is \
             already stopping ({SHUTDOWN_DELAY_DOC})"
        ));
    }
    let kill = attribute(task, "kill_timeout").and_then(|k| duration_ms(&k));
    match kill {
        Some(kill) if kill > grace_ms && kill <= MAX_KILL_TIMEOUT_MS => {}
        other => problems.push(format!(
            "{name}: kill_timeout is {other:?} ms; it must exceed the drain \
             (grpc.drain_delay_ms + grpc.shutdown_grace_ms = {grace_ms}) and stay within the client's \
             max_kill_timeout ({MAX_KILL_TIMEOUT_MS}) ({KILL_TIMEOUT_DOC})"
        )),
    }
}

/// The Consul service on the gRPC port, its sidecar's upstreams (returned) as in
/// `consul/services/<name>.json`, and its readiness check.
fn check_service(name: &str, group: &hcl::Body, problems: &mut Problems) -> Upstreams {
    let Some(service) = block(group, "service") else {
        problems.push(format!("{name}: no service block"));
        return Upstreams::new();
    };
    problems.expect(
        format_args!("{name}: service name"),
        attribute(service, "name"),
        Some(name.to_owned()),
    );
    problems.expect(
        format_args!("{name}: service port"),
        attribute(service, "port"),
        Some(spec(name).grpc.to_string()),
    );
    let sidecar = block(service, "connect").and_then(|connect| block(connect, "sidecar_service"));
    let Some(sidecar) = sidecar else {
        problems.push(format!(
            "{name}: service has no connect {{ sidecar_service }}"
        ));
        return Upstreams::new();
    };
    // A sidecar without a proxy block has no upstreams.
    let upstreams: Upstreams = block(sidecar, "proxy")
        .into_iter()
        .flat_map(|proxy| blocks(proxy, "upstreams"))
        .map(|upstream| {
            let body = upstream.body();
            let port = attribute(body, "local_bind_port").and_then(|p| p.parse().ok());
            (
                attribute(body, "destination_name").unwrap_or_default(),
                port.unwrap_or_default(),
            )
        })
        .collect();
    problems.expect(
        format_args!("{name}: upstreams (consul/services/{name}.json has the expected ones)"),
        &upstreams,
        &consul_upstreams(name),
    );
    check_admin_exposed(
        name,
        service,
        block(sidecar, "proxy"),
        spec(name).admin,
        "/metrics",
        problems,
    );
    upstreams
}

/// The task runs the service's binary with real kernel keys, gRPC on loopback for the
/// sidecar, and exactly one client setting per upstream, on its local bind port.
fn check_task(
    name: &str,
    group: &hcl::Body,
    upstreams: &Upstreams,
    kernel: &Value,
    problems: &mut Problems,
) {
    let Some(task) = labelled(group, "task", name) else {
        problems.push(format!("{name}: no task \"{name}\""));
        return;
    };
    problems.expect(
        format_args!("{name}: the task's command"),
        block(task, "config").and_then(|config| attribute(config, "command")),
        Some(format!("bulwark-{name}")),
    );
    let env: BTreeMap<String, String> = block(task, "env")
        .map(|env| {
            env.attributes()
                .map(|a| (a.key().to_owned(), text_of(a.expr()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut keys: Vec<String> = env.keys().cloned().collect();
    let mut written = Vec::new();
    let mut items = BTreeMap::new();
    for template in blocks(task, "template").map(hcl::Block::body) {
        if is_env_template(template) {
            keys.extend(check_env_template(name, template, problems));
            items.extend(template_items(
                &attribute(template, "data").unwrap_or_default(),
            ));
        } else {
            written.extend(check_file_template(name, template, &env, problems));
        }
    }
    if let Some(limits) = limits_file(name)
        && let Some(path) = env.get(limits.setting)
        && !written.iter().any(|key| key == limits.setting)
    {
        problems.push(format!(
            "{name} reads its limits from {path:?}, which no template writes"
        ));
    }
    for key in &keys {
        if let Err(err) = check_env_key(kernel, name, key) {
            problems.push(format!("{name}: {err}"));
        }
    }
    for required in required_settings(name) {
        if !keys.contains(&required) {
            problems.push(format!("{name}: nothing sets {required}"));
        }
    }
    check_service_account(name, &env, &items, problems);
    if signs_checkpoints(name) {
        check_checkpoint_dir(name, group, &env, problems);
    }
    // Outside `local` the default admin password is refused: the job relies on it.
    match env.get(ENVIRONMENT) {
        Some(environment) if environment != LOCAL_ENVIRONMENT => {}
        other => problems.push(format!(
            "{name}: {ENVIRONMENT} in env is {other:?}, expected an environment other than \
             `{LOCAL_ENVIRONMENT}`"
        )),
    }
    let spec = spec(name);
    problems.expect(
        format_args!("{name}: BULWARK_GRPC__LISTEN"),
        env.get("BULWARK_GRPC__LISTEN").cloned(),
        Some(format!("127.0.0.1:{}", spec.grpc)),
    );
    problems.expect(
        format_args!(
            "{name}: BULWARK_HTTP__LISTEN (on loopback: only the sidecar's expose paths reach it)"
        ),
        env.get("BULWARK_HTTP__LISTEN").cloned(),
        Some(format!("127.0.0.1:{}", spec.admin)),
    );
    let setting = |name: &str| {
        env.get(&format!("BULWARK_GRPC__{}", name.to_uppercase()))
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or(kernel["grpc"][name].as_u64().unwrap_or(u64::MAX / 2))
    };
    // The instance serves on for the drain delay, then drains in-flight calls.
    let grace_ms = setting("drain_delay_ms") + setting("shutdown_grace_ms");
    check_shutdown(name, group, task, grace_ms, problems);
    let clients: Vec<(String, Option<u16>)> = env
        .iter()
        .filter_map(|(key, value)| {
            let client = key.strip_prefix("BULWARK_CLIENTS__")?.to_lowercase();
            Some((
                client,
                value
                    .strip_prefix("http://127.0.0.1:")
                    .and_then(|p| p.parse().ok()),
            ))
        })
        .collect();
    let expected: Vec<(String, Option<u16>)> = upstreams
        .iter()
        .map(|(client, port)| (client.clone(), Some(*port)))
        .collect();
    problems.expect(
        format_args!(
            "{name}: BULWARK_CLIENTS__* (service, port of http://127.0.0.1:<local_bind_port>)"
        ),
        clients,
        expected,
    );
}

/// A core service's group migrates before the service starts: a prestart task runs
/// `bulwark-<name> migrate` with the runtime role's URL from the group's variable and
/// the owner's from the task's own variable (`nomad/jobs/bulwark/<name>/migrate`), which
/// the service's task neither reads nor could (Nomad gives each task its own path).
fn check_migrate_task(name: &str, group: &hcl::Body, problems: &mut Problems) {
    let Some(task) = labelled(group, "task", "migrate") else {
        problems.push(format!("{name}: no prestart task \"migrate\""));
        return;
    };
    let lifecycle = block(task, "lifecycle");
    problems.expect(
        format_args!("{name}: migrate's lifecycle (hook, sidecar)"),
        (
            lifecycle.and_then(|l| attribute(l, "hook")),
            lifecycle.and_then(|l| {
                l.attributes()
                    .find(|a| a.key() == "sidecar")
                    .map(|a| a.expr().clone())
            }),
        ),
        (
            Some("prestart".to_owned()),
            Some(hcl::Expression::Bool(false)),
        ),
    );
    let config = block(task, "config");
    problems.expect(
        format_args!("{name}: migrate's command and args"),
        (
            config.and_then(|c| attribute(c, "command")),
            config.and_then(|c| {
                c.attributes()
                    .find(|a| a.key() == "args")
                    .map(|a| a.expr().to_string().split_whitespace().collect::<String>())
            }),
        ),
        (
            Some(format!("bulwark-{name}")),
            Some("[\"migrate\"]".to_owned()),
        ),
    );
    let data: String = blocks(task, "template")
        .filter_map(|t| attribute(t.body(), "data"))
        .collect();
    for (line, variable) in [
        (
            "BULWARK_DATABASE__URL={{ .database_url }}",
            format!("nomad/jobs/bulwark/{name}\""),
        ),
        (
            "BULWARK_DATABASE__OWNER_URL={{ .owner_database_url }}",
            format!("nomad/jobs/bulwark/{name}/migrate\""),
        ),
    ] {
        let in_block = data
            .split("{{ end }}")
            .any(|section| section.contains(&variable) && section.contains(line));
        if !in_block {
            problems.push(format!(
                "{name}: migrate does not set `{line}` from {variable}"
            ));
        }
    }
    if let Some(service) = labelled(group, "task", name) {
        let service_data: String = blocks(service, "template")
            .filter_map(|t| attribute(t.body(), "data"))
            .collect();
        if service_data.contains("OWNER_URL") || service_data.contains("/migrate\"") {
            problems.push(format!(
                "{name}: the service's task reads the schema owner's URL"
            ));
        }
    }
}

/// Audit writes its checkpoint files in the allocation's directory, on a sticky disk so
/// that an update of the job does not drop the files not yet shipped off the host.
fn check_checkpoint_dir(
    name: &str,
    group: &hcl::Body,
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) {
    let dir = env.get(CHECKPOINT_DIR).cloned().unwrap_or_default();
    if !dir.starts_with("${NOMAD_ALLOC_DIR}/") {
        problems.push(format!(
            "{name}: {CHECKPOINT_DIR} in env is {dir:?}, not under ${{NOMAD_ALLOC_DIR}}/"
        ));
    }
    let sticky = block(group, "ephemeral_disk").is_some_and(|disk| {
        disk.attributes()
            .any(|a| a.key() == "sticky" && *a.expr() == hcl::Expression::Bool(true))
    });
    if !sticky {
        problems.push(format!(
            "{name}: no `ephemeral_disk {{ sticky = true }}`: an update would drop the \
             checkpoint files"
        ));
    }
}

fn is_env_template(template: &hcl::Body) -> bool {
    template
        .attributes()
        .any(|a| a.key() == "env" && *a.expr() == hcl::Expression::Bool(true))
}

/// A template loaded as environment sets `BULWARK_*` keys (returned) from the group's
/// own Nomad variable, `nomad/jobs/bulwark/<name>`.
fn check_env_template(name: &str, template: &hcl::Body, problems: &mut Problems) -> Vec<String> {
    let data = attribute(template, "data").unwrap_or_default();
    let found = template_env_keys(&data);
    if found.is_empty() {
        problems.push(format!(
            "{name}: a template sets no BULWARK_* key: {data:?}"
        ));
    }
    let variable = format!("nomadVar \"nomad/jobs/bulwark/{name}\"");
    if !data.contains(&variable) {
        problems.push(format!(
            "{name}: an environment template does not read {variable}: {data:?}"
        ));
    }
    found
}

/// A template that writes a file writes one a setting points at (returned; the docker
/// driver mounts the task's `local/` at `/local`); a limits file is the repository's
/// default limits of that service, left to the service's own reload.
fn check_file_template(
    name: &str,
    template: &hcl::Body,
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> Option<String> {
    let destination = attribute(template, "destination").unwrap_or_default();
    let in_task = format!("/{destination}");
    let Some((key, _)) = env.iter().find(|(_, value)| **value == in_task) else {
        problems.push(format!(
            "{name}: a template writes {destination:?}, which no setting points at ({in_task})"
        ));
        return None;
    };
    if let Some(limits) = limits_file(name).filter(|limits| limits.setting == key) {
        check_limits_template(name, template, limits.shipped, problems);
    }
    Some(key.clone())
}

fn check_limits_template(name: &str, template: &hcl::Body, shipped: &str, problems: &mut Problems) {
    problems.expect(
        format_args!("{name}: change_mode of the limits template (the service reloads the file)"),
        attribute(template, "change_mode"),
        Some("noop".to_owned()),
    );
    let limits = read(shipped);
    if attribute(template, "data").as_deref() != Some(limits.as_str()) {
        problems.push(format!(
            "{name}: the limits template's data is not {shipped} word for word"
        ));
    }
    // Embedded verbatim, the text must mean itself to HCL and to Nomad's Go templates.
    for marker in ["${", "%{", "{{"] {
        if limits.contains(marker) {
            problems.push(format!(
                "{shipped} contains {marker:?}, which the job's template would expand"
            ));
        }
    }
}

/// The way in: the edge group publishes Envoy's listener on the static port, registers
/// `bulwark-edge` with a sidecar whose upstreams are `consul/services/bulwark-edge.json`'s,
/// exposes Envoy's `/ready` and `/stats/prometheus` through it (the admin interface stays
/// on loopback), and runs Envoy on the configuration its template writes
/// (`envoy/edge-mesh.yaml`, checked word for word in `edge_mesh.rs`).
fn check_edge_group(group: &hcl::Body, problems: &mut Problems) {
    let name = EDGE_GROUP;
    let network = block(group, "network");
    problems.expect(
        format_args!("{name}: network mode"),
        network.and_then(|n| attribute(n, "mode")),
        Some("bridge".to_owned()),
    );
    problems.expect(
        format_args!("{name}: port \"http\" (static, to) ({NETWORK_DOC})"),
        network
            .and_then(|n| labelled(n, "port", "http"))
            .map(|port| (attribute(port, "static"), attribute(port, "to"))),
        Some((Some(EDGE_PORT.to_string()), Some(EDGE_PORT.to_string()))),
    );
    problems.expect(
        format_args!("{name}: port \"admin\" (to, static) ({NETWORK_DOC})"),
        network
            .and_then(|n| labelled(n, "port", "admin"))
            .map(|port| (attribute(port, "to"), attribute(port, "static"))),
        Some((Some("-1".to_owned()), None)),
    );
    let Some(service) = block(group, "service") else {
        problems.push(format!("{name}: no service block"));
        return;
    };
    problems.expect(
        format_args!("{name}: service name and port"),
        (attribute(service, "name"), attribute(service, "port")),
        (Some(EDGE_SERVICE.to_owned()), Some(EDGE_PORT.to_string())),
    );
    let proxy = block(service, "connect")
        .and_then(|c| block(c, "sidecar_service"))
        .and_then(|s| block(s, "proxy"));
    let upstreams: Upstreams = proxy
        .into_iter()
        .flat_map(|proxy| blocks(proxy, "upstreams"))
        .map(|upstream| {
            let body = upstream.body();
            (
                attribute(body, "destination_name").unwrap_or_default(),
                attribute(body, "local_bind_port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_default(),
            )
        })
        .collect();
    problems.expect(
        format_args!(
            "{name}: upstreams (consul/services/{EDGE_SERVICE}.json has the expected ones)"
        ),
        &upstreams,
        &consul_upstreams(name),
    );
    check_admin_exposed(
        name,
        service,
        proxy,
        EDGE_ADMIN_PORT,
        "/stats/prometheus",
        problems,
    );
    let Some(task) = labelled(group, "task", "edge") else {
        problems.push(format!("{name}: no task \"edge\""));
        return;
    };
    let config = block(task, "config");
    problems.expect(
        format_args!("{name}: Envoy's command and args"),
        (
            config.and_then(|c| attribute(c, "command")),
            config.and_then(|c| {
                c.attributes()
                    .find(|a| a.key() == "args")
                    .map(|a| a.expr().to_string().split_whitespace().collect::<String>())
            }),
        ),
        (
            Some("envoy".to_owned()),
            Some("[\"-c\",\"/local/edge.yaml\"]".to_owned()),
        ),
    );
    problems.expect(
        format_args!("{name}: the template Envoy reads"),
        blocks(task, "template")
            .map(hcl::Block::body)
            .map(|t| attribute(t, "destination"))
            .collect::<Vec<_>>(),
        vec![Some("local/edge.yaml".to_owned())],
    );
    // Envoy stops at once on SIGTERM: no drain of its own to wait for.
    check_shutdown(name, group, task, 0, problems);
}

#[test]
fn nomad_job_matches_consul_definitions_and_kernel_settings() {
    let body =
        hcl::parse(&read(NOMAD_JOB)).unwrap_or_else(|err| panic!("{NOMAD_JOB} is not HCL: {err}"));
    let job = labelled(&body, "job", "bulwark")
        .unwrap_or_else(|| panic!("{NOMAD_JOB} has no job \"bulwark\""));
    let groups: BTreeMap<&str, &hcl::Body> = blocks(job, "group")
        .map(|group| (label_of(group), group.body()))
        .collect();
    assert_eq!(
        groups.keys().copied().collect::<BTreeSet<_>>(),
        EVERY.into_iter().chain([EDGE_GROUP]).collect(),
        "{NOMAD_JOB}: one group per service with a Consul definition in consul/services/, \
         and the edge"
    );
    let kernel = kernel_keys();
    let mut problems = Problems::default();
    for (name, group) in groups {
        if name == EDGE_GROUP {
            check_edge_group(group, &mut problems);
            continue;
        }
        check_network(name, group, &mut problems);
        let upstreams = check_service(name, group, &mut problems);
        check_task(name, group, &upstreams, &kernel, &mut problems);
        if CORE.contains(&name) {
            check_migrate_task(name, group, &mut problems);
        }
    }
    problems.assert_none(NOMAD_JOB);
}

#[test]
fn template_items_maps_each_setting_to_its_variable_item() {
    let data = "{{ with nomadVar \"nomad/jobs/bulwark/auth\" }}\n\
                BULWARK_DATABASE__URL={{ .database_url }}\n\
                BULWARK_AUTH__SERVICE_CLIENTS__AUDIT={{.audit_client_secret}}\n\
                BULWARK_TELEMETRY__LOG_LEVEL=info\n\
                {{ end }}\n";
    assert_eq!(
        template_items(data),
        BTreeMap::from([
            (
                "BULWARK_DATABASE__URL".to_owned(),
                "database_url".to_owned()
            ),
            (
                "BULWARK_AUTH__SERVICE_CLIENTS__AUDIT".to_owned(),
                "audit_client_secret".to_owned()
            ),
        ])
    );
}

/// `nomad job validate` on the job, where a `nomad` binary is on the PATH (never on the
/// development machines, which have none): `cargo nextest run -p bulwark-e2e
/// --run-ignored only -E 'test(/nomad_job_validate/)'`.
#[test]
#[ignore = "needs nomad on PATH"]
fn nomad_job_validate_accepts_the_job() {
    let nomad = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("nomad"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("nomad is not on the PATH: this test cannot pass without it"));
    let output = std::process::Command::new(&nomad)
        .args(["job", "validate"])
        .arg(bulwark_e2e::workspace_root().join(NOMAD_JOB))
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", nomad.display()));
    assert!(
        output.status.success(),
        "nomad job validate refuses {NOMAD_JOB}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn durations_parse_as_nomad_writes_them() {
    assert_eq!(duration_ms("20s"), Some(20_000));
    assert_eq!(duration_ms("500ms"), Some(500));
    assert_eq!(duration_ms("1m"), Some(60_000));
    assert_eq!(duration_ms("20"), None);
    assert_eq!(duration_ms("s"), None);
}
