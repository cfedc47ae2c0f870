//! Layered configuration: built-in defaults, then an optional TOML file, then `BULWARK_*`
//! environment variables, validated once at start.
//!
//! Environment keys use `__` between sections: `BULWARK_GRPC__LISTEN=127.0.0.1:50051`
//! sets `grpc.listen`. `BULWARK_CONFIG` names the TOML file. A service reads its own
//! section from the same layers with [`Settings::section`].

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ServiceSpec;

/// Environment variable naming the optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "BULWARK_CONFIG";
const ENV_PREFIX: &str = "BULWARK_";

/// A configuration problem, always naming the key and why it was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe_load_error(.0))]
    Load(Box<figment::Error>),
    #[error("configuration key `{key}` is invalid: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration file {path} (from {CONFIG_FILE_ENV}) does not exist")]
    MissingFile { path: PathBuf },
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        Self::Load(Box::new(error))
    }
}

/// `configuration key `grpc.listen` is invalid: <why> (set by BULWARK_GRPC__LISTEN)`.
fn describe_load_error(error: &figment::Error) -> String {
    let mut lines = Vec::new();
    for error in error.clone() {
        let key = error.path.join(".").to_lowercase();
        let source = match &error.metadata {
            Some(metadata) if metadata.name.contains("environment") => format!(
                " (set by {ENV_PREFIX}{})",
                error.path.join("__").to_uppercase()
            ),
            Some(metadata) => match &metadata.source {
                Some(source) => format!(" (set in {source})"),
                None => format!(" (set by {})", metadata.name),
            },
            None => String::new(),
        };
        if key.is_empty() {
            lines.push(format!("configuration is invalid: {}{source}", error.kind));
        } else {
            lines.push(format!(
                "configuration key `{key}` is invalid: {}{source}",
                error.kind
            ));
        }
    }
    lines.join("; ")
}

/// `extract_inner(section)` reports a key as `inner.section`; this puts the section first
/// again (`section.inner`), so the key and its variable are named as they are set.
fn section_first(section: &str, error: figment::Error) -> figment::Error {
    let prefix: Vec<String> = section
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut errors = error.into_iter().map(|mut e| {
        if e.path.len() > prefix.len() && e.path.ends_with(&prefix) {
            e.path.rotate_right(prefix.len());
        }
        e
    });
    match errors.next() {
        Some(first) => errors.fold(first, figment::Error::chain),
        None => figment::Error::from(format!("section `{section}` is invalid")),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The kernel's configuration, shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelConfig {
    pub service: ServiceConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub sentry: SentryConfig,
    pub faults: FaultsConfig,
    pub clients: ClientsConfig,
    pub tokens: TokensConfig,
    pub consul: crate::consul::ConsulConfig,
    #[serde(default)]
    pub service_account: ServiceAccountConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Name used in logs, metrics, traces and error reports.
    pub name: String,
    /// Deployment environment (`local`, `staging`, `production`, ...).
    pub environment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// Deadline for one RPC on the server side.
    pub request_timeout_ms: u64,
    /// In-flight RPCs across all connections; excess calls wait.
    pub concurrency_limit: usize,
    /// Largest encoded request or response message.
    pub max_message_bytes: usize,
    /// After SIGTERM, how long the service keeps serving while it reports not ready
    /// and NOT_SERVING, so that balancers (Envoy's health checks, 1 s apart, two
    /// failures to take a replica out) stop sending before it stops accepting.
    pub drain_delay_ms: u64,
    /// How long in-flight calls may run on after SIGTERM before they are cut.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpConfig {
    /// Admin HTTP listener: `/healthz`, `/ready`, `/metrics`.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// The schema owner's URL, read only by `bulwark-<svc> migrate`, which applies the
    /// migrations and grants the runtime role (the user of `url`) what the service's
    /// code needs. The running service never uses it: leave it out of its environment.
    #[serde(
        default,
        serialize_with = "serialize_optional_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner_url: Option<SecretString>,
    /// The service's own schema; every connection's `search_path` is bound to it.
    pub schema: String,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisConfig {
    /// `redis://host:port/db`; unset means the service does not use Redis.
    #[serde(serialize_with = "serialize_optional_secret")]
    pub url: Option<SecretString>,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// A `tracing` filter directive such as `info` or `info,bulwark_kernel=debug`.
    /// `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// OTLP/gRPC collector endpoint (`http://127.0.0.1:4317`); unset disables export.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentryConfig {
    /// Sentry DSN; unset keeps error reports in the logs only.
    #[serde(serialize_with = "serialize_optional_secret")]
    pub dsn: Option<SecretString>,
}

/// Chaos-testing knobs. Off by default; never set them in production.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultsConfig {
    /// Full gRPC path (`/pkg.Service/Method`) whose handler panics on every call.
    pub panic_rpc: Option<String>,
}

/// What every service checks on a bearer token (Auth issues them with these values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokensConfig {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// How often the cached JWKS is refreshed from Auth.
    pub jwks_refresh_seconds: u64,
}

