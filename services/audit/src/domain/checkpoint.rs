//! Signed checkpoints of the chain head: what is signed, with which key, and how a
//! checkpoint is checked.
//!
//! A checkpoint states that the event at `sequence` had the chain hash `hash`. It is
//! signed with Ed25519 (RFC 8032) over the concatenation, in this order, of
//!
//! | # | field       | bytes                                                    |
//! |---|-------------|----------------------------------------------------------|
//! | 0 | format tag  | ASCII `bulwark.audit.checkpoint.v1`                      |
//! | 1 | `sequence`  | i64 big-endian (8 bytes)                                 |
//! | 2 | `hash`      | the 32 bytes of the event's chain hash                   |
//! | 3 | `signed_at` | microseconds since the Unix epoch, i64 big-endian        |
//! | 4 | `key_id`    | ASCII, the signing key's id                              |
//!
//! each written as its length in bytes (u32 big-endian) followed by the bytes, like the
//! events' encoding (`chain`), so no two checkpoints sign the same bytes. The tag keeps a
//! checkpoint signature from being taken for a signature over anything else.
//!
//! A key's id is the first 8 bytes of SHA-256 of its 32-byte public key, in lower-case
//! hex: derived, so it cannot disagree with the key it names.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const FORMAT_TAG: &[u8] = b"bulwark.audit.checkpoint.v1";
/// Length of a chain hash.
pub const HASH_BYTES: usize = 32;

/// A checkpoint, signed or about to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: i64,
    pub hash: [u8; HASH_BYTES],
    /// At microsecond precision (what Postgres stores and the signature covers).
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: [u8; Signature::BYTE_SIZE],
}

/// The bytes a checkpoint's signature covers (see the module docs).
pub fn canonical(
    sequence: i64,
    hash: &[u8; HASH_BYTES],
    signed_at: DateTime<Utc>,
    key_id: &str,
) -> Vec<u8> {
    let sequence = sequence.to_be_bytes();
    let micros = signed_at.timestamp_micros().to_be_bytes();
    let fields: [&[u8]; 5] = [FORMAT_TAG, &sequence, hash, &micros, key_id.as_bytes()];
    let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
    for field in fields {
        // A key id is 16 characters; the other fields have fixed lengths.
        let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The id of a public key (see the module docs).
pub fn key_id(public_key: &VerifyingKey) -> String {
    let digest = Sha256::digest(public_key.as_bytes());
    hex(&digest[..8])
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from exactly `2 * N` hex digits (either case); `None` otherwise.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    // `from_str_radix` alone would take a leading `+`.
    if text.len() != 2 * N || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The key Audit signs checkpoints with.
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// The signer of a 32-byte Ed25519 private key (the RFC 8032 seed; any 32 bytes are
    /// one).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs that the event at `sequence` has the chain hash `hash`, at `now`
    /// (truncated to microseconds).
    pub fn sign(&self, sequence: i64, hash: [u8; HASH_BYTES], now: DateTime<Utc>) -> Checkpoint {
        let signed_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let signature = self
            .key
            .sign(&canonical(sequence, &hash, signed_at, &self.key_id));
        Checkpoint {
            sequence,
            hash,
            signed_at,
            key_id: self.key_id.clone(),
            signature: signature.to_bytes(),
        }
    }
}

/// A public key checkpoints verify under, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub key: VerifyingKey,
    /// Whether new checkpoints are signed with it (else it is retired).
    pub current: bool,
}

impl PublicKey {
    /// A public key from its 32 bytes; `None` for bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32], current: bool) -> Option<Self> {
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        Some(Self {
            key_id: key_id(&key),
            key,
            current,
        })
    }
}

/// Why a checkpoint is not genuine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("signed by an unknown key {0:?}")]
    UnknownKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("sequence must be at least 1")]
    BadSequence,
}

/// The keys checkpoints are accepted under: the current one and the retired ones.
#[derive(Debug, Clone)]
pub struct CheckpointKeys {
    keys: Vec<PublicKey>,
}

impl CheckpointKeys {
    /// `current` first, then `retired` (a retired key equal to the current one is
    /// dropped).
    pub fn new(current: VerifyingKey, retired: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut keys = vec![PublicKey {
            key_id: key_id(&current),
            key: current,
            current: true,
        }];
        for key in retired {
            if keys.iter().all(|known| known.key != key) {
                keys.push(PublicKey {
                    key_id: key_id(&key),
                    key,
                    current: false,
                });
            }
        }
        Self { keys }
    }

