//! Consul registration and discovery over the agent's documented HTTP API: the service
//! registers itself with an HTTP check on `/ready` and a Connect sidecar whose upstreams
//! are the services its clients call, and deregisters during shutdown; healthy
//! instances of other services are listed from the health endpoint.
//!
//! The registration follows Consul's service definition
//! (<https://developer.hashicorp.com/consul/docs/services/configuration/services-configuration-reference>)
//! and its sidecar registration
//! (<https://developer.hashicorp.com/consul/docs/connect/proxies/deploy-sidecar-services>):
//! an empty service address makes the agent advertise its node's address, which the
//! sidecar inherits, so that proxies on other nodes can reach it; a loopback address
//! there would make them dial themselves.
//!
//! A thin client on purpose: `rs-consul` registers through the catalog API only (no
//! agent registration with a Connect sidecar) and the `consul` crate is blocking.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How to reach the local Consul agent; unset address means no Consul.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsulConfig {
    /// Agent HTTP address, e.g. `http://127.0.0.1:8500`.
    pub address: Option<String>,
    /// ACL token sent as `X-Consul-Token`.
    #[serde(serialize_with = "serialize_token")]
    pub token: Option<SecretString>,
    /// Address other nodes' proxies dial for this instance's sidecar. Unset, the
    /// registration leaves it empty and the agent uses its node's address; never the
    /// gRPC listen address, which is loopback (only the sidecar reaches the service).
    pub service_address: Option<String>,
}

