//! Envoy configurations rendered from the templates in `xtask/bench/edge/`, one per case,
//! and checked with `envoy --mode validate` before they are used.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use bulwark_e2e::{fill_block, fill_placeholders, workspace_root};
use serde_json::{Value, json};
use tokio::process::Command;

use super::cases::{Case, Filters, Route};
use super::{AUDIENCE, ISSUER, TOKEN_CACHE_SIZE};

const JWKS_PATH: &str = "/.well-known/jwks.json";

pub fn templates_dir() -> PathBuf {
    workspace_root().join("xtask/bench/edge")
}

fn template(name: &str) -> anyhow::Result<String> {
    let path = templates_dir().join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `text` (the template `name`, or made from it) with every `{{NAME}}` filled; one left
/// over is an error.
fn fill(name: &str, text: &str, values: &[(&str, String)]) -> anyhow::Result<String> {
    fill_placeholders(&format!("xtask/bench/edge/{name}"), text, values)
}

/// Ports and paths one Envoy configuration needs.
#[derive(Debug, Clone)]
pub struct Site {
    pub listen_port: u16,
    pub admin_port: u16,
    pub jwks_port: u16,
    pub ratelimit_port: u16,
    pub wasm: PathBuf,
}

/// The gateway filter's configuration; with a domain, a per-user limit in it.
fn gateway_plugin_config(rate_limit_domain: Option<&str>) -> Value {
    let mut config = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "token_cache_size": TOKEN_CACHE_SIZE,
        "jwks": { "cluster": "jwks", "authority": "jwks", "path": JWKS_PATH },
    });
    if let Some(domain) = rate_limit_domain {
        // Like the native filter in this benchmark: failures refused, so none passes unseen.
        // Whether the limit is leased or decided per request is the service's answer
        // (its lease threshold); the filter's configuration is the same.
        config["rate_limit"] = json!({
            "cluster": "ratelimit",
            "domain": domain,
            "timeout_ms": 500,
            "client_ip_routes": [],
            "per_user": { "enabled": true, "failure_mode": "closed" },
        });
    }
    config
}

fn jwt_authn_filter(site: &Site, cache: bool) -> anyhow::Result<String> {
    let cache_config = if cache {
        format!("jwt_cache_config: {{ jwt_cache_size: {TOKEN_CACHE_SIZE} }}")
    } else {
        "# no jwt_cache_config: every token is verified".to_owned()
    };
    let name = "jwt_authn.yaml";
    let text = fill_block(&template(name)?, "JWT_CACHE_CONFIG", &cache_config);
    fill(
        name,
        &text,
        &[
            ("ISSUER", ISSUER.to_owned()),
            ("AUDIENCE", AUDIENCE.to_owned()),
            ("JWKS_PORT", site.jwks_port.to_string()),
        ],
    )
}

/// The Wasm filter of `site` (the gateway filter, or another build in its place) with
/// the gateway filter's configuration; with a domain, rate-limited per user.
pub fn gateway_filter(site: &Site, rate_limit_domain: Option<&str>) -> anyhow::Result<String> {
    let plugin = gateway_plugin_config(rate_limit_domain).to_string();
    ensure!(
        !plugin.contains('\''),
        "the plugin configuration sits in a single-quoted YAML scalar"
    );
    let name = "gateway_filter.yaml";
    fill(
        name,
        &template(name)?,
        &[
            ("PLUGIN_CONFIG", plugin),
            ("WASM", site.wasm.display().to_string()),
        ],
    )
}

pub fn render(case: &Case, site: &Site) -> anyhow::Result<String> {
    let mut filters = Vec::new();
    ensure!(
        case.route == Route::Routed || !matches!(case.filters, Filters::JwtAuthnRateLimited(_)),
        "case {}: Envoy's ratelimit filter does nothing on a direct-response route",
        case.key
    );
    match case.filters {
        Filters::None => {}
        Filters::JwtAuthn { cache } => filters.push(jwt_authn_filter(site, cache)?),
        Filters::Gateway => filters.push(gateway_filter(site, None)?),
        Filters::GatewayRateLimited(limit) => {
            filters.push(gateway_filter(site, Some(limit.domain()))?);
        }
        Filters::JwtAuthnRateLimited(limit) => {
            filters.push(jwt_authn_filter(site, true)?);
            let name = "ratelimit.yaml";
            filters.push(fill(
                name,
                &template(name)?,
                &[("RATELIMIT_DOMAIN", limit.domain().to_owned())],
            )?);
        }
    }
    render_with_filters(filters, case.route, site)
}

/// The Envoy configuration of `site` with `filters` (filled HTTP filter entries, in
/// order) on `route`; a routed request is answered by the local responder after them.
pub fn render_with_filters(
    mut filters: Vec<String>,
    route: Route,
    site: &Site,
) -> anyhow::Result<String> {
    let route = match route {
        Route::Direct => template("route_direct.yaml")?,
        Route::Routed => {
            filters.push(template("local_responder.yaml")?);
            template("route_routed.yaml")?
        }
    };
    let name = "envoy.yaml";
    let config = fill_block(&template(name)?, "ROUTE", &route);
    let config = fill_block(&config, "HTTP_FILTERS", &filters.join(""));
    fill(
        name,
        &config,
        &[
            ("LISTEN_PORT", site.listen_port.to_string()),
            ("ADMIN_PORT", site.admin_port.to_string()),
            ("JWKS_PORT", site.jwks_port.to_string()),
            ("RATELIMIT_PORT", site.ratelimit_port.to_string()),
        ],
    )
}

pub async fn validate_envoy(envoy: &Path, config: &Path) -> anyhow::Result<()> {
    let output = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "error",
            "-c",
        ])
        .arg(config)
        .output()
        .await
        .context("running envoy --mode validate")?;
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "Envoy refuses {} (`envoy --mode validate`):\n{}",
            config.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        );
    }
    Ok(())
}