/// This service's own OAuth 2.0 client (a service account): the typed clients obtain
/// tokens for it from Auth and send them on every call to another service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceAccountConfig {
    pub client_id: Option<String>,
    #[serde(serialize_with = "serialize_optional_secret", default)]
    pub client_secret: Option<SecretString>,
}

/// Shortest service-account secret accepted: secrets are random, not chosen by people.
pub const MIN_CLIENT_SECRET_CHARS: usize = 32;

/// Where the other core services are, for the typed clients: each one endpoint, or its
/// replicas separated by commas (not with Consul, whose sidecar upstream balances).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientsConfig {
    pub identity: Option<String>,
    pub auth: Option<String>,
    pub authz: Option<String>,
    pub audit: Option<String>,
    /// Deadline of one outgoing call (per attempt).
    pub timeout_ms: u64,
    /// Extra attempts for idempotent calls that fail with UNAVAILABLE (each on the next
    /// replica when an endpoint lists several).
    pub retries: u32,
}

fn serialize_secret<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

fn serialize_optional_secret<S: serde::Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl KernelConfig {
    /// The built-in defaults for one service.
    pub fn defaults(spec: &ServiceSpec) -> Self {
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            service: ServiceConfig {
                name: spec.name.to_owned(),
                environment: "local".to_owned(),
            },
            grpc: GrpcConfig {
                listen: local(spec.default_grpc_port),
                request_timeout_ms: 10_000,
                concurrency_limit: 512,
                max_message_bytes: 1024 * 1024,
                drain_delay_ms: 3_000,
                shutdown_grace_ms: 10_000,
            },
            http: HttpConfig {
                listen: local(spec.default_http_port),
            },
            database: DatabaseConfig {
                url: SecretString::from(format!(
                    "postgres://{name}_svc:{name}_svc@127.0.0.1:5432/bulwark",
                    name = spec.name
                )),
                owner_url: None,
                schema: spec.name.to_owned(),
                max_connections: 10,
                connect_timeout_ms: 2_000,
            },
            redis: RedisConfig {
                url: None,
                max_connections: 16,
            },
            telemetry: TelemetryConfig {
                log_format: LogFormat::Json,
                log_level: "info".to_owned(),
                otlp_endpoint: None,
            },
            sentry: SentryConfig { dsn: None },
            faults: FaultsConfig::default(),
            clients: ClientsConfig {
                identity: Some("http://127.0.0.1:50051".to_owned()),
                auth: Some("http://127.0.0.1:50052".to_owned()),
                authz: Some("http://127.0.0.1:50053".to_owned()),
                audit: Some("http://127.0.0.1:50054".to_owned()),
                timeout_ms: 2_000,
                retries: 2,
            },
            tokens: TokensConfig {
                issuer: "bulwark".to_owned(),
                audience: "bulwark-api".to_owned(),
                leeway_seconds: 30,
                jwks_refresh_seconds: 300,
            },
            consul: crate::consul::ConsulConfig::default(),
            service_account: ServiceAccountConfig::default(),
        }
    }

    /// Refuses values that would only fail later, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service.name.trim().is_empty() {
            return Err(invalid("service.name", "must not be empty"));
        }
        self.service_account.validate()?;
        if self.grpc.listen == self.http.listen {
            return Err(invalid(
                "http.listen",
                format!("must differ from grpc.listen ({})", self.grpc.listen),
            ));
        }
        positive("grpc.request_timeout_ms", self.grpc.request_timeout_ms)?;
        positive("grpc.concurrency_limit", self.grpc.concurrency_limit as u64)?;
        if self.grpc.max_message_bytes < 1024 {
            return Err(invalid("grpc.max_message_bytes", "must be at least 1024"));
        }
        let urls = [
            ("database.url", Some(&self.database.url)),
            ("database.owner_url", self.database.owner_url.as_ref()),
        ];
        for (key, url) in urls {
            let Some(url) = url.map(ExposeSecret::expose_secret) else {
                continue;
            };
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(key, "must start with postgres:// or postgresql://"));
            }
        }
        validate_identifier("database.schema", &self.database.schema)?;
        positive(
            "database.max_connections",
            self.database.max_connections.into(),
        )?;
        positive(
            "database.connect_timeout_ms",
            self.database.connect_timeout_ms,
        )?;
        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "redis.url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        positive("redis.max_connections", self.redis.max_connections.into())?;
        tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level)
            .map_err(|e| invalid("telemetry.log_level", e.to_string()))?;
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            validate_http_url("telemetry.otlp_endpoint", endpoint)?;
        }
        if let Some(dsn) = &self.sentry.dsn {
            dsn.expose_secret()
                .parse::<sentry::types::Dsn>()
                .map_err(|e| invalid("sentry.dsn", e.to_string()))?;
        }
        if let Some(path) = &self.faults.panic_rpc
            && (!path.starts_with('/') || path.matches('/').count() != 2)
        {
            return Err(invalid(
                "faults.panic_rpc",
                "must be a gRPC path like /bulwark.identity.v1.IdentityService/GetUser",
            ));
        }
        for (key, endpoint) in [
            ("clients.identity", &self.clients.identity),
            ("clients.auth", &self.clients.auth),
            ("clients.authz", &self.clients.authz),
            ("clients.audit", &self.clients.audit),
        ] {
            if let Some(endpoint) = endpoint {
                let replicas: Vec<&str> = crate::clients::endpoint_list(endpoint).collect();
                if replicas.is_empty() {
                    return Err(invalid(key, "lists no endpoint"));
                }
                for replica in &replicas {
                    validate_http_url(key, replica)?;
                }
                // Registered with Consul, a client is one sidecar upstream, which balances
                // over the replicas itself.
                if self.consul.address.is_some() && replicas.len() > 1 {
                    return Err(invalid(
                        key,
                        "lists several replicas, but with Consul a client calls its one sidecar \
                         upstream, which balances over the replicas (consul/README.md)",
                    ));
                }
                // Registered with Consul, a loopback client is a sidecar upstream; one
                // in the agent's sidecar range collides with some sidecar's listener.
                if self.consul.address.is_some()
                    && let Some(port) = crate::consul::loopback_port(endpoint)
                    && crate::consul::AGENT_SIDECAR_PORTS.contains(&port)
                {
                    return Err(invalid(
                        key,
                        format!(
                            "port {port} lies in the Consul agent's sidecar range 21000-21255; \
                             bind the upstream elsewhere (consul/README.md)"
                        ),
                    ));
                }
            }
        }
        positive("clients.timeout_ms", self.clients.timeout_ms)?;
        if self.tokens.issuer.is_empty() {
            return Err(invalid("tokens.issuer", "must not be empty"));
        }
        if self.tokens.audience.is_empty() {
            return Err(invalid("tokens.audience", "must not be empty"));
        }
        if self.tokens.leeway_seconds > 300 {
            return Err(invalid("tokens.leeway_seconds", "must be at most 300"));
        }
        positive(
            "tokens.jwks_refresh_seconds",
            self.tokens.jwks_refresh_seconds,
        )?;
        Ok(())
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

