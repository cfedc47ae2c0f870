//! The run's signing keys (Ed25519 and RSA-2048), the JWKS that publishes them, and the
//! pre-signed token files wrk rotates through.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use super::{AUDIENCE, ISSUER};

const SUBJECT: &str = "0192f0c4-7d4e-7b1a-9f00-00000000be0c";

const ED25519_KID: &str = "bench-ed25519";
const RSA_KID: &str = "bench-rsa";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDsa,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

/// The two signing keys of the run and the JWKS that publishes them.
pub struct Keys {
    ed25519: ed25519_dalek::SigningKey,
    rsa: rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>,
    pub jwks: Vec<u8>,
}

impl Keys {
    pub fn generate() -> anyhow::Result<Self> {
        let mut rng = rand_core::OsRng;
        let ed25519 = ed25519_dalek::SigningKey::generate(&mut rng);
        let rsa_key =
            rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA-2048 key")?;
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({ "keys": [
            {
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": ED25519_KID,
                "x": b64(ed25519.verifying_key().as_bytes()),
            },
            {
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": RSA_KID,
                "n": b64(&rsa_key.n().to_bytes_be()),
                "e": b64(&rsa_key.e().to_bytes_be()),
            },
        ]});
        Ok(Self {
            ed25519,
            rsa: rsa::pkcs1v15::SigningKey::new(rsa_key),
            jwks: serde_json::to_vec(&jwks)?,
        })
    }

    /// A compact JWS of `claims`.
    fn sign(&self, alg: Alg, claims: &Value) -> String {
        let kid = match alg {
            Alg::EdDsa => ED25519_KID,
            Alg::Rs256 => RSA_KID,
        };
        let header = json!({ "alg": alg.name(), "typ": "JWT", "kid": kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match alg {
            Alg::EdDsa => self
                .ed25519
                .sign(signing_input.as_bytes())
                .to_bytes()
                .to_vec(),
            Alg::Rs256 => self.rsa.sign(signing_input.as_bytes()).to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// `count` distinct tokens of one user (each its own `jti`), valid for two hours,
    /// signed on every core.
    pub fn tokens(&self, alg: Alg, count: usize) -> anyhow::Result<Vec<String>> {
        self.signed(alg, count, |_| SUBJECT.to_owned())
    }

    /// One Ed25519 token for each of `count` users, the i-th with the `sub`
    /// [`user_subject`]`(i)`.
    pub fn user_tokens(&self, count: usize) -> anyhow::Result<Vec<String>> {
        self.signed(Alg::EdDsa, count, user_subject)
    }

    /// One Ed25519 token of `subject`.
    pub fn token_of(&self, subject: &str) -> String {
        let now = now_unix();
        self.sign(Alg::EdDsa, &claims(subject, now, "single"))
    }

    fn signed(
        &self,
        alg: Alg,
        count: usize,
        subject: impl Fn(usize) -> String + Sync,
    ) -> anyhow::Result<Vec<String>> {
        let now = now_unix();
        let claims = |i: usize| claims(&subject(i), now, &format!("{}-{i}", alg.name()));
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = count.div_ceil(threads).max(1);
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    let claims = &claims;
                    scope.spawn(move || {
                        (start..end)
                            .map(|i| self.sign(alg, &claims(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        ensure!(tokens.len() == count, "a signing thread failed");
        Ok(tokens)
    }
}

/// The claims of a token of `subject`, valid for two hours from `now`.
fn claims(subject: &str, now: u64, jti: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "roles": ["user"],
        "iat": now, "exp": now + 7_200, "jti": jti,
    })
}

/// The `sub` of user `index` of the many-user cases: a UUID, like Bulwark's user ids,
/// distinct from [`SUBJECT`] and from the single-user subjects below.
pub fn user_subject(index: usize) -> String {
    format!("0192f0c4-7d4e-7b1a-9f01-{index:012}")
}

/// The user that h-hot drives far over its limit (nobody else uses it).
pub const HOT_SUBJECT: &str = "0192f0c4-7d4e-7b1a-9f02-000000000001";
/// The user the over-limit check of the 100/s cases sends too fast (nobody else uses it).
pub const OVER_SUBJECT: &str = "0192f0c4-7d4e-7b1a-9f03-000000000001";

pub fn write_tokens(path: &Path, tokens: &[String]) -> anyhow::Result<()> {
    let mut text = tokens.join("\n");
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The token files wrk rotates through.
#[derive(Debug)]
pub struct TokenFiles {
    pub repeated: PathBuf,
    pub eddsa: PathBuf,
    pub eddsa_count: usize,
    pub rs256: PathBuf,
    pub rs256_count: usize,
    /// One token per user of the many-user cases ([`user_subject`]).
    pub users: PathBuf,
    pub users_count: usize,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
