//! Signing-key rotation while the edge runs: tokens of the new key are accepted once
//! the filter has refetched the JWKS (no Envoy restart), and tokens of the previous key
//! keep working while it is published.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bulwark_e2e::Mesh;
use bulwark_e2e::poll_until;
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::auth::v1::{RotateSigningKeyRequest, RotateSigningKeyResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Reply, SigningKey, bearer, claims_with, envoy_stat, get_me, login,
    now_unix, start_mesh, token_part,
};

/// How long the filter may take to pick up a new key: it refetches the JWKS for an
/// unknown `kid` at most every `min_refetch_interval_seconds` (5 s in `envoy/edge.yaml`)
/// and answers 401 meanwhile; the margin is for a loaded machine.
const NEW_KEY_DEADLINE: Duration = Duration::from_secs(20);

fn kid_of(token: &str) -> String {
    token_part(token, 0)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("token without kid: {token}"))
        .to_owned()
}

/// RotateSigningKey as the holder of `access_token`, over gRPC through the edge.
async fn rotate(mesh: &Mesh, access_token: &str, immediate: bool) -> RotateSigningKeyResponse {
    let mut auth = AuthServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");
    let mut request = tonic::Request::new(RotateSigningKeyRequest { immediate });
    request.metadata_mut().insert(
        "authorization",
        bearer(access_token).parse().expect("a bearer header value"),
    );
    auth.rotate_signing_key(request)
        .await
        .unwrap_or_else(|status| {
            panic!("RotateSigningKey (immediate: {immediate}) through the edge: {status:?}")
        })
        .into_inner()
}

/// The JWKS the edge serves at `/.well-known/jwks.json`, and its kids in order.
async fn published_kids(mesh: &Mesh) -> (Value, Vec<String>) {
    let jwks = Reply::of(
        mesh.http().get(mesh.edge_url("/.well-known/jwks.json")),
        "GET /.well-known/jwks.json",
    )
    .await
    .json("the JWKS");
    let kids = jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (jwks, kids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_key_is_accepted_by_the_running_edge_and_the_old_key_still_works() {
    let mesh = start_mesh(None).await;
    let before = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let old_kid = kid_of(&before.access_token);
    let old_key = SigningKey::active(&mesh);
    assert_eq!(
        old_key.kid, old_kid,
        "the login token is not signed by the active key"
    );
    let reply = get_me(&mesh, Some(&bearer(&before.access_token))).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GetMe before rotation: {reply:?}"
    );
    let vm_created = envoy_stat(&mesh, "wasm.envoy.wasm.runtime.v8.created").await;

    // An immediate rotation (a compromised key): the edge meets the new kid before its
    // periodic JWKS refresh and must pick it up through its unknown-kid refetch.
    let rotation = rotate(&mesh, &before.access_token, true).await;
    assert_eq!(
        rotation.previous_kid, old_kid,
        "the rotation did not retire the key in use: {rotation:?}"
    );
    assert_ne!(
        rotation.kid, old_kid,
        "the rotation kept the kid: {rotation:?}"
    );
    let rotated_at = Instant::now();

    let after = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        kid_of(&after.access_token),
        rotation.kid,
        "a login after the rotation is not signed by the new key"
    );
    let refused = Cell::new(0u32);
    poll_until(
        "GetMe with a token of the new key accepted by the running edge",
        NEW_KEY_DEADLINE,
        || async {
            let reply = get_me(&mesh, Some(&bearer(&after.access_token))).await;
            if reply.status == StatusCode::OK {
                return Ok(());
            }
            refused.set(refused.get() + 1);
            Err(format!("{reply:?}"))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
    eprintln!(
        "the new key's token was accepted {:?} after the rotation, after {} refusals",
        rotated_at.elapsed(),
        refused.get()
    );

    // The previous key is retired, not withdrawn: its tokens still pass, the login's and
    // one minted with it now.
    let old = get_me(&mesh, Some(&bearer(&before.access_token))).await;
    assert_eq!(
        old.status,
        StatusCode::OK,
        "a token of the previous key was refused after the rotation: {old:?}"
    );
    let now = now_unix();
    let minted = old_key.sign(&claims_with(
        &before.access_token,
        &[
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(now + 300)),
            ("jti", json!("gateway-e2e-old-key")),
        ],
    ));
    let old_minted = get_me(&mesh, Some(&bearer(&minted))).await;
    assert_eq!(
        old_minted.status,
        StatusCode::OK,
        "a fresh token signed with the previous key was refused: {old_minted:?}"
    );

    let (jwks, kids) = published_kids(&mesh).await;
    assert!(
        kids.contains(&rotation.kid) && kids.contains(&old_kid),
        "the JWKS should publish the new and the previous key: {jwks}"
    );
    assert_eq!(
        envoy_stat(&mesh, "wasm.envoy.wasm.runtime.v8.created").await,
        vm_created,
        "a Wasm VM was created again during the rotation"
    );

    // A delayed rotation (the mesh's Auth waits the default 90 s): the new key is in the
    // JWKS the edge serves at once, while Auth still signs with the current key.
    let delayed = rotate(&mesh, &after.access_token, false).await;
    let (jwks, kids) = published_kids(&mesh).await;
    let fresh = kid_of(&login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await.access_token);
    assert!(
        kids.contains(&delayed.kid) && fresh == rotation.kid,
        "after a delayed rotation the edge's JWKS should list the pending key {} while a \
         fresh token is still signed by {} (it carries {fresh}): {delayed:?} {jwks}",
        delayed.kid,
        rotation.kid,
    );
}
