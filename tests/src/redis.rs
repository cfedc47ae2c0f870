//! A Redis server for one test, on a free port, without persistence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::ManagedChild;
use crate::wait::poll_until;
use crate::workspace::redis_binary;

/// A running redis-server; dropping it kills the server.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    server: ManagedChild,
}

impl Redis {
    /// Starts redis-server with its working directory `dir` and waits for PONG.
    pub async fn start(dir: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
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
        let server = ManagedChild::spawn("redis", &mut command, log)?;
        poll_until(
            "redis answering PING",
            Duration::from_secs(15),
            || async move { ping(port) },
        )
        .await?;
        Ok(Self { port, server })
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

fn ping(port: u16) -> Result<(), String> {
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
