//! The public surface of CONTRACT.md through real Envoy, as a REST/JSON client (and
//! one gRPC client) sees it: routes, their bodies and errors, tokens, permissions and
//! the audit log. JWT rejection at the edge and rate limiting are tested elsewhere;
//! here the rate limits are raised so that a test may register and log in freely.

mod access;
mod account_flows;
mod accounts;
mod audit_log;
mod client;
mod lockout;
mod mfa;
mod replicas;
mod service_accounts;
mod sessions;
mod tokens;