    /// Every key, the current one first.
    pub fn all(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether `checkpoint` was signed by one of these keys (strict RFC 8032
    /// verification: no malleable or small-order signatures).
    pub fn verify(&self, checkpoint: &Checkpoint) -> Result<(), Refusal> {
        if checkpoint.sequence < 1 {
            return Err(Refusal::BadSequence);
        }
        let key = self
            .keys
            .iter()
            .find(|key| key.key_id == checkpoint.key_id)
            .ok_or_else(|| Refusal::UnknownKey(checkpoint.key_id.clone()))?;
        let message = canonical(
            checkpoint.sequence,
            &checkpoint.hash,
            checkpoint.signed_at,
            &checkpoint.key_id,
        );
        key.key
            .verify_strict(&message, &Signature::from_bytes(&checkpoint.signature))
            .map_err(|_| Refusal::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(byte: u8) -> CheckpointSigner {
        CheckpointSigner::from_seed(&[byte; 32])
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    #[test]
    fn encoding_is_length_prefixed_in_the_documented_order() {
        let bytes = canonical(
            7,
            &[0xab; 32],
            at(1_700_000_000_123_456),
            "0011223344556677",
        );
        let mut expected = Vec::new();
        for field in [
            &b"bulwark.audit.checkpoint.v1"[..],
            &7_i64.to_be_bytes(),
            &[0xab; 32],
            &1_700_000_000_123_456_i64.to_be_bytes(),
            b"0011223344556677",
        ] {
            expected.extend_from_slice(&u32::try_from(field.len()).unwrap_or(0).to_be_bytes());
            expected.extend_from_slice(field);
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn key_id_is_the_start_of_the_public_keys_sha256() {
        // RFC 8032 §7.1, test 1: the public key of this seed is d75a9801...
        let seed =
            from_hex::<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap_or_default();
        let signer = CheckpointSigner::from_seed(&seed);
        assert_eq!(
            hex(signer.public_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let digest = Sha256::digest(signer.public_key().as_bytes());
        assert_eq!(signer.key_id(), hex(&digest[..8]));
        assert_eq!(signer.key_id().len(), 16);
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_is_truncated_to_microseconds() {
        let signer = signer(1);
        let now = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        let checkpoint = signer.sign(42, [9; 32], now);
        assert_eq!(checkpoint.signed_at.timestamp_subsec_nanos(), 123_456_000);
        let keys = CheckpointKeys::new(signer.public_key(), []);
        assert_eq!(keys.verify(&checkpoint), Ok(()));
    }

    #[test]
    fn any_change_to_a_signed_field_breaks_the_signature() {
        let signer = signer(1);
        let keys = CheckpointKeys::new(signer.public_key(), []);
        let good = signer.sign(42, [9; 32], at(1_700_000_000_000_000));
        type Tamper = fn(&mut Checkpoint);
        let cases: [(&str, Tamper); 4] = [
            ("sequence", |c| c.sequence += 1),
            ("hash", |c| c.hash[31] ^= 1),
            ("signed_at", |c| {
                c.signed_at += chrono::Duration::microseconds(1);
            }),
            ("signature", |c| c.signature[0] ^= 1),
        ];
        for (field, tamper) in cases {
            let mut bad = good.clone();
            tamper(&mut bad);
            assert_eq!(keys.verify(&bad), Err(Refusal::BadSignature), "{field}");
        }
    }

    #[test]
    fn another_keys_signature_is_refused_unless_it_is_a_retired_key() {
        let old = signer(1);
        let new = signer(2);
        let by_old = old.sign(5, [1; 32], at(1_700_000_000_000_000));
        let only_new = CheckpointKeys::new(new.public_key(), []);
        assert_eq!(
            only_new.verify(&by_old),
            Err(Refusal::UnknownKey(old.key_id().to_owned()))
        );
        // A forger who names the current key but signs with another.
        let mut forged = by_old.clone();
        forged.key_id = new.key_id().to_owned();
        assert_eq!(only_new.verify(&forged), Err(Refusal::BadSignature));

        let with_retired = CheckpointKeys::new(new.public_key(), [old.public_key()]);
        assert_eq!(with_retired.verify(&by_old), Ok(()));
        let ids: Vec<(&str, bool)> = with_retired
            .all()
            .iter()
            .map(|k| (k.key_id.as_str(), k.current))
            .collect();
        assert_eq!(ids, [(new.key_id(), true), (old.key_id(), false)]);
    }

    #[test]
    fn a_sequence_below_one_is_refused() {
        let signer = signer(1);
        let keys = CheckpointKeys::new(signer.public_key(), []);
        let zero = signer.sign(0, [1; 32], at(0));
        assert_eq!(keys.verify(&zero), Err(Refusal::BadSequence));
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_input() {
        assert_eq!(from_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        for bad in ["0a", "0aff00", "0g00", "+a00", "0a f"] {
            assert_eq!(from_hex::<2>(bad), None, "{bad:?}");
        }
    }
}