fn validate_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| invalid(key, format!("`{value}` is not a URL: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(invalid(
            key,
            format!("`{value}` must be an http:// or https:// URL with a host"),
        )),
    }
}

/// Postgres identifiers we create and quote ourselves: lowercase, digits, underscore.
fn validate_identifier(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || value.len() > 63 {
        return Err(invalid(
            key,
            format!("`{value}` must match [a-z_][a-z0-9_]* and be at most 63 characters"),
        ));
    }
    Ok(())
}

/// All configuration layers of one process; the kernel's part is extracted and
/// validated, and services pull their own sections from the same layers.
#[derive(Debug, Clone)]
pub struct Settings {
    figment: Figment,
    pub kernel: KernelConfig,
}

impl Settings {
    /// Loads defaults → `BULWARK_CONFIG` file → `BULWARK_*` environment.
    pub fn load(spec: &ServiceSpec) -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        Self::load_from(spec, file.as_deref(), Env::prefixed(ENV_PREFIX))
    }

    fn load_from(
        spec: &ServiceSpec,
        file: Option<&std::path::Path>,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(KernelConfig::defaults(spec)));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile {
                    path: path.to_owned(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env.split("__").ignore(&["config"]));
        let kernel: KernelConfig = figment.extract()?;
        kernel.validate()?;
        Ok(Self { figment, kernel })
    }

    /// Settings from an already built kernel configuration plus dotted service keys;
    /// for tests and embedding, where there is no file or environment to read.
    pub fn from_parts(kernel: KernelConfig, values: &[(&str, serde_json::Value)]) -> Self {
        let mut figment = Figment::from(Serialized::defaults(&kernel));
        for (key, value) in values {
            figment = figment.merge(Serialized::default(key, value));
        }
        Self { figment, kernel }
    }

    /// A service's own section (`[auth]` in the file, `BULWARK_AUTH__*` in the
    /// environment), falling back to `T::default()` for keys that are not set.
    pub fn section<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        // The defaults go under `name` and the loaded layers on top, so a bad value is
        // reported with its full key (`auth.x`) and the variable or file that set it.
        let figment =
            Figment::from(Serialized::default(name, T::default())).merge(self.figment.clone());
        figment
            .extract_inner(name)
            .map_err(|e| ConfigError::from(section_first(name, e)))
    }

    /// A single top-level key (`BULWARK_ADMIN_EMAIL` is `admin_email`), if set.
    pub fn value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.figment.find_value(key) {
            Ok(value) => value
                .deserialize()
                .map(Some)
                .map_err(|e: figment::Error| ConfigError::from(e.with_path(key))),
            Err(_) => Ok(None),
        }
    }
}

