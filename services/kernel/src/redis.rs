//! A bb8-redis pool for services that keep state in Redis, with a readiness check.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use futures::future::BoxFuture;
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
