//! Bulwark's dev environment: starts real PostgreSQL, Redis, an SMTP server (with Auth),
//! the service binaries and Envoy on free ports in a temporary directory for the
//! end-to-end tests and `xtask`, and tears them down again when the [`Mesh`] is dropped;
//! [`local`] runs the same components as the long-lived local mesh of
//! `deploy/local/mesh` (the `bulwark-mesh` binary).
//!
//! Nothing is skipped: a missing tool or binary fails the test with a message that says
//! how to get it. When a test fails, the tail of every component's log is printed.
//!
//! Every mesh makes fresh service-account secrets: each core service gets its own client
//! id and secret, Auth all four ([`Mesh::service_credentials`] hands them to tests); and
//! a fresh checkpoint key for Audit, whose files go to [`Mesh::audit_checkpoint_dir`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bulwark_e2e::{Mesh, ServiceKind};
//! let mesh = Mesh::builder().service(ServiceKind::Identity).envoy().start().await?;
//! let healthz = mesh.http().get(mesh.edge_url("/healthz")).send().await?;
//! assert_eq!(healthz.status(), 200);
//! # Ok(()) }
//! ```

mod accounts;
mod checkpoints;
mod envoy;
pub mod local;
mod mail;
mod mesh;
mod net;
pub mod otlp;
mod postgres;
mod proc_stat;
mod process;
pub mod prometheus;
mod redis;
mod service;
pub mod soak;
mod template;
pub mod traffic;
mod wait;
mod workspace;

pub use envoy::{
    CORS_ORIGIN_REGEX, EdgeTemplate, Envoy, RATELIMIT_TIMEOUT, endpoints_value, render_edge,
};
pub use mail::{MailMessage, MailServer};
pub use mesh::{Mesh, MeshBuilder};
pub use net::{free_port, http_client};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::Postgres;
pub use proc_stat::{ProcessStat, clock_ticks_per_second, process_running, process_stat};
pub use process::{ManagedChild, tail};
pub use prometheus::Prometheus;
pub use redis::Redis;
pub use service::{Service, ServiceKind};
pub use template::{fill_block, fill_placeholders};
pub use wait::poll_until;
pub use workspace::{
    envoy_binary, gateway_filter_wasm, on_path, python_with_aiosmtpd, workspace_root,
};
