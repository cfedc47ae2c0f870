//! Time-based one-time passwords as the contract fixes them: RFC 6238 with HMAC-SHA1,
//! 6 digits, 30-second steps, a code accepted one step early or late, and each step
//! accepted at most once per user.
//!
//! A presented code is trimmed, its inner ASCII spaces are dropped (apps show
//! `123 456`, and users type what they see), and what is left must be exactly six ASCII
//! digits; anything else is malformed, never a wrong code.

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::Error;

/// Bytes in a secret: 160 bits, the HMAC-SHA1 output size RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds in a time step.
pub const STEP_SECONDS: u64 = 30;
/// Steps a code may be early or late, for clocks that drift and users who type slowly.
pub const ALLOWED_DRIFT_STEPS: u64 = 1;
/// Longest presented code looked at, in bytes; bounds the work of parsing.
pub const MAX_PRESENTED_CODE_BYTES: usize = 64;

/// The part of a URI path or query left as it is: RFC 3986's unreserved characters.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A user's shared TOTP secret: 20 random bytes, wiped from memory when dropped and
/// never printed.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<[u8; SECRET_BYTES]>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(redacted)")
    }
}

impl TotpSecret {
    /// A new secret from the OS's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        OsRng
            .try_fill_bytes(bytes.as_mut())
            .map_err(|e| Error::Crypto(format!("OS random source failed: {e}")))?;
        Ok(Self(bytes))
    }

    /// A stored secret; refused unless it has exactly [`SECRET_BYTES`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; SECRET_BYTES] = bytes.try_into().map_err(|_| {
            Error::Crypto(format!(
                "a TOTP secret has {SECRET_BYTES} bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The raw bytes, for storing (encrypted) and nothing else.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// RFC 4648 base32, upper case, without padding: the `secret` field shown at
    /// enrolment and the `secret` parameter of the otpauth URI (32 characters).
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(self.as_bytes())
    }

    /// `otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30`,
    /// the Key URI Format authenticator apps scan. Issuer and account are
    /// percent-encoded (a space as `%20`, as the format asks); the issuer is repeated as
    /// a parameter, which current apps prefer over the label's prefix.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, Error> {
        if issuer.is_empty() || issuer.contains(':') {
            return Err(Error::invalid(
                "issuer",
                "must be non-empty and contain no ':'",
            ));
        }
        if account.is_empty() {
            return Err(Error::invalid("account", "must be non-empty"));
        }
        let issuer = utf8_percent_encode(issuer, URI_COMPONENT);
        let account = utf8_percent_encode(account, URI_COMPONENT);
        Ok(format!(
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}\
             &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            self.to_base32()
        ))
    }
}

/// A well-formed presented code: six ASCII digits. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode([u8; DIGITS]);

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode(redacted)")
    }
}

impl TotpCode {
    /// Trims, drops inner ASCII spaces, then requires exactly six ASCII digits.
    pub fn parse(presented: &str) -> Result<Self, Error> {
        let malformed = || Error::invalid("code", format!("must be {DIGITS} digits"));
        if presented.len() > MAX_PRESENTED_CODE_BYTES {
            return Err(malformed());
        }
        let mut digits = [0u8; DIGITS];
        let mut count = 0;
        for byte in presented.trim().bytes().filter(|&b| b != b' ') {
            if !byte.is_ascii_digit() || count == DIGITS {
                return Err(malformed());
            }
            digits[count] = byte;
            count += 1;
        }
        if count == DIGITS {
            Ok(Self(digits))
        } else {
            Err(malformed())
        }
    }