fn serialize_token<S: serde::Serializer>(
    token: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match token {
        Some(token) => s.serialize_some(token.expose_secret()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("Consul agent at {address}: {source}")]
    Http {
        address: String,
        source: reqwest::Error,
    },
    #[error("Consul agent answered {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// The body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: std::collections::BTreeMap<String, String>,
    pub check: Check,
    pub connect: Connect,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    #[serde(rename = "HTTP")]
    pub http: String,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Connect {
    /// The sidecar the agent registers with the service (its port comes from the
    /// agent's sidecar range, 21000-21255).
    pub sidecar_service: SidecarService,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SidecarService {
    pub proxy: Proxy,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Proxy {
    pub upstreams: Vec<Upstream>,
}

/// A service the sidecar makes reachable on a local port of this node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Upstream {
    pub destination_name: String,
    pub local_bind_address: String,
    pub local_bind_port: u16,
}

/// The ports a Consul agent hands out to sidecars by default (`sidecar_min_port`,
/// `sidecar_max_port`; <https://developer.hashicorp.com/consul/docs/install/ports>):
/// an upstream bound there collides with some sidecar's public listener.
pub const AGENT_SIDECAR_PORTS: std::ops::RangeInclusive<u16> = 21000..=21255;

/// The upstreams of `service`'s sidecar: one for each client it uses (`clients.<name>`,
/// as `(name, endpoint)`) that points at a loopback port, where the sidecar listens
/// for it. A client of the service itself is a call to its own listener, and a client
/// on another host bypasses the mesh; neither is an upstream.
pub fn upstreams<'a>(
    service: &str,
    clients: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Upstream> {
    let mut upstreams: Vec<Upstream> = clients
        .into_iter()
        .filter(|(name, _)| *name != service)
        .filter_map(|(name, endpoint)| {
            let port = loopback_port(endpoint);
            if port.is_none() {
                tracing::warn!(
                    client = name,
                    endpoint,
                    "clients.{name} is not a loopback port of a Connect upstream: its calls \
                     bypass the sidecar"
                );
            }
            Some(Upstream {
                destination_name: name.to_owned(),
                local_bind_address: "127.0.0.1".to_owned(),
                local_bind_port: port?,
            })
        })
        .collect();
    upstreams.sort_by(|a, b| a.destination_name.cmp(&b.destination_name));
    upstreams.dedup();
    upstreams
}

/// The port of an `http://127.0.0.1:<port>` (or `localhost`) endpoint.
pub fn loopback_port(endpoint: &str) -> Option<u16> {
    let authority = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    let (host, port) = authority.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        .then(|| port.parse().ok())
        .flatten()
}

impl Registration {
    /// The registration of one instance: its gRPC port (dialled by its sidecar on
    /// loopback), the address other nodes reach it at (empty: the agent's node
    /// address), `/ready` as its check and a sidecar with `upstreams`.
    pub fn new(
        service: &str,
        grpc: SocketAddr,
        admin: SocketAddr,
        address: Option<&str>,
        upstreams: Vec<Upstream>,
    ) -> Self {
        let address = address.unwrap_or_default().to_owned();
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        meta.insert("admin_port".to_owned(), admin.port().to_string());
        Self {
            // Unique on the agent: one node has one listener per port.
            id: format!("{service}-{}", grpc.port()),
            name: service.to_owned(),
            tags: vec!["bulwark".to_owned(), "grpc".to_owned()],
            address,
            port: grpc.port(),
            meta,
            check: Check {
                http: format!("http://{admin}/ready"),
                interval: "10s".to_owned(),
                timeout: "2s".to_owned(),
                deregister_critical_service_after: "1m".to_owned(),
            },
            connect: Connect {
                sidecar_service: SidecarService {
                    proxy: Proxy { upstreams },
                },
            },
        }
    }
}

/// One healthy instance from `GET /v1/health/service/<name>?passing=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(rename = "ID")]
    id: String,
    address: String,
    port: u16,
}

/// A client of the local Consul agent.
#[derive(Debug, Clone)]
pub struct ConsulAgent {
    address: String,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl ConsulAgent {
    pub fn new(address: &str, token: Option<SecretString>) -> Self {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            address: address.trim_end_matches('/').to_owned(),
            token,
            http,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.address));
        match &self.token {
            Some(token) => builder.header("X-Consul-Token", token.expose_secret()),
            None => builder,
        }
    }

    async fn send(
        &self,
        what: &'static str,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ConsulError> {
        let response = builder.send().await.map_err(|source| ConsulError::Http {
            address: self.address.clone(),
            source,
        })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(ConsulError::Status { what, status, body });
        }
        Ok(response)
    }

    /// `PUT /v1/agent/service/register?replace-existing-checks=true`.
    pub async fn register(&self, registration: &Registration) -> Result<(), ConsulError> {
        let builder = self
            .request(
                reqwest::Method::PUT,
                "/v1/agent/service/register?replace-existing-checks=true",
            )
            .json(registration);
        self.send("service registration", builder).await.map(|_| ())
    }

    /// `PUT /v1/agent/service/deregister/<id>`.
    pub async fn deregister(&self, id: &str) -> Result<(), ConsulError> {
        let builder = self.request(
            reqwest::Method::PUT,
            &format!("/v1/agent/service/deregister/{id}"),
        );
        self.send("service deregistration", builder)
            .await
            .map(|_| ())
    }

    /// Instances of `service` whose checks all pass; a service without its own
    /// address uses its node's.
    pub async fn healthy(&self, service: &str) -> Result<Vec<Instance>, ConsulError> {
        let builder = self.request(
            reqwest::Method::GET,
            &format!("/v1/health/service/{service}?passing=true"),
        );
        let response = self.send("health query", builder).await?;
        let entries: Vec<HealthEntry> =
            response.json().await.map_err(|source| ConsulError::Http {
                address: self.address.clone(),
                source,
            })?;
        Ok(entries
            .into_iter()
            .map(|entry| Instance {
                id: entry.service.id,
                address: if entry.service.address.is_empty() {
                    entry.node.address
                } else {
                    entry.service.address
                },
                port: entry.service.port,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, RawQuery};
    use axum::http::HeaderMap;
    use axum::routing::{get, put};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, serde_json::Value)>>>;

    /// A stand-in for a Consul agent (Consul cannot be installed here). It answers the
    /// three endpoints as Consul's HTTP API documents them; the health answer is a
    /// response recorded in that documented shape.
    async fn fake_agent() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let on_register = seen.clone();
        let on_deregister = seen.clone();
        let app = axum::Router::new()
            .route(
                "/v1/agent/service/register",
                put(
                    move |RawQuery(query): RawQuery,
                          headers: HeaderMap,
                          axum::Json(body): axum::Json<serde_json::Value>| {
                        let seen = on_register.clone();
                        async move {
                            let token = headers
                                .get("x-consul-token")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            if let Ok(mut seen) = seen.lock() {
                                seen.push(("register".into(), query, token, body));
                            }
                            ""
                        }
                    },
                ),
            )
            .route(
                "/v1/agent/service/deregister/{id}",
                put(move |Path(id): Path<String>| {
                    let seen = on_deregister.clone();
                    async move {
                        if let Ok(mut seen) = seen.lock() {
                            seen.push((format!("deregister {id}"), None, None, serde_json::Value::Null));
                        }
                        ""
                    }
                }),
            )
            .route(
                "/v1/health/service/{name}",
                get(|Path(name): Path<String>| async move {
                    if name != "identity" {
                        return axum::Json(serde_json::json!([]));
                    }
                    axum::Json(serde_json::json!([
                        {
                            "Node": {"ID": "40e4a748", "Node": "node-1", "Address": "127.0.0.2", "Datacenter": "dc1"},
                            "Service": {"ID": "identity-1", "Service": "identity", "Tags": ["bulwark"], "Address": "127.0.0.2", "Port": 50051, "Meta": {}},
                            "Checks": [{"Node": "node-1", "CheckID": "service:identity-1", "Status": "passing"}]
                        },
                        {
                            "Node": {"ID": "40e4a749", "Node": "node-2", "Address": "127.0.0.3", "Datacenter": "dc1"},
                            "Service": {"ID": "identity-2", "Service": "identity", "Tags": [], "Address": "", "Port": 50061, "Meta": {}},
                            "Checks": []
                        }
                    ]))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn registration_carries_ready_check_sidecar_with_upstreams_and_token_then_deregisters() {
        let (address, seen) = fake_agent().await;
        let agent = ConsulAgent::new(&address, Some(SecretString::from("s3cret")));
        let registration = Registration::new(
            "identity",
            "127.0.0.1:50051".parse().unwrap_or_else(|_| panic!()),
            "127.0.0.1:9101".parse().unwrap_or_else(|_| panic!()),
            None,
            upstreams(
                "identity",
                [
                    ("auth", "http://127.0.0.1:18152"),
                    ("audit", "http://127.0.0.1:18154/"),
                ],
            ),
        );
        agent
            .register(&registration)
            .await
            .unwrap_or_else(|e| panic!("register: {e}"));
        agent
            .deregister(&registration.id)
            .await
            .unwrap_or_else(|e| panic!("deregister: {e}"));

        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let (what, query, token, body) = &seen[0];
        assert_eq!(what, "register");
        assert_eq!(query.as_deref(), Some("replace-existing-checks=true"));
        assert_eq!(token.as_deref(), Some("s3cret"));
        assert_eq!(body["Name"], "identity");
        assert_eq!(body["ID"], "identity-50051");
        // Empty: the agent advertises its node's address, never the loopback listener.
        assert_eq!(body["Address"], "");
        assert_eq!(body["Port"], 50051);
        assert_eq!(body["Check"]["HTTP"], "http://127.0.0.1:9101/ready");
        assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "1m");
        assert_eq!(
            body["Connect"]["SidecarService"]["Proxy"]["Upstreams"],
            serde_json::json!([
                {"DestinationName": "audit", "LocalBindAddress": "127.0.0.1", "LocalBindPort": 18154},
                {"DestinationName": "auth", "LocalBindAddress": "127.0.0.1", "LocalBindPort": 18152},
            ])
        );
        assert_eq!(seen[1].0, "deregister identity-50051");
    }

    #[test]
    fn a_configured_address_is_advertised_and_only_loopback_clients_of_others_are_upstreams() {
        let registration = Registration::new(
            "auth",
            "0.0.0.0:50052".parse().unwrap_or_else(|_| panic!()),
            "127.0.0.1:9102".parse().unwrap_or_else(|_| panic!()),
            Some("10.0.0.7"),
            upstreams(
                "auth",
                [
                    // Auth's own service account asks its own listener: no upstream.
                    ("auth", "http://127.0.0.1:50052"),
                    ("identity", "http://localhost:18251"),
                    // Another host bypasses the mesh: not an upstream.
                    ("authz", "http://authz.internal:50053"),
                    ("audit", "http://127.0.0.1:18254"),
                ],
            ),
        );
        assert_eq!(registration.address, "10.0.0.7");
        let bound: Vec<(&str, u16)> = registration
            .connect
            .sidecar_service
            .proxy
            .upstreams
            .iter()
            .map(|u| (u.destination_name.as_str(), u.local_bind_port))
            .collect();
        assert_eq!(bound, vec![("audit", 18254), ("identity", 18251)]);
    }

    #[tokio::test]
    async fn healthy_instances_fall_back_to_the_node_address() {
        let (address, _) = fake_agent().await;
        let agent = ConsulAgent::new(&address, None);
        let instances = agent
            .healthy("identity")
            .await
            .unwrap_or_else(|e| panic!("health: {e}"));
        assert_eq!(
            instances,
            vec![
                Instance {
                    id: "identity-1".into(),
                    address: "127.0.0.2".into(),
                    port: 50051
                },
                Instance {
                    id: "identity-2".into(),
                    address: "127.0.0.3".into(),
                    port: 50061
                },
            ]
        );
        assert!(agent.healthy("authz").await.is_ok_and(|i| i.is_empty()));
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_named_in_the_error() {
        let agent = ConsulAgent::new("http://127.0.0.1:1", None);
        let error = agent
            .healthy("identity")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("127.0.0.1:1"), "{error}");
    }
}
