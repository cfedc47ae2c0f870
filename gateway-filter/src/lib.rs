//! Bulwark's Envoy gateway filter: a proxy-wasm HTTP filter that verifies bearer JWTs at
//! the edge and forwards the verified identity upstream; all decisions live in
//! `bulwark-gateway-logic`, this crate only binds them to the proxy-wasm host.
//!
//! Lifecycle: the root context parses the plugin configuration in `on_configure`, then on
//! every tick syncs the JWKS from shared data and, when due, fetches it from the
//! configured cluster (one worker per interval, see `jwks_sync`), and sends the lease
//! renewals its worker claimed. Each HTTP context strips client-sent identity headers,
//! lets public routes through, verifies the bearer token and either sets the identity
//! headers or answers 401; a request that passes then spends a hit of the instance's
//! lease for its rate-limit descriptor, or asks the rate-limit service, and is answered
//! 429 when over. The flow and the shared-data protocols are the logic crate's
//! (`flow`, `worker`, `lease`), behind its `Host` trait, which `host::ProxyHost` implements.
//!
//! A second instance, configured with `oauth_token_errors` and placed before the gRPC-JSON
//! transcoder, rewrites the token endpoint's error answers into RFC 6749 form
//! (`oauth_http`).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod host;
mod http;
mod metrics;
mod oauth_http;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    install_panic_hook();
    proxy_wasm::set_root_context(|_context_id| Box::new(root::GatewayRoot::default()));
}}

/// Replaces the SDK's hook (which unwraps its own log call) with one that cannot fail:
/// with `panic = "abort"` a panic kills the VM, and this line in Envoy's log is all that
/// says why.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(
            LogLevel::Critical,
            &format!("bulwark gateway filter panicked: {info}"),
        );
    }));
}
