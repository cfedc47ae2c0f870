//! The request flow and the leases on a mock host: pause, calls, resume, and the
//! accounting that several workers and several Envoys share.

use std::rc::Rc;
use std::time::Duration;

use bulwark_gateway_logic::lease::LEASE_SERVICE;
use bulwark_gateway_logic::{Action, Counter, Fact, GatewayConfig, RequestFlow, Worker};
use bulwark_proto::ratelimit::v1::LeaseRequest;
use prost::Message;
use serde_json::{Value, json};

use crate::mock_host::{Call, MockHost, ModelLimit, ModelService, Proxy};
use crate::support::{self, NOW, TestKey};

const LEASE: &str = "bulwark.ratelimit.v1.LeaseService/Lease";
const START_MS: u64 = NOW * 1_000;

fn limited_config(per_user: &str, slots: u64) -> GatewayConfig {
    let mut config = support::config_json();
    config["rate_limit"] = json!({
        "cluster": "ratelimit",
        "domain": "edge",
        "timeout_ms": 50,
        "per_user": {"failure_mode": per_user},
        "lease_slots": slots,
    });
    GatewayConfig::from_json(&serde_json::to_vec(&config).unwrap()).unwrap()
}

fn leased(rate: u32, lease_size: u32) -> ModelLimit {
    ModelLimit {
        requests_per_second: rate,
        lease_size,
        valid_for: Duration::from_secs(2),
        exact: false,
    }
}

/// One worker of an Envoy: its state and its view of the host.
struct Edge {
    worker: Worker,
    host: MockHost,
}

