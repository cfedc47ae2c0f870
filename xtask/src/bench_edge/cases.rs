//! The cases the benchmark runs: which filters each Envoy gets, which route answers and
//! which tokens wrk sends.

use super::keys::Alg;
use super::{BEARER_DOMAIN, RATELIMIT_DOMAIN};

/// The limit a rate-limited case is decided against, and by which rate-limit service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `[("user_id", sub)]` at 10⁹ per second, never reached, on the service whose lease
    /// threshold is above it: every request is decided EXACT, one call each.
    Unreached,
    /// The contract's bearer limit, `[("user_id", sub)]` at 100 per second, on the
    /// service with the default lease settings: the gateway filter leases it.
    Bearer,
}

impl Limit {
    /// The limit's domain in the limit files and the filters' configurations.
    pub fn domain(self) -> &'static str {
        match self {
            Self::Unreached => RATELIMIT_DOMAIN,
            Self::Bearer => BEARER_DOMAIN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filters {
    None,
    JwtAuthn { cache: bool },
    Gateway,
    GatewayRateLimited(Limit),
    JwtAuthnRateLimited(Limit),
}

impl Filters {
    pub fn authenticates(self) -> bool {
        self != Self::None
    }

    pub fn limit(self) -> Option<Limit> {
        match self {
            Self::GatewayRateLimited(limit) | Self::JwtAuthnRateLimited(limit) => Some(limit),
            _ => None,
        }
    }

    pub fn rate_limited(self) -> bool {
        self.limit().is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// One Ed25519 token on every request.
    Repeated,
    /// A different token on every request (until the pool wraps).
    Fresh(Alg),
    /// The Ed25519 tokens of [`USERS`] users, each its own `sub`, taken in turn.
    Users,
}

/// Users of the [`Tokens::Users`] cases.
pub const USERS: usize = 500;

/// Which route answers a request the filters let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `direct_response` in the router: nothing but the filters costs.
    Direct,
    /// A route to a cluster that is never connected, answered by a `health_check`
    /// filter; Envoy's native ratelimit filter needs a route with a cluster.
    Routed,
}

#[derive(Debug)]
pub struct Case {
    pub key: &'static str,
    pub label: &'static str,
    pub filters: Filters,
    pub tokens: Tokens,
    pub route: Route,
}

/// In the first round's order (every other round runs it reversed): the cases each target
/// compares run next to each other, so a change in the machine's background load hits
/// both sides alike, and neither side is always measured first.
pub static CASES: [Case; 12] = [
    Case {
        key: "a",
        label: "no filter",
        filters: Filters::None,
        tokens: Tokens::Repeated,
        route: Route::Direct,
    },
    Case {
        key: "b",
        label: "native jwt_authn, cache, repeated token",
        filters: Filters::JwtAuthn { cache: true },
        tokens: Tokens::Repeated,
        route: Route::Direct,
    },
    Case {
        key: "d",
        label: "gateway filter, repeated token",
        filters: Filters::Gateway,
        tokens: Tokens::Repeated,
        route: Route::Direct,
    },
    Case {
        key: "c-eddsa",
        label: "native jwt_authn, no cache, fresh EdDSA tokens",
        filters: Filters::JwtAuthn { cache: false },
        tokens: Tokens::Fresh(Alg::EdDsa),
        route: Route::Direct,
    },
    Case {
        key: "e-eddsa",
        label: "gateway filter, fresh EdDSA tokens",
        filters: Filters::Gateway,
        tokens: Tokens::Fresh(Alg::EdDsa),
        route: Route::Direct,
    },
    Case {
        key: "c-rs256",
        label: "native jwt_authn, no cache, fresh RS256 tokens",
        filters: Filters::JwtAuthn { cache: false },
        tokens: Tokens::Fresh(Alg::Rs256),
        route: Route::Direct,
    },
    Case {
        key: "e-rs256",
        label: "gateway filter, fresh RS256 tokens",
        filters: Filters::Gateway,
        tokens: Tokens::Fresh(Alg::Rs256),
        route: Route::Direct,
    },
    Case {
        key: "g",
        label: "native jwt_authn (cache) + native ratelimit, repeated token",
        filters: Filters::JwtAuthnRateLimited(Limit::Unreached),
        tokens: Tokens::Repeated,
        route: Route::Routed,
    },
    Case {
        key: "f",
        label: "gateway filter with EXACT rate limiting (a call per request), repeated token",
        filters: Filters::GatewayRateLimited(Limit::Unreached),
        tokens: Tokens::Repeated,
        route: Route::Routed,
    },
    Case {
        key: "d-500",
        label: "gateway filter, no rate limiting, 500 users",
        filters: Filters::Gateway,
        tokens: Tokens::Users,
        route: Route::Routed,
    },
    Case {
        key: "h",
        label: "gateway filter with LEASED rate limiting (100/s per user), 500 users",
        filters: Filters::GatewayRateLimited(Limit::Bearer),
        tokens: Tokens::Users,
        route: Route::Routed,
    },
    Case {
        key: "g-500",
        label: "native jwt_authn (cache) + native ratelimit (100/s per user), 500 users",
        filters: Filters::JwtAuthnRateLimited(Limit::Bearer),
        tokens: Tokens::Users,
        route: Route::Routed,
    },
];
