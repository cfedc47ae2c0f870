//! Per-RPC Prometheus series on the admin port.

use bulwark_e2e::{Mesh, ServiceKind};
use bulwark_proto::identity::v1::GetUserRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_per_rpc_series_after_calls() {
    let mesh = Mesh::builder()
        .service(ServiceKind::Identity)
        .start()
        .await
        .expect("starting identity");
    let identity = mesh.service(ServiceKind::Identity);
    let mut client = IdentityServiceClient::connect(identity.grpc_url())
        .await
        .expect("connecting to identity's gRPC port");
    // The outcome does not matter (an unknown user, no caller): the call is counted.
    for _ in 0..3 {
        let _ = client
            .get_user(GetUserRequest {
                id: "00000000-0000-4000-8000-000000000000".to_owned(),
            })
            .await;
    }

    let response = mesh
        .http()
        .get(identity.admin_url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        response.status(),
        200,
        "/metrics answered {}",
        response.status()
    );
    let text = response.text().await.expect("reading /metrics");
    let series_of = |metric: &str| -> Vec<&str> {
        text.lines()
            .filter(|line| line.starts_with(metric) && line.contains(r#"function="GetUser""#))
            .collect()
    };
    let calls = series_of("function_calls_total{");
    assert!(
        !calls.is_empty(),
        "no function_calls_total series with function=\"GetUser\" after 3 calls; /metrics:\n{text}"
    );
    assert!(
        calls
            .iter()
            .any(|line| line.contains("bulwark.identity.v1.IdentityService")),
        "GetUser's series does not name its service (module label): {calls:?}"
    );
    let counted: f64 = calls
        .iter()
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        counted >= 3.0,
        "3 GetUser calls made, {counted} counted: {calls:?}"
    );
    assert!(
        !series_of("function_calls_duration_seconds").is_empty(),
        "no function_calls_duration_seconds series for GetUser; /metrics:\n{text}"
    );
}
