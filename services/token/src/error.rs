//! Why a bearer token was refused: a detailed form for the log and a client-safe message.

/// A bearer credential was missing or did not verify.
///
/// `Display` is for logs and may carry detail (a `kid`, an algorithm name);
/// [`TokenError::client_message`] is what a client may see. The edge and the services
/// get the same variant for the same token, which the agreement tests compare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingToken,
    /// The `Authorization` header does not hold a Bearer credential.
    #[error("Authorization header is not a Bearer credential")]
    NotBearer,
    /// The token is longer than the configured limit; nothing of it was parsed.
    #[error("token of {len} bytes exceeds the {limit} byte limit")]
    TooLarge {
        /// Length of the presented token.
        len: usize,
        /// Configured maximum.
        limit: usize,
    },
    /// The token is not a JWS compact serialization with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header has no `kid`, so no key can be chosen.
    #[error("token header has no kid")]
    MissingKid,
    /// The header names an algorithm Bulwark never accepts (`none`, HMAC, unknown).
    #[error("token algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// No key with this `kid` is known; the JWKS may need a refetch.
    #[error("no signing key with kid {0:?}")]
    UnknownKid(String),
    /// The header's algorithm differs from the algorithm of the key its `kid` names.
    #[error("token algorithm {token} does not match key algorithm {key}")]
    AlgorithmMismatch {
        /// Algorithm in the token header.
        token: String,
        /// Algorithm of the key.
        key: String,
    },
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is in the past, beyond the tolerated skew.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future, beyond the tolerated skew.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("token audience not accepted")]
    WrongAudience,
    /// A required claim is absent (or `null`).
    #[error("token lacks required claim {0}")]
    MissingClaim(&'static str),
    /// A claim is present but unusable (wrong type, or not safe to forward in a header).
    #[error("token claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// The token verifies, but its session (`sid`) was revoked (logout, session deleted,
    /// password reset or change, refresh-token reuse).
    #[error("token's session was revoked")]
    Revoked,
}

impl TokenError {
    /// The message a client may see (the edge's JSON body and RFC 6750
    /// `error_description`). Never contains `"` or `\`, so it can be quoted in a header
    /// without escaping.
    pub fn client_message(&self) -> &'static str {
        match self {
            Self::MissingToken => "a bearer token is required",
            Self::NotBearer => "the Authorization header must use the Bearer scheme",
            Self::TooLarge { .. } => "the bearer token is too large",
            Self::Malformed(_) => "the bearer token is malformed",
            Self::MissingKid => "the bearer token does not name its signing key",
            Self::UnsupportedAlgorithm(_) | Self::AlgorithmMismatch { .. } => {
                "the bearer token is signed with an algorithm that is not accepted"
            }
            Self::UnknownKid(_) => "the bearer token is signed with an unknown key",
            Self::BadSignature => "the bearer token signature is invalid",
            Self::Expired => "the bearer token has expired",
            Self::NotYetValid => "the bearer token is not valid yet",
            Self::WrongIssuer => "the bearer token issuer is not accepted",
            Self::WrongAudience => "the bearer token audience is not accepted",
            Self::MissingClaim(_) => "the bearer token lacks a required claim",
            Self::InvalidClaim(_) => "the bearer token has an invalid claim",
            Self::Revoked => "the bearer token has been revoked",
        }
    }

    /// A short, stable name of the refusal (`expired`, `revoked`, ...) for traces, logs
    /// and metrics; never carries the token's content.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::NotBearer => "not_bearer",
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::MissingKid => "missing_kid",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::AlgorithmMismatch { .. } => "algorithm_mismatch",
            Self::UnknownKid(_) => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::Revoked => "revoked",
        }
    }

    /// The `kid` to look for in a refreshed JWKS, when that could fix this failure.
    pub fn unknown_kid(&self) -> Option<&str> {
        match self {
            Self::UnknownKid(kid) => Some(kid),
            _ => None,
        }
    }
}
