//! The limiter: looks each descriptor's limit up in the current configuration and
//! counts every limited one in a single Redis round trip (the GCRA script in
//! `gcra.lua`; leases, in [`crate::lease`], run `lease.lua` over the same buckets),
//! bounded by a short timeout so a Redis outage is answered quickly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Histogram;
use redis::{ErrorKind, ServerErrorKind};

use crate::lease::{InvalidLeasePolicy, LEASE_LUA, LeasePolicy};
use crate::limits::{DomainLimits, LimitRule, Limits, Lookup, Policy, Rate};
use crate::metrics::{Decision, DecisionCounters, REDIS_DURATION};
use crate::reload::LimitsHandle;
use crate::request::{CheckRequest, Descriptor};
use crate::verdict::{AppliedLimit, DescriptorVerdict, Verdict};
use bulwark_kernel::redis::{Redis, SharedConnections};

/// The GCRA script: all buckets of one request, atomically, on Redis's clock.
pub const GCRA_LUA: &str = include_str!("gcra.lua");

/// Every bucket key starts with this, then the domain and the descriptor's entries.
pub const KEY_PREFIX: &str = "bulwark:rl";

/// Connections shared by decisions; a few sockets carry many pipelined calls.
pub const SHARED_CONNECTIONS: usize = 4;

/// Why a decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no Redis connection: {0}")]
    Pool(String),
    #[error("Redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("unexpected answer from the rate-limit script: {0}")]
    Reply(String),
}

impl LimiterError {
    /// Redis unreachable, slow or not serving: the caller's failure mode decides.
    /// Anything else (a script error, a malformed reply) is our bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Pool(_) => true,
            Self::Redis(error) => !matches!(
                error.kind(),
                ErrorKind::Server(
                    ServerErrorKind::ResponseError
                        | ServerErrorKind::NoScript
                        | ServerErrorKind::ExecAbort
                        | ServerErrorKind::NoPerm
                ) | ErrorKind::Parse
                    | ErrorKind::UnexpectedReturnType
            ),
            Self::Reply(_) => false,
        }
    }
}

/// Asks Redis whether requests are within their limits. Cheap to share behind an `Arc`.
pub struct Limiter {
    connections: SharedConnections,
    limits: LimitsHandle,
    timeout: Duration,
    gcra: LoadedScript,
    lease: LoadedScript,
    lease_policy: LeasePolicy,
    redis_duration: Histogram,
}

/// A script's source and the SHA1 that EVALSHA names it by.
pub(crate) struct LoadedScript {
    pub(crate) source: &'static str,
    sha: String,
}

impl LoadedScript {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }
}

/// Which of the limiter's scripts a call runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScriptName {
    Gcra,
    Lease,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("timeout", &self.timeout)
            .field("lease_policy", &self.lease_policy)
            .finish_non_exhaustive()
    }
}

/// What one descriptor needs.
enum Plan {
    NoLimit,
    Unlimited(Arc<LimitRule>),
    Counted {
        /// Index into the request's distinct buckets.
        bucket: usize,
        rate: Rate,
        shadow: bool,
        name: Option<String>,
        counters: Counters,
    },
}

/// A configured limit's counters, or ad-hoc ones for a caller's override.
enum Counters {
    Rule(Arc<LimitRule>),
    Override(DecisionCounters),
}

impl Counters {
    fn record(&self, decision: Decision) {
        match self {
            Self::Rule(rule) => rule.counters.record(decision),
            Self::Override(counters) => counters.record(decision),
        }
    }
}

/// What a script said about one bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) admitted: bool,
    pub(crate) remaining: u32,
    pub(crate) until_empty: Duration,
    pub(crate) until_admitted: Duration,
}

