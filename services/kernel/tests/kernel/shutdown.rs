//! Graceful shutdown, in process: an in-flight call finishes, readiness turns 503 while
//! it drains, the shutdown hooks run afterwards in registration order, and the port
//! closes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_kernel::testing::{settings, start_stateless};
use bulwark_kernel::{GrpcServices, ServiceSpec};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::audit_service_server::{AuditService, AuditServiceServer};
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, ListCheckpointsRequest, ListCheckpointsResponse,
    ListEventsRequest, ListEventsResponse, VerifyChainRequest, VerifyChainResponse,
};
use tonic::{Request, Response, Status};

const SPEC: ServiceSpec = ServiceSpec::new("shutdown-test", 0, 0);
const SLOW_CALL: Duration = Duration::from_millis(800);

/// A service whose VerifyChain takes a while, to be in flight during shutdown.
struct Slow {
    finished: Arc<Mutex<Option<Instant>>>,
}

#[tonic::async_trait]
impl AuditService for Slow {
    async fn append_events(
        &self,
        _: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn list_events(
        &self,
        _: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn verify_chain(
        &self,
        _: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        tokio::time::sleep(SLOW_CALL).await;
        if let Ok(mut finished) = self.finished.lock() {
            *finished = Some(Instant::now());
        }
        Ok(Response::new(VerifyChainResponse {
            ok: true,
            ..VerifyChainResponse::default()
        }))
    }
    async fn list_checkpoints(
        &self,
        _: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_calls_then_runs_hooks_in_order() {
    let finished = Arc::new(Mutex::new(None));
    let hooks: Arc<Mutex<Vec<(&'static str, Instant)>>> = Arc::default();
    let database = bulwark_kernel::config::KernelConfig::defaults(&SPEC).database;
    let (finished_in, hooks_in) = (finished.clone(), hooks.clone());
    let (running, _kernel) = start_stateless(
        settings(&SPEC, database, |_| {}, &[]),
        move |kernel| async move {
            for name in ["deregister", "close relay"] {
                let hooks = hooks_in.clone();
                kernel.on_shutdown(name, move || async move {
                    if let Ok(mut hooks) = hooks.lock() {
                        hooks.push((name, Instant::now()));
                    }
                });
            }
            Ok(GrpcServices::new().with(AuditServiceServer::new(Slow {
                finished: finished_in,
            })))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("start: {e:#}"));
    let grpc = format!("http://{}", running.grpc_addr);
    let ready = format!("http://{}/ready", running.http_addr);
    let grpc_addr = running.grpc_addr;

    let mut client = AuditServiceClient::connect(grpc.clone())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let call =
        tokio::spawn(async move { client.verify_chain(VerifyChainRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let shutdown = tokio::spawn(running.shutdown());

    // While the call drains, the service says it is not ready.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = reqwest_status(&ready).await;
    assert_eq!(status, Some(503), "readiness while draining");

    let answer = call.await.unwrap_or_else(|e| panic!("call task: {e}"));
    assert!(answer.is_ok(), "the in-flight call was cut: {answer:?}");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap_or_else(|_| panic!("shutdown did not finish"))
        .unwrap_or_else(|e| panic!("shutdown task: {e}"));

    let finished_at = finished
        .lock()
        .ok()
        .and_then(|f| *f)
        .unwrap_or_else(|| panic!("the slow call never finished"));
    let hooks = hooks.lock().map(|h| h.clone()).unwrap_or_default();
    let names: Vec<&str> = hooks.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["deregister", "close relay"], "hooks out of order");
    assert!(
        hooks.iter().all(|(_, at)| *at >= finished_at),
        "a hook ran before the in-flight call had drained"
    );
    assert!(
        tokio::net::TcpStream::connect(grpc_addr).await.is_err(),
        "the gRPC port still accepts connections after shutdown"
    );
}

/// The HTTP status of GET `url` over a plain HTTP/1.1 request.
async fn reqwest_status(url: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
