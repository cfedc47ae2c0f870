//! `envoy/edge-mesh.yaml`: `envoy/edge.yaml` rendered for the edge as the Consul mesh
//! service `bulwark-edge`, whose clusters are its sidecar's upstreams
//! (`consul/services/bulwark-edge.json`) on loopback. Kept identical to a fresh
//! rendering, embedded word for word in the Nomad job's edge task, and accepted by the
//! real Envoy (`--mode validate`).

use std::collections::BTreeMap;

use bulwark_e2e::{fill_placeholders, workspace_root};
use serde_json::Value;

use super::{EDGE_ADMIN_PORT, EVERY, IMAGE_DESCRIPTOR, IMAGE_WASM, read};

pub const EDGE_MESH: &str = "envoy/edge-mesh.yaml";
const EDGE_TEMPLATE: &str = "envoy/edge.yaml";
const EDGE_DEFINITION: &str = "consul/services/bulwark-edge.json";
const NOMAD_JOB: &str = "deploy/nomad/bulwark.nomad.hcl";
/// The heredoc of the Nomad edge task's template that holds the rendering.
const HEREDOC: &str = "EDGE_MESH_YAML";
const REGENERATE_ENV: &str = "BULWARK_REGENERATE";
const REGENERATE_HINT: &str = "regenerate it with \
     `BULWARK_REGENERATE=1 cargo nextest run -p bulwark-e2e -E 'test(/deploy_files::/)'`";
/// An upstream's local bind address: the sidecar's listeners are on loopback.
const UPSTREAM_HOST: &str = "127.0.0.1";
const UPSTREAMS_DOC: &str = "https://developer.hashicorp.com/consul/docs/connect/proxies/proxy-config-reference#upstream-configuration-reference";

/// `destination_name -> local_bind_port` of the edge sidecar's upstreams.
pub fn edge_upstreams() -> BTreeMap<String, u16> {
    let definition: Value = serde_json::from_str(&read(EDGE_DEFINITION))
        .unwrap_or_else(|err| panic!("{EDGE_DEFINITION} is not JSON: {err}"));
    let upstreams: BTreeMap<String, u16> =
        definition["service"]["connect"]["sidecar_service"]["proxy"]["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                Some((
                    u["destination_name"].as_str()?.to_owned(),
                    u16::try_from(u["local_bind_port"].as_u64()?).ok()?,
                ))
            })
            .collect();
    assert_eq!(
        upstreams.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut every = EVERY.to_vec();
            every.sort_unstable();
            every
        },
        "{EDGE_DEFINITION}: the edge needs an upstream for every service ({UPSTREAMS_DOC})"
    );
    upstreams
}

/// The template's values for the mesh: each service at its upstream's local port.
fn mesh_values(descriptor: &str, wasm: &str) -> Vec<(String, String)> {
    let upstreams = edge_upstreams()
        .into_iter()
        .map(|(name, port)| (name.to_owned(), UPSTREAM_HOST.to_owned(), port));
    super::image_edge_values("STATIC", descriptor, wasm, upstreams)
}

pub fn mesh_config(descriptor: &str, wasm: &str) -> String {
    let rendered = fill_placeholders(
        EDGE_TEMPLATE,
        &read(EDGE_TEMPLATE),
        &mesh_values(descriptor, wasm),
    )
    .unwrap_or_else(|e| panic!("{e:#}: add the value to mesh_values in {}", file!()));
    format!(
        "# GENERATED from {EDGE_TEMPLATE} for the edge as Consul mesh service bulwark-edge\n\
         # (consul/services/bulwark-edge.json, the Nomad job's edge group); do not edit.\n\
         # After changing the template, {REGENERATE_HINT}.\n\
         # Every cluster is an upstream of the edge's sidecar on {UPSTREAM_HOST}; the\n\
         # descriptor and the Wasm filter are in the edge image (deploy/docker/Dockerfile).\n\
         # Set CORS origins of your own: allow_origin_string_match below.\n{rendered}"
    )
}

