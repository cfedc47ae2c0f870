//! The verified user id reaches the service as `x-bulwark-user-id` (the kernel logs it as
//! `edge_user_id`), and a value the client sends itself never does: not on a bearer route
//! with or without a valid token, not on a public route with or without one, not over
//! REST and not over gRPC.

use bulwark_e2e::{Mesh, ServiceKind};
use bulwark_proto::identity::v1::GetMeRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use reqwest::StatusCode;
use serde_json::Value;

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Reply, bearer, login, register, request_log_lines, rpc_calls,
    start_mesh,
};

/// Someone else's id, as an attacker would put it in the header.
const FORGED_USER_ID: &str = "00000000-0000-4000-8000-0000000f0f0f";

/// The distinct `edge_user_id` values on a request's log lines of `kind`.
async fn logged_user_ids(mesh: &Mesh, kind: ServiceKind, request_id: &str) -> Vec<String> {
    let lines = request_log_lines(mesh, kind, request_id).await;
    let mut ids: Vec<String> = lines
        .iter()
        .filter_map(|line| line.get("edge_user_id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `POST /v1/users` (public) with an invalid registration, a forged identity header and
/// optionally a valid bearer token; returns the request id after checking that identity
/// answered it.
async fn public_call_with_forged_header(mesh: &Mesh, token: Option<&str>, what: &str) -> String {
    let mut request = mesh
        .http()
        .post(mesh.edge_url("/v1/users"))
        .header("content-type", "application/json")
        .header("x-bulwark-user-id", FORGED_USER_ID)
        .header("x-bulwark-roles", "admin")
        .body(crate::support::INVALID_REGISTRATION);
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    let reply = Reply::of(request, what).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: identity should refuse the invalid registration: {reply:?}"
    );
    reply.request_id(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_see_the_verified_user_id_and_never_a_client_supplied_one() {
    let mesh = start_mesh(None).await;
    let admin = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let http = mesh.http();

    // A bearer route with a valid token: the verified id, whatever the client claimed.
    for (what, forged) in [
        ("GetMe without a forged header", None),
        ("GetMe with a forged header", Some(FORGED_USER_ID)),
    ] {
        let mut request = http
            .get(mesh.edge_url("/v1/users/me"))
            .header("authorization", bearer(&admin.access_token));
        if let Some(id) = forged {
            request = request.header("x-bulwark-user-id", id);
        }
        let reply = Reply::of(request, what).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
        assert_eq!(
            reply.json(what)["id"].as_str(),
            Some(admin.user_id.as_str()),
            "{what}: answered for another user: {reply:?}"
        );
        let request_id = reply.request_id(what);
        let ids = logged_user_ids(&mesh, ServiceKind::Identity, &request_id).await;
        assert_eq!(
            ids,
            vec![admin.user_id.clone()],
            "{what}: identity logged edge_user_id {ids:?}, expected only the verified {}",
            admin.user_id
        );
        // The service's own verdict on who called is on its log lines too.
        let lines = request_log_lines(&mesh, ServiceKind::Identity, &request_id).await;
        let callers: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.get("caller").and_then(Value::as_str))
            .collect();
        assert!(
            !callers.is_empty() && callers.iter().all(|c| *c == admin.user_id),
            "{what}: identity's log lines should name the verified caller {}: {callers:?}",
            admin.user_id
        );
    }

    // The same over gRPC (HTTP/2 through the edge), the forged id as metadata.
    let mut client = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");
    let mut request = tonic::Request::new(GetMeRequest {});
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        bearer(&admin.access_token)
            .parse()
            .expect("a bearer header value"),
    );
    metadata.insert(
        "x-bulwark-user-id",
        FORGED_USER_ID.parse().expect("a header value"),
    );
    let response = client
        .get_me(request)
        .await
        .unwrap_or_else(|status| panic!("gRPC GetMe with a valid token failed: {status:?}"));
    let request_id = response
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("the gRPC answer carries x-request-id")
        .to_owned();
    assert_eq!(
        response.get_ref().id,
        admin.user_id,
        "gRPC GetMe answered another user"
    );
    let ids = logged_user_ids(&mesh, ServiceKind::Identity, &request_id).await;
    assert_eq!(
        ids,
        vec![admin.user_id.clone()],
        "gRPC GetMe with a forged header: identity logged edge_user_id {ids:?}"
    );

    // A bearer route without a token: refused at the edge, forged header or not.
    let calls_before = rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await;
    let reply = Reply::of(
        http.get(mesh.edge_url("/v1/users/me"))
            .header("x-bulwark-user-id", FORGED_USER_ID),
        "GetMe with only a forged header",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "a forged identity header stood in for a token: {reply:?}"
    );
    assert_eq!(
        rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await,
        calls_before,
        "GetMe with only a forged header reached identity"
    );

    // Public routes: no identity at all, with or without a valid token.
    for (what, token) in [
        ("public CreateUser with a forged header", None),
        (
            "public CreateUser with a forged header and a valid token",
            Some(admin.access_token.as_str()),
        ),
    ] {
        let request_id = public_call_with_forged_header(&mesh, token, what).await;
        let ids = logged_user_ids(&mesh, ServiceKind::Identity, &request_id).await;
        assert!(
            ids.is_empty(),
            "{what}: identity logged edge_user_id {ids:?} on a public route"
        );
    }

    // A user registered through the edge gets its own id, not the admin's or a forged one.
    let email = "headers-user@example.com";
    let password = "a-long-enough-password";
    let user_id = register(&mesh, email, password).await;
    let user = login(&mesh, email, password).await;
    assert_eq!(
        user.user_id, user_id,
        "the login token's sub is not the registered id"
    );
    let reply = Reply::of(
        http.get(mesh.edge_url("/v1/users/me"))
            .header("authorization", bearer(&user.access_token))
            .header("x-bulwark-user-id", admin.user_id.as_str()),
        "GetMe of a user claiming to be the admin",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let ids = logged_user_ids(&mesh, ServiceKind::Identity, &reply.request_id("GetMe")).await;
    assert_eq!(
        ids,
        vec![user_id.clone()],
        "a user who sent the admin's id as x-bulwark-user-id: identity logged {ids:?}"
    );

    // Nowhere in any service's log did the forged id arrive.
    for kind in ServiceKind::ALL {
        let text = std::fs::read_to_string(mesh.service(kind).log())
            .unwrap_or_else(|err| panic!("reading {}'s log: {err}", kind.name()));
        let leaked: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(FORGED_USER_ID))
            .collect();
        assert!(
            leaked.is_empty(),
            "the forged user id reached {}: {leaked:?}",
            kind.name()
        );
    }
}
