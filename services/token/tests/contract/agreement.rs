//! Every row of the agreement table gets its verdict from the contract itself.

use bulwark_token::testing::{self, Verdict};
use bulwark_token::{KeyStore, TokenError};

const NOW: u64 = 1_750_000_000;

fn keys() -> KeyStore {
    KeyStore::from_jwks_json(&testing::jwks_json())
        .unwrap()
        .store
}

#[test]
fn every_table_token_gets_its_verdict_from_the_contract() {
    let (policy, keys) = (testing::policy(), keys());
    let cases = testing::cases(NOW);
    assert!(cases.len() >= 30, "the table lost rows: {}", cases.len());
    for case in cases {
        let result = policy.verify(&case.token, &keys, NOW);
        assert_eq!(
            Verdict::of(result.as_ref()),
            case.verdict,
            "row {:?}",
            case.name
        );
    }
}

#[test]
fn the_table_covers_acceptance_and_refusal() {
    let cases = testing::cases(NOW);
    let accepted = cases
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Accepted(_)))
        .count();
    assert!(accepted >= 2, "{accepted} accepted rows");
    assert!(
        cases
            .iter()
            .any(|c| c.verdict == Verdict::Refused(TokenError::MissingClaim("jti"))),
        "no row for a token without jti"
    );
}

#[test]
fn the_key_set_from_json_values_equals_the_one_from_the_document() {
    let from_values = KeyStore::from_jwks(testing::jwks()).unwrap().store;
    assert_eq!(from_values.kids(), keys().kids());
    let policy = testing::policy();
    let token = testing::sign(&testing::user_claims(NOW));
    assert!(policy.verify(&token, &from_values, NOW).is_ok());
}

#[test]
fn a_user_token_exposes_its_user_id_and_a_client_token_its_client_id() {
    let policy = testing::policy();
    let user = policy
        .verify(&testing::sign(&testing::user_claims(NOW)), &keys(), NOW)
        .unwrap();
    assert_eq!(
        user.subject.user_id().map(|u| u.to_string()).as_deref(),
        Some(testing::USER_ID)
    );
    assert_eq!(user.sub, testing::USER_ID);
    assert_eq!(user.iat, NOW);
    let client = policy
        .verify(&testing::sign(&testing::client_claims(NOW)), &keys(), NOW)
        .unwrap();
    assert_eq!(client.subject.client_id(), Some("identity"));
    assert_eq!(client.subject.user_id(), None);
    assert_eq!(client.sub, "client:identity");
}

#[test]
fn a_verifier_without_keys_reports_the_unknown_kid() {
    let token = testing::sign(&testing::user_claims(NOW));
    assert_eq!(
        testing::policy().verify(&token, &KeyStore::default(), NOW),
        Err(TokenError::UnknownKid(testing::KID.to_owned()))
    );
}
