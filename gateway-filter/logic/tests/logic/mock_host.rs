//! A mock of the proxy for the request flow, and a model of the lease service.
//!
//! [`MockHost`] is one Envoy worker: its own request, replies and calls, but the
//! shared data and the clock of its [`Proxy`], with Envoy's shared-data semantics (a CAS
//! is checked only against an existing key; every write bumps it). [`ModelService`]
//! answers lease calls as `bulwark.ratelimit.v1.LeaseService` documents it, over an
//! in-memory GCRA bucket per descriptor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bulwark_gateway_logic::{Counter, Fact, Host, LocalResponse};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit, rate_limit,
};
use bulwark_proto::ratelimit::v1::{Grant, LeaseRequest, LeaseResponse, grant};
use prost::Message;

/// What the workers of one proxy share: shared data and the clock.
#[derive(Default)]
pub struct Proxy {
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    now_ms: Cell<u64>,
    /// Makes every shared-data write fail (the host refusing), when set.
    pub refuse_writes: Cell<bool>,
}

impl Proxy {
    pub fn new(now_ms: u64) -> Rc<Self> {
        let proxy = Self::default();
        proxy.now_ms.set(now_ms);
        Rc::new(proxy)
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    pub fn advance(&self, by: Duration) {
        self.now_ms
            .set(self.now_ms.get() + u64::try_from(by.as_millis()).unwrap());
    }

    /// Keys currently in shared data with this prefix.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.shared
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// A call the flow started.
#[derive(Debug, Clone)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    /// gRPC `service/method`, or the HTTP `:path`.
    pub target: String,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// The answer being delivered to the flow.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub http_status: Option<String>,
    pub body: Option<Vec<u8>>,
}

/// One worker of a mock Envoy.
pub struct MockHost {
    pub proxy: Rc<Proxy>,
    pub request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    /// Headers set on the request, replaced or added.
    pub set_request_headers: RefCell<Vec<(String, String)>>,
    /// Of those, the names that were added (no replace).
    pub added_request_headers: RefCell<Vec<String>>,
    pub removed_request_headers: RefCell<Vec<String>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// Headers of the upstream's response, as the response callback finds them.
    pub upstream_response_headers: RefCell<Vec<(String, String)>>,
    pub replies: RefCell<Vec<(LocalResponse, bool)>>,
    pub resumed: Cell<u32>,
    pub calls: RefCell<Vec<Call>>,
    pub answer: RefCell<Answer>,
    pub refuse_calls: Cell<bool>,
    pub source_address: RefCell<Option<String>>,
    counters: RefCell<HashMap<Counter, u32>>,
    facts: RefCell<HashMap<Fact, String>>,
    next_token: Cell<u32>,
}

impl MockHost {
    pub fn new(proxy: &Rc<Proxy>) -> Self {
        Self {
            proxy: Rc::clone(proxy),
            request_headers: RefCell::default(),
            set_request_headers: RefCell::default(),
            added_request_headers: RefCell::default(),
            removed_request_headers: RefCell::default(),
            response_headers: RefCell::default(),
            upstream_response_headers: RefCell::default(),
            replies: RefCell::default(),
            resumed: Cell::new(0),
            calls: RefCell::default(),
            answer: RefCell::default(),
            refuse_calls: Cell::new(false),
            source_address: RefCell::new(Some("203.0.113.7:51234".to_owned())),
            counters: RefCell::default(),
            facts: RefCell::default(),
            next_token: Cell::new(1),
        }
    }

    /// Starts a new request with these headers, forgetting the last one's traces.
    pub fn request(&self, headers: &[(&str, &str)]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect();
        self.set_request_headers.borrow_mut().clear();
        self.added_request_headers.borrow_mut().clear();
        self.removed_request_headers.borrow_mut().clear();
        self.response_headers.borrow_mut().clear();
        self.upstream_response_headers.borrow_mut().clear();
        self.replies.borrow_mut().clear();
        self.facts.borrow_mut().clear();
        self.resumed.set(0);
    }