impl Edge {
    fn new(proxy: &Rc<Proxy>, config: GatewayConfig, key: &TestKey) -> Self {
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

    /// Sends a request; returns its flow (to deliver answers to) and the action.
    fn send(&mut self, headers: &[(&str, &str)]) -> (RequestFlow, Action) {
        self.host.request(headers);
        let mut flow = RequestFlow::new();
        let action = flow.on_request_headers(&mut self.worker, &self.host);
        (flow, action)
    }

    fn bearer(&mut self, token: &str) -> (RequestFlow, Action) {
        let authorization = format!("Bearer {token}");
        self.send(&[
            (":path", "/v1/users/me"),
            (":method", "GET"),
            ("authorization", &authorization),
        ])
    }

    /// Lease calls started since the last look (other calls are dropped).
    fn lease_calls(&self) -> Vec<Call> {
        self.host
            .take_calls()
            .into_iter()
            .filter(|c| c.target == LEASE)
            .collect()
    }

    /// Answers a request's lease call from `service`.
    fn answer(&mut self, flow: &mut RequestFlow, call: &Call, service: &ModelService) {
        let body = service.answer(&call.message, self.host.proxy.now_ms());
        let size = body.len();
        self.host.answer.borrow_mut().body = Some(body);
        flow.on_grpc_call_response(&mut self.worker, &self.host, call.token, 0, size);
    }

    /// Sends a first request for `token`'s user and answers its lease call.
    fn take_lease(&mut self, token: &str, service: &ModelService) {
        let (mut flow, action) = self.bearer(token);
        assert_eq!(action, Action::Pause, "a first request waits for its lease");
        let call = self.lease_calls().pop().expect("a lease call");
        self.answer(&mut flow, &call, service);
        assert_eq!(self.host.resumed.get(), 1, "the lease lets it go on");
    }

    /// Fails a request's lease call with a gRPC status.
    fn fail(&mut self, flow: &mut RequestFlow, call: &Call, status: u32) {
        flow.on_grpc_call_response(&mut self.worker, &self.host, call.token, status, 0);
    }

    /// Runs the timer and answers the renewal batch it sends, if any, from `service`
    /// (or fails it with `status`). Returns the batch's request.
    fn tick(&mut self, service: Option<&ModelService>, status: u32) -> Option<LeaseRequest> {
        self.worker.on_tick(&self.host);
        let call = self.lease_calls().pop()?;
        let request = LeaseRequest::decode(call.message.as_slice()).unwrap();
        match service {
            Some(service) if status == 0 => {
                let body = service.answer(&call.message, self.host.proxy.now_ms());
                let size = body.len();
                self.host.answer.borrow_mut().body = Some(body);
                assert!(
                    self.worker
                        .on_grpc_call_response(&self.host, call.token, 0, size)
                );
            }
            _ => {
                assert!(self.worker.on_grpc_call_response(
                    &self.host,
                    call.token,
                    status.max(1),
                    0
                ));
            }
        }
        Some(request)
    }
}

fn request_of(call: &Call) -> LeaseRequest {
    LeaseRequest::decode(call.message.as_slice()).unwrap()
}

fn token_for(key: &TestKey, user: &str) -> String {
    let mut claims: Value = support::claims();
    claims["sub"] = json!(user);
    support::sign(key, &claims)
}

const USER: &str = "0192f0c4-7d4e-7b1a-9f00-0000000000b1";

#[test]
fn a_first_request_waits_for_a_lease_and_the_next_ones_spend_it_without_a_call() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);

    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause, "no lease yet: the request waits");
    let calls = edge.lease_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "ratelimit");
    assert_eq!(calls[0].timeout, Duration::from_millis(50));
    let asked = request_of(&calls[0]);
    assert_eq!(asked.domain, "edge");
    assert_eq!(asked.items.len(), 1);
    assert_eq!(asked.items[0].spend, 1);
    assert_eq!(
        asked.items[0].held, 0,
        "this worker claimed the lease: it tops up from 0"
    );
    let entries = &asked.items[0].descriptor.as_ref().unwrap().entries;
    assert_eq!(
        (entries[0].key.as_str(), entries[0].value.as_str()),
        ("user_id", USER)
    );

    edge.answer(&mut flow, &calls[0], &service);
    assert_eq!(
        edge.host.resumed.get(),
        1,
        "the grant lets the request go on"
    );
    flow.on_response_headers(&edge.host);
    assert_eq!(
        edge.host.sent_response_header("ratelimit-limit").as_deref(),
        Some("100")
    );
    assert_eq!(
        edge.host
            .sent_response_header("ratelimit-remaining")
            .as_deref(),
        Some("99"),
        "the bucket's 80 plus the 19 this instance holds"
    );

    // 19 held: nine requests spend without a call, down to 10 = half a lease.
    for i in 0..9 {
        let (mut flow, action) = edge.bearer(&token);
        assert_eq!(action, Action::Continue, "request {i} spends a leased hit");
        flow.on_response_headers(&edge.host);
        assert!(
            edge.host
                .sent_response_header("ratelimit-remaining")
                .is_some()
        );
    }
    assert!(
        edge.lease_calls().is_empty(),
        "no call while the lease lasts"
    );
    assert_eq!(edge.host.counter(Counter::LeaseSpent), 9);
    assert_eq!(
        edge.worker.renewals_outstanding(),
        1,
        "half a lease left: renewal claimed"
    );

    // The timer sends the renewal in the background: spend 0, held 10, topped up to 20.
    let renewal = edge.tick(Some(&service), 0).expect("a renewal batch");
    assert_eq!(renewal.items.len(), 1);
    assert_eq!((renewal.items[0].spend, renewal.items[0].held), (0, 10));
    assert_eq!(service.granted.borrow().values().sum::<u64>(), 30);
    for _ in 0..19 {
        assert_eq!(edge.bearer(&token).1, Action::Continue);
    }
    assert!(edge.lease_calls().is_empty());
}

#[test]
fn the_workers_of_one_envoy_share_one_lease() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let config = limited_config("open", 1024);
    let mut a = Edge::new(&proxy, config.clone(), &key);
    let mut b = Edge::new(&proxy, config, &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);

    a.take_lease(&token, &service);
    for _ in 0..9 {
        assert_eq!(
            b.bearer(&token).1,
            Action::Continue,
            "worker b spends a's lease"
        );
    }
    assert!(b.lease_calls().is_empty(), "worker b made no call");
    assert_eq!(
        b.worker.renewals_outstanding(),
        1,
        "b reached half a lease and claimed"
    );
    assert_eq!(a.worker.renewals_outstanding(), 0);
    // While b's renewal is claimed, nobody else claims it.
    assert_eq!(a.bearer(&token).1, Action::Continue);
    assert_eq!(a.worker.renewals_outstanding(), 0);
    assert_eq!(
        service.granted.borrow().values().sum::<u64>(),
        20,
        "one lease, not two"
    );
}

