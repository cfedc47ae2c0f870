//! Recovery codes: ten single-use codes a user receives once, when TOTP is enabled, to
//! log in without the authenticator. Only their hashes are stored.
//!
//! A code is 12 characters of Crockford's base32 (digits and lower-case letters without
//! `i`, `l`, `o` and `u`), 60 random bits, shown as `xxxx-xxxx-xxxx`. On input, case,
//! dashes and whitespace do not matter, and the look-alikes Crockford maps are read as
//! what they look like (`o` as `0`, `i` and `l` as `1`), so a code copied by hand works.
//!
//! Why plain SHA-256 and not a password hash: a code is 60 uniformly random bits, not a
//! human choice, so there is no dictionary to try first; a slow hash would make logins
//! slow without making a 2^60 search noticeably harder. What a fast hash does allow is
//! one search for every stored code at once, so each hash is bound to its user (the
//! user's id is hashed with the code): a search is one user's ten codes, about 2^57
//! hashes per code found.

use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::Error;

/// Codes issued at a time.
pub const CODE_COUNT: usize = 10;
/// Characters in a code, 5 bits each.
pub const CODE_CHARS: usize = 12;
/// Characters between two dashes when a code is shown.
pub const GROUP_CHARS: usize = 4;
/// Longest presented code looked at, in bytes; bounds the work of parsing.
pub const MAX_PRESENTED_CODE_BYTES: usize = 64;

/// Crockford's base32 alphabet, lower case: 32 symbols, so a random byte's low 5 bits
/// pick one without bias.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Domain separation: these hashes can never equal another kind of SHA-256 Auth stores.
const HASH_CONTEXT: &[u8] = b"bulwark recovery code v1\0";

/// The SHA-256 a code is stored as, bound to its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodeHash(pub [u8; 32]);

/// A freshly issued set: the formatted codes to show the user once, and the hashes to
/// store, in the same order. Never printed.
pub struct NewRecoveryCodes {
    pub codes: Vec<String>,
    pub hashes: Vec<RecoveryCodeHash>,
}

impl std::fmt::Debug for NewRecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRecoveryCodes")
            .field("codes", &format_args!("[{} redacted]", self.codes.len()))
            .field("hashes", &self.hashes)
            .finish()
    }
}

impl NewRecoveryCodes {
    /// [`CODE_COUNT`] distinct codes for `user_id`, from the OS's random source.
    pub fn generate(user_id: Uuid) -> Result<Self, Error> {
        let mut codes: Vec<RecoveryCode> = Vec::with_capacity(CODE_COUNT);
        while codes.len() < CODE_COUNT {
            let code = RecoveryCode::random()?;
            // 60 random bits collide about never; a repeat would be one code fewer.
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        Ok(Self {
            hashes: codes.iter().map(|code| code.hash(user_id)).collect(),
            codes: codes.iter().map(RecoveryCode::formatted).collect(),
        })
    }
}

/// A well-formed code: [`CODE_CHARS`] characters of the alphabet, normalized. Never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode([u8; CODE_CHARS]);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(redacted)")
    }
}

impl RecoveryCode {
    fn random() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; CODE_CHARS]);
        OsRng
            .try_fill_bytes(bytes.as_mut())
            .map_err(|e| Error::Crypto(format!("OS random source failed: {e}")))?;
        Ok(Self(bytes.map(|byte| ALPHABET[usize::from(byte & 31)])))
    }

    /// Reads a code as a user may type it: case, dashes and whitespace anywhere are
    /// ignored, `o` is read as `0`, `i` and `l` as `1`; what is left must be
    /// [`CODE_CHARS`] characters of the alphabet.
    pub fn parse(presented: &str) -> Result<Self, Error> {
        let malformed = || {
            Error::invalid(
                "code",
                format!("must be a recovery code of {CODE_CHARS} letters and digits"),
            )
        };
        if presented.len() > MAX_PRESENTED_CODE_BYTES {
            return Err(malformed());
        }
        let mut chars = [0u8; CODE_CHARS];
        let mut count = 0;
        for byte in presented
            .bytes()
            .filter(|b| *b != b'-' && !b.is_ascii_whitespace())
        {
            let symbol = match byte.to_ascii_lowercase() {
                b'o' => b'0',
                b'i' | b'l' => b'1',
                other => other,
            };
            if !ALPHABET.contains(&symbol) || count == CODE_CHARS {
                return Err(malformed());
            }
            chars[count] = symbol;
            count += 1;
        }
        if count == CODE_CHARS {
            Ok(Self(chars))
        } else {
            Err(malformed())
        }
    }

    /// `xxxx-xxxx-xxxx`, as shown to the user.
    pub fn formatted(&self) -> String {
        let groups: Vec<&str> = self
            .0
            .chunks(GROUP_CHARS)
            // Only alphabet bytes, all ASCII, ever get in.
            .map(|group| std::str::from_utf8(group).unwrap_or_default())
            .collect();
        groups.join("-")
    }

    /// The hash this code is stored as for `user_id`.
    pub fn hash(&self, user_id: Uuid) -> RecoveryCodeHash {
        let mut hasher = Sha256::new();
        hasher.update(HASH_CONTEXT);
        hasher.update(user_id.as_bytes());
        hasher.update(self.0);
        RecoveryCodeHash(hasher.finalize().into())
    }
}

