//! Who is calling: every service verifies the bearer token itself against Auth's JWKS
//! (cached, refreshed on a timer and, at a bounded rate, when a token names an
//! unknown key), so no service trusts an identity header set by someone else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::jwk::Jwk as JwtJwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tonic::Status;

use crate::clients::AuthApi;
use crate::config::TokensConfig;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// At most one JWKS refetch for an unknown `kid` in this interval.
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// The message every authentication failure gets; details go to the log only.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or invalid bearer token";

/// The claims Bulwark's access tokens carry.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// Who a token speaks for. (TEMPORARY: replaced by bulwark_token::Subject.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(uuid::Uuid),
    Client { id: String },
}

/// The verified caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: Subject,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub token_id: String,
    pub expires_at: i64,
}

impl Caller {
    pub fn user_id(&self) -> Option<uuid::Uuid> {
        match &self.subject {
            Subject::User(id) => Some(*id),
            Subject::Client { .. } => None,
        }
    }
    pub fn is_service(&self) -> bool {
        matches!(self.subject, Subject::Client { .. })
    }
    /// The subject as audit events and logs name it: the user id, or `client:<id>`.
    pub fn actor_id(&self) -> String {
        match &self.subject {
            Subject::User(id) => id.to_string(),
            Subject::Client { id } => format!("client:{id}"),
        }
    }
}

/// Why a token was refused (logged, never sent to the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("token larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token has no kid")]
    NoKid,
    #[error("unknown signing key {0}")]
    UnknownKid(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("cannot fetch the JWKS: {0}")]
    Jwks(String),
}

/// Where the public keys come from: Auth's `GetJwks` for every other service, the
/// key table for Auth itself.
pub trait KeySource: Send + Sync {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<JwtJwk>, String>>;
}

impl KeySource for Arc<dyn AuthApi> {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<JwtJwk>, String>> {
        Box::pin(async move {
            let jwks = self.get_jwks().await.map_err(|s| s.message().to_owned())?;
            jwks.keys.iter().map(proto_jwk_to_jwt).collect()
        })
    }
}

/// Converts the API's JWK message into jsonwebtoken's JWK via its RFC 7517 JSON.
pub fn proto_jwk_to_jwt(jwk: &bulwark_proto::auth::v1::Jwk) -> Result<JwtJwk, String> {
    let mut json = serde_json::Map::new();
    for (name, value) in [
        ("kid", Some(&jwk.kid)),
        ("kty", Some(&jwk.kty)),
        ("alg", Some(&jwk.alg)),
        ("use", Some(&jwk.r#use)),
        ("crv", jwk.crv.as_ref()),
        ("x", jwk.x.as_ref()),
        ("y", jwk.y.as_ref()),
        ("n", jwk.n.as_ref()),
        ("e", jwk.e.as_ref()),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            json.insert(name.to_owned(), value.clone().into());
        }
    }
    serde_json::from_value(serde_json::Value::Object(json))
        .map_err(|e| format!("JWK {}: {e}", jwk.kid))
}

struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
}

/// Verifies access tokens against a cached JWKS.
pub struct TokenVerifier {
    source: Box<dyn KeySource>,
    config: TokensConfig,
    keys: RwLock<KeySet>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn algorithm_of(jwk: &JwtJwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::KeyAlgorithm;
    match jwk.common.key_algorithm? {
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        // HMAC and anything else never verify a Bulwark token.
        _ => None,
    }
}

impl TokenVerifier {
    pub fn new(source: impl KeySource + 'static, config: TokensConfig) -> Self {
        Self {
            source: Box::new(source),
            config,
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            last_unknown_kid_fetch: Mutex::new(None),
        }
    }

