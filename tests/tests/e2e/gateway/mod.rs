//! The Wasm gateway filter in the real edge (issue #4): bearer verification and its 401s,
//! identity headers, rate limits through the real rate-limit service and Redis, Redis
//! outages, signing-key rotation and a burst of forged tokens. Each test runs the whole
//! mesh: Envoy with `envoy/edge.yaml`, the four services, the rate-limit service, Redis
//! and PostgreSQL. `methods` checks that the edge policy is the same whatever the HTTP
//! method, protocol or spelling of the path (issue 8).
//!
//! What is shared here: starting the mesh (optionally with a limits file of the test's
//! own), logging in, reading answers, reading Auth's signing key from its schema and
//! minting tokens with it, counting a service's RPCs and finding a request's log lines.

mod bad_tokens;
mod forged_burst;
mod identity_headers;
mod key_rotation;
mod leases;
mod methods;
mod rate_limits;
mod redis_outage;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The bootstrap admin (the services' defaults; README "Configuration").
pub const ADMIN_EMAIL: &str = "admin@bulwark.local";
pub const ADMIN_PASSWORD: &str = "bulwark-admin-change-me";

/// Starts every service, the rate-limit service, Redis and Envoy; with `limits`, the
/// rate-limit service reads that file instead of `services/ratelimit/limits.yaml`.
pub async fn start_mesh(limits: Option<&Path>) -> Mesh {
    let mut builder = Mesh::builder().all_services().envoy();
    if let Some(path) = limits {
        let path = path.to_str().expect("the limits file's path is UTF-8");
        builder = builder.service_env(
            ServiceKind::Ratelimit,
            "BULWARK_RATELIMIT__CONFIG_PATH",
            path,
        );
    }
    let mesh = builder.start().await.expect("starting the whole mesh");
    warm_rate_limit_path(&mesh).await;
    mesh
}

/// The first rate-limit decisions after a start pay for connections (Envoy to the
/// rate-limit service, the service to Redis) and can overrun the filter's 50 ms budget
/// on a loaded machine, which fails a login closed (503). Fail-open refresh calls, whose
/// budget no test uses, warm the path of every Envoy until one comes back counted.
async fn warm_rate_limit_path(mesh: &Mesh) {
    for envoy in mesh.envoys() {
        warm_envoy(mesh, envoy).await;
    }
}

async fn warm_envoy(mesh: &Mesh, envoy: &bulwark_e2e::Envoy) {
    poll_until(
        "a refresh call counted by the rate-limit service",
        Duration::from_secs(30),
        || async {
            let reply = Reply::of(
                mesh.http()
                    .post(envoy.url("/v1/auth/refresh"))
                    .header("content-type", "application/json")
                    .body(r#"{"refresh_token":"warm-up"}"#),
                "warm-up refresh",
            )
            .await;
            match reply.header("ratelimit-limit") {
                Some(_) => Ok(()),
                None => Err(format!("{reply:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("warming the rate-limit path: {err:#}"));
}

/// Writes a limits file for the edge's domain into `dir`: the contract's public-route
/// limits and `user_per_minute` requests per minute per user on bearer routes (small, so
/// a test reaches it with a handful of requests).
pub fn write_limits(dir: &Path, user_per_minute: u32) -> std::path::PathBuf {
    let path = dir.join("limits.yaml");
    let text = format!(
        "domain: bulwark-edge
descriptors:
  - key: route
    value: /v1/auth/login
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/auth/refresh
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/users
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/oauth2/token
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/users/verify-email
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/auth/password-reset
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/auth/password-reset/confirm
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: route
    value: /v1/auth/login/mfa
    descriptors:
      - key: client_ip
        rate_limit: {{ unit: minute, requests_per_unit: 10 }}
  - key: user_id
    rate_limit: {{ unit: minute, requests_per_unit: {user_per_minute} }}
"
    );
    std::fs::write(&path, text).expect("writing the test's limits file");
    path
}

/// An answer read whole, so a failing assertion can show it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Sends `request` and reads the answer.
    pub async fn of(request: reqwest::RequestBuilder, what: &str) -> Self {
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("{what}: reading the body: {err}"));
        Self {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON.
    pub fn json(&self, what: &str) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("{what}: the body is not JSON ({err}): {self:?}"))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header's value as a number; panics naming the header when absent or not a number.
    pub fn number_header(&self, name: &str, what: &str) -> u64 {
        self.header(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what}: header {name} is missing or not a number: {self:?}"))
    }

    /// The `x-request-id` Envoy set (and forwarded to the service).
    pub fn request_id(&self, what: &str) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("{what}: no x-request-id: {self:?}"))
            .to_owned()
    }

    /// Panics unless the answer is `{"code": <code>, "message": "<non-empty>"}` JSON.
    pub fn assert_error_body(&self, code: u64, what: &str) {
        let body = self.json(what);
        assert_eq!(
            body["code"].as_u64(),
            Some(code),
            "{what}: code is not {code}: {self:?}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message: {self:?}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{what}: content-type is not JSON: {self:?}"
        );
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
}

/// `POST /v1/auth/login` from the mesh's client; panics unless it answers 200.
pub async fn login(mesh: &Mesh, email: &str, password: &str) -> Session {
    login_with(mesh, mesh.http(), email, password).await
}

/// `POST /v1/auth/login` from `http`; panics unless it answers 200.
pub async fn login_with(
    mesh: &Mesh,
    http: &reqwest::Client,
    email: &str,
    password: &str,
) -> Session {
    let reply = Reply::of(
        http.post(mesh.edge_url("/v1/auth/login"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"email": email, "password": password}).to_string()),
        "login",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "login of {email} failed: {reply:?}"
    );
    let body = reply.json("login");
    let access_token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login answered no access_token: {reply:?}"))
        .to_owned();
    let user_id = token_part(&access_token, 1)["sub"]
        .as_str()
        .unwrap_or_else(|| panic!("the access token has no sub: {access_token}"))
        .to_owned();
    Session {
        user_id,
        access_token,
    }
}

/// Registers a user through the edge (`POST /v1/users`) and returns its id.
pub async fn register(mesh: &Mesh, email: &str, password: &str) -> String {
    let reply = Reply::of(
        mesh.http()
            .post(mesh.edge_url("/v1/users"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"email": email, "password": password, "display_name": "Gateway Test"})
                    .to_string(),
            ),
        "registration",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "registering {email} failed: {reply:?}"
    );
    reply.json("registration")["id"]
        .as_str()
        .unwrap_or_else(|| panic!("registration answered no id: {reply:?}"))
        .to_owned()
}

/// `GET /v1/users/me` with `authorization` as the header's whole value, if any.
pub async fn get_me(mesh: &Mesh, authorization: Option<&str>) -> Reply {
    let mut request = mesh.http().get(mesh.edge_url("/v1/users/me"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Reply::of(request, "GET /v1/users/me").await
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One service's Prometheus metrics, as text.
pub async fn service_metrics(mesh: &Mesh, kind: ServiceKind) -> String {
    mesh.http()
        .get(mesh.service(kind).admin_url("/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|err| panic!("GET {} /metrics: {err}", kind.name()))
        .text()
        .await
        .unwrap_or_else(|err| panic!("reading {} /metrics: {err}", kind.name()))
}

/// The module label of the gRPC health service's calls (Envoy's health checks, every
/// second), which no count of the services' own RPCs includes.
pub const HEALTH_MODULE: &str = "module=\"grpc.health.v1.Health\"";

/// How many calls of `function` one service has counted (`function_calls_total`), the
/// health checks' aside.
pub async fn rpc_calls(mesh: &Mesh, kind: ServiceKind, function: &str) -> f64 {
    let text = service_metrics(mesh, kind).await;
    let label = format!("function=\"{function}\"");
    text.lines()
        .filter(|line| line.starts_with("function_calls_total{") && line.contains(&label))
        .filter(|line| !line.contains(HEALTH_MODULE))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One of Envoy's counters or gauges (0 when absent).
pub async fn envoy_stat(mesh: &Mesh, name: &str) -> u64 {
    mesh.envoy()
        .stat(mesh.http(), name)
        .await
        .unwrap_or_else(|err| panic!("reading Envoy's stat {name}: {err:#}"))
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Part `index` of a compact JWS (0 header, 1 claims), decoded as JSON.
pub fn token_part(token: &str, index: usize) -> Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("token has no part {index}: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|err| panic!("token part {index} is not base64url ({err}): {token}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("token part {index} is not JSON ({err}): {token}"))
}

/// `base64url(json)` without padding: a JWS header or claims part.
pub fn encode_part(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// An Ed25519 signing key: its `kid` and PKCS#8 DER.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub pkcs8_der: Vec<u8>,
}

impl SigningKey {
    /// The key Auth signs with now, read from its schema as the database superuser and
    /// opened with the mesh's key-encryption key (the database alone holds no usable
    /// key: `services/auth/src/key_encryption.rs`).
    pub fn active(mesh: &Mesh) -> Self {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let row = mesh
            .postgres()
            .expect("the mesh runs postgres")
            .psql(
                "bulwark",
                // The newest key whose activation has come and whose retirement has not: a
                // key published ahead of its activation does not sign yet.
                "SELECT kid || ' ' || kek_id || ' ' || \
                 translate(encode(private_key, 'base64'), E'\\n', '') \
                 FROM auth.signing_keys WHERE activates_at <= now() \
                 AND (retired_at IS NULL OR retired_at > now()) \
                 ORDER BY activates_at DESC LIMIT 1",
            )
            .expect("reading Auth's active signing key");
        let [kid, kek_id, sealed] = row.split(' ').collect::<Vec<_>>()[..] else {
            panic!("no sealed active signing key in auth.signing_keys: {row:?}");
        };
        let sealed = STANDARD
            .decode(sealed)
            .unwrap_or_else(|err| panic!("the private key is not base64 ({err}): {sealed:?}"));
        let (mesh_kek_id, kek_hex) = mesh.auth_key_encryption_key();
        assert_eq!(kek_id, mesh_kek_id, "the key is sealed under another KEK");
        let kek: Vec<u8> = (0..kek_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&kek_hex[i..i + 2], 16).expect("a hex KEK"))
            .collect();
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&kek).expect("a 32-byte KEK");
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("a 12-byte nonce");
        let pkcs8_der = cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .unwrap_or_else(|_| panic!("the mesh's KEK does not open signing key {kid}"));
        Self {
            kid: kid.to_owned(),
            pkcs8_der,
        }
    }

    /// A key Auth never had, under `kid`: PKCS#8 v1 of an Ed25519 seed.
    pub fn foreign(kid: &str, seed: [u8; 32]) -> Self {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        Self {
            kid: kid.to_owned(),
            pkcs8_der: der,
        }
    }

    /// `claims` signed with this key: `alg: EdDSA`, `typ: JWT`, this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8_der),
        )
        .unwrap_or_else(|err| panic!("signing a token with key {}: {err}", self.kid))
    }
}

/// The claims of `token` with `changes` applied (a `null` value removes the claim).
pub fn claims_with(token: &str, changes: &[(&str, Value)]) -> Value {
    let mut claims = token_part(token, 1);
    let object = claims
        .as_object_mut()
        .unwrap_or_else(|| panic!("the token's claims are not an object: {token}"));
    for (name, value) in changes {
        if value.is_null() {
            object.remove(*name);
        } else {
            object.insert((*name).to_owned(), value.clone());
        }
    }
    claims
}

/// The JSON lines of `kind`'s log that belong to the request Envoy gave `request_id`,
/// once its "rpc finished" line is written.
pub async fn request_log_lines(mesh: &Mesh, kind: ServiceKind, request_id: &str) -> Vec<Value> {
    let log = mesh.service(kind).log().to_path_buf();
    poll_until(
        &format!("{}'s log lines of request {request_id}", kind.name()),
        Duration::from_secs(10),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).map_err(|err| err.to_string())?;
                let lines: Vec<Value> = text
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|json| json["request_id"].as_str() == Some(request_id))
                    .collect();
                if lines
                    .iter()
                    .any(|json| json["message"].as_str() == Some("rpc finished"))
                {
                    Ok(lines)
                } else {
                    Err(format!("{} lines so far, none `rpc finished`", lines.len()))
                }
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"))
}
