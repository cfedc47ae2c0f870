//! Host-agnostic logic of Bulwark's Envoy gateway filter: plugin configuration, JWT
//! verification against a JWKS, the 401/429 replies, rate-limit descriptors and leased
//! quotas, the OAuth 2.0 token endpoint's answers, and the request flow itself (pause,
//! callouts, resume) with the protocols the workers share (JWKS, leases, revoked sessions).
//!
//! Token verification itself (claims, rules, JWKS keys) is the token contract,
//! `bulwark-token`, shared with the services; this crate adds the cache of verified tokens.
//!
//! Nothing here calls proxy-wasm, so all of it is unit-tested natively. The host shows up
//! as the [`Host`] trait (headers, local replies, calls, shared data with
//! compare-and-swap, the clock, counters), which the proxy-wasm adapter implements over
//! Envoy's hostcalls and the tests over a mock; logging goes through the `log` facade,
//! which proxy-wasm routes to Envoy's log.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod config;
pub mod error;
pub mod flow;
pub mod gateway;
pub mod host;
pub mod jwks_sync;
pub mod lease;
pub mod lease_call;
pub mod oauth;
pub mod ratelimit;
pub mod response;
pub mod revocation;
pub mod routes;
pub mod verifier;
pub mod worker;

/// The signing keys: the token contract's JWKS parsing, re-exported for the filter.
pub use bulwark_token::jwks;

mod cache;

pub use cache::CacheStats;
pub use config::{ConfigError, FailureMode, GatewayConfig, PluginConfig};
pub use error::AuthError;
pub use flow::RequestFlow;
pub use gateway::{Access, Gateway, RequestHead};
pub use host::{Action, Counter, Fact, Host};
pub use jwks::{JwksError, KeyAlgorithm, KeyStore};
pub use response::LocalResponse;
pub use verifier::{CacheAnswer, TokenVerifier, VerifiedClaims};
pub use worker::Worker;
