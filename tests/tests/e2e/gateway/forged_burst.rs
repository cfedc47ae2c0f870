//! A concurrent burst of forged tokens (random kids, garbage signatures) is refused one
//! by one without hurting the filter: its Wasm VM survives, the JWKS is not refetched
//! for every unknown kid, and a valid token passes right after.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_e2e::ServiceKind;
use reqwest::StatusCode;
use serde_json::json;

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, bearer, encode_part, envoy_stat, get_me, login, rpc_calls,
    start_mesh, token_part,
};

const TASKS: usize = 50;
const PER_TASK: usize = 10;

/// xorshift64*: enough randomness for kids and signatures, seeded per run.
struct Noise(u64);

impl Noise {
    fn new(salt: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos().into());
        Self((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// An EdDSA-looking token with a made-up `kid` and a random 64-byte "signature" over
/// otherwise plausible claims.
fn forged_token(noise: &mut Noise, claims: &serde_json::Value) -> String {
    let header =
        json!({"alg": "EdDSA", "typ": "JWT", "kid": format!("forged-{:016x}", noise.next())});
    format!(
        "{}.{}.{}",
        encode_part(&header),
        encode_part(claims),
        URL_SAFE_NO_PAD.encode(noise.bytes(64))
    )
}

/// Envoy log lines that tell of a failing or aborted Wasm VM, or a panic in the filter.
fn vm_failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("panicked")
                || lower.contains("vm failed")
                || lower.contains("runtimeerror")
                || lower.contains("uncaught")
                || lower.contains("wasm vm")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_token_burst_is_refused_and_a_valid_token_still_passes() {
    let mesh = start_mesh(None).await;
    let session = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let valid = bearer(&session.access_token);
    let reply = get_me(&mesh, Some(&valid)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GetMe before the burst: {reply:?}"
    );

    let claims = token_part(&session.access_token, 1);
    let unauthenticated_before =
        envoy_stat(&mesh, "wasmcustom.bulwark_gateway.unauthenticated").await;
    let vm_created_before = envoy_stat(&mesh, "wasm.envoy.wasm.runtime.v8.created").await;
    let jwks_fetches_before = rpc_calls(&mesh, ServiceKind::Auth, "GetJwks").await;
    let get_me_before = rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let http = mesh.http().clone();
        let url = mesh.edge_url("/v1/users/me");
        let mut noise = Noise::new(task as u64 + 1);
        let tokens: Vec<String> = (0..PER_TASK)
            .map(|_| forged_token(&mut noise, &claims))
            .collect();
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for token in tokens {
                let status = match http
                    .get(&url)
                    .header("authorization", format!("Bearer {token}"))
                    .send()
                    .await
                {
                    Ok(response) => response.status().to_string(),
                    Err(err) => format!("request failed: {err}"),
                };
                statuses.push(status);
            }
            statuses
        });
    }
    let mut unexpected = Vec::new();
    let mut refused = 0usize;
    while let Some(joined) = tasks.join_next().await {
        for status in joined.expect("a burst task panicked") {
            if status == StatusCode::UNAUTHORIZED.to_string() {
                refused += 1;
            } else {
                unexpected.push(status);
            }
        }
    }
    let burst = started.elapsed();
    eprintln!(
        "{} forged tokens in {burst:?}: {refused} answered 401",
        TASKS * PER_TASK
    );
    assert!(
        unexpected.is_empty(),
        "forged tokens answered other than 401 ({} of {}): {:?}",
        unexpected.len(),
        TASKS * PER_TASK,
        &unexpected[..unexpected.len().min(20)]
    );

    // A valid token right after: the filter still verifies and forwards.
    let reply = get_me(&mesh, Some(&valid)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a valid token was refused after the burst: {reply:?}"
    );
    assert_eq!(
        rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await,
        get_me_before + 1.0,
        "identity saw other GetMe calls than the valid one: forged tokens got through"
    );

    let unauthenticated = envoy_stat(&mesh, "wasmcustom.bulwark_gateway.unauthenticated").await;
    assert!(
        unauthenticated >= unauthenticated_before + (TASKS * PER_TASK) as u64,
        "the filter counted {} refusals for {} forged tokens",
        unauthenticated - unauthenticated_before,
        TASKS * PER_TASK
    );
    assert_eq!(
        envoy_stat(&mesh, "wasm.envoy.wasm.runtime.v8.created").await,
        vm_created_before,
        "a Wasm VM was created during the burst: the filter's VM was replaced"
    );
    let log = std::fs::read_to_string(mesh.envoy().log()).expect("reading Envoy's log");
    let failures = vm_failures(&log);
    assert!(
        failures.is_empty(),
        "Envoy's log tells of a failing Wasm VM: {failures:#?}"
    );

    // Unknown kids may trigger a JWKS refetch, at most one per 5 s: the burst cannot turn
    // into a flood of calls to Auth.
    let fetches = rpc_calls(&mesh, ServiceKind::Auth, "GetJwks").await - jwks_fetches_before;
    let allowed = (burst.as_secs_f64() / 5.0).ceil() + 1.0;
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches during a {burst:?} burst of unknown kids (at most {allowed} expected)"
    );
}
