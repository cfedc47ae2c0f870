//! A REST/JSON client of the edge that checks what every answer must carry
//! (`x-request-id`; on errors the security headers and a `{code, message}` body that
//! leaks nothing internal), and the whole mesh each contract test starts.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::support::assert_security_headers;

/// The bootstrap admin of the README (BULWARK_ADMIN_EMAIL / BULWARK_ADMIN_PASSWORD).
pub const ADMIN_EMAIL: &str = "admin@bulwark.local";
pub const ADMIN_PASSWORD: &str = "bulwark-admin-change-me";

/// A password every test user gets: long enough for the 12-character rule.
pub const PASSWORD: &str = "correct-horse-battery";

/// How long audit events may take through the outbox relays (they back off to 5 s
/// while Audit is away; the machine is shared).
pub const AUDIT_DELIVERY: Duration = Duration::from_secs(60);

/// Far above anything a test sends: these tests are about the routes, and the
/// contract's 10 per minute would stop the second registration of a test.
pub use bulwark_e2e::soak::generous_limits;

/// The gateway filter's rate-limit call budget in the contract mesh. The contract tests
/// check what the edge answers, not how it copes with a slow limiter (the gateway tests
/// do that at production's 50 ms): a generous budget keeps a loaded machine from turning
/// a login into the fail-closed 503, so every 503 here is a real one and fails the test.
const RATELIMIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Words that must never reach a client: storage, hashing and Rust internals.
const INTERNALS: [&str; 9] = [
    "sql",
    "diesel",
    "postgres",
    "argon2",
    "$argon2",
    "panicked",
    "backtrace",
    ".rs:",
    "tonic::",
];

/// Every service and Envoy, with generous rate limits (the file lives as long as the
/// mesh), and the bootstrap admin logged in.
#[derive(Debug)]
pub struct ContractMesh {
    // Dropped first: the rate-limit service stops before its limits file goes.
    mesh: Mesh,
    admin: Tokens,
    _limits: tempfile::TempDir,
}

impl ContractMesh {
    /// The bootstrap admin's tokens, from the one login of the admin in this mesh.
    pub fn admin(&self) -> &Tokens {
        &self.admin
    }
}

impl Deref for ContractMesh {
    type Target = Mesh;
    fn deref(&self) -> &Mesh {
        &self.mesh
    }
}

impl DerefMut for ContractMesh {
    fn deref_mut(&mut self) -> &mut Mesh {
        &mut self.mesh
    }
}

/// Starts PostgreSQL, Redis, the four services, the rate-limit service and Envoy.
pub async fn start_mesh() -> ContractMesh {
    start_replicated_mesh(1, 1, &generous_limits()).await
}

/// Like [`start_mesh`], with `replicas` of every service behind `envoys` Envoys (of
/// two workers each when there are several) and the rate limits of `limits` (a limits
/// file of domain `bulwark-edge`).
pub async fn start_replicated_mesh(replicas: usize, envoys: usize, limits: &str) -> ContractMesh {
    let limits_text = limits;
    let limits = tempfile::tempdir().expect("creating a directory for the limits file");
    let path = limits.path().join("limits.yaml");
    std::fs::write(&path, limits_text).expect("writing the limits file");
    let path = path.to_str().expect("a UTF-8 temporary path").to_owned();
    let workers = if envoys > 1 { 2 } else { 1 };
    let mesh = Mesh::builder()
        .all_services()
        .replicas(replicas)
        .envoys(envoys, workers)
        .ratelimit_timeout(RATELIMIT_TIMEOUT)
        .service_env(
            ServiceKind::Ratelimit,
            "BULWARK_RATELIMIT__CONFIG_PATH",
            &path,
        )
        .start()
        .await
        .expect("starting every service behind envoy");
    let admin = await_token_verification(&mesh).await;
    ContractMesh {
        mesh,
        admin,
        _limits: limits,
    }
}

