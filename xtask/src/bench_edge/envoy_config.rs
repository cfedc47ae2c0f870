//! Envoy configurations rendered from the templates in `xtask/bench/edge/`, one per case,
//! and checked with `envoy --mode validate` before they are used.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use tokio::process::Command;

use super::cases::{Case, Filters, Limit, Route};
use super::tools::workspace_root;
use super::{AUDIENCE, ISSUER, TOKEN_CACHE_SIZE};

const JWKS_PATH: &str = "/.well-known/jwks.json";

pub fn templates_dir() -> PathBuf {
    workspace_root().join("xtask/bench/edge")
}

fn template(name: &str) -> anyhow::Result<String> {
    let path = templates_dir().join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces a placeholder that stands alone on its line with `block`, each line indented
/// like the placeholder.
fn fill_block(text: &str, name: &str, block: &str) -> String {
    let marker = format!("{{{{{name}}}}}");
    let mut out = String::with_capacity(text.len() + block.len());
    for line in text.lines() {
        if line.trim() == marker {
            let indent = &line[..line.len() - line.trim_start().len()];
            for block_line in block.lines() {
                if block_line.trim().is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{indent}{block_line}");
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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

fn gateway_plugin_config(limit: Option<Limit>) -> Value {
    let mut config = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "token_cache_size": TOKEN_CACHE_SIZE,
        "jwks": { "cluster": "jwks", "authority": "jwks", "path": JWKS_PATH },
    });
    if let Some(limit) = limit {
        // Like the native filter in this benchmark: failures refused, so none passes unseen.
        // Whether the limit is leased or decided per request is the service's answer
        // (its lease threshold); the filter's configuration is the same.
        config["rate_limit"] = json!({
            "cluster": "ratelimit",
            "domain": limit.domain(),
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
    Ok(fill_block(
        &template("jwt_authn.yaml")?,
        "JWT_CACHE_CONFIG",
        &cache_config,
    )
    .replace("{{ISSUER}}", ISSUER)
    .replace("{{AUDIENCE}}", AUDIENCE)
    .replace("{{JWKS_PORT}}", &site.jwks_port.to_string()))
}

fn gateway_filter(site: &Site, limit: Option<Limit>) -> anyhow::Result<String> {
    let plugin = gateway_plugin_config(limit).to_string();
    ensure!(
        !plugin.contains('\''),
        "the plugin configuration sits in a single-quoted YAML scalar"
    );
    Ok(template("gateway_filter.yaml")?
        .replace("{{PLUGIN_CONFIG}}", &plugin)
        .replace("{{WASM}}", &site.wasm.display().to_string()))
}

pub fn render(case: &Case, site: &Site) -> anyhow::Result<String> {
    let mut filters = Vec::new();
    let routed = case.route == Route::Routed;
    ensure!(
        routed || !matches!(case.filters, Filters::JwtAuthnRateLimited(_)),
        "case {}: Envoy's ratelimit filter does nothing on a direct-response route",
        case.key
    );
    match case.filters {
        Filters::None => {}
        Filters::JwtAuthn { cache } => filters.push(jwt_authn_filter(site, cache)?),
        Filters::Gateway => filters.push(gateway_filter(site, None)?),
        Filters::GatewayRateLimited(limit) => filters.push(gateway_filter(site, Some(limit))?),
        Filters::JwtAuthnRateLimited(limit) => {
            filters.push(jwt_authn_filter(site, true)?);
            filters
                .push(template("ratelimit.yaml")?.replace("{{RATELIMIT_DOMAIN}}", limit.domain()));
        }
    }
    if routed {
        filters.push(template("local_responder.yaml")?);
    }
    let route = template(if routed {
        "route_routed.yaml"
    } else {
        "route_direct.yaml"
    })?;
    let config = fill_block(&template("envoy.yaml")?, "ROUTE", &route);
    let config = fill_block(&config, "HTTP_FILTERS", &filters.join(""))
        .replace("{{LISTEN_PORT}}", &site.listen_port.to_string())
        .replace("{{ADMIN_PORT}}", &site.admin_port.to_string())
        .replace("{{JWKS_PORT}}", &site.jwks_port.to_string())
        .replace("{{RATELIMIT_PORT}}", &site.ratelimit_port.to_string());
    if let Some(at) = config.find("{{") {
        let rest: String = config[at..].chars().take(40).collect();
        bail!("unfilled placeholder in the Envoy configuration: {rest}");
    }
    Ok(config)
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
