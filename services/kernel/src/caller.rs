//! Who is calling: every service verifies the bearer token itself against Auth's JWKS
//! (cached, refreshed on a timer and, at a bounded rate, when a token names an
//! unknown key), so no service trusts an identity header set by someone else.
//!
//! The verification rules are the token contract's (`bulwark-token`), the same code the
//! edge runs: this module only keeps the key set fresh and reads the system clock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_proto::auth::v1::Jwk;
use bulwark_token::{DEFAULT_MAX_TOKEN_BYTES, KeyStore, Policy, Subject, VerifiedClaims};
use futures::future::BoxFuture;
use tokio::sync::{Mutex, RwLock};

use crate::clients::AuthApi;
use crate::config::TokensConfig;

/// At most one JWKS refetch for an unknown `kid` in this interval.
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// The message every authentication failure gets; details go to the log only.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or invalid bearer token";

/// The verified caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A user or a service account.
    pub subject: Subject,
    /// The token's `roles`.
    pub roles: Vec<String>,
    /// What the token itself grants: a service account's permissions (empty for a user,
    /// whose permissions come from Authz).
    pub permissions: Vec<String>,
    /// The token's `jti`.
    pub token_id: String,
    /// The token's `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
    /// The token's `sid`: the login session of a user's token.
    pub session_id: Option<uuid::Uuid>,
}

impl Caller {
    /// The caller a verified token names.
    pub fn from_claims(claims: &VerifiedClaims) -> Self {
        Self {
            subject: claims.subject.clone(),
            roles: claims.roles.clone(),
            permissions: claims.permissions().to_vec(),
            token_id: claims.jti.clone(),
            // Past year 292 billion; saturating keeps it "far future" rather than negative.
            expires_at: i64::try_from(claims.exp).unwrap_or(i64::MAX),
            session_id: claims.sid,
        }
    }

    /// The user id, when the caller is a user.
    pub fn user_id(&self) -> Option<uuid::Uuid> {
        self.subject.user_id()
    }

    /// Whether the caller is a service account (`sub` = `client:<id>`).
    pub fn is_service(&self) -> bool {
        self.subject.is_client()
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
    /// The token contract refused it; the same reason the edge gives.
    #[error(transparent)]
    Refused(#[from] bulwark_token::TokenError),
    /// No key set to check it against.
    #[error("cannot fetch the JWKS: {0}")]
    Jwks(String),
}

/// Where the public keys come from: Auth's `GetJwks` for every other service, the
/// key table for Auth itself.
pub trait KeySource: Send + Sync {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, String>>;
}

impl KeySource for Arc<dyn AuthApi> {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, String>> {
        Box::pin(async move {
            let jwks = self.get_jwks().await.map_err(|s| s.message().to_owned())?;
            Ok(jwks.keys)
        })
    }
}

/// The API's JWK message as RFC 7517 JSON, the form the token contract parses; empty
/// and absent members are left out.
pub fn proto_jwk_to_json(jwk: &Jwk) -> serde_json::Value {
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
    serde_json::Value::Object(json)
}

struct KeySet {
    /// Shared with verifications in progress, so a refresh never waits for them.
    keys: Arc<KeyStore>,
    fetched_at: Option<Instant>,
}

/// Verifies access tokens against a cached JWKS.
pub struct TokenVerifier {
    source: Box<dyn KeySource>,
    config: TokensConfig,
    policy: Policy,
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

impl TokenVerifier {
    pub fn new(source: impl KeySource + 'static, config: TokensConfig) -> Self {
        let policy = Policy {
            issuer: config.issuer.clone(),
            audiences: vec![config.audience.clone()],
            clock_skew_seconds: config.leeway_seconds,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        };
        Self {
            source: Box::new(source),
            config,
            policy,
            keys: RwLock::new(KeySet {
                keys: Arc::new(KeyStore::default()),
                fetched_at: None,
            }),
            last_unknown_kid_fetch: Mutex::new(None),
        }
    }

    /// Replaces the cached keys with a fresh JWKS. Unusable keys are skipped (and
    /// logged); a JWKS without any usable key is an error and leaves the previous keys in
    /// force, as at the edge.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let jwks = self.source.fetch().await.map_err(TokenError::Jwks)?;
        let loaded = KeyStore::from_jwks(jwks.iter().map(proto_jwk_to_json).collect())
            .map_err(|e| TokenError::Jwks(e.to_string()))?;
        for reason in &loaded.skipped {
            tracing::warn!(%reason, "skipping unusable JWK");
        }
        let mut set = self.keys.write().await;
        set.keys = Arc::new(loaded.store);
        set.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// The key set to check a token naming `kid` against: the cached one while it is
    /// fresh and knows the `kid`, else a refetched one (for an unknown `kid`, at most
    /// once per interval; after that the contract reports the `kid` as unknown).
    async fn keys_for(&self, kid: &str) -> Result<Arc<KeyStore>, TokenError> {
        let refresh_period = Duration::from_secs(self.config.jwks_refresh_seconds);
        {
            let set = self.keys.read().await;
            let fresh = set
                .fetched_at
                .is_some_and(|at| at.elapsed() < refresh_period);
            if fresh {
                if set.keys.get(kid).is_some() {
                    return Ok(Arc::clone(&set.keys));
                }
                let mut last = self.last_unknown_kid_fetch.lock().await;
                if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL) {
                    return Ok(Arc::clone(&set.keys));
                }
                *last = Some(Instant::now());
            }
        }
        self.refresh().await?;
        Ok(Arc::clone(&self.keys.read().await.keys))
    }

    /// Verifies `token` by the token contract at the system clock's time.
    pub async fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        // A clock before 1970 fails closed: every token reads as expired.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(u64::MAX, |elapsed| elapsed.as_secs());
        self.verify_at(token, now).await
    }

    /// Verifies `token` at time `now` (Unix seconds). Size and header are checked before
    /// any key is fetched, so garbage never costs a JWKS call.
    async fn verify_at(&self, token: &str, now: u64) -> Result<Caller, TokenError> {
        let token = self.policy.parse(token)?;
        let keys = self.keys_for(token.kid()).await?;
        let claims = self.policy.verify_parsed(&token, &keys, now)?;
        Ok(Caller::from_claims(&claims))
    }
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

    use bulwark_token::testing::{self, Verdict};
    use serde_json::{Value, json};

    use super::*;

    struct StaticKeys {
        jwks: std::sync::Mutex<Vec<Jwk>>,
        fetches: AtomicU32,
    }

    impl KeySource for Arc<StaticKeys> {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, String>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let keys = self.jwks.lock().map(|k| k.clone()).unwrap_or_default();
            Box::pin(async move { Ok(keys) })
        }
    }

