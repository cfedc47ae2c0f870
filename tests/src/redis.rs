//! A Redis server for one test, on a free port, without persistence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::ManagedChild;
use crate::wait::poll_until;
use crate::workspace::redis_binary;

/// A running redis-server; dropping it kills the server.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    dir: PathBuf,
    server: ManagedChild,
}

impl Redis {
    /// Starts redis-server with its working directory `dir` and waits for PONG.
    pub async fn start(dir: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let server = spawn(dir, port, log)?;
        wait_for_pong(port).await?;
        Ok(Self {
            port,
            dir: dir.to_path_buf(),
            server,
        })
    }

    /// Stops the server (SIGTERM); clients see connection refused until [`Redis::restart`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.server.stop("TERM", Duration::from_secs(5))?;
        Ok(())
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let log = self.server.log().to_path_buf();
        self.server = spawn(&self.dir, self.port, &log)?;
        wait_for_pong(self.port).await
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's log.
    pub fn log(&self) -> &Path {
        self.server.log()
    }
}

fn spawn(dir: &Path, port: u16, log: &Path) -> anyhow::Result<ManagedChild> {
    ManagedChild::spawn("redis", &mut server_command(dir, port)?, log)
}

/// redis-server on 127.0.0.1:`port` with its working directory `dir`, persisting nothing
/// (the tests' Redis and the local mesh's).
pub(crate) fn server_command(dir: &Path, port: u16) -> anyhow::Result<Command> {
    let mut command = Command::new(redis_binary()?);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .arg("--dir")
        .arg(dir);
    Ok(command)
}

async fn wait_for_pong(port: u16) -> anyhow::Result<()> {
    poll_until(
        "redis answering PING",
        Duration::from_secs(15),
        || async move { ping(port) },
    )
    .await
}

pub(crate) fn ping(port: u16) -> Result<(), String> {
    let timeout = Duration::from_millis(500);
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|err| err.to_string())?;
    stream
        .write_all(b"PING\r\n")
        .map_err(|err| err.to_string())?;
    let mut reply = [0u8; 7];
    let read = stream.read(&mut reply).map_err(|err| err.to_string())?;
    if reply[..read].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&reply[..read])
        ))
    }
}