impl Limiter {
    /// A limiter over [`SHARED_CONNECTIONS`] shared connections to `redis` with the
    /// limits `limits` holds; each decision's Redis work is bounded by `timeout`. Leases
    /// follow [`LeasePolicy::default`] until [`Limiter::with_lease_policy`].
    pub fn new(redis: &Redis, limits: LimitsHandle, timeout: Duration) -> Self {
        Self {
            connections: redis.shared_connections(SHARED_CONNECTIONS),
            limits,
            timeout,
            gcra: LoadedScript::new(GCRA_LUA),
            lease: LoadedScript::new(LEASE_LUA),
            lease_policy: LeasePolicy::default(),
            redis_duration: metrics::histogram!(REDIS_DURATION),
        }
    }

    /// The same limiter, leasing by `policy` (refused when it is not valid).
    pub fn with_lease_policy(mut self, policy: LeasePolicy) -> Result<Self, InvalidLeasePolicy> {
        policy.validate()?;
        self.lease_policy = policy;
        Ok(self)
    }

    /// How [`Limiter::lease`] sizes and dates its grants.
    pub fn lease_policy(&self) -> &LeasePolicy {
        &self.lease_policy
    }

    /// Opens the shared connections and loads the scripts, so the first decisions do
    /// not pay for connecting (the edge gives a decision only a few tens of ms). A
    /// Redis that is down now is reported and left to readiness.
    pub async fn warm_up(&self) -> Result<(), LimiterError> {
        for _ in 0..SHARED_CONNECTIONS {
            let mut connection = self.connections.lease().await.map_err(LimiterError::Pool)?;
            for script in [&self.gcra, &self.lease] {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script.source)
                    .query_async(&mut connection)
                    .await
                    .map_err(LimiterError::Redis)?;
            }
        }
        Ok(())
    }

    /// The limits in force now; one snapshot serves a whole call.
    pub(crate) fn limits(&self) -> Arc<Limits> {
        self.limits.current()
    }

    /// Decides `request`: descriptors without a limit and unlimited ones are allowed
    /// without asking Redis; all others are counted in one script call.
    pub async fn check(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let limits = self.limits.current();
        let Some(domain) = limits.domain(&request.domain) else {
            return Ok(Verdict {
                statuses: vec![DescriptorVerdict::no_limit(); request.descriptors.len()],
            });
        };
        let mut buckets = Buckets::default();
        let plans: Vec<Plan> = request
            .descriptors
            .iter()
            .map(|descriptor| plan(domain, descriptor, &mut buckets))
            .collect();
        let outcomes = if buckets.keys.is_empty() {
            Vec::new()
        } else {
            self.count(&buckets, request.hits).await?
        };
        let statuses = plans
            .into_iter()
            .map(|plan| decide(plan, &outcomes))
            .collect::<Result<_, _>>()?;
        Ok(Verdict { statuses })
    }

    async fn count(&self, buckets: &Buckets, hits: u32) -> Result<Vec<Outcome>, LimiterError> {
        let mut args: Vec<u64> = Vec::with_capacity(1 + 3 * buckets.keys.len());
        args.push(hits.into());
        for (rate, shadow) in &buckets.params {
            args.push(rate.requests_per_unit.into());
            args.push(period_micros(*rate));
            args.push(u64::from(*shadow));
        }
        let reply = self.run(ScriptName::Gcra, &buckets.keys, &args).await?;
        parse_outcomes(&reply, buckets.keys.len())
    }

    /// Runs one of the scripts on a shared connection within the timeout (see
    /// [`run_script`]), timing it.
    pub(crate) async fn run(
        &self,
        name: ScriptName,
        keys: &[String],
        args: &[u64],
    ) -> Result<Vec<i64>, LimiterError> {
        let script = match name {
            ScriptName::Gcra => &self.gcra,
            ScriptName::Lease => &self.lease,
        };
        let started = Instant::now();
        let reply = run_script(&self.connections, self.timeout, script, keys, args).await;
        self.redis_duration.record(started.elapsed().as_secs_f64());
        reply
    }
}

