//! Revoked sessions at the edge, on a mock host: one worker per interval fetches Auth's
//! feed, the set is shared by every worker, and a token of a revoked session is refused,
//! cached or not, while other tokens pass.

use std::rc::Rc;
use std::time::Duration;

use bulwark_gateway_logic::{Action, Counter, GatewayConfig, RequestFlow, Worker};
use bulwark_proto::auth::v1::{
    ListRevokedSessionsRequest, ListRevokedSessionsResponse, RevokedSession,
};
use prost::Message;
use serde_json::{Value, json};

use crate::mock_host::{Call, MockHost, Proxy};
use crate::support::{self, NOW, TestKey};

const FEED: &str = "bulwark.auth.v1.AuthService/ListRevokedSessions";
const START_MS: u64 = NOW * 1_000;
const REVOKED: u128 = 0x0192_f0c4_7d4e_7b1a_9f00_0000_0000_0a01;
const LIVE: u128 = 0x0192_f0c4_7d4e_7b1a_9f00_0000_0000_0a02;

fn config() -> GatewayConfig {
    config_every(1_000)
}

fn config_every(interval_ms: u64) -> GatewayConfig {
    let mut config = support::config_json();
    config["clock_skew_seconds"] = json!(30);
    config["revocation"] = json!({ "cluster": "bulwark_auth", "interval_ms": interval_ms });
    GatewayConfig::from_json(&serde_json::to_vec(&config).unwrap()).unwrap()
}

fn token_of_session(key: &TestKey, sid: Option<u128>) -> String {
    let mut claims: Value = support::claims();
    if let Some(sid) = sid {
        claims["sid"] = json!(uuid::Uuid::from_u128(sid).to_string());
    }
    support::sign(key, &claims)
}

/// One worker of an Envoy.
struct Edge {
    worker: Worker,
    host: MockHost,
}

impl Edge {
    fn new(proxy: &Rc<Proxy>, key: &TestKey) -> Self {
        Self::with(proxy, key, config())
    }

    fn with(proxy: &Rc<Proxy>, key: &TestKey, config: GatewayConfig) -> Self {
        let mut worker = Worker::new(config);
        worker
            .gateway_mut()
            .install_jwks(&support::jwks(&[key]))
            .unwrap();
        Self {
            worker,
            host: MockHost::new(proxy),
        }
    }

    /// The status of a bearer request: 0 when it went on, else the local reply's.
    fn status(&mut self, token: &str) -> u32 {
        let authorization = format!("Bearer {token}");
        self.host.request(&[
            (":path", "/v1/users/me"),
            (":method", "GET"),
            ("authorization", &authorization),
        ]);
        let mut flow = RequestFlow::new();
        match flow.on_request_headers(&mut self.worker, &self.host) {
            Action::Continue => 0,
            Action::Pause => self.host.replied().unwrap_or(0),
        }
    }

    /// Runs the timer; returns the feed call it started, if any.
    fn tick(&mut self) -> Option<Call> {
        self.worker.on_tick(&self.host);
        self.host
            .take_calls()
            .into_iter()
            .find(|call| call.target == FEED)
    }

    /// Answers a feed call.
    fn answer(&mut self, call: &Call, sessions: &[(u128, i64)], next: i64, more: bool) {
        let body = ListRevokedSessionsResponse {
            sessions: sessions
                .iter()
                .map(|(id, expires_at)| RevokedSession {
                    id: id.to_be_bytes().to_vec(),
                    expires_at: *expires_at,
                })
                .collect(),
            next_since_unix_ms: next,
            more,
        }
        .encode_to_vec();
        let size = body.len();
        self.host.answer.borrow_mut().body = Some(body);
        assert!(
            self.worker
                .on_grpc_call_response(&self.host, call.token, 0, size),
            "the feed's answer belongs to the worker that asked"
        );
    }
}

fn since(call: &Call) -> i64 {
    ListRevokedSessionsRequest::decode(call.message.as_slice())
        .unwrap()
        .since_unix_ms
}

#[test]
fn a_revoked_sessions_token_is_refused_even_when_cached_and_others_pass() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, &key);
    let revoked = token_of_session(&key, Some(REVOKED));
    let live = token_of_session(&key, Some(LIVE));
    let without_sid = token_of_session(&key, None);
    for token in [&revoked, &live, &without_sid] {
        assert_eq!(edge.status(token), 0, "before the revocation");
    }

    let call = edge.tick().expect("the first tick asks for the feed");
    assert_eq!(call.cluster, "bulwark_auth");
    assert_eq!(since(&call), 0, "from the start");
    let expires = i64::try_from(NOW).unwrap() + 900;
    edge.answer(
        &call,
        &[(REVOKED, expires)],
        START_MS as i64 - 10_000,
        false,
    );

    assert_eq!(
        edge.status(&revoked),
        401,
        "a cached token of a revoked session"
    );
    let reply = edge.host.last_reply();
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, v)| n == "www-authenticate" && v.contains("invalid_token")),
        "{reply:?}"
    );
    assert_eq!(edge.status(&live), 0, "another session's token");
    assert_eq!(edge.status(&without_sid), 0, "a token without a session");
    assert!(edge.host.counter(Counter::Unauthenticated) >= 1);
}