/// Which of `user_id`'s unused stored hashes `code` matches, if any: the caller marks
/// that one used in the same transaction that accepts the login. Every candidate is
/// compared in constant time and all are compared, so the time taken says nothing
/// about which matched or how closely.
pub fn find(user_id: Uuid, code: &RecoveryCode, unused: &[RecoveryCodeHash]) -> Option<usize> {
    let presented = code.hash(user_id);
    let mut matched = None;
    for (index, stored) in unused.iter().enumerate() {
        if bool::from(stored.0.ct_eq(&presented.0)) {
            matched = Some(index);
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn generate(user: Uuid) -> NewRecoveryCodes {
        NewRecoveryCodes::generate(user).unwrap_or_else(|e| panic!("generation failed: {e}"))
    }

    fn parse(text: &str) -> RecoveryCode {
        RecoveryCode::parse(text).unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    #[test]
    fn ten_distinct_codes_of_sixty_bits_in_three_groups() {
        const {
            assert!(CODE_CHARS * 5 >= 50, "fewer than 50 bits of entropy");
        }
        let issued = generate(Uuid::new_v4());
        assert_eq!(issued.codes.len(), CODE_COUNT);
        assert_eq!(issued.hashes.len(), CODE_COUNT);
        let distinct: HashSet<&String> = issued.codes.iter().collect();
        assert_eq!(
            distinct.len(),
            CODE_COUNT,
            "repeated codes: {:?}",
            issued.codes
        );
        for code in &issued.codes {
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                vec![4, 4, 4],
                "{code}"
            );
            assert!(
                code.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)),
                "{code} has a character outside the alphabet"
            );
        }
    }

    #[test]
    fn the_alphabet_has_no_look_alikes_and_32_symbols() {
        let symbols: HashSet<u8> = ALPHABET.iter().copied().collect();
        assert_eq!(symbols.len(), 32);
        for ambiguous in *b"ilou" {
            assert!(!symbols.contains(&ambiguous), "{}", ambiguous as char);
        }
    }

    #[test]
    fn every_issued_code_verifies_against_its_own_hash() {
        let user = Uuid::new_v4();
        let issued = generate(user);
        for (i, code) in issued.codes.iter().enumerate() {
            assert_eq!(
                find(user, &parse(code), &issued.hashes),
                Some(i),
                "code {i} did not match its hash"
            );
        }
    }

    #[test]
    fn input_is_normalized_for_case_dashes_spaces_and_look_alikes() {
        let canonical = parse("01ab-cdef-gh23");
        for typed in [
            "01AB-CDEF-GH23",
            "01abcdefgh23",
            " 01ab cdef gh23 ",
            "01ab--cdef-gh23\n",
            "oIab-cdef-gh23",
            "OLAB CDEF GH23",
        ] {
            assert_eq!(parse(typed), canonical, "{typed:?} read differently");
        }
        assert_eq!(canonical.formatted(), "01ab-cdef-gh23");
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "01ab-cdef-gh2",
            "01ab-cdef-gh234",
            "01ab-cdef-gh2u",
            "01ab_cdef_gh23",
            "01ab-cdef-gh2é",
            "123456",
        ] {
            assert!(RecoveryCode::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(RecoveryCode::parse(&format!("{}01abcdefgh23", "-".repeat(60))).is_err());
    }

    #[test]
    fn a_code_matches_only_its_own_users_hashes_and_not_a_wrong_code() {
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let issued = generate(alice);
        let Some(first) = issued.codes.first() else {
            panic!("no codes");
        };
        assert_eq!(
            find(bob, &parse(first), &issued.hashes),
            None,
            "a code matched under another user's id"
        );
        let used_up: Vec<RecoveryCodeHash> = issued.hashes[1..].to_vec();
        assert_eq!(
            find(alice, &parse(first), &used_up),
            None,
            "a code matched after its hash was removed"
        );
        assert_ne!(parse(first).hash(alice), parse(first).hash(bob));
    }

    #[test]
    fn codes_are_never_printed() {
        let issued = generate(Uuid::new_v4());
        let printed = format!("{issued:?} {:?}", parse("01ab-cdef-gh23"));
        for code in &issued.codes {
            assert!(!printed.contains(code.as_str()), "{printed}");
        }
        assert!(!printed.contains("01ab"), "{printed}");
    }
}
