//! Bulwark's gRPC APIs: the prost messages of every service, tonic clients and
//! servers behind the `client` and `server` features, and the encoded
//! descriptor set that Envoy's gRPC-JSON transcoder and gRPC reflection read.
//!
//! The `.proto` sources under `proto/` are the API documentation; the
//! `google.api.http` bindings on their methods define the public REST routes.
//!
//! Features:
//! - none (the default): messages only, no tonic; builds for `wasm32-wasip1`.
//! - `client`: `*_client` modules, e.g.
//!   `identity::v1::identity_service_client::IdentityServiceClient`
//!   (`IdentityServiceClient::connect` uses tonic's channel).
//! - `server`: `*_server` modules, e.g.
//!   `identity::v1::identity_service_server::{IdentityService, IdentityServiceServer}`.

/// The descriptor set of every Bulwark and Envoy rate limit proto, encoded,
/// with all imports (`google/api/*`, `google/protobuf/*`) and source info.
///
/// It keeps the `google.api.http` method options, so it can be handed to
/// Envoy's gRPC-JSON transcoder as `proto_descriptor` (write it to a file with
/// the `bulwark-descriptor` binary) or to tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bulwark_descriptor.bin"));

/// Full gRPC names of the four Bulwark services, i.e. the `services` list of
/// Envoy's gRPC-JSON transcoder.
pub const BULWARK_SERVICES: [&str; 4] = [
    identity::v1::SERVICE_NAME,
    auth::v1::SERVICE_NAME,
    authz::v1::SERVICE_NAME,
    audit::v1::SERVICE_NAME,
];

/// Includes one generated package; generated code follows the proto's
/// naming and comment layout, not this workspace's lints.
macro_rules! generated {
    (
        $(#[$doc:meta])*
        pub mod $name:ident = $file:literal $(, service $service:literal)?;
    ) => {
        $(#[$doc])*
        #[allow(clippy::all, clippy::pedantic, rustdoc::all)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));

            $(
                /// Full gRPC name of this package's service, as used in request
                /// paths, health checks and reflection.
                pub const SERVICE_NAME: &str = $service;
            )?
        }
    };
}

/// User accounts (`bulwark.identity.v1`).
pub mod identity {
    generated! {
        /// `bulwark.identity.v1`: `IdentityService` and its messages.
        pub mod v1 = "bulwark.identity.v1.rs", service "bulwark.identity.v1.IdentityService";
    }
}

/// Tokens and signing keys (`bulwark.auth.v1`).
pub mod auth {
    generated! {
        /// `bulwark.auth.v1`: `AuthService` and its messages.
        pub mod v1 = "bulwark.auth.v1.rs", service "bulwark.auth.v1.AuthService";
    }
}

/// Roles and permission checks (`bulwark.authz.v1`).
pub mod authz {
    generated! {
        /// `bulwark.authz.v1`: `AuthzService` and its messages.
        pub mod v1 = "bulwark.authz.v1.rs", service "bulwark.authz.v1.AuthzService";
    }
}

/// The audit log (`bulwark.audit.v1`).
pub mod audit {
    generated! {
        /// `bulwark.audit.v1`: `AuditService` and its messages.
        pub mod v1 = "bulwark.audit.v1.rs", service "bulwark.audit.v1.AuditService";
    }
}

/// Leased quotas for the edge (`bulwark.ratelimit.v1`), served by the rate-limit
/// service beside Envoy's `RateLimitService`.
pub use bulwark::ratelimit;

/// Packages mounted at their full proto path, because generated code refers from them
/// to Envoy's packages by relative path (`super::super::super::envoy`).
pub mod bulwark {
    /// `bulwark.ratelimit.*`.
    pub mod ratelimit {
        generated! {
            /// `bulwark.ratelimit.v1`: `LeaseService` and its messages.
            pub mod v1 = "bulwark.ratelimit.v1.rs", service "bulwark.ratelimit.v1.LeaseService";
        }
    }
}

/// Hand-written, wire-compatible subsets of Envoy's API (same packages,
/// names and field numbers as upstream).
pub mod envoy {
    /// `envoy.config.*`.
    pub mod config {
        /// `envoy.config.core.*`.
        pub mod core {
            generated! {
                /// `envoy.config.core.v3`: only `HeaderValue`.
                pub mod v3 = "envoy.config.core.v3.rs";
            }
        }
    }

    /// `envoy.extensions.*`.
    pub mod extensions {
        /// `envoy.extensions.common.*`.
        pub mod common {
            /// `envoy.extensions.common.ratelimit.*`.
            pub mod ratelimit {
                generated! {
                    /// `envoy.extensions.common.ratelimit.v3`: `RateLimitDescriptor`.
                    pub mod v3 = "envoy.extensions.common.ratelimit.v3.rs";
                }
            }
        }
    }

    /// `envoy.service.*`.
    pub mod service {
        /// `envoy.service.ratelimit.*`.
        pub mod ratelimit {
            generated! {
                /// `envoy.service.ratelimit.v3`: the rate limit service protocol
                /// (`RateLimitService.ShouldRateLimit`) that Envoy's ratelimit
                /// filter and the gateway filter call.
                pub mod v3 = "envoy.service.ratelimit.v3.rs",
                    service "envoy.service.ratelimit.v3.RateLimitService";
            }
        }
    }

    /// `envoy.type.*`.
    pub mod r#type {
        generated! {
            /// `envoy.type.v3`: `RateLimitUnit`.
            pub mod v3 = "envoy.r#type.v3.rs";
        }
    }
}

/// Hand-written, schema-compatible definitions of the googleapis types the
/// protos use.
pub mod google {
    /// `google.api`: `HttpRule`, the value of the `google.api.http` method
    /// option (extension field 72295728 of `MethodOptions`), and `HttpBody`.
    #[allow(clippy::all, clippy::pedantic, rustdoc::all)]
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));

        /// An arbitrary HTTP body and its content type: Envoy's gRPC-JSON
        /// transcoder passes a raw request body this way to an RPC whose
        /// request is `google.api.HttpBody` (the OAuth 2.0 token endpoint).
        /// Written by hand because generated code could not name it from the
        /// other packages' modules.
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct HttpBody {
            /// The `Content-Type` of the body.
            #[prost(string, tag = "1")]
            pub content_type: ::prost::alloc::string::String,
            /// The raw body.
            #[prost(bytes = "vec", tag = "2")]
            pub data: ::prost::alloc::vec::Vec<u8>,
            /// Application specific metadata; unused by Bulwark.
            #[prost(message, repeated, tag = "3")]
            pub extensions: ::prost::alloc::vec::Vec<::prost_types::Any>,
        }
    }
}