#[test]
fn a_refused_lease_refuses_locally_until_a_quarter_lease_fits() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);

    // Drain the bucket through the leases: grants halve as it empties.
    let mut admitted = 0;
    let mut calls = 0;
    let mut grants = Vec::new();
    loop {
        let (mut flow, action) = edge.bearer(&token);
        match action {
            Action::Continue => admitted += 1,
            Action::Pause => {
                if let Some(call) = edge.lease_calls().pop() {
                    calls += 1;
                    let before = service.granted.borrow().values().sum::<u64>();
                    edge.answer(&mut flow, &call, &service);
                    grants.push(service.granted.borrow().values().sum::<u64>() - before);
                    if edge.host.resumed.get() == 1 {
                        admitted += 1;
                        continue;
                    }
                }
                assert_eq!(edge.host.replied(), Some(429));
                assert_eq!(
                    edge.host.fact(Fact::Decision).as_deref(),
                    Some("rate_limited")
                );
                break;
            }
        }
        edge.tick(Some(&service), 0);
        assert!(admitted <= 100, "more admitted than the bucket holds");
    }
    assert_eq!(
        admitted, 100,
        "the whole bucket and no more (grants {grants:?})"
    );
    assert!(calls < 30, "{calls} calls for 100 hits");
    assert!(
        grants.windows(2).skip(4).all(|w| w[1] <= w[0].max(1)),
        "leases shrink as the bucket empties: {grants:?}"
    );
    let reply = edge.host.last_reply();
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    assert_eq!(reply.header("retry-after"), Some("1"));

    // Refused locally now: no call.
    let (_, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause);
    assert_eq!(edge.host.replied(), Some(429));
    assert!(edge.lease_calls().is_empty(), "the local verdict answers");
    assert_eq!(edge.host.last_reply().header("retry-after"), Some("1"));
    assert!(edge.host.counter(Counter::RateLimited) >= 2);

    // Still refused locally when one hit fits (10 ms at 100/s): the verdict lasts until a
    // quarter of a lease (5 hits, 50 ms) has drained back, so a client hammering its limit
    // does not cost the service a call every few milliseconds.
    proxy.advance(Duration::from_millis(20));
    assert_eq!(edge.bearer(&token).1, Action::Pause);
    assert!(edge.lease_calls().is_empty(), "asked again after one hit");
    proxy.advance(Duration::from_millis(31));
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause);
    let call = edge
        .lease_calls()
        .pop()
        .expect("asks again after the verdict expires");
    edge.answer(&mut flow, &call, &service);
    assert_eq!(edge.host.resumed.get(), 1, "a drained hit is granted");
    assert!(
        service.granted.borrow().values().sum::<u64>() >= 102,
        "what drained is granted, halved: at least two hits"
    );
}

#[test]
fn held_hits_expire_with_the_lease() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    edge.take_lease(&token, &service);
    assert_eq!(edge.bearer(&token).1, Action::Continue);

    proxy.advance(Duration::from_millis(2_001));
    let (_, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause, "an expired lease is not spent");
    let asked = request_of(&edge.lease_calls().pop().unwrap());
    assert_eq!(
        asked.items[0].held, 0,
        "expired hits are dropped, not reported as held"
    );
}

#[test]
fn losing_the_service_mid_lease_spends_what_is_held_then_fails_as_the_route_says() {
    for (mode, status_after) in [("closed", Some(503)), ("open", None)] {
        let key = support::ed25519_a();
        let proxy = Proxy::new(START_MS);
        let mut edge = Edge::new(&proxy, limited_config(mode, 1024), &key);
        let service = ModelService::new(leased(100, 20));
        let token = token_for(&key, USER);
        edge.take_lease(&token, &service);

        // The service goes away: the renewal fails, the held hits are still spent.
        let mut admitted = 0;
        for _ in 0..19 {
            let (_, action) = edge.bearer(&token);
            assert_eq!(action, Action::Continue, "{mode}: held hits are spent");
            admitted += 1;
            if edge.worker.renewals_outstanding() > 0 {
                edge.tick(None, 14);
                assert!(edge.host.counter(Counter::CalloutFailure) >= 1);
            }
        }
        assert_eq!(admitted, 19);
        // Nothing held: the request asks, the call fails, the route's failure mode decides.
        let (mut flow, action) = edge.bearer(&token);
        assert_eq!(action, Action::Pause);
        let call = edge.lease_calls().pop().expect("asks the service");
        edge.fail(&mut flow, &call, 14);
        match status_after {
            Some(status) => {
                assert_eq!(edge.host.replied(), Some(status), "{mode}");
                assert_eq!(edge.host.resumed.get(), 0);
            }
            None => assert_eq!(edge.host.resumed.get(), 1, "{mode}: let through"),
        }
        let (decision, counter) = match mode {
            "closed" => ("fail_closed", Counter::FailClosed),
            _ => ("fail_open", Counter::FailOpen),
        };
        assert_eq!(
            edge.host.fact(Fact::Decision).as_deref(),
            Some(decision),
            "{mode}"
        );
        assert_eq!(edge.host.counter(counter), 1, "{mode}");
        // A call that cannot even start is a failure too.
        edge.host.refuse_calls.set(true);
        let (_, action) = edge.bearer(&token);
        match status_after {
            Some(status) => {
                assert_eq!(action, Action::Pause);
                assert_eq!(edge.host.replied(), Some(status));
            }
            None => assert_eq!(action, Action::Continue),
        }
    }
}