#[test]
fn one_worker_fetches_per_interval_and_every_worker_refuses_what_it_learnt() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut first = Edge::new(&proxy, &key);
    let mut second = Edge::new(&proxy, &key);
    let call = first.tick().expect("the first worker fetches");
    assert!(
        second.tick().is_none(),
        "the second sees the fetch in flight"
    );
    let expires = i64::try_from(NOW).unwrap() + 900;
    first.answer(&call, &[(REVOKED, expires)], 1_234, false);

    let revoked = token_of_session(&key, Some(REVOKED));
    assert_eq!(
        second.status(&revoked),
        0,
        "not learnt before its next tick"
    );
    proxy.advance(Duration::from_millis(1_000));
    // Whichever worker ticks first fetches the next page, from the cursor.
    let call = second.tick().expect("a fetch a second later");
    assert_eq!(since(&call), 1_234);
    assert_eq!(second.status(&revoked), 401, "learnt from the shared set");
    assert!(first.tick().is_none(), "one fetch per interval");
    second.answer(&call, &[], 2_000, false);
    assert!(second.tick().is_none(), "nothing due before the interval");
}

#[test]
fn a_page_that_says_more_is_followed_at_the_next_tick_not_an_interval_later() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    // Every 5 s; the timer ticks every second (the JWKS tick).
    let mut edge = Edge::with(&proxy, &key, config_every(5_000));
    assert_eq!(edge.worker.tick_period(), Duration::from_secs(1));
    let expires = i64::try_from(NOW).unwrap() + 900;
    let call = edge.tick().unwrap();
    edge.answer(&call, &[(LIVE, expires)], 400, false);
    proxy.advance(Duration::from_millis(1_000));
    assert!(
        edge.tick().is_none(),
        "a complete page waits for the interval"
    );
    proxy.advance(Duration::from_millis(4_000));
    let call = edge.tick().expect("an interval later");
    edge.answer(&call, &[(REVOKED, expires)], 500, true);
    proxy.advance(Duration::from_millis(1_000));
    let next = edge.tick().expect("the rest of the feed at the next tick");
    assert_eq!(since(&next), 500);
}

#[test]
fn a_failed_fetch_keeps_what_is_known_and_is_retried_after_the_interval() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, &key);
    let expires = i64::try_from(NOW).unwrap() + 900;
    let call = edge.tick().unwrap();
    edge.answer(&call, &[(REVOKED, expires)], 100, false);
    proxy.advance(Duration::from_millis(1_000));
    let call = edge.tick().unwrap();
    assert!(
        edge.worker
            .on_grpc_call_response(&edge.host, call.token, 14, 0),
        "UNAVAILABLE"
    );
    assert_eq!(edge.host.counter(Counter::CalloutFailure), 1);
    assert_eq!(edge.status(&token_of_session(&key, Some(REVOKED))), 401);
    proxy.advance(Duration::from_millis(1_000));
    let retry = edge.tick().expect("retried");
    assert_eq!(since(&retry), 100, "from where the last good page ended");
    // A garbled answer is a failure too, and changes nothing.
    edge.host.answer.borrow_mut().body = Some(b"\xff\xff\xff".to_vec());
    assert!(
        edge.worker
            .on_grpc_call_response(&edge.host, retry.token, 0, 3)
    );
    assert_eq!(edge.host.counter(Counter::CalloutFailure), 2);
    assert_eq!(edge.status(&token_of_session(&key, Some(REVOKED))), 401);
}

#[test]
fn a_session_is_forgotten_once_its_tokens_have_expired() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, &key);
    let now = i64::try_from(NOW).unwrap();
    let call = edge.tick().unwrap();
    edge.answer(&call, &[(REVOKED, now + 10), (LIVE, now + 900)], 1, false);
    assert_eq!(edge.worker.gateway().revoked_sessions(), 2);
    // Past the expiry plus the 30 s of clock skew the edge tolerates.
    proxy.advance(Duration::from_secs(41));
    let call = edge.tick().unwrap();
    edge.answer(&call, &[], 2, false);
    assert_eq!(edge.worker.gateway().revoked_sessions(), 1);
}