/// Where the data of the Nomad edge task's heredoc starts and ends in the job's text.
fn nomad_heredoc(job: &str) -> Option<(usize, usize)> {
    let open = format!("<<{HEREDOC}\n");
    let start = job.find(&open)? + open.len();
    let rest = &job[start..];
    if rest.starts_with(&format!("{HEREDOC}\n")) {
        return Some((start, start));
    }
    let end = start + rest.find(&format!("\n{HEREDOC}\n"))? + 1;
    Some((start, end))
}

/// Each service's cluster is a static endpoint on its upstream's local port: the edge
/// reaches the services only through its sidecar.
fn check_clusters(config: &Value) {
    let resources = &config["static_resources"];
    let admin = &config["admin"]["address"]["socket_address"];
    assert_eq!(
        (admin["address"].as_str(), admin["port_value"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(EDGE_ADMIN_PORT))),
        "Envoy's admin interface stays on loopback: {admin}"
    );
    for (name, port) in edge_upstreams() {
        let cluster = resources["clusters"]
            .as_array()
            .and_then(|clusters| clusters.iter().find(|c| c["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{EDGE_MESH} has no cluster {name}"));
        let endpoints: Vec<(Option<&str>, Option<u64>)> = cluster["load_assignment"]["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["lb_endpoints"].as_array().into_iter().flatten())
            .map(|e| {
                let address = &e["endpoint"]["address"]["socket_address"];
                (address["address"].as_str(), address["port_value"].as_u64())
            })
            .collect();
        assert_eq!(
            endpoints,
            vec![(Some(UPSTREAM_HOST), Some(u64::from(port)))],
            "cluster {name} must be the edge sidecar's upstream {UPSTREAM_HOST}:{port} \
             ({UPSTREAMS_DOC})"
        );
    }
}

#[test]
fn edge_mesh_config_is_the_rendered_template_on_the_sidecar_upstreams_and_envoy_accepts_it() {
    let expected = mesh_config(IMAGE_DESCRIPTOR, IMAGE_WASM);
    let path = workspace_root().join(EDGE_MESH);
    let job_path = workspace_root().join(NOMAD_JOB);
    if std::env::var_os(REGENERATE_ENV).is_some() {
        std::fs::write(&path, &expected)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        let job = read(NOMAD_JOB);
        let (start, end) =
            nomad_heredoc(&job).unwrap_or_else(|| panic!("{NOMAD_JOB} has no <<{HEREDOC} heredoc"));
        let job = format!("{}{expected}{}", &job[..start], &job[end..]);
        std::fs::write(&job_path, job)
            .unwrap_or_else(|err| panic!("writing {}: {err}", job_path.display()));
    }
    let actual = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}; {REGENERATE_HINT}", path.display()));
    assert!(
        actual == expected,
        "{EDGE_MESH} is not {EDGE_TEMPLATE} rendered for the mesh; {REGENERATE_HINT}"
    );
    // Nomad's template and HCL's heredoc would expand these.
    for marker in ["{{", "${", "%{"] {
        assert!(
            !expected.contains(marker),
            "{EDGE_MESH} contains {marker:?}, which the Nomad job's template would expand"
        );
    }
    let job = read(NOMAD_JOB);
    let embedded = nomad_heredoc(&job).map(|(start, end)| &job[start..end]);
    assert!(
        embedded == Some(expected.as_str()),
        "the edge task's <<{HEREDOC} template in {NOMAD_JOB} is not {EDGE_MESH} word for \
         word; {REGENERATE_HINT}"
    );
    let config: Value = serde_yaml_ng::from_str(&actual)
        .unwrap_or_else(|err| panic!("{EDGE_MESH} is not YAML: {err}"));
    check_clusters(&config);
    super::validate_image_config_with_envoy(EDGE_MESH, &expected, mesh_config);
}