#[test]
fn a_failed_renewal_backs_off_before_the_next_claim() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    edge.take_lease(&token, &service);
    for _ in 0..9 {
        edge.bearer(&token);
    }
    assert!(
        edge.tick(None, 14).is_some(),
        "the renewal was sent and failed"
    );
    edge.bearer(&token);
    assert_eq!(
        edge.worker.renewals_outstanding(),
        0,
        "no new claim during the back-off"
    );
    proxy.advance(Duration::from_millis(1_001));
    edge.bearer(&token);
    assert_eq!(
        edge.worker.renewals_outstanding(),
        1,
        "claimed again after it"
    );
}

#[test]
fn a_renewal_claim_that_outlives_its_deadline_is_taken_over() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let config = limited_config("open", 1024);
    let mut a = Edge::new(&proxy, config.clone(), &key);
    let mut b = Edge::new(&proxy, config, &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    a.take_lease(&token, &service);
    for _ in 0..9 {
        a.bearer(&token);
    }
    assert_eq!(a.worker.renewals_outstanding(), 1);
    // a never sends it (its timer is stuck); after timeout + 2 renew intervals, b claims.
    b.bearer(&token);
    assert_eq!(b.worker.renewals_outstanding(), 0);
    proxy.advance(Duration::from_millis(101));
    b.bearer(&token);
    assert_eq!(
        b.worker.renewals_outstanding(),
        1,
        "the stale claim is taken over"
    );
    // a's timer comes back: its expired claim is not sent, so the lease is topped up once.
    assert!(
        a.tick(Some(&service), 0).is_none(),
        "a sent a renewal it no longer holds"
    );
    assert_eq!(a.worker.renewals_outstanding(), 0);
    assert!(b.tick(Some(&service), 0).is_some(), "b renews");
}

#[test]
fn small_limits_stay_exact_one_call_per_request_and_keep_no_slot() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("closed", 1024), &key);
    let service = ModelService::new(ModelLimit {
        requests_per_second: 3,
        lease_size: 0,
        valid_for: Duration::ZERO,
        exact: true,
    });
    let token = token_for(&key, USER);
    for i in 1..=4 {
        let (mut flow, action) = edge.bearer(&token);
        assert_eq!(action, Action::Pause, "request {i} asks");
        let call = edge.lease_calls().pop().expect("one call per request");
        edge.answer(&mut flow, &call, &service);
        if i <= 3 {
            assert_eq!(
                edge.host.resumed.get(),
                1,
                "request {i} is within the limit"
            );
            flow.on_response_headers(&edge.host);
            assert_eq!(
                edge.host.sent_response_header("ratelimit-remaining"),
                Some((3 - i).to_string()),
                "exact remaining, as the service counts it"
            );
        } else {
            assert_eq!(edge.host.replied(), Some(429));
            let reply = edge.host.last_reply();
            assert_eq!(reply.header("ratelimit-limit"), Some("3"));
            assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
        }
    }
    assert_eq!(edge.host.counter(Counter::LeaseSpent), 0);
    // No slot stays claimed by the exact descriptor: a fifth request asks (not refused
    // locally) and as a claim (held 0), not as a bystander.
    let (_, _) = edge.bearer(&token);
    let asked = request_of(&edge.lease_calls().pop().unwrap());
    assert_eq!(asked.items[0].held, 0);
}

