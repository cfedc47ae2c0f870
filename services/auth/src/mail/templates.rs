//! The plain-text messages Auth mails: each carries its token as the `token=` query
//! parameter of one link under the public base URL, and says how long it works.

use std::time::Duration;

use super::settings::Links;
use super::{Mail, MailError, MailKind};

/// How long an email verification token works (CONTRACT.md: 24 h).
pub const EMAIL_VERIFICATION_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a password reset token works (CONTRACT.md: 30 min).
pub const PASSWORD_RESET_TTL: Duration = Duration::from_secs(30 * 60);

/// The page a verification link opens.
pub const VERIFY_EMAIL_PAGE: &str = "verify-email";
/// The page a reset link opens.
pub const RESET_PASSWORD_PAGE: &str = "reset-password";

/// "Verify your email address", with a link to `/verify-email?token=<token>`.
pub fn email_verification(links: &Links, to: &str, token: &str) -> Result<Mail, MailError> {
    let link = links.with_token(VERIFY_EMAIL_PAGE, token);
    let body = format!(
        "Hello,\n\
         \n\
         please confirm that {to} is your email address by opening this link:\n\
         \n\
         {link}\n\
         \n\
         The link works once and expires in {ttl}. If you did not ask for this, \
         ignore this message.\n\
         \n\
         -- Bulwark\n",
        ttl = describe(EMAIL_VERIFICATION_TTL),
    );
    Mail::new(
        MailKind::EmailVerification,
        to,
        "Verify your email address",
        body,
    )
}

/// "Reset your password", with a link to `/reset-password?token=<token>`.
pub fn password_reset(links: &Links, to: &str, token: &str) -> Result<Mail, MailError> {
    let link = links.with_token(RESET_PASSWORD_PAGE, token);
    let body = format!(
        "Hello,\n\
         \n\
         someone asked to reset the password of the account {to}. To choose a new \
         password, open this link:\n\
         \n\
         {link}\n\
         \n\
         The link works once and expires in {ttl}. If you did not ask for this, \
         ignore this message: your password stays as it is.\n\
         \n\
         -- Bulwark\n",
        ttl = describe(PASSWORD_RESET_TTL),
    );
    Mail::new(MailKind::PasswordReset, to, "Reset your password", body)
}

/// "24 hours", "30 minutes", "1 hour": the lifetime as the message states it.
fn describe(ttl: Duration) -> String {
    let seconds = ttl.as_secs();
    let (count, unit) = if seconds >= 3600 && seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else {
        (seconds.div_ceil(60), "minute")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::parse("https://app.example.com/bulwark").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The one line of the body that is a link.
    fn link_of(mail: &Mail) -> &str {
        let links: Vec<&str> = mail
            .body()
            .lines()
            .filter(|line| line.starts_with("https://"))
            .collect();
        assert_eq!(links.len(), 1, "one link expected in:\n{}", mail.body());
        links[0]
    }

    #[test]
    fn verification_mail_links_to_verify_email_and_says_24_hours() {
        let mail = email_verification(&links(), "ada@example.com", "tok_EN-123")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mail.kind(), MailKind::EmailVerification);
        assert_eq!(mail.to(), "ada@example.com");
        assert_eq!(mail.subject(), "Verify your email address");
        assert_eq!(
            link_of(&mail),
            "https://app.example.com/bulwark/verify-email?token=tok_EN-123"
        );
        assert!(
            mail.body().contains("expires in 24 hours"),
            "{}",
            mail.body()
        );
        assert!(mail.body().contains("ada@example.com"), "{}", mail.body());
    }

    #[test]
    fn reset_mail_links_to_reset_password_and_says_30_minutes() {
        let mail =
            password_reset(&links(), "ada@example.com", "r3set").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mail.kind(), MailKind::PasswordReset);
        assert_eq!(mail.subject(), "Reset your password");
        assert_eq!(
            link_of(&mail),
            "https://app.example.com/bulwark/reset-password?token=r3set"
        );
        assert!(
            mail.body().contains("expires in 30 minutes"),
            "{}",
            mail.body()
        );
    }

    #[test]
    fn tokens_are_url_encoded_in_the_link() {
        let mail = password_reset(&links(), "ada@example.com", "a b&c=d")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            link_of(&mail).ends_with("/reset-password?token=a+b%26c%3Dd"),
            "{}",
            link_of(&mail)
        );
    }

    #[test]
    fn a_recipient_that_is_no_address_is_refused() {
        for to in [
            "",
            "ada",
            "ada@",
            "<ada@example.com>",
            "ada@example.com\r\nBcc: x@y",
        ] {
            assert!(
                email_verification(&links(), to, "t").is_err(),
                "{to:?} was accepted"
            );
        }
    }

    #[test]
    fn lifetimes_read_as_people_write_them() {
        assert_eq!(describe(Duration::from_secs(3600)), "1 hour");
        assert_eq!(describe(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(describe(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(describe(Duration::from_secs(60)), "1 minute");
        assert_eq!(describe(Duration::from_secs(5400)), "90 minutes");
    }
}