    /// Replaces the cached keys with a fresh JWKS.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let jwks = self.source.fetch().await.map_err(TokenError::Jwks)?;
        let mut keys = HashMap::new();
        for jwk in &jwks {
            let (Some(kid), Some(algorithm)) = (jwk.common.key_id.clone(), algorithm_of(jwk))
            else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping JWK without kid or supported alg");
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (key, algorithm));
                }
                Err(error) => tracing::warn!(%kid, %error, "skipping unusable JWK"),
            }
        }
        let mut set = self.keys.write().await;
        set.keys = keys;
        set.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), TokenError> {
        let refresh_period = Duration::from_secs(self.config.jwks_refresh_seconds);
        {
            let set = self.keys.read().await;
            let fresh = set
                .fetched_at
                .is_some_and(|at| at.elapsed() < refresh_period);
            if let Some(key) = set.keys.get(kid)
                && fresh
            {
                return Ok(key.clone());
            }
            if fresh {
                // Fresh keys but no such kid: refetch at most once per interval.
                let mut last = self.last_unknown_kid_fetch.lock().await;
                if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL) {
                    return Err(TokenError::UnknownKid(kid.to_owned()));
                }
                *last = Some(Instant::now());
            }
        }
        self.refresh().await?;
        let set = self.keys.read().await;
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKid(kid.to_owned()))
    }

    /// Verifies signature, algorithm, `exp`/`nbf` (with leeway), `iss` and `aud`.
    pub async fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(TokenError::NoKid)?;
        let (key, algorithm) = self.key(&kid).await?;
        if header.alg != algorithm {
            return Err(TokenError::Invalid(format!(
                "token alg {:?} does not match key alg {algorithm:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let subject = match claims.sub.strip_prefix("client:") {
            Some(id) if !id.is_empty() => Subject::Client { id: id.to_owned() },
            _ => Subject::User(
                uuid::Uuid::parse_str(&claims.sub)
                    .map_err(|_| TokenError::Invalid("sub is not a user id".into()))?,
            ),
        };
        let permissions = match subject {
            Subject::Client { .. } => claims.permissions,
            Subject::User(_) => Vec::new(),
        };
        Ok(Caller {
            subject,
            permissions,
            roles: claims.roles,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// The caller of `request`, from its `authorization: Bearer` metadata; every
    /// failure is UNAUTHENTICATED with the same message, the reason is logged.
    pub async fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        let result = match bearer_token(request.metadata()) {
            Some(token) => self.verify(token).await,
            None => Err(TokenError::Missing),
        };
        result.map_err(|error| {
            tracing::info!(%error, "bearer token refused");
            Status::unauthenticated(UNAUTHENTICATED_MESSAGE)
        })
    }
}

/// Headers the edge adds to every request it forwards: with `use_remote_address`
/// Envoy appends the client's address to `x-forwarded-for`, and the JSON transcoder
/// adds `x-envoy-original-path`. Services call each other directly, without either.
const EDGE_MARKERS: [&str; 2] = ["x-forwarded-for", "x-envoy-original-path"];

/// Whether the call passed through the edge (a client of the public API) rather than
/// coming straight from another service. A client cannot remove headers the edge
/// adds, so presence is reliable; absence is trusted only as far as the mesh network
/// is (Connect intentions and mTLS in production).
pub fn through_edge(metadata: &tonic::metadata::MetadataMap) -> bool {
    EDGE_MARKERS.iter().any(|name| metadata.contains_key(*name))
}

/// The token of an `authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl crate::Kernel {
    /// A verifier of bearer tokens against Auth's JWKS (fetched through the typed
    /// Auth client on first use). Auth itself builds one over its own key table.
    pub fn token_verifier(&self) -> Result<Arc<TokenVerifier>, crate::clients::ClientError> {
        Ok(Arc::new(TokenVerifier::new(
            self.clients.auth()?,
            self.config().tokens.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    // A throwaway Ed25519 key pair generated for these tests only.
    const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOd6dJiRT/u0P0VWdQLreZKVI3MdNcxSBq+VXZT/ks5c\n-----END PRIVATE KEY-----\n";

    struct StaticKeys {
        jwks: std::sync::Mutex<Vec<JwtJwk>>,
        fetches: AtomicU32,
    }

    impl KeySource for Arc<StaticKeys> {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<JwtJwk>, String>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let keys = self.jwks.lock().map(|k| k.clone()).unwrap_or_default();
            Box::pin(async move { Ok(keys) })
        }
    }

    fn public_jwk(kid: &str) -> JwtJwk {
        let key = EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes())
            .unwrap_or_else(|e| panic!("test key: {e}"));
        let mut jwk = JwtJwk::from_encoding_key(&key, Algorithm::EdDSA)
            .unwrap_or_else(|e| panic!("jwk: {e}"));
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }

    fn token(kid: &str, claims: serde_json::Value) -> String {
        let key = EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes())
            .unwrap_or_else(|e| panic!("test key: {e}"));
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &key).unwrap_or_else(|e| panic!("sign: {e}"))
    }

    fn config() -> TokensConfig {
        TokensConfig {
            issuer: "bulwark".into(),
            audience: "bulwark-api".into(),
            leeway_seconds: 30,
            jwks_refresh_seconds: 300,
        }
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": "bulwark", "aud": "bulwark-api",
            "sub": "0192f0c4-7d4e-7b1a-9f00-000000000001",
            "iat": now, "exp": now + exp_offset, "jti": "t1", "roles": ["admin"]
        })
    }

    fn verifier(keys: Vec<JwtJwk>) -> (TokenVerifier, Arc<StaticKeys>) {
        let source = Arc::new(StaticKeys {
            jwks: std::sync::Mutex::new(keys),
            fetches: AtomicU32::new(0),
        });
        (TokenVerifier::new(source.clone(), config()), source)
    }

    #[tokio::test]
    async fn valid_token_yields_the_caller() {
        let (verifier, _) = verifier(vec![public_jwk("k1")]);
        let caller = verifier
            .verify(&token("k1", claims(600)))
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(
            caller.user_id().map(|id| id.to_string()).unwrap_or_default(),
            "0192f0c4-7d4e-7b1a-9f00-000000000001"
        );
        assert_eq!(caller.roles, vec!["admin".to_owned()]);
    }

    #[tokio::test]
    async fn expired_wrong_issuer_and_wrong_audience_are_refused() {
        let (verifier, _) = verifier(vec![public_jwk("k1")]);
        let mut wrong_iss = claims(600);
        wrong_iss["iss"] = json!("evil");
        let mut wrong_aud = claims(600);
        wrong_aud["aud"] = json!("other");
        for (name, claims) in [
            ("expired", claims(-120)),
            ("iss", wrong_iss),
            ("aud", wrong_aud),
        ] {
            let result = verifier.verify(&token("k1", claims)).await;
            assert!(
                matches!(result, Err(TokenError::Invalid(_))),
                "{name}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_then_finds_a_rotated_key() {
        let (verifier, source) = verifier(vec![public_jwk("k1")]);
        let _ = verifier.verify(&token("k1", claims(600))).await;
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        if let Ok(mut keys) = source.jwks.lock() {
            keys.push(public_jwk("k2"));
        }
        let caller = verifier.verify(&token("k2", claims(600))).await;
        assert!(caller.is_ok(), "rotated key not picked up: {caller:?}");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

        // The k2 lookup used this interval's refetch: a burst of unknown kids right
        // after it costs no fetch at all.
        for _ in 0..5 {
            let result = verifier.verify(&token("nope", claims(600))).await;
            assert_eq!(result, Err(TokenError::UnknownKid("nope".into())));
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn garbage_missing_kid_and_oversized_tokens_are_refused() {
        let (verifier, _) = verifier(vec![public_jwk("k1")]);
        assert!(matches!(
            verifier.verify("garbage").await,
            Err(TokenError::Malformed(_))
        ));
        let oversized = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verifier.verify(&oversized).await, Err(TokenError::TooLarge));
        let key =
            EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap_or_else(|e| panic!("key: {e}"));
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(600), &key)
            .unwrap_or_else(|e| panic!("sign: {e}"));
        assert_eq!(verifier.verify(&no_kid).await, Err(TokenError::NoKid));
    }

    #[test]
    fn calls_forwarded_by_the_edge_are_recognised() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert!(!through_edge(&metadata));
        metadata.insert(
            "x-forwarded-for",
            "127.0.0.9".parse().unwrap_or_else(|_| panic!()),
        );
        assert!(through_edge(&metadata));
        let mut transcoded = tonic::metadata::MetadataMap::new();
        transcoded.insert(
            "x-envoy-original-path",
            "/v1/users/me".parse().unwrap_or_else(|_| panic!()),
        );
        assert!(through_edge(&transcoded));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            "authorization",
            "bearer abc".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(bearer_token(&metadata), Some("abc"));
        metadata.insert(
            "authorization",
            "Basic abc".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(bearer_token(&metadata), None);
    }
}