/// Logs the admin in and checks that the edge accepts the token at once: the harness hands
/// an Envoy out only after the gateway filter has loaded Auth's keys.
async fn await_token_verification(mesh: &Mesh) -> Tokens {
    let edge = Edge::new(mesh);
    let admin = edge.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let reply = edge
        .get("/v1/users/me")
        .bearer(admin.access.as_str())
        .send()
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the edge refused the admin's fresh token right after the mesh started: {}",
        reply.text
    );
    admin
}

/// Panics if `text` (a message or body a client sees) names an internal.
#[track_caller]
pub fn assert_leaks_nothing(text: &str, what: &str) {
    let lower = text.to_lowercase();
    for word in INTERNALS {
        assert!(
            !lower.contains(word),
            "{what} leaks an internal ({word:?}): {text}"
        );
    }
}

/// The answer to one call, read completely.
#[derive(Debug)]
pub struct Reply {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|err| {
            panic!(
                "{} answered {} with a body that is not JSON ({err}): {:?}",
                self.what, self.status, self.text
            )
        })
    }

    /// The JSON body of a 200.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{} answered {}, expected 200; body: {}",
            self.what,
            self.status,
            self.text
        );
        self.json()
    }

    /// Checks an error answer: `status`, the security headers, and a JSON body
    /// `{code, message}` with gRPC code `code` and a message that leaks nothing.
    /// Returns the message.
    #[track_caller]
    pub fn error(self, status: StatusCode, code: i64) -> String {
        assert_eq!(
            self.status, status,
            "{} answered {}, expected {status}; body: {}",
            self.what, self.status, self.text
        );
        assert_security_headers(&self.headers, &self.what);
        let body = self.json();
        assert_eq!(
            body["code"].as_i64(),
            Some(code),
            "{} answered {status} with a body whose `code` is not {code}: {body}",
            self.what
        );
        let message = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{} answered an error without a message: {body}", self.what))
            .to_owned();
        assert!(
            !message.trim().is_empty(),
            "{} answered an error with an empty message: {body}",
            self.what
        );
        assert_leaks_nothing(&self.text, &self.what);
        message
    }
}

/// One call being built.
#[derive(Debug)]
pub struct Call<'m> {
    mesh: &'m Mesh,
    method: Method,
    url: Url,
    body: Option<Value>,
    bearer: Option<String>,
    traceparent: Option<String>,
}

impl Call<'_> {
    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    /// Sends a W3C `traceparent`.
    pub fn traceparent(mut self, traceparent: &str) -> Self {
        self.traceparent = Some(traceparent.to_owned());
        self
    }

    /// Adds a query parameter (URL-encoded).
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(key, value);
        self
    }

    /// Sends the call and reads the answer, which must carry an `x-request-id`.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.url);
        let mut request = self
            .mesh
            .http()
            .request(self.method.clone(), self.url.clone());
        if let Some(body) = &self.body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(traceparent) = &self.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{what}: no answer from the edge: {err}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|err| panic!("{what}: reading the body: {err}"));
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            !request_id.is_empty(),
            "{what} answered {status} without an x-request-id; headers: {headers:?}; body: {text}"
        );
        Reply {
            what,
            status,
            headers,
            text,
        }
    }
}

/// An access and refresh token pair, as login and refresh answer it.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    /// Checks the shape of a login or refresh answer and takes its tokens.
    #[track_caller]
    pub fn from_body(body: Value, what: &str) -> Self {
        let text = |field: &str| {
            body[field]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| panic!("{what}: no `{field}` string in {body}"))
                .to_owned()
        };
        let (access, refresh) = (text("access_token"), text("refresh_token"));
        assert_eq!(
            body["token_type"], "Bearer",
            "{what}: token_type is not \"Bearer\": {body}"
        );
        assert!(
            body["expires_in"].is_number(),
            "{what}: expires_in is not a JSON number: {body}"
        );
        assert_eq!(
            body["expires_in"].as_i64(),
            Some(900),
            "{what}: expires_in is not the default 900 seconds: {body}"
        );
        Self { access, refresh }
    }
}

