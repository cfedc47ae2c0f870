//! A panic inside a handler is contained: INTERNAL for that call, the process serves on.

use bulwark_e2e::{Mesh, ServiceKind};
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use bulwark_proto::identity::v1::{CreateUserRequest, GetUserRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PANIC_RPC: &str = "/bulwark.identity.v1.IdentityService/GetUser";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_rpc_answers_internal_and_service_keeps_serving() {
    let mut mesh = Mesh::builder()
        .service(ServiceKind::Identity)
        .service_env(
            ServiceKind::Identity,
            "BULWARK_FAULTS__PANIC_RPC",
            PANIC_RPC,
        )
        .start()
        .await
        .expect("starting identity with a panic fault");
    let url = mesh.service(ServiceKind::Identity).grpc_url();
    let mut client = IdentityServiceClient::connect(url.clone())
        .await
        .expect("connecting to identity");

    for attempt in 1..=2 {
        let status = client
            .get_user(GetUserRequest {
                id: "00000000-0000-4000-8000-000000000000".to_owned(),
            })
            .await
            .expect_err("GetUser panics by configuration, yet it succeeded");
        assert_eq!(
            status.code(),
            Code::Internal,
            "panicking GetUser (call {attempt}) answered {status:?}"
        );
        assert!(
            !status.message().contains("panicked") && !status.message().contains(".rs:"),
            "the INTERNAL message leaks the panic: {:?}",
            status.message()
        );
    }

    // Other calls on the same connection still work.
    let other = client
        .create_user(CreateUserRequest {
            email: "not-an-email".to_owned(),
            password: "short".to_owned(),
            display_name: String::new(),
        })
        .await;
    if let Err(status) = &other {
        assert!(
            !matches!(
                status.code(),
                Code::Internal | Code::Unavailable | Code::Unknown
            ),
            "after the panic, CreateUser failed as if the service were broken: {status:?}"
        );
    }
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("identity's gRPC URL")
        .connect()
        .await
        .expect("connecting to grpc.health.v1");
    let mut health = HealthClient::new(channel);
    let serving = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1 Check after the panic")
        .into_inner()
        .status;
    assert_eq!(
        serving,
        ServingStatus::Serving as i32,
        "health after the panic is {serving}"
    );

    mesh.service_mut(ServiceKind::Identity)
        .ensure_running()
        .expect("identity must still be running after a handler panicked");
}
