//! End-to-end tests against real processes: PostgreSQL, Redis, the four services and
//! Envoy, each test with its own set on free ports (see the `bulwark-e2e` harness).
//!
//! One test binary with modules, so the workspace links it once.

mod contract;
mod defense;
mod deploy_files;
mod edge;
mod faults;
mod gateway;
mod health;
mod mail;
mod mesh_command;
mod metrics;
mod observability;
mod replica_ready;
mod soak;
mod support;
mod through_envoy;
mod tracing;