#[test]
fn public_routes_are_limited_per_client_ip_exactly() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(ModelLimit {
        requests_per_second: 1,
        lease_size: 0,
        valid_for: Duration::ZERO,
        exact: true,
    });
    let (mut flow, action) = edge.send(&[(":path", "/v1/auth/login"), (":method", "PUT")]);
    assert_eq!(action, Action::Pause);
    let call = edge.lease_calls().pop().unwrap();
    let entries = request_of(&call).items[0]
        .descriptor
        .clone()
        .unwrap()
        .entries;
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [("route", "/v1/auth/login"), ("client_ip", "203.0.113.7")]
    );
    edge.answer(&mut flow, &call, &service);
    assert_eq!(edge.host.resumed.get(), 1);
    let (mut flow, _) = edge.send(&[(":path", "/v1/auth/login")]);
    let call = edge.lease_calls().pop().unwrap();
    edge.answer(&mut flow, &call, &service);
    assert_eq!(
        edge.host.replied(),
        Some(429),
        "login's failure mode is closed, limit 1"
    );
}

#[test]
fn an_unlimited_descriptor_passes_without_calls_until_the_answer_expires() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, "client:free-reporter");
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause);
    let call = edge.lease_calls().pop().unwrap();
    edge.answer(&mut flow, &call, &service);
    assert_eq!(edge.host.resumed.get(), 1);
    for _ in 0..50 {
        assert_eq!(edge.bearer(&token).1, Action::Continue);
    }
    assert!(
        edge.lease_calls().is_empty(),
        "an unlimited verdict is kept"
    );
    proxy.advance(Duration::from_millis(2_001));
    assert_eq!(
        edge.bearer(&token).1,
        Action::Pause,
        "asked again once it expires"
    );
}

#[test]
fn a_full_table_decides_the_newcomer_exactly() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1), &key);
    let service = ModelService::new(leased(100, 20));
    let first = token_for(&key, USER);
    let second = token_for(&key, "0192f0c4-7d4e-7b1a-9f00-0000000000b2");
    edge.take_lease(&first, &service);
    for _ in 0..3 {
        let (mut flow, action) = edge.bearer(&second);
        assert_eq!(action, Action::Pause);
        let call = edge.lease_calls().pop().unwrap();
        assert_eq!(
            request_of(&call).items[0].held,
            u32::MAX,
            "no slot: a decision for this request alone"
        );
        edge.answer(&mut flow, &call, &service);
        assert_eq!(edge.host.resumed.get(), 1);
    }
    assert_eq!(
        edge.bearer(&first).1,
        Action::Continue,
        "the first keeps its lease"
    );
    assert_eq!(proxy.keys_with_prefix("bulwark_gateway.lease:").len(), 1);
}

/// Two Envoys of two workers each hammer one user's limit for three seconds: the fleet
/// admits no more than exact counting would (the burst plus the rate over the time)
/// plus one lease per Envoy, and not much less.
#[test]
fn two_envoys_hammering_one_limit_stay_within_one_lease_each_of_exact() {
    let key = support::ed25519_a();
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    let clock = Proxy::new(START_MS);
    let envoys: Vec<Rc<Proxy>> = (0..2).map(|_| Proxy::new(START_MS)).collect();
    let mut workers: Vec<Edge> = envoys
        .iter()
        .flat_map(|proxy| (0..2).map(|_| Edge::new(proxy, limited_config("open", 1024), &key)))
        .collect();
    let mut admitted = 0u64;
    let steps = 3_000;
    for step in 0..steps {
        for proxy in &envoys {
            proxy.advance(Duration::from_millis(1));
        }
        clock.advance(Duration::from_millis(1));
        for edge in &mut workers {
            // Four requests per worker per millisecond: 16,000/s against 100/s.
            for _ in 0..4 {
                let (mut flow, action) = edge.bearer(&token);
                match action {
                    Action::Continue => admitted += 1,
                    Action::Pause => {
                        if let Some(call) = edge.lease_calls().pop() {
                            edge.answer(&mut flow, &call, &service);
                            admitted += u64::from(edge.host.resumed.get());
                        }
                    }
                }
            }
            if step % 25 == 0 {
                edge.tick(Some(&service), 0);
            }
        }
    }
    let seconds = steps / 1_000;
    let exact_bound = 100 + 100 * seconds;
    let bound = exact_bound + 2 * 20;
    assert!(
        admitted <= bound,
        "admitted {admitted} > exact {exact_bound} + 2 leases of 20"
    );
    assert!(
        admitted >= 100 * seconds,
        "admitted {admitted}: leasing must not starve a client of its rate"
    );
    let granted: u64 = service.granted.borrow().values().sum();
    assert!(admitted <= granted, "every admitted hit was granted first");
}

