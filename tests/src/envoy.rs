//! The Envoy edge, rendered from the same template the local mesh uses
//! (`envoy/edge.yaml`), on free ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::ManagedChild;
use crate::service::ServiceKind;
use crate::template::fill_placeholders;
use crate::workspace::{envoy_binary, gateway_filter_wasm, workspace_root};

/// Origins the tests' Envoy allows for CORS (the mesh's default too).
pub const CORS_ORIGIN_REGEX: &str = r"https?://(localhost|127\.0\.0\.1)(:[0-9]+)?";

/// The gateway filter's budget for a rate-limit call in production (the local mesh,
/// Compose and Nomad render 50 ms): past it the route's failure mode decides.
pub const RATELIMIT_TIMEOUT: Duration = Duration::from_millis(50);

/// Each host's `health_flags` (`healthy`, `/failed_active_hc`, ...) in a cluster of the
/// admin's `/clusters` text (`auth::127.0.0.1:50052::health_flags::healthy`).
pub fn cluster_health_flags<'a>(clusters: &'a str, cluster: &str) -> Vec<&'a str> {
    let prefix = format!("{cluster}::");
    clusters
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("::health_flags::").map(|(_, flags)| flags))
        .collect()
}

/// The gateway filter's counter of successful JWKS fetches.
pub const JWKS_REFRESHES: &str = "wasmcustom.bulwark_gateway.jwks_refreshes";

/// One counter or gauge from the admin `/stats` of the Envoy whose admin listens on
/// `admin_port`, 0 when absent.
pub async fn admin_stat(
    http: &reqwest::Client,
    admin_port: u16,
    name: &str,
) -> anyhow::Result<u64> {
    let text = http
        .get(format!(
            "http://127.0.0.1:{admin_port}/stats?filter=^{name}$"
        ))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    for line in text.lines() {
        if let Some(value) = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            return Ok(value.trim().parse()?);
        }
    }
    Ok(0)
}

/// How to render and run one Envoy of a test's mesh.
#[derive(Debug, Clone)]
pub(crate) struct EnvoyOptions<'a> {
    pub workers: u32,
    /// OTLP/gRPC endpoint to trace every request to.
    pub otlp: Option<&'a str>,
    /// The gateway filter's rate-limit call budget.
    pub ratelimit_timeout: Duration,
}

/// A running Envoy; dropping it kills the process.
#[derive(Debug)]
pub struct Envoy {
    port: u16,
    admin_port: u16,
    config: PathBuf,
    process: ManagedChild,
}

/// Fills every `{{NAME}}` of `envoy/edge.yaml`; a placeholder left over is an error.
pub fn render(template: &str, values: &[(String, String)]) -> anyhow::Result<String> {
    fill_placeholders("envoy/edge.yaml", template, values)
}

/// The template's tracing values: the collector of an `http://host:port` OTLP endpoint and
/// every request sampled, or no sampling (and a collector address nothing listens on).
pub fn tracing_values(otlp: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    let (host, port, sampling) = match otlp {
        None => ("127.0.0.1".to_owned(), "4317".to_owned(), "0"),
        Some(endpoint) => {
            let authority = endpoint
                .strip_prefix("http://")
                .with_context(|| format!("OTLP endpoint {endpoint:?} is not http://host:port"))?
                .trim_end_matches('/');
            let (host, port) = authority
                .rsplit_once(':')
                .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .with_context(|| format!("OTLP endpoint {endpoint:?} is not http://host:port"))?;
            (host.to_owned(), port.to_owned(), "100")
        }
    };
    Ok(vec![
        ("OTLP_HOST".to_owned(), host),
        ("OTLP_PORT".to_owned(), port),
        ("TRACE_SAMPLING".to_owned(), sampling.to_owned()),
    ])
}

/// The template's `<SVC>_ENDPOINTS` value: a YAML flow list of one LbEndpoint per
/// replica address.
pub fn endpoints_value<'a>(replicas: impl IntoIterator<Item = (&'a str, u16)>) -> String {
    let each: Vec<String> = replicas
        .into_iter()
        .map(|(host, port)| {
            format!(
                "{{ endpoint: {{ address: {{ socket_address: {{ address: \"{host}\", port_value: {port} }} }} }} }}"
            )
        })
        .collect();
    format!("[{}]", each.join(", "))
}

/// What one edge's configuration (`envoy/edge.yaml`, listening on 127.0.0.1) is
/// rendered from, for the tests' Envoys and the local mesh's.
#[derive(Debug)]
pub struct EdgeTemplate<'a> {
    pub port: u16,
    pub admin_port: u16,
    /// The API descriptor set the transcoder reads.
    pub descriptor: &'a Path,
    pub cors_origin_regex: &'a str,
    /// The built gateway filter.
    pub wasm: &'a Path,
    /// The OTLP/gRPC collector (`http://host:port`) the edge traces to.
    pub otlp: Option<&'a str>,
    /// The percentage of requests traced when `otlp` is set (100 when `None`).
    pub trace_sampling: Option<&'a str>,
    /// The gateway filter's budget for a rate-limit call.
    pub ratelimit_timeout_ms: u32,
    /// The gRPC ports of each service's replicas.
    pub upstreams: &'a [(ServiceKind, Vec<u16>)],
}

