//! A checkpoint outside Audit: the JSON of a checkpoint file, and the `Checkpoint`
//! message of the API, both read back into a [`Checkpoint`].
//!
//! A file holds exactly the message's JSON as the REST routes show it (proto3 JSON:
//! `sequence` as a decimal string, `hash` and `signature` in base64, `signed_at` in RFC
//! 3339 with 0, 3 or 6 fractional digits), so a file an operator kept can be sent back to `VerifyChain` as it is:
//!
//! ```json
//! {"sequence":"42","hash":"<base64>","signed_at":"2026-01-02T03:04:05.123456Z",
//!  "key_id":"<16 hex digits>","signature":"<base64>"}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use bulwark_proto::audit::v1 as proto;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, HASH_BYTES};

/// Checkpoint files are named `checkpoint-<sequence, 20 digits>-<first 16 hex digits
/// of the hash>.json`: sorted by sequence, and two checkpoints of one sequence (a log
/// rewritten after a sequence reset) never overwrite each other.
pub const FILE_PREFIX: &str = "checkpoint-";
pub const FILE_SUFFIX: &str = ".json";

/// The name of `checkpoint`'s file.
pub fn file_name(checkpoint: &Checkpoint) -> String {
    format!(
        "{FILE_PREFIX}{:020}-{}{FILE_SUFFIX}",
        checkpoint.sequence,
        super::checkpoint::hex(&checkpoint.hash[..8])
    )
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Int64 {
    Text(String),
    Number(i64),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointJson {
    sequence: Int64,
    hash: String,
    signed_at: String,
    key_id: String,
    signature: String,
}

/// `checkpoint` as a file's JSON (one line, then a newline).
pub fn to_json(checkpoint: &Checkpoint) -> String {
    let json = CheckpointJson {
        sequence: Int64::Text(checkpoint.sequence.to_string()),
        hash: STANDARD.encode(checkpoint.hash),
        // 0, 3 or 6 fractional digits, as proto3 JSON writes a timestamp.
        signed_at: checkpoint
            .signed_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        key_id: checkpoint.key_id.clone(),
        signature: STANDARD.encode(checkpoint.signature),
    };
    // Serialising plain strings cannot fail.
    let mut text = serde_json::to_string(&json).unwrap_or_default();
    text.push('\n');
    text
}

/// A checkpoint file's JSON; the error says what is wrong with it.
pub fn from_json(text: &str) -> Result<Checkpoint, String> {
    let json: CheckpointJson =
        serde_json::from_str(text).map_err(|e| format!("not a checkpoint's JSON: {e}"))?;
    let sequence = match json.sequence {
        Int64::Number(n) => n,
        Int64::Text(text) => text
            .parse()
            .map_err(|_| "sequence is not an integer".to_owned())?,
    };
    let signed_at = DateTime::parse_from_rfc3339(&json.signed_at)
        .map_err(|_| "signed_at is not an RFC 3339 time".to_owned())?
        .with_timezone(&Utc);
    Ok(Checkpoint {
        sequence,
        hash: fixed("hash", &base64(&json.hash, "hash")?)?,
        signed_at,
        key_id: json.key_id,
        signature: fixed("signature", &base64(&json.signature, "signature")?)?,
    })
}

/// Standard or URL-safe base64, padded or not (proto3 JSON readers accept both).
fn base64(text: &str, field: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.trim_end_matches('=');
    let padded = format!("{trimmed}{}", "=".repeat((4 - trimmed.len() % 4) % 4));
    STANDARD
        .decode(&padded)
        .or_else(|_| URL_SAFE.decode(&padded))
        .map_err(|_| format!("{field} is not base64"))
}

fn fixed<const N: usize>(field: &str, bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{field} must be {N} bytes, not {}", bytes.len()))
}

/// `checkpoint` as the API's message.
pub fn to_message(checkpoint: &Checkpoint) -> proto::Checkpoint {
    proto::Checkpoint {
        sequence: checkpoint.sequence,
        hash: checkpoint.hash.to_vec(),
        signed_at: Some(bulwark_kernel::timestamp::to_proto(checkpoint.signed_at)),
        key_id: checkpoint.key_id.clone(),
        signature: checkpoint.signature.to_vec(),
    }
}

/// A checkpoint from the API; the error says what is wrong with it.
pub fn from_message(message: proto::Checkpoint) -> Result<Checkpoint, String> {
    let signed_at = message
        .signed_at
        .as_ref()
        .ok_or_else(|| "signed_at is not set".to_owned())
        .and_then(|at| {
            let nanos = u32::try_from(at.nanos).map_err(|_| "signed_at is invalid".to_owned())?;
            DateTime::from_timestamp(at.seconds, nanos)
                .ok_or_else(|| "signed_at is invalid".to_owned())
        })?;
    Ok(Checkpoint {
        sequence: message.sequence,
        hash: fixed::<HASH_BYTES>("hash", &message.hash)?,
        signed_at,
        key_id: message.key_id,
        signature: fixed("signature", &message.signature)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkpoint::{CheckpointKeys, CheckpointSigner};

    fn signed() -> (CheckpointKeys, Checkpoint) {
        let signer = CheckpointSigner::from_seed(&[3; 32]);
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap_or_default();
        let checkpoint = signer.sign(42, [0xfe; 32], at);
        (CheckpointKeys::new(signer.public_key(), []), checkpoint)
    }

    #[test]
    fn a_file_round_trips_and_still_verifies() {
        let (keys, checkpoint) = signed();
        let text = to_json(&checkpoint);
        assert!(
            text.starts_with(r#"{"sequence":"42","hash":"/v7+"#)
                && text.contains(r#""signed_at":"2023-11-14T22:13:20.123456Z""#)
                && text.ends_with("}\n"),
            "{text}"
        );
        let read = from_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(read, checkpoint);
        assert_eq!(keys.verify(&read), Ok(()));
        assert_eq!(
            file_name(&checkpoint),
            "checkpoint-00000000000000000042-fefefefefefefefe.json"
        );
    }

    #[test]
    fn a_message_round_trips_and_json_numbers_and_url_safe_base64_are_read() {
        let (_, checkpoint) = signed();
        let back = from_message(to_message(&checkpoint)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, checkpoint);
        let text = to_json(&checkpoint)
            .replace(r#""42""#, "42")
            .replace('/', "_")
            .replace('+', "-")
            .replace('=', "");
        assert_eq!(from_json(&text).ok(), Some(checkpoint));
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let (_, checkpoint) = signed();
        let good = to_json(&checkpoint);
        let short_hash = good.replace(&STANDARD.encode([0xfe; 32]), &STANDARD.encode([1; 31]));
        let cases = [
            ("not json", "not a checkpoint's JSON".to_owned()),
            ("{}", "not a checkpoint's JSON".to_owned()),
            (&short_hash, "hash must be 32 bytes, not 31".to_owned()),
            (
                &good.replace(r#""42""#, r#""4x2""#),
                "sequence is not an integer".to_owned(),
            ),
            (
                &good.replace("2023-11-14T", "yesterday "),
                "signed_at is not an RFC 3339 time".to_owned(),
            ),
        ];
        for (text, expected) in cases {
            let error = from_json(text).err().unwrap_or_default();
            assert!(error.starts_with(&expected), "{text}: {error}");
        }
    }
}
