//! `deploy/nomad/bulwark.nomad.hcl`: one group per Consul service, each with its
//! Connect sidecar and upstreams as in `consul/services/`, readiness checks on the
//! admin port, and only settings the kernel reads.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{CORE, Problems, check_env_key, kernel_keys, port_of, read, spec};

const NOMAD_JOB: &str = "deploy/nomad/bulwark.nomad.hcl";

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

/// The `BULWARK_*` keys a template's data sets (`KEY=value`, Go templates around it).
fn template_env_keys(data: &str) -> Vec<String> {
    data.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '='))
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .filter(|key| key.starts_with("BULWARK_"))
        .map(str::to_owned)
        .collect()
}

/// Bridge networking (Connect needs it) with the admin port mapped for the checks.
fn check_network(name: &str, group: &hcl::Body, problems: &mut Problems) {
    let network = block(group, "network");
    problems.expect(
        format_args!("{name}: network mode"),
        network.and_then(|n| attribute(n, "mode")),
        Some("bridge".to_owned()),
    );
    problems.expect(
        format_args!("{name}: port \"admin\" maps to"),
        network
            .and_then(|n| labelled(n, "port", "admin"))
            .and_then(|port| attribute(port, "to")),
        Some(spec(name).admin.to_string()),
    );
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
    let proxy = block(service, "connect")
        .and_then(|connect| block(connect, "sidecar_service"))
        .and_then(|sidecar| block(sidecar, "proxy"));
    let Some(proxy) = proxy else {
        problems.push(format!(
            "{name}: service has no connect {{ sidecar_service {{ proxy }} }}"
        ));
        return Upstreams::new();
    };
    let upstreams: Upstreams = blocks(proxy, "upstreams")
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
    problems.expect(
        format_args!("{name}: check (type, port, path)"),
        block(service, "check")
            .map(|check| ["type", "port", "path"].map(|key| attribute(check, key))),
        Some(["http", "admin", "/ready"].map(|value| Some(value.to_owned()))),
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
    for template in blocks(task, "template").map(hcl::Block::body) {
        let data = attribute(template, "data").unwrap_or_default();
        let found = template_env_keys(&data);
        if found.is_empty() {
            problems.push(format!(
                "{name}: a template sets no BULWARK_* key: {data:?}"
            ));
        }
        if !template
            .attributes()
            .any(|a| a.key() == "env" && *a.expr() == hcl::Expression::Bool(true))
        {
            problems.push(format!(
                "{name}: a template is not loaded as environment (env = true)"
            ));
        }
        keys.extend(found);
    }
    for key in &keys {
        if let Err(err) = check_env_key(kernel, name, key) {
            problems.push(format!("{name}: {err}"));
        }
    }
    if !keys.iter().any(|key| key == "BULWARK_DATABASE__URL") {
        problems.push(format!("{name}: nothing sets BULWARK_DATABASE__URL"));
    }
    let spec = spec(name);
    problems.expect(
        format_args!("{name}: BULWARK_GRPC__LISTEN"),
        env.get("BULWARK_GRPC__LISTEN").cloned(),
        Some(format!("127.0.0.1:{}", spec.grpc)),
    );
    problems.expect(
        format_args!("{name}: the port of BULWARK_HTTP__LISTEN"),
        env.get("BULWARK_HTTP__LISTEN")
            .and_then(|address| port_of(address)),
        Some(spec.admin),
    );
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
        CORE.into_iter().collect(),
        "{NOMAD_JOB}: one group per service with a Consul definition in consul/services/"
    );
    let kernel = kernel_keys();
    let mut problems = Problems::default();
    for (name, group) in groups {
        check_network(name, group, &mut problems);
        let upstreams = check_service(name, group, &mut problems);
        check_task(name, group, &upstreams, &kernel, &mut problems);
    }
    problems.assert_none(NOMAD_JOB);
}
