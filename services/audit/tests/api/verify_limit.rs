//! VerifyChain's per-caller limit, with the shipped `limits.yaml` (6 a minute) counted in
//! a real Redis (`BULWARK_TEST_REDIS_URL`): the key is the subject of a token Audit
//! verified, whatever the headers say; other callers and other RPCs are untouched; while
//! Redis is down calls go through; a limit Audit cannot apply stops it from starting.

use std::path::Path;

use bulwark_audit::VERIFY_CHAIN_PATH;
use bulwark_kernel::testing::{closed_redis_url, test_redis_url};
use bulwark_kernel::tonic::metadata::MetadataMap;
use bulwark_kernel::tonic::{Code, Request, Response, Status};
use bulwark_proto::audit::v1::{
    ListCheckpointsRequest, ListEventsRequest, VerifyChainRequest, VerifyChainResponse,
};
use uuid::Uuid;

use crate::support::{
    BY_HAND, Limiting, TestAudit, assert_status, event, shipped_limits, with_edge_headers,
};

/// `VerifyChain` calls a caller may start in a minute (`services/audit/limits.yaml`).
const LIMIT: u32 = 6;
/// The REST route of `VerifyChain` at the edge, as a forger would name it.
const VERIFY_CHAIN_ROUTE: &str = "/v1/audit/chain/verify";

fn redis_url() -> String {
    test_redis_url().unwrap_or_else(|e| panic!("{e}"))
}

fn header(metadata: &MetadataMap, name: &str) -> Option<String> {
    metadata
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn verify(
    audit: &TestAudit,
    request: Request<VerifyChainRequest>,
) -> Result<Response<VerifyChainResponse>, Status> {
    audit.client.clone().verify_chain(request).await
}

/// `VerifyChain` as `caller`, with its own valid token.
fn as_caller(audit: &TestAudit, caller: Uuid) -> Request<VerifyChainRequest> {
    audit.tokens.request(caller, VerifyChainRequest::default())
}

/// Asserts `result` was served and counted with `left` calls left of the limit.
fn assert_served(result: Result<Response<VerifyChainResponse>, Status>, left: u32, what: &str) {
    let response = result.unwrap_or_else(|status| panic!("{what}: refused: {status:?}"));
    let metadata = response.metadata();
    assert_eq!(
        (
            header(metadata, "ratelimit-limit"),
            header(metadata, "ratelimit-remaining")
        ),
        (Some(LIMIT.to_string()), Some(left.to_string())),
        "{what}: ratelimit-limit and ratelimit-remaining of {metadata:?}"
    );
}

/// Spends `caller`'s whole allowance, each call served.
async fn spend_allowance(audit: &TestAudit, caller: Uuid) {
    for left in (0..LIMIT).rev() {
        let what = format!("a call with {left} left after it");
        assert_served(verify(audit, as_caller(audit, caller)).await, left, &what);
    }
}

/// Asserts `result` is the limit's refusal: RESOURCE_EXHAUSTED, with `retry-after` and
/// the `ratelimit-*` headers.
fn assert_limited(result: Result<Response<VerifyChainResponse>, Status>, what: &str) {
    let status = match result {
        Ok(response) => panic!("{what}: served over the limit: {response:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    // The edge's words for its own limits: one message whichever limit refused.
    assert_eq!(
        status.message(),
        "rate limit exceeded, retry later",
        "{what}"
    );
    let metadata = status.metadata();
    let retry_after: u64 = header(metadata, "retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no retry-after in {metadata:?}"));
    // 6 a minute lets one call in every 10 s.
    assert!(
        (1..=10).contains(&retry_after),
        "{what}: retry-after {retry_after} s for {LIMIT} a minute"
    );
    assert_eq!(
        (
            header(metadata, "ratelimit-limit"),
            header(metadata, "ratelimit-remaining")
        ),
        (Some(LIMIT.to_string()), Some("0".to_owned())),
        "{what}: ratelimit-limit and ratelimit-remaining of {metadata:?}"
    );
}

#[tokio::test]
async fn verify_chain_over_the_limit_is_resource_exhausted_with_retry_after() {
    let audit = TestAudit::start_limited(&redis_url()).await;
    audit.append(vec![event("alice", "auth.login", 1)]).await;
    spend_allowance(&audit, audit.reader).await;
    assert_limited(
        verify(&audit, as_caller(&audit, audit.reader)).await,
        "a 7th call within the minute",
    );
    audit.stop().await;
}

#[tokio::test]
async fn one_callers_limit_leaves_other_callers_served() {
    let audit = TestAudit::start_limited(&redis_url()).await;
    spend_allowance(&audit, audit.reader).await;
    assert_limited(
        verify(&audit, as_caller(&audit, audit.reader)).await,
        "the first reader",
    );
    let other = audit.new_reader();
    assert_served(
        verify(&audit, as_caller(&audit, other)).await,
        LIMIT - 1,
        "another reader's first call",
    );
    // A service account is a caller of its own too.
    let service =
        audit
            .tokens
            .client_request("ops", &["audit:read"], VerifyChainRequest::default());
    assert_served(
        verify(&audit, service).await,
        LIMIT - 1,
        "a service account's first call",
    );
    audit.stop().await;
}

/// `token` with its signature's first character changed: well formed, not genuine.
fn tampered(token: &str) -> String {
    let (signed, signature) = token
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("a JWT has three parts: {token}"));
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed}.{first}{}", &signature[1..])
}