    /// The API message of a JWK given as RFC 7517 JSON, as Auth's `GetJwks` sends it.
    fn proto_jwk(json: &Value) -> Jwk {
        let member = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
        Jwk {
            kid: member("kid").unwrap_or_default(),
            kty: member("kty").unwrap_or_default(),
            alg: member("alg").unwrap_or_default(),
            r#use: member("use").unwrap_or_default(),
            crv: member("crv"),
            x: member("x"),
            y: member("y"),
            n: member("n"),
            e: member("e"),
        }
    }

    /// The agreement table's key, published under `kid`.
    fn public_jwk(kid: &str) -> Jwk {
        let mut jwk = testing::jwks()
            .first()
            .map(proto_jwk)
            .unwrap_or_else(|| panic!("the agreement table publishes no key"));
        jwk.kid = kid.to_owned();
        jwk
    }

    fn config() -> TokensConfig {
        TokensConfig {
            issuer: testing::ISSUER.into(),
            audience: testing::AUDIENCE.into(),
            leeway_seconds: testing::CLOCK_SKEW_SECONDS,
            jwks_refresh_seconds: 300,
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn verifier(keys: Vec<Jwk>) -> (TokenVerifier, Arc<StaticKeys>) {
        let source = Arc::new(StaticKeys {
            jwks: std::sync::Mutex::new(keys),
            fetches: AtomicU32::new(0),
        });
        (TokenVerifier::new(source.clone(), config()), source)
    }

    fn refused(error: bulwark_token::TokenError) -> Result<Caller, TokenError> {
        Err(TokenError::Refused(error))
    }

    #[tokio::test]
    async fn the_services_give_every_agreement_table_token_the_contract_verdict() {
        let (verifier, _) = verifier(testing::jwks().iter().map(proto_jwk).collect());
        let now = 1_750_000_000;
        let cases = testing::cases(now);
        assert!(!cases.is_empty(), "the agreement table is empty");
        for case in cases {
            let verdict = match verifier.verify_at(&case.token, now).await {
                Ok(caller) => Verdict::Accepted(testing::Bearer {
                    subject: caller.subject,
                    roles: caller.roles,
                    permissions: caller.permissions,
                    jti: caller.token_id,
                    exp: u64::try_from(caller.expires_at).unwrap_or(0),
                    sid: caller.session_id,
                }),
                Err(TokenError::Refused(error)) => Verdict::Refused(error),
                Err(other) => panic!("row {:?}: no verdict, {other}", case.name),
            };
            assert_eq!(verdict, case.verdict, "row {:?}", case.name);
        }
    }

    #[tokio::test]
    async fn valid_user_token_yields_the_user_caller() {
        let (verifier, _) = verifier(vec![public_jwk(testing::KID)]);
        let caller = verifier
            .verify(&testing::sign(&testing::user_claims(now())))
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(
            caller.user_id().map(|u| u.to_string()).as_deref(),
            Some(testing::USER_ID)
        );
        assert!(!caller.is_service());
        assert_eq!(caller.roles, ["admin", "auditor"]);
        assert_eq!(caller.token_id, "jti-user");
    }

    #[tokio::test]
    async fn client_token_yields_a_service_caller_with_its_permissions() {
        let (verifier, _) = verifier(vec![public_jwk(testing::KID)]);
        let caller = verifier
            .verify(&testing::sign(&testing::client_claims(now())))
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert!(caller.is_service());
        assert_eq!(caller.user_id(), None);
        assert_eq!(
            caller.subject,
            Subject::Client {
                id: "identity".into()
            }
        );
        assert_eq!(caller.permissions, ["audit:append", "roles:read"]);
    }

    #[tokio::test]
    async fn token_without_jti_is_refused() {
        let (verifier, _) = verifier(vec![public_jwk(testing::KID)]);
        let mut claims = testing::user_claims(now());
        if let Some(object) = claims.as_object_mut() {
            object.remove("jti");
        }
        assert_eq!(
            verifier.verify(&testing::sign(&claims)).await,
            refused(bulwark_token::TokenError::MissingClaim("jti"))
        );
    }

    #[tokio::test]
    async fn expired_wrong_issuer_and_wrong_audience_are_refused() {
        let (verifier, _) = verifier(vec![public_jwk(testing::KID)]);
        let claims = || testing::user_claims(now());
        let mut expired = claims();
        expired["exp"] = json!(now() - 120);
        let mut wrong_iss = claims();
        wrong_iss["iss"] = json!("evil");
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("other");
        for (claims, expected) in [
            (expired, bulwark_token::TokenError::Expired),
            (wrong_iss, bulwark_token::TokenError::WrongIssuer),
            (wrong_aud, bulwark_token::TokenError::WrongAudience),
        ] {
            let result = verifier.verify(&testing::sign(&claims)).await;
            assert_eq!(result, refused(expected.clone()), "{expected}");
        }
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_then_finds_a_rotated_key() {
        let (verifier, source) = verifier(vec![public_jwk("k1")]);
        let claims = testing::user_claims(now());
        let first = verifier
            .verify(&testing::sign_with_kid("k1", &claims))
            .await;
        assert!(first.is_ok(), "k1 refused: {first:?}");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        if let Ok(mut keys) = source.jwks.lock() {
            keys.push(public_jwk("k2"));
        }
        let caller = verifier
            .verify(&testing::sign_with_kid("k2", &claims))
            .await;
        assert!(caller.is_ok(), "rotated key not picked up: {caller:?}");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

        // The k2 lookup used this interval's refetch: a burst of unknown kids right
        // after it costs no fetch at all.
        for _ in 0..5 {
            let result = verifier
                .verify(&testing::sign_with_kid("nope", &claims))
                .await;
            assert_eq!(
                result,
                refused(bulwark_token::TokenError::UnknownKid("nope".into()))
            );
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn jwks_without_a_usable_key_keeps_the_previous_keys() {
        let (verifier, source) = verifier(vec![public_jwk(testing::KID)]);
        let token = testing::sign(&testing::user_claims(now()));
        assert!(verifier.verify(&token).await.is_ok());
        if let Ok(mut keys) = source.jwks.lock() {
            keys[0].alg = "HS256".into();
        }
        assert!(
            matches!(verifier.refresh().await, Err(TokenError::Jwks(_))),
            "a JWKS without usable keys must not be installed"
        );
        assert!(
            verifier.verify(&token).await.is_ok(),
            "the previous key set is gone"
        );
    }

    #[tokio::test]
    async fn garbage_missing_kid_and_oversized_tokens_are_refused_without_a_fetch() {
        let (verifier, source) = verifier(vec![public_jwk(testing::KID)]);
        assert!(matches!(
            verifier.verify("garbage").await,
            Err(TokenError::Refused(bulwark_token::TokenError::Malformed(_)))
        ));
        let oversized = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert_eq!(
            verifier.verify(&oversized).await,
            refused(bulwark_token::TokenError::TooLarge {
                len: DEFAULT_MAX_TOKEN_BYTES + 1,
                limit: DEFAULT_MAX_TOKEN_BYTES
            })
        );
        let no_kid = testing::sign_with_kid("", &testing::user_claims(now()));
        assert_eq!(
            verifier.verify(&no_kid).await,
            refused(bulwark_token::TokenError::MissingKid)
        );
        assert_eq!(source.fetches.load(Ordering::SeqCst), 0);
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
