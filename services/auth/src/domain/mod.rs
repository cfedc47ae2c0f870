//! Validated inputs and the values Auth mints: login credentials, refresh tokens,
//! mailed account tokens,
//! service accounts and their token requests, signing keys and when they sign, access
//! token claims, TOTP secrets and recovery codes, and the audit events that describe
//! each step.

pub mod access_token;
pub mod account_token;
pub mod client_credentials;
pub mod credentials;
pub mod events;
pub mod key_schedule;
pub mod recovery_codes;
pub mod refresh_token;
pub mod service_account;
pub mod session;
pub mod signing_key;
pub mod totp;