#[test]
fn an_unknown_kid_pauses_for_a_refetch_and_resumes_with_the_new_key() {
    let old = support::ed25519_a();
    let new = support::ed25519_b();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, support::config(), &old);
    let token = support::sign(&new, &support::claims());
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause, "waits for the JWKS");
    let call = edge.host.take_calls().pop().expect("a JWKS fetch");
    assert_eq!(call.cluster, "bulwark_auth");
    assert_eq!(call.target, "/.well-known/jwks.json");
    let jwks = support::jwks(&[&old, &new]);
    let size = jwks.len();
    *edge.host.answer.borrow_mut() = crate::mock_host::Answer {
        http_status: Some("200".to_owned()),
        body: Some(jwks.clone()),
    };
    flow.on_http_call_response(&mut edge.worker, &edge.host, call.token, size);
    assert_eq!(
        edge.host.resumed.get(),
        1,
        "re-verified with the new key and resumed"
    );
    assert!(
        edge.host
            .set_request_headers
            .borrow()
            .iter()
            .any(|(n, v)| n == "x-bulwark-user-id" && v == support::USER_ID)
    );
    // The document is published to the other workers.
    let mut other = Worker::new(support::config());
    let host = MockHost::new(&proxy);
    assert!(
        other.sync_jwks(&host),
        "another worker installs the published keys"
    );
    // A second unknown kid within the minimum interval is refused at once.
    let stranger = support::rsa();
    let (_, action) = edge.bearer(&support::sign(&stranger, &support::claims()));
    assert_eq!(action, Action::Pause);
    assert_eq!(edge.host.replied(), Some(401));
    assert!(
        edge.host.take_calls().is_empty(),
        "no refetch before the minimum interval"
    );
}

#[test]
fn identity_headers_from_the_client_are_removed_on_every_path() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, support::config(), &key);
    for path in ["/v1/auth/login", "/v1/users/me"] {
        let (_, _) = edge.send(&[
            (":path", path),
            ("x-bulwark-user-id", "forged"),
            ("x-bulwark-roles", "admin"),
        ]);
        let removed = edge.host.removed_request_headers.borrow().clone();
        assert!(
            removed.contains(&"x-bulwark-user-id".to_owned()),
            "{path}: {removed:?}"
        );
        assert!(
            removed.contains(&"x-bulwark-roles".to_owned()),
            "{path}: {removed:?}"
        );
    }
    assert_eq!(edge.host.replied(), Some(401), "no token on a bearer route");
    assert_eq!(edge.host.counter(Counter::Unauthenticated), 1);
    assert_eq!(
        edge.host.counter(Counter::Allowed),
        1,
        "login is public (no limits set)"
    );
}

#[test]
fn identity_headers_are_added_to_a_request_without_them_and_replace_a_clients_copy() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, support::config(), &key);
    let bearer = format!("Bearer {}", support::sign(&key, &support::claims()));
    let user_id_set = |edge: &Edge| {
        edge.host
            .set_request_headers
            .borrow()
            .iter()
            .any(|(n, v)| n == "x-bulwark-user-id" && v == support::USER_ID)
    };

    edge.send(&[(":path", "/v1/users/me"), ("authorization", &bearer)]);
    assert!(user_id_set(&edge), "the verified identity is forwarded");
    assert_eq!(
        *edge.host.added_request_headers.borrow(),
        ["x-bulwark-user-id", "x-bulwark-roles"],
        "headers the client did not send are added"
    );

    edge.send(&[
        (":path", "/v1/users/me"),
        ("authorization", &bearer),
        ("x-bulwark-roles", "admin"),
    ]);
    assert!(user_id_set(&edge), "the verified identity is forwarded");
    assert!(
        edge.host.added_request_headers.borrow().is_empty(),
        "after a client's identity header, ours replace, never add to, what it sent"
    );
    assert_eq!(
        *edge.host.removed_request_headers.borrow(),
        ["x-bulwark-roles"]
    );
}

