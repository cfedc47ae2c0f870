//! The mail settings of `[auth]`, checked at start: the SMTP relay to send through,
//! the sender, and the public base URL that mailed links are built under.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

/// How long one SMTP conversation may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Validated mail settings; [`MailSettings::new`] is the only way to make them.
#[derive(Clone)]
pub struct MailSettings {
    pub(crate) transport: AsyncSmtpTransport<Tokio1Executor>,
    pub(crate) from: Mailbox,
    pub(crate) links: Links,
}

impl std::fmt::Debug for MailSettings {
    // The transport holds the relay's credentials: leave it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("from", &self.from.to_string())
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

impl MailSettings {
    /// Checks the three settings; the error names the configuration key and the rule,
    /// and never repeats the SMTP URL, which may hold a password.
    pub fn new(
        smtp_url: &SecretString,
        mail_from: &str,
        public_base_url: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            transport: smtp_transport(smtp_url)?,
            from: mail_from.parse().map_err(|e| {
                format!(
                    "configuration key `auth.mail_from` is invalid: {e} (expected an address \
                     such as `no-reply@example.com` or `Bulwark <no-reply@example.com>`)"
                )
            })?,
            links: Links::parse(public_base_url)?,
        })
    }

    /// Where mailed links point.
    pub fn links(&self) -> &Links {
        &self.links
    }
}

/// An SMTP transport from `smtp://host[:port]` (plain), `smtp://host[:port]?tls=required`
/// (STARTTLS, refused without it) or `smtps://host[:port]` (TLS from the first byte),
/// with `user:password@` for relays that want a login.
fn smtp_transport(url: &SecretString) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let invalid = |rule: &str| format!("configuration key `auth.smtp_url` is invalid: {rule}");
    let parsed = Url::parse(url.expose_secret()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err(invalid(&format!(
            "scheme `{}` is not smtp or smtps",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("names no host"));
    }
    if let Some((key, _)) = parsed.query_pairs().find(|(key, _)| key != "tls") {
        return Err(invalid(&format!(
            "unknown parameter `{key}` (only `tls=required` or `tls=opportunistic`)"
        )));
    }
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

/// The public base URL (`auth.public_base_url`) and the pages under it that mailed
/// links open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    base: Url,
}

impl Links {
    /// An `http` or `https` URL with a host and neither credentials, query nor fragment;
    /// a path is kept (`https://example.com/app` puts links under `/app/`).
    pub fn parse(public_base_url: &str) -> Result<Self, String> {
        let invalid =
            |rule: &str| format!("configuration key `auth.public_base_url` is invalid: {rule}");
        let base = Url::parse(public_base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(&format!(
                "scheme `{}` is not http or https",
                base.scheme()
            )));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("names no host"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("must not hold credentials"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or a fragment"));
        }
        Ok(Self { base })
    }

    /// `{base}/{page}?token=<token>`, the token form-URL-encoded as the one query parameter.
    pub fn with_token(&self, page: &str, token: &str) -> String {
        let mut url = self.base.clone();
        let path = format!(
            "{}/{}",
            self.base.path().trim_end_matches('/'),
            page.trim_start_matches('/')
        );
        url.set_path(&path);
        url.query_pairs_mut().clear().append_pair("token", token);
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(smtp_url: &str, from: &str, base: &str) -> Result<MailSettings, String> {
        MailSettings::new(&SecretString::from(smtp_url), from, base)
    }

    #[test]
    fn plain_starttls_and_tls_relays_are_accepted() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.com?tls=required",
            "smtp://user:pass@mail.example.com:587?tls=opportunistic",
            "smtps://user:p%40ss@smtp.example.com:465",
        ] {
            let result = settings(url, "no-reply@example.com", "https://example.com");
            assert!(result.is_ok(), "{url}: {:?}", result.err());
        }
    }

    #[test]
    fn bad_smtp_urls_name_the_key_and_never_the_password() {
        for url in [
            "http://user:hunter2@mail.example.com",
            "smtp://",
            "not a url hunter2",
            "smtp://user:hunter2@mail.example.com?tls=always",
            "smtp://user:hunter2@mail.example.com?verify=no",
        ] {
            let error = settings(url, "no-reply@example.com", "https://example.com")
                .err()
                .unwrap_or_default();
            assert!(
                error.contains("`auth.smtp_url` is invalid"),
                "{url}: {error}"
            );
            assert!(!error.contains("hunter2"), "{url} leaked: {error}");
        }
    }

    #[test]
    fn the_sender_must_be_an_address() {
        for from in ["no-reply@example.com", "Bulwark <no-reply@bulwark.local>"] {
            assert!(settings("smtp://h", from, "http://h").is_ok(), "{from}");
        }
        for from in ["", "no-reply", "Bulwark <>", "a@b@c"] {
            let error = settings("smtp://h", from, "http://h")
                .err()
                .unwrap_or_default();
            assert!(
                error.contains("`auth.mail_from` is invalid"),
                "{from}: {error}"
            );
        }
    }

    #[test]
    fn the_public_base_url_is_a_plain_http_url() {
        for base in [
            "ftp://example.com",
            "example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
            "https://example.com/#top",
            "file:///tmp",
        ] {
            let error = Links::parse(base).err().unwrap_or_default();
            assert!(
                error.contains("`auth.public_base_url` is invalid"),
                "{base}: {error}"
            );
        }
    }

    #[test]
    fn links_go_under_the_base_path_with_the_token_encoded() {
        let cases = [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/verify-email",
            ),
            ("https://example.com/", "https://example.com/verify-email"),
            (
                "https://example.com/app",
                "https://example.com/app/verify-email",
            ),
            (
                "https://example.com/app/",
                "https://example.com/app/verify-email",
            ),
        ];
        for (base, page) in cases {
            let links = Links::parse(base).unwrap_or_else(|e| panic!("{base}: {e}"));
            assert_eq!(
                links.with_token("verify-email", "abc_-123"),
                format!("{page}?token=abc_-123")
            );
        }
        let links = Links::parse("https://example.com").unwrap_or_else(|e| panic!("{e}"));
        let link = links.with_token("reset-password", "a+b/c=&d e");
        assert_eq!(
            link,
            "https://example.com/reset-password?token=a%2Bb%2Fc%3D%26d+e"
        );
        let parsed = Url::parse(&link).unwrap_or_else(|e| panic!("{e}"));
        let tokens: Vec<_> = parsed.query_pairs().collect();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].0, "token");
        assert_eq!(tokens[0].1, "a+b/c=&d e");
    }
}
