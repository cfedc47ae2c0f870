//! Redis connections for decisions: a few multiplexed connections taken from the
//! kernel's pool once and shared by concurrent decisions, which pipeline over them.
//! A checkout per decision would add the pool's validation PING, a second round trip,
//! to every call. When a call fails for want of Redis, the shared connections are
//! dropped and the next calls take fresh (validated) ones from the pool.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bulwark_kernel::redis::RedisPool;
use redis::aio::MultiplexedConnection;

/// Connections shared by decisions; a few sockets carry many pipelined calls.
pub const SHARED_CONNECTIONS: usize = 4;

pub struct SharedConnections {
    pool: RedisPool,
    slots: Vec<Mutex<Option<MultiplexedConnection>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for SharedConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnections")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl SharedConnections {
    pub fn new(pool: RedisPool, slots: usize) -> Self {
        Self {
            pool,
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next slot's connection, taking one from the pool when the slot is empty.
    pub async fn lease(&self) -> Result<MultiplexedConnection, String> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(connection) = self.slot(slot).and_then(|held| held.clone()) {
            return Ok(connection);
        }
        let pooled = self.pool.get().await.map_err(|e| e.to_string())?;
        let connection = (*pooled).clone();
        drop(pooled);
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

    fn slot(&self, slot: usize) -> Option<Option<MultiplexedConnection>> {
        self.slots[slot].lock().ok().map(|held| held.clone())
    }
}
