//! Checks `bulwark-proto` against the edge contract and upstream schemas: the
//! descriptor set, its HTTP bindings, wire compatibility with Envoy, message
//! encoding, the descriptor binary and the generated client/server pair.

mod cli;
mod descriptor;
mod messages;
mod routes;
#[cfg(all(feature = "client", feature = "server"))]
mod rpc;
mod upstream;