    /// The value last recorded for `fact`, if any.
    /// The fact as recorded (a host call), if it was.
    pub fn fact(&self, fact: Fact) -> Option<String> {
        self.facts.borrow().get(&fact).cloned()
    }

    /// The fact as Envoy's span tag reads it: the recorded value, else the default.
    pub fn span_tag(&self, fact: Fact) -> Option<String> {
        self.fact(fact)
            .or_else(|| fact.default_value().map(str::to_owned))
    }

    pub fn counter(&self, counter: Counter) -> u32 {
        self.counters.borrow().get(&counter).copied().unwrap_or(0)
    }

    /// The last local reply's status.
    pub fn replied(&self) -> Option<u32> {
        self.replies.borrow().last().map(|(r, _)| r.status)
    }

    pub fn last_reply(&self) -> LocalResponse {
        self.replies
            .borrow()
            .last()
            .expect("no local reply")
            .0
            .clone()
    }

    /// Removes and returns the calls started so far.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }

    pub fn sent_response_header(&self, name: &str) -> Option<String> {
        self.response_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn dispatch(
        &self,
        cluster: &str,
        target: String,
        message: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        if self.refuse_calls.get() {
            return None;
        }
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.to_owned(),
            target,
            message: message.to_vec(),
            timeout,
        });
        Some(token)
    }
}

impl Host for MockHost {
    fn now_ms(&self) -> u64 {
        self.proxy.now_ms.get()
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.request_headers.borrow().clone()
    }

    fn set_request_header(&self, name: &str, value: &str) {
        self.set_request_headers
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.set_request_header(name, value);
        self.added_request_headers
            .borrow_mut()
            .push(name.to_owned());
    }

    fn remove_request_header(&self, name: &str) {
        self.removed_request_headers
            .borrow_mut()
            .push(name.to_owned());
    }

    fn source_address(&self) -> Option<String> {
        self.source_address.borrow().clone()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.upstream_response_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes().to_vec())
    }

    fn set_response_header(&self, name: &str, value: &str) {
        self.response_headers
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
    }

    fn send_local_response(&self, response: &LocalResponse, grpc: bool) {
        self.replies.borrow_mut().push((response.clone(), grpc));
    }

    fn resume_request(&self) {
        self.resumed.set(self.resumed.get() + 1);
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        timeout: Duration,
    ) -> Option<u32> {
        let path = headers
            .iter()
            .find(|(n, _)| *n == ":path")
            .map_or(String::new(), |(_, v)| (*v).to_owned());
        self.dispatch(cluster, path, &[], timeout)
    }

    fn http_call_response(
        &self,
        body_size: usize,
        max_body: usize,
    ) -> (Option<String>, Option<Vec<u8>>) {
        let answer = self.answer.borrow();
        let body = answer
            .body
            .clone()
            .filter(|b| b.len() == body_size && body_size <= max_body && body_size > 0);
        (answer.http_status.clone(), body)
    }

    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        self.dispatch(cluster, format!("{service}/{method}"), message, timeout)
    }

    fn grpc_call_response(&self, _size: usize) -> Option<Vec<u8>> {
        self.answer.borrow().body.clone()
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.proxy.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if self.proxy.refuse_writes.get() {
            return false;
        }
        let mut shared = self.proxy.shared.borrow_mut();
        if let (Some((_, current)), Some(cas)) = (shared.get(key), cas)
            && cas != 0
            && cas != *current
        {
            return false;
        }
        let next = self.proxy.next_cas.get() + 1;
        self.proxy.next_cas.set(next);
        shared.insert(key.to_owned(), (value.to_vec(), next));
        true
    }

    fn count(&self, counter: Counter) {
        *self.counters.borrow_mut().entry(counter).or_default() += 1;
    }

    fn record(&self, fact: Fact, value: &str) {
        self.facts.borrow_mut().insert(fact, value.to_owned());
    }
}

/// One configured limit of the model service.
#[derive(Debug, Clone, Copy)]
pub struct ModelLimit {
    pub requests_per_second: u32,
    pub lease_size: u32,
    pub valid_for: Duration,
    /// EXACT instead of LEASED.
    pub exact: bool,
}