fn with_bearer(token: &str) -> Request<VerifyChainRequest> {
    let mut request = Request::new(VerifyChainRequest::default());
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|e| panic!("header: {e}"));
    request.metadata_mut().insert("authorization", value);
    request
}

#[tokio::test]
async fn forged_headers_and_tokens_neither_move_nor_spend_anothers_allowance() {
    let audit = TestAudit::start_limited(&redis_url()).await;
    let (victim, forger) = (audit.reader, audit.new_reader());

    // The forger's calls, carrying every header that names the victim, count on the
    // forger's own token.
    for left in (0..LIMIT).rev() {
        let request = with_edge_headers(as_caller(&audit, forger), VERIFY_CHAIN_ROUTE, victim);
        assert_served(
            verify(&audit, request).await,
            left,
            "the forger naming the victim in headers",
        );
    }
    let renamed = with_edge_headers(
        as_caller(&audit, forger),
        VERIFY_CHAIN_ROUTE,
        Uuid::new_v4(),
    );
    assert_limited(
        verify(&audit, renamed).await,
        "the spent forger naming a fresh user in headers",
    );

    // Calls whose token does not verify are refused before any count: none, a forged
    // signature and an expired token, each naming the victim.
    let now = chrono::Utc::now().timestamp();
    let expired = audit.tokens.sign(&serde_json::json!({
        "iss": "bulwark", "aud": "bulwark-api", "sub": victim.to_string(),
        "iat": now - 3600, "exp": now - 1800, "jti": Uuid::new_v4().to_string(),
    }));
    let forged = tampered(&audit.tokens.token(victim));
    for _ in 0..=LIMIT {
        let unsigned = with_edge_headers(
            Request::new(VerifyChainRequest::default()),
            VERIFY_CHAIN_ROUTE,
            victim,
        );
        for (request, what) in [
            (unsigned, "no token"),
            (with_bearer(&forged), "a forged signature"),
            (with_bearer(&expired), "an expired token"),
        ] {
            assert_status(
                verify(&audit, request).await,
                Code::Unauthenticated,
                "missing or invalid bearer token",
                what,
            );
        }
    }

    assert_served(
        verify(&audit, as_caller(&audit, victim)).await,
        LIMIT - 1,
        "the victim's first call of its own",
    );
    audit.stop().await;
}

