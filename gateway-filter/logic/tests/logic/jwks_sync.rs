//! When a worker fetches the JWKS.

use std::time::Duration;

use bulwark_gateway_logic::config::JwksSource;
use bulwark_gateway_logic::jwks_sync::{
    FetchReason, FetchRecord, FetchState, document_key, fetch_due, request_headers,
};

fn source() -> JwksSource {
    JwksSource {
        cluster: "auth".to_owned(),
        path: "/.well-known/jwks.json".to_owned(),
        authority: "auth.internal".to_owned(),
        timeout: Duration::from_secs(2),
        refresh_interval: Duration::from_secs(300),
        min_refetch_interval: Duration::from_secs(15),
    }
}

fn record(started_at_s: u64, state: FetchState) -> FetchRecord {
    FetchRecord {
        started_at_ms: started_at_s * 1000,
        state,
    }
}

/// Seconds to the milliseconds `fetch_due` takes.
fn ms(seconds: u64) -> u64 {
    seconds * 1000
}

#[test]
fn first_fetch_is_due_at_once() {
    assert!(fetch_due(
        None,
        FetchReason::Periodic,
        &source(),
        ms(1_000),
        true
    ));
}

#[test]
fn periodic_fetch_waits_for_the_refresh_interval_after_success() {
    let last = record(1_000, FetchState::Succeeded);
    assert!(!fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        ms(1_299),
        true
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        ms(1_300),
        true
    ));
}

#[test]
fn failed_fetch_is_retried_after_the_min_refetch_interval() {
    let last = record(1_000, FetchState::Failed);
    assert!(!fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        ms(1_014),
        true
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        ms(1_015),
        true
    ));
}

#[test]
fn unknown_kid_refetch_is_bounded_by_the_min_refetch_interval() {
    let last = record(1_000, FetchState::Succeeded);
    assert!(!fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        ms(1_010),
        true
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        ms(1_015),
        true
    ));
}

#[test]
fn min_refetch_interval_is_measured_in_milliseconds_not_to_the_next_second() {
    let last = FetchRecord {
        started_at_ms: 1_000_999,
        state: FetchState::Succeeded,
    };
    assert!(!fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        1_001_001,
        true
    ));
    assert!(!fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        1_015_998,
        true
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        1_015_999,
        true
    ));
}

#[test]
fn fetch_in_flight_blocks_others_until_it_is_stale() {
    let last = record(1_000, FetchState::InFlight);
    assert!(!fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        ms(1_001),
        true
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        ms(1_015),
        true
    ));
}

#[test]
fn record_from_the_future_does_not_block_fetching() {
    let last = record(5_000, FetchState::Succeeded);
    assert!(fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        ms(1_000),
        true
    ));
}

#[test]
fn fetch_record_round_trips_and_garbage_reads_as_absent() {
    let r = record(42, FetchState::InFlight);
    assert_eq!(FetchRecord::decode(&r.encode()), Some(r));
    assert_eq!(FetchRecord::decode(b"nonsense"), None);
}

#[test]
fn request_names_path_and_authority() {
    let source = source();
    let headers = request_headers(&source);
    assert!(headers.contains(&(":path", "/.well-known/jwks.json")));
    assert!(headers.contains(&(":authority", "auth.internal")));
    assert!(headers.contains(&(":method", "GET")));
    assert_eq!(
        document_key(&source),
        "bulwark_gateway.jwks:auth/.well-known/jwks.json"
    );
}

#[test]
fn without_keys_a_failed_fetch_is_retried_within_half_a_second() {
    // At start the issuer may not answer yet; every bearer request is refused until the
    // first key set arrives, so waiting the full minimum interval would refuse them for
    // seconds.
    let last = FetchRecord {
        started_at_ms: 1_000_000,
        state: FetchState::Failed,
    };
    let no_keys = false;
    assert!(!fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        1_000_499,
        no_keys
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::Periodic,
        &source(),
        1_000_500,
        no_keys
    ));
    assert!(fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        1_000_500,
        no_keys
    ));
    // With keys loaded the minimum interval holds as before.
    assert!(!fetch_due(
        Some(&last),
        FetchReason::UnknownKid,
        &source(),
        1_000_500,
        true
    ));
}