/// Runs `script` on one of `connections` within `timeout`; a Redis that is
/// unavailable drops the shared connections, so the next call reconnects.
pub(crate) async fn run_script(
    connections: &SharedConnections,
    timeout: Duration,
    script: &LoadedScript,
    keys: &[String],
    args: &[u64],
) -> Result<Vec<i64>, LimiterError> {
    let reply = tokio::time::timeout(timeout, async {
        let mut connection = connections.lease().await.map_err(LimiterError::Pool)?;
        eval_script(&mut connection, script.source, &script.sha, keys, args)
            .await
            .map_err(LimiterError::Redis)
    })
    .await
    .unwrap_or(Err(LimiterError::Timeout(timeout)));
    if let Err(error) = &reply
        && error.is_unavailable()
    {
        connections.discard_all();
    }
    reply
}

/// A rate's period in microseconds, as the scripts take it.
pub(crate) fn period_micros(rate: Rate) -> u64 {
    u64::try_from(rate.unit.period().as_micros()).unwrap_or(u64::MAX)
}

/// Runs the GCRA script by its SHA1, or by its source when Redis does not know it.
pub async fn eval_gcra<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    sha: &str,
    keys: &[String],
    args: &[u64],
) -> redis::RedisResult<Vec<i64>> {
    eval_script(conn, GCRA_LUA, sha, keys, args).await
}

/// Runs `source` by its SHA1 and, when Redis does not know it yet (a restart, a
/// `SCRIPT FLUSH`), by its source, which also caches it for the next call.
async fn eval_script<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    source: &str,
    sha: &str,
    keys: &[String],
    args: &[u64],
) -> redis::RedisResult<Vec<i64>> {
    let mut by_sha = redis::cmd("EVALSHA");
    by_sha.arg(sha).arg(keys.len()).arg(keys).arg(args);
    match by_sha.query_async(conn).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            let mut by_source = redis::cmd("EVAL");
            by_source.arg(source).arg(keys.len()).arg(keys).arg(args);
            by_source.query_async(conn).await
        }
        other => other,
    }
}

/// The distinct buckets of one request; descriptors naming the same bucket share it
/// (counted once, first rate wins).
#[derive(Default)]
struct Buckets {
    keys: Vec<String>,
    params: Vec<(Rate, bool)>,
    index: HashMap<String, usize>,
}

impl Buckets {
    fn add(&mut self, key: String, rate: Rate, shadow: bool) -> usize {
        if let Some(&index) = self.index.get(&key) {
            return index;
        }
        let index = self.keys.len();
        self.index.insert(key.clone(), index);
        self.keys.push(key);
        self.params.push((rate, shadow));
        index
    }
}

fn plan(domain: &DomainLimits, descriptor: &Descriptor, buckets: &mut Buckets) -> Plan {
    if let Some(rate) = descriptor.limit_override {
        let label = descriptor
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let counters = DecisionCounters::new(domain.name(), &format!("override:{label}"));
        return Plan::Counted {
            bucket: buckets.add(bucket_key(domain.name(), descriptor), rate, false),
            rate,
            shadow: false,
            name: None,
            counters: Counters::Override(counters),
        };
    }
    match domain.find(&descriptor.entries) {
        Lookup::NoLimit => Plan::NoLimit,
        Lookup::Rule(rule) => match rule.policy {
            Policy::Unlimited => Plan::Unlimited(Arc::clone(rule)),
            Policy::Limited(rate) => Plan::Counted {
                bucket: buckets.add(bucket_key(domain.name(), descriptor), rate, rule.shadow),
                rate,
                shadow: rule.shadow,
                name: rule.name.clone(),
                counters: Counters::Rule(Arc::clone(rule)),
            },
        },
    }
}