/// The lease service as `lease.proto` documents it, over in-memory GCRA buckets: every
/// descriptor has `limit`; requests of a `user_id` starting with `free` are UNLIMITED.
pub struct ModelService {
    pub limit: ModelLimit,
    /// Level and when it was measured, per descriptor.
    buckets: RefCell<HashMap<String, (f64, u64)>>,
    /// Hits granted in all, per descriptor.
    pub granted: RefCell<HashMap<String, u64>>,
}

impl ModelService {
    pub fn new(limit: ModelLimit) -> Self {
        Self {
            limit,
            buckets: RefCell::default(),
            granted: RefCell::default(),
        }
    }

    /// Answers a serialized `LeaseRequest` at `now_ms`.
    pub fn answer(&self, message: &[u8], now_ms: u64) -> Vec<u8> {
        let request = LeaseRequest::decode(message).expect("not a LeaseRequest");
        let rate = f64::from(self.limit.requests_per_second);
        let grants = request
            .items
            .iter()
            .map(|item| {
                let entries = &item.descriptor.as_ref().unwrap().entries;
                let key: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{}={}", e.key, e.value))
                    .collect();
                let key = key.join("|");
                if entries.iter().any(|e| e.value.starts_with("client:free")) {
                    return Grant {
                        mode: grant::Mode::Unlimited as i32,
                        status: Some(DescriptorStatus {
                            code: Code::Ok as i32,
                            ..Default::default()
                        }),
                        valid_for: Some(prost_duration(self.limit.valid_for)),
                        ..Default::default()
                    };
                }
                let mut buckets = self.buckets.borrow_mut();
                let (level, at) = buckets.entry(key.clone()).or_insert((0.0, now_ms));
                #[allow(clippy::cast_precision_loss)]
                let drained = (now_ms.saturating_sub(*at)) as f64 / 1000.0 * rate;
                *level = (*level - drained).max(0.0);
                *at = now_ms;
                let available = (rate - *level).floor().max(0.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let available = available as u32;
                let need = item.spend.max(1);
                let status = |code: Code, remaining: u32, reset_ms: f64| DescriptorStatus {
                    code: code as i32,
                    current_limit: Some(RateLimit {
                        requests_per_unit: self.limit.requests_per_second,
                        unit: rate_limit::Unit::Second as i32,
                        ..Default::default()
                    }),
                    limit_remaining: remaining,
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    duration_until_reset: Some(prost_duration(Duration::from_millis(
                        reset_ms.ceil() as u64,
                    ))),
                };
                let mode = if self.limit.exact {
                    grant::Mode::Exact
                } else {
                    grant::Mode::Leased
                };
                if available < need {
                    let wait_ms = (*level + f64::from(need) - rate) / rate * 1000.0;
                    return Grant {
                        mode: mode as i32,
                        granted: 0,
                        status: Some(status(Code::OverLimit, 0, wait_ms)),
                        lease_size: if self.limit.exact {
                            0
                        } else {
                            self.limit.lease_size
                        },
                        valid_for: (!self.limit.exact)
                            .then(|| prost_duration(self.limit.valid_for)),
                    };
                }
                let granted = if self.limit.exact {
                    item.spend
                } else {
                    let top_up = self.limit.lease_size.saturating_sub(item.held);
                    let share = (available / 2).max(1);
                    item.spend.max(top_up.min(share))
                };
                *level += f64::from(granted);
                *self.granted.borrow_mut().entry(key).or_default() += u64::from(granted);
                Grant {
                    mode: mode as i32,
                    granted,
                    status: Some(status(
                        Code::Ok,
                        available - granted,
                        *level / rate * 1000.0,
                    )),
                    lease_size: if self.limit.exact {
                        0
                    } else {
                        self.limit.lease_size
                    },
                    valid_for: (!self.limit.exact).then(|| prost_duration(self.limit.valid_for)),
                }
            })
            .collect();
        LeaseResponse { grants }.encode_to_vec()
    }
}

fn prost_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap(),
        nanos: i32::try_from(d.subsec_nanos()).unwrap(),
    }
}