    /// The six digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits ever get in.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The time step `now` falls in, or `None` before 1970.
pub fn step_at(now: DateTime<Utc>) -> Option<u64> {
    u64::try_from(now.timestamp())
        .ok()
        .map(|s| s / STEP_SECONDS)
}

/// The code of `step`: what an authenticator app shows during it.
pub fn code_at_step(secret: &TotpSecret, step: u64) -> TotpCode {
    let value = hotp_value(secret.as_bytes(), step) % 10u32.pow(DIGITS as u32);
    let mut digits = [b'0'; DIGITS];
    let mut rest = value;
    for digit in digits.iter_mut().rev() {
        // `rest % 10` is below 10, so the cast is exact.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    TotpCode(digits)
}

/// The code an app shows at `now`, or `None` before 1970.
pub fn code_at(secret: &TotpSecret, now: DateTime<Utc>) -> Option<TotpCode> {
    step_at(now).map(|step| code_at_step(secret, step))
}

/// Checks `code` against the steps from one before `now`'s to one after, skipping every
/// step at or before `last_used_step` (the step this user's last accepted code
/// matched), so a code is accepted once and an older one never after it. Returns the
/// step matched (the latest, if several do), which the caller stores as the new
/// `last_used_step` in the same transaction that accepts the login.
///
/// Every candidate is computed and compared in constant time, so the time taken says
/// nothing about how close a guess came.
pub fn verify(
    secret: &TotpSecret,
    code: &TotpCode,
    now: DateTime<Utc>,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let current = step_at(now)?;
    let first = current.saturating_sub(ALLOWED_DRIFT_STEPS);
    let last = current.saturating_add(ALLOWED_DRIFT_STEPS);
    let mut matched = None;
    for step in first..=last {
        let equal = bool::from(code_at_step(secret, step).0.ct_eq(&code.0));
        let unused = last_used_step.is_none_or(|used| step > used);
        if equal && unused {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 4226's HOTP before the final modulo: HMAC-SHA1 of the big-endian counter,
/// dynamically truncated to 31 bits.
fn hotp_value(key: &[u8], counter: u64) -> u32 {
    let mac = hmac_sha1(key, &counter.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let word = [
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ];
    u32::from_be_bytes(word) & 0x7fff_ffff
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    // HMAC pads a key shorter than SHA-1's 64-byte block with zeros, so padding it here
    // gives the same MAC and leaves no fallible constructor on the path; a longer key
    // would be hashed first, and no secret here is longer than 20 bytes.
    let mut block = Zeroizing::new([0u8; 64]);
    let len = key.len().min(64);
    block[..len].copy_from_slice(&key[..len]);
    let mut mac = <Hmac<Sha1> as KeyInit>::new(&(*block).into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    /// RFC 4226 Appendix D's and RFC 6238 Appendix B's SHA-1 key.
    const RFC_KEY: &[u8; 20] = b"12345678901234567890";

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_KEY).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0)
            .single()
            .unwrap_or_else(|| panic!("no instant {seconds}"))
    }

    fn code(text: &str) -> TotpCode {
        TotpCode::parse(text).unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    #[test]
    fn hotp_matches_rfc_4226_appendix_d() {
        let truncated = [
            0x4c93cf18, 0x41397eea, 0x082fef30, 0x66ef7655, 0x61c5938a, 0x33c083d4, 0x7256c032,
            0x04e5b397, 0x2823443f, 0x2679dc69,
        ];
        let codes = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for counter in 0..10u64 {
            let i = counter as usize;
            assert_eq!(
                hotp_value(RFC_KEY, counter),
                truncated[i],
                "truncated value of counter {counter}"
            );
            assert_eq!(
                code_at_step(&rfc_secret(), counter).as_str(),
                codes[i],
                "HOTP of counter {counter}"
            );
        }
    }

    #[test]
    fn totp_matches_rfc_6238_appendix_b_sha1() {
        // (Unix time, the RFC's 8-digit TOTP). The 6-digit code is the same truncated
        // value modulo 10^6, i.e. the last six digits.
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in vectors {
            let step = step_at(at(time)).unwrap_or_else(|| panic!("no step at {time}"));
            let value = hotp_value(RFC_KEY, step);
            assert_eq!(
                format!("{:08}", value % 100_000_000),
                eight,
                "8 digits at {time}"
            );
            let six = &eight[2..];
            assert_eq!(
                code_at(&rfc_secret(), at(time)).map(|c| c.as_str().to_owned()),
                Some(six.to_owned()),
                "6 digits at {time}"
            );
            assert_eq!(
                verify(&rfc_secret(), &code(six), at(time), None),
                Some(step),
                "the RFC's code at {time} was refused"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_early_or_late_and_no_further() {
        let secret = rfc_secret();
        let now = at(1_234_567_890);
        let Some(current) = step_at(now) else {
            panic!("no step");
        };
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let step = current.saturating_add_signed(offset);
            let presented = code_at_step(&secret, step);
            assert_eq!(
                verify(&secret, &presented, now, None),
                accepted.then_some(step),
                "the code of step {offset:+} from now"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_older_one_after_it() {
        let secret = rfc_secret();
        let now = at(1_234_567_890);
        let Some(current) = step_at(now) else {
            panic!("no step");
        };
        let this = code_at_step(&secret, current);
        assert_eq!(verify(&secret, &this, now, None), Some(current));
        assert_eq!(
            verify(&secret, &this, now, Some(current)),
            None,
            "the same code was accepted twice"
        );
        let previous = code_at_step(&secret, current - 1);
        assert_eq!(
            verify(&secret, &previous, now, Some(current)),
            None,
            "an older code was accepted after a newer one"
        );
        let next = code_at_step(&secret, current + 1);
        assert_eq!(
            verify(&secret, &next, now, Some(current)),
            Some(current + 1),
            "the next step's code should still be accepted"
        );
    }

    #[test]
    fn wrong_codes_and_times_before_1970_are_refused() {
        let secret = rfc_secret();
        let now = at(1_234_567_890);
        let right = code_at(&secret, now).unwrap_or_else(|| panic!("no code"));
        let wrong = if right.as_str() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert_eq!(verify(&secret, &code(wrong), now, None), None);
        assert_eq!(verify(&secret, &right, at(-1), None), None);
        assert_eq!(code_at(&secret, at(-1)), None);
    }

    /// Random secrets, times, presented steps and last used steps: whatever `verify`
    /// accepts is a step within one of now's, after the last one used, whose code is
    /// the one presented; and the code of such a step is always accepted. (A plain
    /// randomized loop: proptest is not in the tree, and shrinking adds little here.)
    #[test]
    fn verify_accepts_exactly_the_unused_steps_within_one_of_now() {
        let random = || {
            OsRng
                .try_next_u64()
                .unwrap_or_else(|e| panic!("OS rng: {e}"))
        };
        for _ in 0..2_000 {
            let secret = TotpSecret::generate().unwrap_or_else(|e| panic!("{e}"));
            // Up to the year 2500, including the first steps of 1970.
            let seconds = i64::try_from(random() % 16_725_225_600).unwrap_or(0);
            let now = at(seconds);
            let Some(current) = step_at(now) else {
                panic!("no step at {seconds}");
            };
            let offset = i64::try_from(random() % 11).unwrap_or(0) - 5;
            let presented_step = current.saturating_add_signed(offset);
            let last_used = match random() % 3 {
                0 => None,
                _ => Some(
                    current.saturating_add_signed(i64::try_from(random() % 5).unwrap_or(0) - 2),
                ),
            };
            let presented = code_at_step(&secret, presented_step);
            let accepted = verify(&secret, &presented, now, last_used);
            if let Some(step) = accepted {
                assert!(
                    step.abs_diff(current) <= ALLOWED_DRIFT_STEPS,
                    "step {step} accepted at step {current}"
                );
                assert!(
                    last_used.is_none_or(|used| step > used),
                    "step {step} accepted after step {last_used:?} was used"
                );
                assert_eq!(
                    code_at_step(&secret, step),
                    presented,
                    "step {step} accepted for another step's code"
                );
            }
            let in_window = presented_step.abs_diff(current) <= ALLOWED_DRIFT_STEPS;
            let unused = last_used.is_none_or(|used| presented_step > used);
            if in_window && unused {
                assert!(
                    accepted.is_some_and(|step| step >= presented_step),
                    "the code of step {presented_step} (now {current}, last used \
                     {last_used:?}) was refused"
                );
            }
        }
    }

    #[test]
    fn presented_codes_are_trimmed_and_spaces_dropped_but_nothing_else_tolerated() {
        assert_eq!(code(" 123456 ").as_str(), "123456");
        assert_eq!(code("123 456").as_str(), "123456");
        assert_eq!(code("\t123456\n").as_str(), "123456");
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "123-456",
            "１２３４５６",
            "12\t3456",
            "+12345",
        ] {
            assert!(TotpCode::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(TotpCode::parse(&format!("{}123456", " ".repeat(100))).is_err());
        assert_eq!(format!("{:?}", code("123456")), "TotpCode(redacted)");
    }

    #[test]
    fn secrets_are_20_random_bytes_shown_as_32_base32_characters() {
        let (Ok(a), Ok(b)) = (TotpSecret::generate(), TotpSecret::generate()) else {
            panic!("generation failed");
        };
        assert_ne!(a.as_bytes(), b.as_bytes());
        let text = a.to_base32();
        assert_eq!(text.len(), 32, "{text}");
        assert!(
            text.bytes().all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7')),
            "not unpadded upper-case base32: {text}"
        );
        assert_eq!(
            BASE32_NOPAD.decode(text.as_bytes()).ok().as_deref(),
            Some(a.as_bytes())
        );
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(TotpSecret::from_bytes(&[0; 19]).is_err());
        assert_eq!(format!("{a:?}"), "TotpSecret(redacted)");
    }

    #[test]
    fn the_otpauth_uri_carries_every_parameter_percent_encoded() {
        let uri = rfc_secret()
            .otpauth_uri("Bulwark Dev", "al ice+x@example.com")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            uri,
            "otpauth://totp/Bulwark%20Dev:al%20ice%2Bx%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Bulwark%20Dev\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert!(rfc_secret().otpauth_uri("a:b", "x").is_err());
        assert!(rfc_secret().otpauth_uri("", "x").is_err());
        assert!(rfc_secret().otpauth_uri("Bulwark", "").is_err());
    }
}