#[test]
fn a_grpc_client_gets_the_refusal_as_a_grpc_status() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, support::config(), &key);
    edge.send(&[
        (":path", "/bulwark.identity.v1.IdentityService/GetMe"),
        ("content-type", "application/grpc"),
    ]);
    let replies = edge.host.replies.borrow();
    let (reply, grpc) = replies.last().unwrap();
    assert!(*grpc);
    assert_eq!(reply.grpc_code, 16);
}

#[test]
fn the_timer_renews_in_batches_of_at_most_the_service_limit() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 4096), &key);
    let service = ModelService::new(leased(100, 2));
    for i in 0..70u32 {
        let user = format!("0192f0c4-7d4e-7b1a-9f00-{i:012}");
        let token = token_for(&key, &user);
        edge.take_lease(&token, &service);
        // Lease of 2, one spent by the first request: 1 held = half: claimed.
        assert_eq!(edge.bearer(&token).1, Action::Continue);
    }
    assert_eq!(edge.worker.renewals_outstanding(), 70);
    let first = edge.tick(Some(&service), 0).unwrap();
    assert_eq!(first.items.len(), bulwark_gateway_logic::lease::MAX_ITEMS);
    let second = edge.tick(Some(&service), 0).unwrap();
    assert_eq!(second.items.len(), 6);
    assert_eq!(edge.worker.renewals_outstanding(), 0);
    assert_eq!(LEASE_SERVICE, "bulwark.ratelimit.v1.LeaseService");
}

#[test]
fn an_upstreams_own_rate_limit_headers_are_left_as_they_are() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    edge.take_lease(&token, &service);
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Continue);
    // A service refused the call with its own limit: its headers stand.
    edge.host.upstream_response_headers.borrow_mut().extend([
        ("ratelimit-limit".to_owned(), "6".to_owned()),
        ("retry-after".to_owned(), "42".to_owned()),
    ]);
    flow.on_response_headers(&edge.host);
    assert!(
        edge.host.response_headers.borrow().is_empty(),
        "the edge's headers overwrote the service's: {:?}",
        edge.host.response_headers.borrow()
    );
    // Otherwise the edge's are added.
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Continue);
    flow.on_response_headers(&edge.host);
    assert_eq!(
        edge.host.sent_response_header("ratelimit-limit").as_deref(),
        Some("100")
    );
}

#[test]
fn every_decision_reaches_the_edge_span_and_the_common_request_records_nothing() {
    let key = support::ed25519_a();
    let proxy = Proxy::new(START_MS);
    let mut edge = Edge::new(&proxy, limited_config("open", 1024), &key);
    let service = ModelService::new(leased(100, 20));
    let token = token_for(&key, USER);
    let all = [Fact::Decision, Fact::Reason, Fact::TokenCache];
    let recorded = |edge: &Edge| all.map(|fact| edge.host.fact(fact));
    let span = |edge: &Edge| all.map(|fact| edge.host.span_tag(fact));
    let some = |value: &str| Some(value.to_owned());

    // First sight of the token: verified in full, then allowed once the lease is granted.
    let (mut flow, action) = edge.bearer(&token);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        recorded(&edge),
        [None, None, some("miss")],
        "no decision before the lease call is answered"
    );
    let call = edge.lease_calls().pop().expect("a lease call");
    edge.answer(&mut flow, &call, &service);
    assert_eq!(recorded(&edge), [None, None, some("miss")]);
    assert_eq!(span(&edge), [some("allowed"), None, some("miss")]);

    // Again: answered by the cache, allowed from the lease. The common request: no
    // host call records anything, and the span reads the defaults.
    assert_eq!(edge.bearer(&token).1, Action::Continue);
    assert_eq!(recorded(&edge), [None, None, None]);
    assert_eq!(span(&edge), [some("allowed"), None, some("hit")]);

    // No token: refused before any cache lookup.
    edge.send(&[(":path", "/v1/users/me"), (":method", "GET")]);
    assert_eq!(edge.host.replied(), Some(401));
    assert_eq!(
        recorded(&edge),
        [some("unauthenticated"), some("missing_token"), some("none")]
    );

    // A forged signature: looked up, missed, verified and refused.
    // (Not the last character, whose spare bits would make the base64 malformed.)
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    edge.bearer(&forged);
    assert_eq!(edge.host.replied(), Some(401));
    assert_eq!(
        recorded(&edge),
        [some("unauthenticated"), some("bad_signature"), some("miss")]
    );
}
