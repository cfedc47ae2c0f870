//! Native tests of the gateway logic: JWT verification, JWKS parsing, configuration,
//! local replies and rate-limit descriptors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config;
mod flow;
mod gateway;
mod jwks;
mod jwks_sync;
mod jwt;
mod mock_host;
mod ratelimit;
mod revocation;
mod support;