/// `request` sent to `path` on Audit's gRPC port, as a client spelling the method
/// another way would.
async fn call_path(
    audit: &TestAudit,
    path: &'static str,
    request: Request<VerifyChainRequest>,
) -> Result<Response<VerifyChainResponse>, Status> {
    let mut grpc = bulwark_kernel::tonic::client::Grpc::new(audit.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<VerifyChainRequest, VerifyChainResponse>::default();
    grpc.unary(request, http::uri::PathAndQuery::from_static(path), codec)
        .await
}

#[tokio::test]
async fn other_rpcs_and_other_spellings_of_verify_chain_are_not_limited() {
    let audit = TestAudit::start_limited(&redis_url()).await;
    let reader = audit.reader;
    spend_allowance(&audit, reader).await;
    assert_limited(
        verify(&audit, as_caller(&audit, reader)).await,
        "the spent reader",
    );

    for n in 0..2 * LIMIT {
        audit
            .append(vec![event("alice", "auth.login", n.into())])
            .await;
        let listed = audit
            .client
            .clone()
            .list_events(audit.tokens.request(reader, ListEventsRequest::default()))
            .await;
        assert!(
            listed.is_ok(),
            "ListEvents {n} of the spent reader: {listed:?}"
        );
        let checkpoints = audit
            .client
            .clone()
            .list_checkpoints(
                audit
                    .tokens
                    .request(reader, ListCheckpointsRequest::default()),
            )
            .await;
        assert!(
            checkpoints.is_ok(),
            "ListCheckpoints {n} of the spent reader: {checkpoints:?}"
        );
    }

    // The limit counts one spelling of the method; the server answers no other.
    assert_limited(
        call_path(&audit, VERIFY_CHAIN_PATH, as_caller(&audit, reader)).await,
        "the gRPC path itself",
    );
    for path in [
        "/bulwark.audit.v1.AuditService/verifychain",
        "/bulwark.audit.v1.AuditService/VerifyChain/",
        "/bulwark.audit.v1.AuditService//VerifyChain",
        "/bulwark.audit.v1.AuditService/Verify%43hain",
        "/bulwark.audit.v1.AuditService/./VerifyChain",
    ] {
        let result = call_path(&audit, path, as_caller(&audit, reader)).await;
        match result {
            Err(status) if status.code() == Code::Unimplemented => {}
            other => panic!("{path}: expected UNIMPLEMENTED, got {other:?}"),
        }
    }
    audit.stop().await;
}

#[tokio::test]
async fn verify_chain_goes_through_uncounted_while_redis_is_down() {
    let audit = TestAudit::start_limited(&closed_redis_url()).await;
    // Reported, but Audit stays in service: it works without Redis.
    let report = audit.readiness.report().await;
    let redis = report.checks.iter().find(|check| check.name == "redis");
    assert!(
        report.ready && redis.is_some_and(|check| !check.ok && !check.required),
        "with Redis down, /ready should list it failed and still be ready: {report:?}"
    );
    for n in 0..2 * LIMIT {
        let response = verify(&audit, as_caller(&audit, audit.reader))
            .await
            .unwrap_or_else(|status| panic!("call {n} refused while Redis is down: {status:?}"));
        assert!(
            response.into_inner().ok,
            "call {n}: the empty log does not verify"
        );
    }
    audit.stop().await;
}

#[tokio::test]
async fn audit_refuses_to_start_with_limits_it_cannot_apply() {
    let edge_limits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ratelimit/limits.yaml");
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-limits.yaml");
    for (redis_url, limits_path, key, why) in [
        (
            None,
            shipped_limits(),
            "redis.url",
            "is required with audit.limits_path",
        ),
        (
            Some(redis_url()),
            edge_limits,
            "audit.limits_path",
            "sets no limit for VerifyChain",
        ),
        (
            Some(redis_url()),
            missing,
            "audit.limits_path",
            "cannot read",
        ),
    ] {
        let what = format!("{}", limits_path.display());
        let limiting = Limiting::Custom {
            redis_url,
            limits_path,
        };
        let error = match TestAudit::launch(BY_HAND, limiting).await {
            Ok(audit) => {
                audit.stop().await;
                panic!("{what}: Audit started");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains(&format!("configuration key `{key}` is invalid")) && error.contains(why),
            "{what}: expected `{key}` ... {why}, got: {error}"
        );
    }
}
