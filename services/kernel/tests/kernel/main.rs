//! Integration tests of the kernel against real peers.

mod consul_files;
mod otlp;
mod schema;
mod service_tokens;
mod shutdown;
