//! The cases the benchmark runs: which filters each Envoy gets and which tokens wrk sends.

use super::keys::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filters {
    None,
    JwtAuthn { cache: bool },
    Gateway,
    GatewayRateLimited,
    JwtAuthnRateLimited,
}

impl Filters {
    pub fn authenticates(self) -> bool {
        self != Self::None
    }

    pub fn rate_limited(self) -> bool {
        matches!(self, Self::GatewayRateLimited | Self::JwtAuthnRateLimited)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// One Ed25519 token on every request.
    Repeated,
    /// A different token on every request (until the pool wraps).
    Fresh(Alg),
}

#[derive(Debug)]
pub struct Case {
    pub key: &'static str,
    pub label: &'static str,
    pub filters: Filters,
    pub tokens: Tokens,
}

/// In the first round's order (every other round runs it reversed): the cases each target
/// compares run next to each other, so a change in the machine's background load hits
/// both sides alike, and neither side is always measured first.
pub static CASES: [Case; 9] = [
    Case {
        key: "a",
        label: "no filter",
        filters: Filters::None,
        tokens: Tokens::Repeated,
    },
    Case {
        key: "b",
        label: "native jwt_authn, cache, repeated token",
        filters: Filters::JwtAuthn { cache: true },
        tokens: Tokens::Repeated,
    },
    Case {
        key: "d",
        label: "gateway filter, repeated token",
        filters: Filters::Gateway,
        tokens: Tokens::Repeated,
    },
    Case {
        key: "c-eddsa",
        label: "native jwt_authn, no cache, fresh EdDSA tokens",
        filters: Filters::JwtAuthn { cache: false },
        tokens: Tokens::Fresh(Alg::EdDsa),
    },
    Case {
        key: "e-eddsa",
        label: "gateway filter, fresh EdDSA tokens",
        filters: Filters::Gateway,
        tokens: Tokens::Fresh(Alg::EdDsa),
    },
    Case {
        key: "c-rs256",
        label: "native jwt_authn, no cache, fresh RS256 tokens",
        filters: Filters::JwtAuthn { cache: false },
        tokens: Tokens::Fresh(Alg::Rs256),
    },
    Case {
        key: "e-rs256",
        label: "gateway filter, fresh RS256 tokens",
        filters: Filters::Gateway,
        tokens: Tokens::Fresh(Alg::Rs256),
    },
    Case {
        key: "g",
        label: "native jwt_authn (cache) + native ratelimit, repeated token",
        filters: Filters::JwtAuthnRateLimited,
        tokens: Tokens::Repeated,
    },
    Case {
        key: "f",
        label: "gateway filter with rate limiting, repeated token",
        filters: Filters::GatewayRateLimited,
        tokens: Tokens::Repeated,
    },
];
