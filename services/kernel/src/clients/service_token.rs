//! This service's own access token: obtained from Auth's token endpoint with the OAuth
//! 2.0 client-credentials grant (RFC 6749 §4.4) for the configured service account,
//! cached, and renewed before it expires, so that every call to another service
//! carries a credential instead of relying on where it comes from.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::google::api::HttpBody;
use secrecy::{ExposeSecret as _, SecretString};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::Replicas;

/// A token is renewed once this share of its lifetime has passed.
const RENEW_AFTER_SHARE: f64 = 0.8;
/// ... and at the latest this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

struct Cached {
    header: MetadataValue<Ascii>,
    renew_at: Instant,
    expires_at: Instant,
}

/// Obtains, caches and renews one service account's token.
pub struct ServiceTokens {
    client_id: String,
    secret: SecretString,
    /// Auth's replicas; a fetch tries each once while they answer UNAVAILABLE.
    auth: Replicas<AuthServiceClient<Channel>>,
    timeout: Duration,
    cached: std::sync::RwLock<Option<Cached>>,
    /// One renewal at a time; the others wait for its result.
    renewing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ServiceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokens")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ServiceTokens {
    /// Tokens for `client_id` from the Auth service behind `auth` (lazy channels, one per
    /// replica: nothing is fetched until the first call).
    pub fn new(
        client_id: String,
        secret: SecretString,
        auth: Replicas<Channel>,
        timeout: Duration,
    ) -> Self {
        Self {
            client_id,
            secret,
            auth: auth.map(AuthServiceClient::new),
            timeout,
            cached: std::sync::RwLock::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    /// The service account's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The `authorization` value to send now, if a token is held and unexpired.
    pub fn header(&self) -> Option<MetadataValue<Ascii>> {
        let cached = self.cached.read().ok()?;
        let cached = cached.as_ref()?;
        (Instant::now() < cached.expires_at).then(|| cached.header.clone())
    }

    fn due(&self) -> bool {
        self.cached
            .read()
            .map(|cached| cached.as_ref().is_none_or(|c| Instant::now() >= c.renew_at))
            .unwrap_or(true)
    }

    /// Makes sure a token that is not due for renewal is held. A failed renewal is
    /// tolerated while the current token is still valid (it is tried again on the next
    /// call); without a valid token the call fails UNAVAILABLE.
    pub async fn ensure(&self) -> Result<(), Status> {
        if !self.due() {
            return Ok(());
        }
        let _renewing = self.renewing.lock().await;
        if !self.due() {
            return Ok(());
        }
        match self.fetch().await {
            Ok(fresh) => {
                if let Ok(mut cached) = self.cached.write() {
                    *cached = Some(fresh);
                }
                Ok(())
            }
            Err(status) if self.header().is_some() => {
                tracing::warn!(client_id = %self.client_id, code = ?status.code(), message = status.message(),
                    "cannot renew the service token yet; the current one is still valid");
                Ok(())
            }
            Err(status) => {
                tracing::error!(client_id = %self.client_id, code = ?status.code(), message = status.message(),
                    "cannot obtain a service token");
                Err(Status::unavailable(format!(
                    "cannot obtain a service token for `{}`: {}",
                    self.client_id,
                    status.message()
                )))
            }
        }
    }

    /// Asks Auth's replicas in turn until one answers other than UNAVAILABLE.
    async fn fetch(&self) -> Result<Cached, Status> {
        let mut attempt = 1;
        loop {
            match self.fetch_once().await {
                Err(status)
                    if status.code() == tonic::Code::Unavailable && attempt < self.auth.len() =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn fetch_once(&self) -> Result<Cached, Status> {
        let started = Instant::now();
        let mut request = tonic::Request::new(HttpBody {
            content_type: "application/x-www-form-urlencoded".to_owned(),
            data: b"grant_type=client_credentials".to_vec(),
            extensions: Vec::new(),
        });
        request.set_timeout(self.timeout);
        let credentials = format!(
            "{}:{}",
            form_encode(&self.client_id),
            form_encode(self.secret.expose_secret())
        );
        let basic = format!("Basic {}", STANDARD.encode(credentials));
        let basic = MetadataValue::try_from(basic)
            .map_err(|_| Status::internal("the client credentials are not valid metadata"))?;
        request.metadata_mut().insert("authorization", basic);
        let token = self.auth.next().issue_token(request).await?.into_inner();
        let header = MetadataValue::try_from(format!("Bearer {}", token.access_token))
            .map_err(|_| Status::internal("Auth issued a token that is not valid metadata"))?;
        let lifetime = Duration::from_secs(u64::try_from(token.expires_in).unwrap_or(0));
        let renew_after = lifetime
            .mul_f64(RENEW_AFTER_SHARE)
            .min(lifetime.saturating_sub(RENEW_MARGIN));
        tracing::info!(client_id = %self.client_id, expires_in = token.expires_in, "obtained a service token");
        Ok(Cached {
            header,
            renew_at: started + renew_after,
            expires_at: started + lifetime,
        })
    }
}

/// `application/x-www-form-urlencoded` encoding, which RFC 6749 §2.3.1 applies to the
/// client id and secret before they are joined for HTTP Basic.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_keeps_safe_bytes_and_escapes_the_rest() {
        assert_eq!(form_encode("identity"), "identity");
        assert_eq!(form_encode("a b:c%d/é"), "a+b%3Ac%25d%2F%C3%A9");
        assert_eq!(form_encode("Ab-._*9"), "Ab-._*9");
    }
}