/// `envoy/edge.yaml` filled for `edge`; a placeholder left over is an error.
pub fn render_edge(edge: &EdgeTemplate<'_>) -> anyhow::Result<String> {
    let template_path = workspace_root().join("envoy/edge.yaml");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let mut values = vec![
        ("EDGE_ADDRESS".to_owned(), "127.0.0.1".to_owned()),
        ("EDGE_PORT".to_owned(), edge.port.to_string()),
        ("CLUSTER_TYPE".to_owned(), "STATIC".to_owned()),
        ("ADMIN_PORT".to_owned(), edge.admin_port.to_string()),
        (
            "DESCRIPTOR".to_owned(),
            edge.descriptor.display().to_string(),
        ),
        (
            "CORS_ORIGIN_REGEX".to_owned(),
            edge.cors_origin_regex.to_owned(),
        ),
        ("WASM".to_owned(), edge.wasm.display().to_string()),
    ];
    for (name, value) in tracing_values(edge.otlp)? {
        let value = match (name.as_str(), edge.otlp, edge.trace_sampling) {
            ("TRACE_SAMPLING", Some(_), Some(sampling)) => sampling.to_owned(),
            _ => value,
        };
        values.push((name, value));
    }
    values.push((
        "RATELIMIT_TIMEOUT_MS".to_owned(),
        edge.ratelimit_timeout_ms.to_string(),
    ));
    for (kind, grpc_ports) in edge.upstreams {
        values.push((
            format!("{}_ENDPOINTS", kind.name().to_uppercase()),
            endpoints_value(grpc_ports.iter().map(|port| ("127.0.0.1", *port))),
        ));
    }
    render(&template, &values)
}

impl Envoy {
    /// Renders `envoy/edge.yaml` into `dir` with the gRPC ports of the services' replicas
    /// and starts Envoy with the options' worker threads; with an OTLP endpoint it traces
    /// every request there. A service not started points at a closed port (Envoy answers
    /// 503 for it).
    pub(crate) fn spawn(
        dir: &Path,
        ports: (u16, u16),
        options: &EnvoyOptions<'_>,
        upstreams: &[(ServiceKind, Vec<u16>)],
        descriptor: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let (port, admin_port) = ports;
        let wasm = gateway_filter_wasm()?;
        let rendered = render_edge(&EdgeTemplate {
            port,
            admin_port,
            descriptor,
            cors_origin_regex: CORS_ORIGIN_REGEX,
            wasm: &wasm,
            otlp: options.otlp,
            trace_sampling: None,
            ratelimit_timeout_ms: u32::try_from(options.ratelimit_timeout.as_millis())
                .unwrap_or(u32::MAX),
            upstreams,
        })?;
        let config = dir.join("edge.yaml");
        std::fs::write(&config, rendered)?;
        let mut command = Command::new(envoy_binary()?);
        command
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(options.workers.to_string())
            .args(["-l", "warning"]);
        let process = ManagedChild::spawn("envoy", &mut command, log)?;
        Ok(Self {
            port,
            admin_port,
            config,
            process,
        })
    }

    /// Waits for admin `/ready` = LIVE and the edge's own `/healthz` = 200; fails at once
    /// if Envoy exits.
    pub(crate) async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let admin_ready = self.admin_url("/ready");
        let edge_healthz = self.url("/healthz");
        self.process
            .wait_ready("envoy ready", timeout, || {
                Self::ready_state(http, &admin_ready, &edge_healthz)
            })
            .await
    }

    async fn ready_state(
        http: &reqwest::Client,
        admin_ready: &str,
        edge_healthz: &str,
    ) -> Result<(), String> {
        let admin = http
            .get(admin_ready)
            .send()
            .await
            .map_err(|err| format!("admin /ready: {err}"))?;
        let admin_status = admin.status();
        let body = admin.text().await.unwrap_or_default();
        if admin_status != reqwest::StatusCode::OK || body.trim() != "LIVE" {
            return Err(format!("admin /ready answered {admin_status} {body:?}"));
        }
        let edge = http
            .get(edge_healthz)
            .send()
            .await
            .map_err(|err| format!("edge /healthz: {err}"))?;
        if edge.status() != reqwest::StatusCode::OK {
            return Err(format!("edge /healthz answered {}", edge.status()));
        }
        Ok(())
    }

    /// `http://127.0.0.1:<edge port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The edge port (HTTP/1.1 and HTTP/2 gRPC).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<admin port><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The rendered configuration.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Envoy's log (its own lines and the JSON access log).
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// Envoy's view of a cluster's hosts (admin `/clusters`): each host's
    /// `health_flags` (`healthy`, `/failed_active_hc`, ...).
    pub async fn health_flags(
        &self,
        http: &reqwest::Client,
        cluster: &str,
    ) -> anyhow::Result<Vec<String>> {
        let text = http
            .get(self.admin_url("/clusters"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(cluster_health_flags(&text, cluster)
            .into_iter()
            .map(str::to_owned)
            .collect())
    }

    /// The value of one counter or gauge from the admin `/stats`, 0 when absent.
    pub async fn stat(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<u64> {
        admin_stat(http, self.admin_port, name).await
    }

    /// Waits until the gateway filter has loaded Auth's keys (its first JWKS fetch
    /// succeeded): Envoy reports ready before that, and a fetch that fails at start (Auth's
    /// cluster not yet healthy) is retried after 500 ms, during which every token would be
    /// refused as signed by an unknown key.
    pub(crate) async fn wait_for_keys(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let admin_port = self.admin_port;
        self.process
            .wait_ready("the gateway filter's first JWKS", timeout, || async move {
                match admin_stat(http, admin_port, JWKS_REFRESHES).await {
                    Ok(0) => Err(format!("{JWKS_REFRESHES} is 0")),
                    Ok(_) => Ok(()),
                    Err(err) => Err(format!("{err:#}")),
                }
            })
            .await
    }
}
