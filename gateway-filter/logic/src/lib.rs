//! Host-agnostic logic of Bulwark's Envoy gateway filter: plugin configuration, JWT
//! verification against a JWKS, the 401/429 replies, rate-limit descriptors, and the
//! OAuth 2.0 token endpoint's answers.
//!
//! Token verification itself (claims, rules, JWKS keys) is the token contract,
//! `bulwark-token`, shared with the services; this crate adds the cache of verified tokens.
//!
//! Nothing here calls proxy-wasm, so all of it is unit-tested natively. The host shows up
//! only as plain arguments: the current time is passed in as Unix seconds (the glue reads
//! the proxy's clock), and logging goes through the `log` facade, which proxy-wasm routes
//! to Envoy's log.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod config;
pub mod error;
pub mod gateway;
pub mod jwks_sync;
pub mod oauth;
pub mod ratelimit;
pub mod response;
pub mod routes;
pub mod verifier;

/// The signing keys: the token contract's JWKS parsing, re-exported for the filter.
pub use bulwark_token::jwks;

mod cache;

pub use cache::CacheStats;
pub use config::{ConfigError, FailureMode, GatewayConfig, PluginConfig};
pub use error::AuthError;
pub use gateway::{Access, Gateway, RequestHead};
pub use jwks::{JwksError, KeyAlgorithm, KeyStore};
pub use response::LocalResponse;
pub use verifier::{TokenVerifier, VerifiedClaims};
