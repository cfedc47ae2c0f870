//! `deploy/compose/envoy-compose.yaml`: `envoy/edge.yaml` rendered for Compose, kept
//! identical to a fresh rendering and accepted by the real Envoy.

use bulwark_e2e::{fill_placeholders, workspace_root};
use serde_json::Value;

use super::{
    EDGE_ADMIN_PORT, EDGE_PORT, EVERY, IMAGE_DESCRIPTOR, IMAGE_DIR, IMAGE_WASM, read, spec,
};

const COMPOSE_ENVOY: &str = "deploy/compose/envoy-compose.yaml";
const EDGE_TEMPLATE: &str = "envoy/edge.yaml";
const REGENERATE_ENV: &str = "BULWARK_REGENERATE";
const REGENERATE_HINT: &str = "regenerate it with \
     `BULWARK_REGENERATE=1 cargo nextest run -p bulwark-e2e -E 'test(/deploy_files::/)'`";

/// Fills every `{{NAME}}` of the edge template; a placeholder left over fails the test.
fn render(template: &str, values: &[(String, String)]) -> String {
    fill_placeholders(EDGE_TEMPLATE, template, values).unwrap_or_else(|e| {
        panic!(
            "{e:#}: the Compose rendering does not fill it (add it to compose_values in {})",
            file!()
        )
    })
}

/// The template's values for Compose: the services by host name on their default
/// ports, host-name discovery, the listener on every interface, the image's files.
fn compose_values(descriptor: &str, wasm: &str) -> Vec<(String, String)> {
    let upstreams = EVERY
        .into_iter()
        .map(|name| (name.to_owned(), name.to_owned(), spec(name).grpc));
    super::image_edge_values("STRICT_DNS", descriptor, wasm, upstreams)
}

fn compose_config(descriptor: &str, wasm: &str) -> String {
    format!(
        "# GENERATED from {EDGE_TEMPLATE} for deploy/compose/compose.yaml; do not edit. After\n\
         # changing the template, {REGENERATE_HINT}.\n\
         # Upstreams are the Compose services by host name (STRICT_DNS); the descriptor and\n\
         # the Wasm filter are in the edge image under {IMAGE_DIR} (deploy/docker/Dockerfile).\n{}",
        render(&read(EDGE_TEMPLATE), &compose_values(descriptor, wasm))
    )
}

/// The first line where `actual` and `expected` differ, for a readable failure.
fn first_difference(actual: &str, expected: &str) -> String {
    let (mut actual_lines, mut expected_lines) = (actual.lines(), expected.lines());
    for number in 1.. {
        match (actual_lines.next(), expected_lines.next()) {
            (None, None) => break,
            (a, e) if a == e => {}
            (a, e) => return format!("line {number}: the file has {a:?}, the rendering {e:?}"),
        }
    }
    "only the trailing newline differs".to_owned()
}

/// What the values must come out as, whatever the template does with them.
fn check_addresses(config: &Value) {
    let resources = &config["static_resources"];
    let listener = &resources["listeners"][0]["address"]["socket_address"];
    assert_eq!(
        (
            listener["address"].as_str(),
            listener["port_value"].as_u64()
        ),
        (Some("0.0.0.0"), Some(u64::from(EDGE_PORT))),
        "the Compose edge must listen on 0.0.0.0:{EDGE_PORT} to be published: {listener}"
    );
    let admin = &config["admin"]["address"]["socket_address"];
    assert_eq!(
        (admin["address"].as_str(), admin["port_value"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(EDGE_ADMIN_PORT))),
        "the admin interface stays on loopback inside the container: {admin}"
    );
    for name in EVERY {
        let cluster = resources["clusters"]
            .as_array()
            .and_then(|clusters| clusters.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("{COMPOSE_ENVOY} has no cluster {name}"));
        let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"];
        assert_eq!(
            (
                cluster["type"].as_str(),
                endpoint["address"].as_str(),
                endpoint["port_value"].as_u64()
            ),
            (
                Some("STRICT_DNS"),
                Some(name),
                Some(u64::from(spec(name).grpc))
            ),
            "cluster {name} must resolve the Compose host name {name} on its gRPC port"
        );
    }
}

#[test]
fn compose_edge_config_is_the_rendered_template_and_envoy_accepts_it() {
    let expected = compose_config(IMAGE_DESCRIPTOR, IMAGE_WASM);
    let path = workspace_root().join(COMPOSE_ENVOY);
    if std::env::var_os(REGENERATE_ENV).is_some() {
        std::fs::write(&path, &expected)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }
    let actual = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}; {REGENERATE_HINT}", path.display()));
    assert!(
        actual == expected,
        "{COMPOSE_ENVOY} is not {EDGE_TEMPLATE} rendered for Compose ({}); {REGENERATE_HINT}",
        first_difference(&actual, &expected)
    );
    let config: Value = serde_yaml_ng::from_str(&actual)
        .unwrap_or_else(|err| panic!("{COMPOSE_ENVOY} is not YAML: {err}"));
    check_addresses(&config);
    super::validate_image_config_with_envoy(COMPOSE_ENVOY, &expected, compose_config);
}
