//! Bulwark's token contract: the claims of an access token, the rules that verify it and
//! the JWKS keys it is checked against, one implementation for the edge and the services.
//!
//! The gateway filter (inside Envoy's Wasm runtime) and every service (through the kernel)
//! call the same [`Policy::verify`], so a token the edge lets through is a token the
//! services accept, and the other way round. Everything here is synchronous and
//! host-agnostic: the caller brings the key set and the current time (`now`, Unix
//! seconds), and the crypto is pure Rust so the crate builds for `wasm32-wasip1`.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod claims;
pub mod error;
pub mod jwks;
pub mod verify;

mod ed25519;

#[cfg(feature = "testing")]
pub mod testing;

pub use claims::{Subject, VerifiedClaims};
pub use error::TokenError;
pub use jwks::{JwksError, KeyAlgorithm, KeyStore, LoadedJwks, VerificationKey};
pub use verify::{DEFAULT_MAX_TOKEN_BYTES, Policy, UnverifiedToken};
