//! One request's way through the filter, host-agnostic: the adapter calls these methods
//! from its HTTP context and does what the returned [`Action`] says.
//!
//! A token whose `kid` is unknown may be signed by a key the issuer just rotated in. The
//! request is then paused while this request refetches the JWKS (at most once per
//! `jwks.min_refetch_interval_seconds` across all workers) and re-verified when the answer
//! arrives. When no refetch may start now, the request is answered 401 at once rather than
//! waiting on another worker's fetch: a client retry after rotation settles succeeds.
//!
//! A request that passes authentication and carries a limited descriptor spends a hit
//! of the instance's lease ([`crate::lease`]) when there is one; otherwise it is paused
//! for a lease call, whose answer lets it go on (its `RateLimit-*` headers are added to
//! the response) or refuses it with 429. When the call fails, the route's failure mode
//! decides: open lets the request go on, closed answers 503.

use crate::config::FailureMode;
use crate::gateway::{Access, RequestHead};
use crate::host::{Action, Counter, Fact, Host};
use crate::jwks_sync::FetchReason;
use crate::lease::{self, Claim, Grant, GrantMode, Spend};
use crate::lease_call::{self, ItemRequest};
use crate::ratelimit::{self, DescriptorEntry, RateLimitSubject, RateLimitVerdict};
use crate::response::{LocalResponse, answers_in_grpc, internal_error, unauthorized};
use crate::verifier::CacheAnswer;
use crate::worker::{PendingFetch, Renewal, Worker};

/// The request facts kept while the request waits on a JWKS refetch.
#[derive(Debug)]
struct PausedRequest {
    fetch: PendingFetch,
    path: String,
    authorization: Option<Vec<u8>>,
}

impl PausedRequest {
    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            path: &self.path,
            authorization: self.authorization.as_deref(),
        }
    }
}

/// A lease call in flight for this request.
#[derive(Debug)]
struct PendingLease {
    token: u32,
    key: String,
    /// The renewal claim the call carries, if this request took it.
    claim: Option<Claim>,
    failure_mode: FailureMode,
}

/// One request's state.
#[derive(Debug, Default)]
pub struct RequestFlow {
    paused: Option<PausedRequest>,
    lease: Option<PendingLease>,
    /// `RateLimit-*` headers for the response of an allowed request.
    response_headers: Vec<(String, String)>,
    /// Whether the filter's own replies go out as gRPC statuses.
    grpc: bool,
    /// Whether the client sent an identity header (removed on arrival).
    client_identity: bool,
}