fn decide(plan: Plan, outcomes: &[Outcome]) -> Result<DescriptorVerdict, LimiterError> {
    match plan {
        Plan::NoLimit => Ok(DescriptorVerdict::no_limit()),
        Plan::Unlimited(rule) => {
            rule.counters.record(Decision::Ok);
            Ok(DescriptorVerdict::unlimited())
        }
        Plan::Counted {
            bucket,
            rate,
            shadow,
            name,
            counters,
        } => {
            let outcome = outcomes
                .get(bucket)
                .ok_or_else(|| LimiterError::Reply(format!("no result for bucket {bucket}")))?;
            let (decision, verdict) = counted_verdict(outcome, rate, shadow, name);
            counters.record(decision);
            Ok(verdict)
        }
    }
}

/// The decision on a counted bucket and the verdict reporting it: a refusal by a
/// shadow-mode limit is recorded but allowed.
pub(crate) fn counted_verdict(
    outcome: &Outcome,
    rate: Rate,
    shadow: bool,
    name: Option<String>,
) -> (Decision, DescriptorVerdict) {
    let decision = match (outcome.admitted, shadow) {
        (true, _) => Decision::Ok,
        (false, true) => Decision::ShadowOverLimit,
        (false, false) => Decision::OverLimit,
    };
    let verdict = DescriptorVerdict {
        over_limit: decision == Decision::OverLimit,
        limit: Some(AppliedLimit { rate, name }),
        remaining: outcome.remaining,
        reset_after: Some(if outcome.admitted {
            outcome.until_empty
        } else {
            outcome.until_admitted
        }),
    };
    (decision, verdict)
}

fn parse_outcomes(reply: &[i64], buckets: usize) -> Result<Vec<Outcome>, LimiterError> {
    if reply.len() != 4 * buckets {
        return Err(LimiterError::Reply(format!(
            "{} integers for {buckets} buckets",
            reply.len()
        )));
    }
    let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
    Ok(reply
        .chunks_exact(4)
        .map(|four| Outcome {
            admitted: four[0] == 1,
            remaining: u32::try_from(four[1].max(0)).unwrap_or(u32::MAX),
            until_empty: micros(four[2]),
            until_admitted: micros(four[3]),
        })
        .collect())
}

/// `bulwark:rl:<domain>:<key>=<value>|<key>=<value>`, with `%`, `:`, `|` and `=` escaped
/// inside names and values so that no two descriptors share a key.
pub fn bucket_key(domain: &str, descriptor: &Descriptor) -> String {
    let mut key = String::with_capacity(
        KEY_PREFIX.len()
            + domain.len()
            + 2
            + descriptor
                .entries
                .iter()
                .map(|e| e.key.len() + e.value.len() + 2)
                .sum::<usize>(),
    );
    key.push_str(KEY_PREFIX);
    key.push(':');
    push_escaped(&mut key, domain);
    key.push(':');
    for (i, entry) in descriptor.entries.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        push_escaped(&mut key, &entry.key);
        key.push('=');
        push_escaped(&mut key, &entry.value);
    }
    key
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '=' => out.push_str("%3D"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_are_namespaced_and_unambiguous() {
        let key = bucket_key(
            "edge",
            &Descriptor::new([("route", "/v1/users"), ("client_ip", "2001:db8::1")]),
        );
        assert_eq!(
            key,
            "bulwark:rl:edge:route=/v1/users|client_ip=2001%3Adb8%3A%3A1"
        );
        let a = bucket_key("d", &Descriptor::new([("a", "b|c=d")]));
        let b = bucket_key("d", &Descriptor::new([("a", "b"), ("c", "d")]));
        assert_ne!(
            a, b,
            "a value containing separators collided with two entries"
        );
    }

    #[test]
    fn script_errors_are_internal_and_connection_errors_unavailable() {
        let script: redis::RedisError = (
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "ERR boom",
        )
            .into();
        assert!(!LimiterError::Redis(script).is_unavailable());
        let io: redis::RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert!(LimiterError::Redis(io).is_unavailable());
        assert!(LimiterError::Timeout(Duration::from_millis(1)).is_unavailable());
    }
}
