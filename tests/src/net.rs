//! Free loopback ports for the processes a test starts.

use std::net::TcpListener;

use anyhow::Context;

/// A port on 127.0.0.1 that was free a moment ago: bound on port 0, then released.
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}