impl ServiceAccountConfig {
    /// Both halves or neither; a secret long enough to be random.
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.client_id, &self.client_secret) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(invalid(
                "service_account.client_secret",
                "is required when service_account.client_id is set",
            )),
            (None, Some(_)) => Err(invalid(
                "service_account.client_id",
                "is required when service_account.client_secret is set",
            )),
            (Some(id), Some(secret)) => {
                if id.trim().is_empty() || id.len() > 128 || id.contains(':') {
                    return Err(invalid(
                        "service_account.client_id",
                        "must be 1 to 128 characters without `:`",
                    ));
                }
                if secret.expose_secret().chars().count() < MIN_CLIENT_SECRET_CHARS {
                    return Err(invalid(
                        "service_account.client_secret",
                        format!("must be at least {MIN_CLIENT_SECRET_CHARS} characters"),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail API fixes the error type"
)]
mod tests {
    use super::*;

    const SPEC: ServiceSpec = ServiceSpec::new("identity", 50051, 9101);

    fn load(
        file: Option<&std::path::Path>,
        vars: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        // A unique prefix per call keeps parallel tests from seeing each other's variables.
        let prefix = format!("BWTEST{}_", uuid::Uuid::new_v4().simple());
        let env = Env::prefixed(&prefix);
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), (*v).to_owned()))
            .collect();
        // Jail serialises environment changes and restores them afterwards.
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            for (k, v) in &vars {
                jail.set_env(k, v);
            }
            result = Some(Settings::load_from(&SPEC, file, env.clone()));
            Ok(())
        });
        result.unwrap_or_else(|| panic!("jail did not run"))
    }

    fn error_text(result: Result<Settings, ConfigError>) -> String {
        match result {
            Ok(_) => panic!("expected a configuration error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid_and_follow_the_spec() {
        let settings = load(None, &[]).unwrap_or_else(|e| panic!("defaults refused: {e}"));
        assert_eq!(settings.kernel.service.name, "identity");
        assert_eq!(settings.kernel.grpc.listen.port(), 50051);
        assert_eq!(settings.kernel.http.listen.port(), 9101);
        assert_eq!(settings.kernel.database.schema, "identity");
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("bulwark.toml");
        std::fs::write(
            &path,
            "[grpc]\nlisten = \"127.0.0.1:6000\"\n[http]\nlisten = \"127.0.0.1:6001\"\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        let settings = load(Some(&path), &[("HTTP__LISTEN", "127.0.0.1:7001")])
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(settings.kernel.grpc.listen.port(), 6000, "file value lost");
        assert_eq!(settings.kernel.http.listen.port(), 7001, "env did not win");
    }

    #[test]
    fn bad_value_names_the_key_and_the_variable() {
        let text = error_text(load(None, &[("GRPC__LISTEN", "not-an-address")]));
        assert!(text.contains("grpc.listen"), "key not named: {text}");
    }

    #[test]
    fn invalid_schema_is_refused_with_its_rule() {
        let text = error_text(load(None, &[("DATABASE__SCHEMA", "Robert'); DROP")]));
        assert!(text.contains("database.schema"), "key not named: {text}");
        assert!(text.contains("[a-z_]"), "rule not named: {text}");
    }

    #[test]
    fn same_grpc_and_http_address_is_refused() {
        let text = error_text(load(
            None,
            &[
                ("GRPC__LISTEN", "127.0.0.1:7000"),
                ("HTTP__LISTEN", "127.0.0.1:7000"),
            ],
        ));
        assert!(text.contains("http.listen"), "key not named: {text}");
    }

    #[test]
    fn zero_timeouts_and_bad_urls_are_refused() {
        for (var, value, key) in [
            ("GRPC__REQUEST_TIMEOUT_MS", "0", "grpc.request_timeout_ms"),
            ("DATABASE__URL", "mysql://x", "database.url"),
            ("REDIS__URL", "http://x", "redis.url"),
            (
                "TELEMETRY__OTLP_ENDPOINT",
                "localhost:4317",
                "telemetry.otlp_endpoint",
            ),
            ("TELEMETRY__LOG_LEVEL", "info,=[", "telemetry.log_level"),
            ("SENTRY__DSN", "not a dsn", "sentry.dsn"),
            ("FAULTS__PANIC_RPC", "GetUser", "faults.panic_rpc"),
            ("CLIENTS__AUTH", "ftp://x", "clients.auth"),
            (
                "CLIENTS__AUTH",
                "http://127.0.0.1:1,ftp://x",
                "clients.auth",
            ),
            ("CLIENTS__AUTHZ", " , ", "clients.authz"),
        ] {
            let text = error_text(load(None, &[(var, value)]));
            assert!(
                text.contains(key),
                "{var}={value}: key {key} not named in: {text}"
            );
        }
    }

    #[test]
    fn a_client_lists_replicas_without_consul_and_one_upstream_with_it() {
        let replicas = (
            "CLIENTS__IDENTITY",
            "http://127.0.0.1:1, http://127.0.0.1:2",
        );
        assert!(load(None, &[replicas]).is_ok());
        let text = error_text(load(
            None,
            &[replicas, ("CONSUL__ADDRESS", "http://127.0.0.1:8500")],
        ));
        assert!(
            text.contains("clients.identity") && text.contains("sidecar"),
            "a list of replicas with Consul was not refused: {text}"
        );
    }

    #[test]
    fn with_consul_a_client_upstream_in_the_agents_sidecar_range_is_refused() {
        let consul = ("CONSUL__ADDRESS", "http://127.0.0.1:8500");
        let text = error_text(load(
            None,
            &[consul, ("CLIENTS__AUTH", "http://127.0.0.1:21052")],
        ));
        assert!(
            text.contains("clients.auth") && text.contains("21000-21255"),
            "an upstream port in the sidecar range was not refused: {text}"
        );
        assert!(load(None, &[consul, ("CLIENTS__AUTH", "http://127.0.0.1:18152")]).is_ok());
        // Without Consul the port is an ordinary one.
        assert!(load(None, &[("CLIENTS__AUTH", "http://127.0.0.1:21052")]).is_ok());
    }

    #[test]
    fn missing_config_file_is_named() {
        let text = error_text(load(Some(std::path::Path::new("/nonexistent/b.toml")), &[]));
        assert!(
            text.contains("/nonexistent/b.toml"),
            "path not named: {text}"
        );
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct AuthSection {
        token_ttl_seconds: u64,
        issuer: String,
    }

    #[test]
    fn bad_value_in_a_service_section_names_its_full_key_and_variable() {
        let settings = load(None, &[("AUTH__TOKEN_TTL_SECONDS", "-1")])
            .unwrap_or_else(|e| panic!("refused: {e}"));
        let text = settings
            .section::<AuthSection>("auth")
            .map(|_| ())
            .map_err(|e| e.to_string())
            .expect_err("a negative u64 must be refused");
        assert!(
            text.contains("`auth.token_ttl_seconds`")
                && text.contains("BULWARK_AUTH__TOKEN_TTL_SECONDS"),
            "key or variable not named: {text}"
        );
    }

    #[test]
    fn service_sections_read_the_same_layers() {
        let settings = load(
            None,
            &[("AUTH__TOKEN_TTL_SECONDS", "900"), ("ADMIN_EMAIL", "a@b.c")],
        )
        .unwrap_or_else(|e| panic!("refused: {e}"));
        let auth: AuthSection = settings
            .section("auth")
            .unwrap_or_else(|e| panic!("section: {e}"));
        assert_eq!(auth.token_ttl_seconds, 900);
        assert_eq!(auth.issuer, "", "unset key should take the default");
        let email: Option<String> = settings
            .value("admin_email")
            .unwrap_or_else(|e| panic!("value: {e}"));
        assert_eq!(email.as_deref(), Some("a@b.c"));
        let absent: Option<String> = settings
            .value("nothing_here")
            .unwrap_or_else(|e| panic!("value: {e}"));
        assert_eq!(absent, None);
    }
}