/// The edge of a mesh, as a REST client uses it.
#[derive(Debug, Clone, Copy)]
pub struct Edge<'m> {
    mesh: &'m Mesh,
    /// Which of the mesh's Envoys this client calls.
    envoy: usize,
}

impl<'m> Edge<'m> {
    pub fn new(mesh: &'m Mesh) -> Self {
        Self::through(mesh, 0)
    }

    /// The edge as seen through the mesh's `envoy`-th Envoy.
    pub fn through(mesh: &'m Mesh, envoy: usize) -> Self {
        Self { mesh, envoy }
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Call<'m> {
        let url = Url::parse(&self.mesh.envoys()[self.envoy].url(path))
            .unwrap_or_else(|err| panic!("edge URL of {path}: {err}"));
        Call {
            mesh: self.mesh,
            method,
            url,
            body,
            bearer: None,
            traceparent: None,
        }
    }

    pub fn get(&self, path: &str) -> Call<'m> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Call<'m> {
        self.call(Method::POST, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Call<'m> {
        self.call(Method::DELETE, path, None)
    }

    /// Registers a user with [`PASSWORD`]; returns the user.
    pub async fn register(&self, email: &str, display_name: &str) -> Value {
        self.post(
            "/v1/users",
            json!({"email": email, "password": PASSWORD, "display_name": display_name}),
        )
        .send()
        .await
        .ok()
    }

    /// Logs in; the answer must be a well-formed token pair.
    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let body = self
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .send()
            .await
            .ok();
        Tokens::from_body(body, &format!("login of {email}"))
    }

    /// The id of the token's user, from `GET /v1/users/me`.
    pub async fn user_id(&self, access: &str) -> String {
        let me = self.get("/v1/users/me").bearer(access).send().await.ok();
        me["id"]
            .as_str()
            .unwrap_or_else(|| panic!("GET /v1/users/me answered no id: {me}"))
            .to_owned()
    }

    /// Every audit event matching `filters`, newest first, following the pages.
    pub async fn audit_events(&self, access: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        let mut events = Vec::new();
        let mut token = String::new();
        loop {
            let mut call = self
                .get("/v1/audit/events")
                .bearer(access)
                .query("page_size", "500");
            for (key, value) in filters {
                call = call.query(key, value);
            }
            if !token.is_empty() {
                call = call.query("page_token", &token);
            }
            let page = call.send().await.ok();
            let batch = page["events"]
                .as_array()
                .unwrap_or_else(|| panic!("GET /v1/audit/events answered no events list: {page}"));
            events.extend(batch.iter().cloned());
            token = page["next_page_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if token.is_empty() {
                return events;
            }
        }
    }

    /// Polls the audit log until the events matching `filters` satisfy `check`
    /// (`Err(reason)` means not yet); returns them.
    pub async fn await_audit<F>(
        &self,
        access: &str,
        filters: &[(&str, &str)],
        what: &str,
        check: F,
    ) -> Vec<Value>
    where
        F: Fn(&[Value]) -> Result<(), String>,
    {
        let check = &check;
        poll_until(what, AUDIT_DELIVERY, || async move {
            let events = self.audit_events(access, filters).await;
            check(&events).map(|()| events)
        })
        .await
        .unwrap_or_else(|err| panic!("{err:#}"))
    }
}

/// The events among `events` with `key` equal to `value`.
pub fn with<'e>(events: &'e [Value], key: &str, value: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e[key] == value).collect()
}

/// `Ok` if exactly `count` events have every `(key, value)` of `fields`.
pub fn exactly(events: &[Value], fields: &[(&str, &str)], count: usize) -> Result<(), String> {
    let found = events
        .iter()
        .filter(|e| fields.iter().all(|(key, value)| e[*key] == *value))
        .count();
    if found == count {
        Ok(())
    } else {
        Err(format!(
            "{found} events with {fields:?} (expected {count}) among {}",
            Value::from(events.to_vec())
        ))
    }
}
