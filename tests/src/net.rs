//! Free loopback ports for the processes a test starts.
//!
//! A port is handed out free and reserved, then bound later by the process the test starts.
//! Two things could take it in between, and both are ruled out:
//! - an outgoing connection of any process, whose local port the kernel picks from the
//!   ephemeral range (`net.ipv4.ip_local_port_range`): ports are chosen below that range;
//! - another test process picking the same port: each port is reserved with an exclusive
//!   lock on a file named after it in a shared directory, held until this process exits
//!   (the kernel drops the lock with the process, so nothing is left to clean up).

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The lowest port handed out.
const FIRST_PORT: u16 = 10_000;

/// Locks of the ports this process reserved; held until it exits.
static RESERVED: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that is free now, outside the ephemeral range, and reserved for
/// this process against every other caller of this function.
pub fn free_port() -> anyhow::Result<u16> {
    let end = ephemeral_range_start().unwrap_or(32_768);
    if end <= FIRST_PORT + 100 {
        // No room below the ephemeral range: fall back to a port the kernel picks.
        let listener =
            TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
        return Ok(listener.local_addr()?.port());
    }
    let dir = std::env::temp_dir().join("bulwark-test-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let span = u32::from(end - FIRST_PORT);
    let start = start_offset() % span;
    for step in 0..span {
        let offset = u16::try_from((start + step) % span).unwrap_or(0);
        let port = FIRST_PORT + offset;
        // A port something outside the tests holds fails the bind; its lock drops here.
        if let Some(lock) = reserve(&dir, port)?
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            RESERVED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(lock);
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between {FIRST_PORT} and {end}")
}

/// The lock on `port`'s file, or `None` when another process holds it.
fn reserve(dir: &std::path::Path, port: u16) -> anyhow::Result<Option<File>> {
    let path: PathBuf = dir.join(format!("{port}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Where the kernel starts picking local ports for outgoing connections.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Spreads the processes' searches over the range, so they rarely probe the same ports.
fn start_offset() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().wrapping_mul(2_654_435_761) ^ nanos
}

/// A `reqwest` client builder, after installing the TLS crypto provider that reqwest's
/// rustls needs in this workspace (Sentry turns rustls on without one); every client of
/// the tests and benchmarks starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let end = ephemeral_range_start().unwrap_or(32_768);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let port = free_port().unwrap_or_else(|e| panic!("{e:#}"));
            assert!(seen.insert(port), "port {port} handed out twice");
            if end > FIRST_PORT + 100 {
                assert!(
                    (FIRST_PORT..end).contains(&port),
                    "port {port} out of range"
                );
            }
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("port {port} is not bindable: {e}"));
        }
    }

    #[test]
    fn a_reserved_port_is_refused_to_another_reservation() {
        let port = free_port().unwrap_or_else(|e| panic!("{e:#}"));
        let dir = std::env::temp_dir().join("bulwark-test-ports");
        // Another open file description of the same file cannot lock it meanwhile.
        assert!(
            reserve(&dir, port)
                .unwrap_or_else(|e| panic!("{e:#}"))
                .is_none(),
            "port {port} could be reserved twice"
        );
    }
}