/// A header value as text. Bytes that are not UTF-8 become U+FFFD, which no route, token
/// or bearer scheme contains, so such a request fails matching or verification (401)
/// instead of being misread.
fn text(value: Vec<u8>) -> String {
    String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn needs_refetch(access: &Access) -> bool {
    matches!(access, Access::Denied(err) if err.unknown_kid().is_some())
}

/// Refuses the request with 500 when the filter cannot decide (no configuration).
pub fn fail_closed(host: &impl Host, why: &str, grpc: bool) -> Action {
    log::error!("bulwark gateway: refusing request: {why}");
    host.record(Fact::Decision, "error");
    host.send_local_response(&internal_error(), grpc);
    Action::Pause
}

/// Lets the request go on (the decision's default, `allowed`: nothing to record).
fn allow(host: &impl Host) -> Action {
    host.count(Counter::Allowed);
    Action::Continue
}

/// Refuses the request with the rate limit's 429.
fn refuse_over_limit(host: &impl Host, reply: &LocalResponse, grpc: bool) -> Action {
    host.count(Counter::RateLimited);
    host.record(Fact::Decision, "rate_limited");
    host.send_local_response(reply, grpc);
    Action::Pause
}

/// Decides on the request's credentials, recording when its token was not answered by
/// the verified-token cache: `miss`, or `none` when no token was looked up (a public
/// route, no or a malformed `Authorization`). A hit is the default and records nothing.
fn authorize(worker: &mut Worker, host: &impl Host, head: &RequestHead<'_>, now: u64) -> Access {
    let (access, answer) = worker.gateway_mut().authorize_answered(head, now);
    match answer {
        CacheAnswer::Hit => {}
        CacheAnswer::Miss => host.record(Fact::TokenCache, "miss"),
        CacheAnswer::NotAsked => host.record(Fact::TokenCache, "none"),
    }
    access
}

impl RequestFlow {
    /// A request not yet seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the filter's replies to this request go out as gRPC statuses.
    pub fn grpc(&self) -> bool {
        self.grpc
    }

    /// The request headers arrived.
    pub fn on_request_headers(&mut self, worker: &mut Worker, host: &impl Host) -> Action {
        // The method is not read: every decision is made on the route (the path).
        let mut path = String::new();
        let mut authorization = None;
        let mut content_type = None;
        let mut transcoded = false;
        let identity_names = worker.gateway().config().identity_headers.names();
        for (name, value) in host.request_headers() {
            match name.as_str() {
                ":path" => path = text(value),
                // Read as text only if its token must be verified (`raw_bearer_token`).
                "authorization" if authorization.is_none() => authorization = Some(value),
                "content-type" => content_type = Some(text(value)),
                "x-envoy-original-path" => transcoded = true,
                // Before any decision, so that no path (public, refused, error) forwards a
                // client's copy of an identity header.
                name if identity_names.contains(&name) => {
                    host.remove_request_header(name);
                    self.client_identity = true;
                }
                _ => {}
            }
        }
        self.grpc = answers_in_grpc(content_type.as_deref(), transcoded);
        let head = RequestHead {
            path: &path,
            authorization: authorization.as_deref(),
        };
        let now_ms = host.now_ms();
        let now = now_ms / 1_000;

        let mut access = authorize(worker, host, &head, now);
        if needs_refetch(&access) && worker.sync_jwks(host) {
            access = authorize(worker, host, &head, now);
        }
        if needs_refetch(&access)
            && let Some(fetch) = worker.start_fetch(host, FetchReason::UnknownKid, now_ms)
        {
            self.paused = Some(PausedRequest {
                fetch,
                path,
                authorization,
            });
            return Action::Pause;
        }
        self.decide(worker, host, &head, access)
    }

    /// An HTTP call this request made was answered (its JWKS refetch).
    pub fn on_http_call_response(
        &mut self,
        worker: &mut Worker,
        host: &impl Host,
        token: u32,
        body_size: usize,
    ) {
        let Some(paused) = self.paused.take_if(|p| p.fetch.token == token) else {
            return;
        };
        worker.finish_fetch(host, paused.fetch, body_size);
        let head = paused.head();
        let access = authorize(worker, host, &head, host.now_ms() / 1_000);
        if let Action::Continue = self.decide(worker, host, &head, access) {
            host.resume_request();
        }
    }

    /// A gRPC call this request made was answered (its lease call).
    pub fn on_grpc_call_response(
        &mut self,
        worker: &mut Worker,
        host: &impl Host,
        token: u32,
        status_code: u32,
        size: usize,
    ) {
        let Some(pending) = self.lease.take_if(|p| p.token == token) else {
            return;
        };
        let now_ms = host.now_ms();
        let grant = match status_code {
            0 => host
                .grpc_call_response(size)
                .ok_or_else(|| "no response message".to_owned())
                .and_then(|bytes| lease_call::decode(&bytes, 1).map_err(|e| e.to_string()))
                .and_then(|mut grants| grants.pop().ok_or_else(|| "no grant".to_owned())),
            code => Err(format!("gRPC status {code}")),
        };
        let action = match grant {
            Ok(grant) => {
                if let Some(table) = worker.leases() {
                    table.apply(host, &pending.key, &grant, 1, pending.claim, now_ms);
                }
                self.on_grant(host, &grant)
            }
            Err(why) => {
                if let (Some(claim), Some(table)) = (pending.claim, worker.leases()) {
                    table.release(host, &pending.key, claim, now_ms);
                }
                host.count(Counter::CalloutFailure);
                log::warn!(
                    "bulwark gateway: rate-limit call failed ({why}); failing {:?}",
                    pending.failure_mode
                );
                self.on_failure(host, pending.failure_mode)
            }
        };
        if let Action::Continue = action {
            host.resume_request();
        }
    }

    /// The response headers arrived: the edge's `RateLimit-*` headers are added, unless
    /// the upstream answered with a limit of its own (a service's per-caller limit that
    /// refused the call), whose headers say why and when to retry and are left as they are.
    pub fn on_response_headers(&mut self, host: &impl Host) -> Action {
        if self.response_headers.is_empty()
            || host.response_header("ratelimit-limit").is_some()
            || host.response_header("retry-after").is_some()
        {
            return Action::Continue;
        }
        for (name, value) in &self.response_headers {
            host.set_response_header(name, value);
        }
        Action::Continue
    }

    /// Carries out a decision: answer 401, or forward (with identity headers when
    /// verified) once the rate limit allows. `Pause` means a reply was sent or a lease
    /// call is in flight.
    fn decide(
        &mut self,
        worker: &mut Worker,
        host: &impl Host,
        head: &RequestHead<'_>,
        access: Access,
    ) -> Action {
        let claims = match access {
            Access::Public => None,
            Access::Authenticated(claims) => {
                // Adding costs Envoy about 2,000 instructions less a header than replacing,
                // which looks for the header first. A request that came with an identity
                // header of its own has it replaced as before, so that ours is the only
                // value even if removing the client's failed.
                for (name, value) in worker.gateway().identity_headers(&claims) {
                    if self.client_identity {
                        host.set_request_header(name, &value);
                    } else {
                        host.add_request_header(name, &value);
                    }
                }
                Some(claims)
            }
            Access::Denied(err) => {
                log::debug!("bulwark gateway: 401 for {}: {err}", head.path);
                host.count(Counter::Unauthenticated);
                host.record(Fact::Decision, "unauthenticated");
                host.record(Fact::Reason, err.reason());
                host.send_local_response(&unauthorized(&err), self.grpc);
                return Action::Pause;
            }
        };
        self.rate_limit(worker, host, head, claims.as_ref().map(|c| c.sub.as_str()))
    }

    fn rate_limit(
        &mut self,
        worker: &mut Worker,
        host: &impl Host,
        head: &RequestHead<'_>,
        user_id: Option<&str>,
    ) -> Action {
        let address = if worker.gateway().limits_by_client_ip(head.path) {
            host.source_address()
        } else {
            None
        };
        let subject = RateLimitSubject {
            path: head.path,
            client_ip: address.as_deref().map(ratelimit::client_ip_from_address),
            user_id,
        };
        let Some(mut check) = worker.gateway().rate_limit_check(&subject) else {
            return allow(host);
        };
        let entries: Vec<DescriptorEntry> = check.descriptors.pop().unwrap_or_default();
        let key = lease::descriptor_key(&check.domain, &entries);
        let now_ms = host.now_ms();
        let spend = match worker.leases() {
            Some(table) => table.spend(host, &key, now_ms),
            None => Spend::Ask(None),
        };
        let claim = match spend {
            Spend::Admitted { headers, renew } => {
                self.response_headers = headers;
                host.count(Counter::LeaseSpent);
                if let Some(claim) = renew {
                    worker.queue_renewal(Renewal {
                        key,
                        entries,
                        claim,
                    });
                }
                return allow(host);
            }
            Spend::Unlimited => return allow(host),
            Spend::Refused(reply) => return refuse_over_limit(host, &reply, self.grpc),
            Spend::Ask(claim) => claim,
        };
        let message = lease_call::encode(
            &check.domain,
            &[ItemRequest {
                entries: &entries,
                // A claim tops the lease up from nothing held; without one, no top-up.
                held: if claim.is_some() { 0 } else { u32::MAX },
                spend: 1,
            }],
        );
        match host.dispatch_grpc_call(
            &check.cluster,
            lease::LEASE_SERVICE,
            lease::LEASE_METHOD,
            &message,
            check.timeout,
        ) {
            Some(token) => {
                self.lease = Some(PendingLease {
                    token,
                    key,
                    claim,
                    failure_mode: check.failure_mode,
                });
                Action::Pause
            }
            None => {
                if let (Some(claim), Some(table)) = (claim, worker.leases()) {
                    table.release(host, &key, claim, now_ms);
                }
                host.count(Counter::CalloutFailure);
                self.on_failure(host, check.failure_mode)
            }
        }
    }

    /// The decision for this request in a grant that included its hit.
    fn on_grant(&mut self, host: &impl Host, grant: &Grant) -> Action {
        if grant.mode == GrantMode::Unlimited {
            return allow(host);
        }
        let mut status = grant.status;
        status.over_limit = grant.granted == 0;
        if grant.mode == GrantMode::Leased {
            // The rest of the grant is this instance's now: still the client's to use.
            let limit = status.limit.map_or(u32::MAX, |(limit, _)| limit);
            status.remaining = status
                .remaining
                .saturating_add(grant.granted.saturating_sub(1))
                .min(limit);
        }
        let verdict = RateLimitVerdict {
            over_limit: status.over_limit,
            statuses: vec![status],
        };
        match ratelimit::refusal(&verdict) {
            Some(reply) => refuse_over_limit(host, &reply, self.grpc),
            None => {
                self.response_headers = ratelimit::response_headers(&verdict);
                allow(host)
            }
        }
    }

    fn on_failure(&mut self, host: &impl Host, mode: FailureMode) -> Action {
        match ratelimit::on_failure(mode) {
            Some(reply) => {
                host.count(Counter::FailClosed);
                host.record(Fact::Decision, "fail_closed");
                host.send_local_response(&reply, self.grpc);
                Action::Pause
            }
            None => {
                host.count(Counter::Allowed);
                host.count(Counter::FailOpen);
                host.record(Fact::Decision, "fail_open");
                Action::Continue
            }
        }
    }
}
