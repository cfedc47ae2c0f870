//! A bb8-redis pool for services that keep state in Redis, with a readiness check, and
//! a few multiplexed connections shared by a hot path ([`Redis::shared_connections`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bb8_redis::RedisConnectionManager;
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use secrecy::ExposeSecret;

use crate::config::RedisConfig;
use crate::health::ReadinessCheck;

/// The pool type services use.
pub type RedisPool = bb8::Pool<RedisConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis.url is not set")]
    NotConfigured,
    #[error("invalid redis.url: {0}")]
    Url(#[source] redis::RedisError),
    #[error("Redis: {0}")]
    Pool(String),
}

/// The service's Redis pool.
#[derive(Debug, Clone)]
pub struct Redis {
    pool: RedisPool,
}

impl Redis {
    /// Builds the pool lazily: no connection is made until first use, so a service can
    /// start while Redis is still coming up (readiness reports it).
    pub fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let url = config.url.as_ref().ok_or(RedisError::NotConfigured)?;
        let manager = RedisConnectionManager::new(url.expose_secret()).map_err(RedisError::Url)?;
        let pool = bb8::Pool::builder()
            .max_size(config.max_connections)
            .connection_timeout(Duration::from_secs(1))
            .build_unchecked(manager);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    /// `slots` multiplexed connections (at least one), taken from the pool on first use
    /// and shared by concurrent calls; see [`SharedConnections`].
    pub fn shared_connections(&self, slots: usize) -> SharedConnections {
        SharedConnections {
            pool: self.pool.clone(),
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            last_failure: Mutex::new(None),
        }
    }
}

/// A few multiplexed connections taken from the pool once and shared by concurrent
/// calls, which pipeline over them: a few sockets carry many calls. A checkout per call
/// would add the pool's validation PING, a second round trip, to every call. When a
/// call fails for want of Redis, [`SharedConnections::discard_all`] drops them and the
/// next calls take fresh (validated) ones from the pool.
///
/// Once reconnecting has failed, one caller per [`RECONNECT_COOLDOWN`] tries again
/// and every other caller is refused at once, so an outage costs callers no waiting
/// (the rate-limit service must answer well inside the edge's budget). A dropped
/// connection alone (Redis restarted) triggers no cooldown.
pub struct SharedConnections {
    pool: RedisPool,
    slots: Vec<Mutex<Option<MultiplexedConnection>>>,
    next: AtomicUsize,
    /// When reconnecting last failed, or when the current retry started.
    last_failure: Mutex<Option<Instant>>,
}

/// After a failure, how long callers are refused before one tries to reconnect.
pub const RECONNECT_COOLDOWN: Duration = Duration::from_millis(250);

impl std::fmt::Debug for SharedConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnections")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl SharedConnections {
    /// The next slot's connection, taking one from the pool when the slot is empty.
    pub async fn lease(&self) -> Result<MultiplexedConnection, String> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(connection) = self.slot(slot).and_then(|held| held.clone()) {
            return Ok(connection);
        }
        if !self.claim_reconnect() {
            return Err("Redis failed moments ago; not retrying yet".to_owned());
        }
        let pooled = match self.pool.get().await {
            Ok(pooled) => pooled,
            Err(error) => {
                self.mark_failed();
                return Err(error.to_string());
            }
        };
        let connection = (*pooled).clone();
        drop(pooled);
        if let Ok(mut last) = self.last_failure.lock() {
            *last = None;
        }
        if let Ok(mut held) = self.slots[slot].lock() {
            *held = Some(connection.clone());
        }
        Ok(connection)
    }

    /// Forgets every shared connection after one failed: an outage or a Redis restart
    /// breaks them all, and the pool validates what replaces them.
    pub fn discard_all(&self) {
        for slot in &self.slots {
            if let Ok(mut held) = slot.lock() {
                *held = None;
            }
        }
    }

    fn mark_failed(&self) {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(Instant::now());
        }
    }

    /// Whether this caller may try to reconnect now: always when Redis has not failed
    /// recently; otherwise once per cooldown (the claim itself restarts the cooldown,
    /// so concurrent callers do not all wait on a dead server).
    fn claim_reconnect(&self) -> bool {
        let Ok(mut last) = self.last_failure.lock() else {
            return true;
        };
        match *last {
            Some(at) if at.elapsed() < RECONNECT_COOLDOWN => false,
            Some(_) => {
                *last = Some(Instant::now());
                true
            }
            None => true,
        }
    }

    fn slot(&self, slot: usize) -> Option<Option<MultiplexedConnection>> {
        self.slots[slot].lock().ok().map(|held| held.clone())
    }
}

impl ReadinessCheck for Redis {
    fn name(&self) -> &str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let pong: String = redis::cmd("PING")
                .query_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(format!("unexpected PING answer {pong:?}"))
            }
        })
    }
}
