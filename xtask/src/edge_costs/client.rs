//! The measuring client: `GET /bench` with a bearer token over one keep-alive HTTP/1.1
//! connection, as wrk sends it in bench-edge, and one-shot GETs for readiness and
//! Envoy's admin counters.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::bench_edge::http_client::http_get_within;

/// Longest wait for one answer: Envoy under callgrind is ~50 times slower than natively.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One keep-alive connection to the measured Envoy.
#[derive(Debug)]
pub struct Connection {
    port: u16,
    stream: BufReader<TcpStream>,
}

impl Connection {
    pub async fn open(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            port,
            stream: BufReader::new(stream),
        })
    }

    /// One request; its status. The body is read and dropped.
    pub async fn get(&mut self, token: Option<&str>) -> anyhow::Result<u16> {
        let authorization =
            token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        // wrk's request line and headers (Host, then the script's Authorization).
        let request = format!(
            "GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{authorization}\r\n",
            self.port
        );
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            self.stream.get_mut().write_all(request.as_bytes()).await?;
            read_response(&mut self.stream).await
        })
        .await
        .context("no answer in time")?
    }

    /// One request that must be answered 200.
    pub async fn expect_ok(&mut self, token: &str) -> anyhow::Result<()> {
        let status = self.get(Some(token)).await?;
        ensure!(status == 200, "a request got {status}, not 200");
        Ok(())
    }

    /// Repeats a request until it gets 200 (the filter has its keys), reconnecting when
    /// Envoy closes the connection.
    pub async fn wait_for_ok(&mut self, token: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.get(Some(token)).await {
                Ok(200) => return Ok(()),
                Ok(_) => {}
                Err(_) => *self = Self::open(self.port).await?,
            }
            if Instant::now() > deadline {
                bail!("no 200 within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Reads one response (status line, headers, a `content-length` or chunked body).
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        ensure!(stream.read_line(&mut line).await? > 0, "connection closed");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().context("content-length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
    }
    Ok(status)
}

/// The body of a one-shot `GET path` on 127.0.0.1, with its status.
async fn one_shot(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let reply = http_get_within(port, path, None, ANSWER_TIMEOUT).await?;
    Ok((reply.status, reply.body))
}

/// The status of a one-shot `GET path`.
pub async fn http_status(port: u16, path: &str) -> anyhow::Result<u16> {
    Ok(one_shot(port, path).await?.0)
}

/// The filter's counters (`wasmcustom.bulwark_gateway.*`) from Envoy's admin; empty when
/// unreadable.
pub async fn admin_counters(admin_port: u16) -> Vec<(String, u64)> {
    let Ok((200, body)) = one_shot(admin_port, "/stats?filter=bulwark_gateway").await else {
        return Vec::new();
    };
    body.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}
