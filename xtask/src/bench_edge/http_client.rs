//! A minimal HTTP/1.1 client for readiness probes and Envoy's admin stats.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:`port`, answered within 5 s.
pub async fn http_get(port: u16, path: &str, bearer: Option<&str>) -> anyhow::Result<HttpReply> {
    http_get_within(port, path, bearer, Duration::from_secs(5)).await
}

/// `GET path` on 127.0.0.1:`port`, answered within `timeout`.
pub async fn http_get_within(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<HttpReply> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let authorization =
            bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{authorization}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        // Up to the end of the message, not of the connection: Envoy may hold a
        // connection it closes open for up to a second (its delayed close).
        while !message_complete(&raw) {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .context("timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {head:?}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpReply { status, body })
}

/// A readiness check for [`bulwark_e2e::ManagedChild::wait_ready`]: `Ok` once `GET path`
/// answers 200, else what it answered.
pub async fn answers_200(port: u16, path: &str, bearer: Option<&str>) -> Result<(), String> {
    match http_get(port, path, bearer).await {
        Ok(reply) if reply.status == 200 => Ok(()),
        Ok(reply) => Err(format!("GET {path} answered {}", reply.status)),
        Err(err) => Err(format!("GET {path}: {err:#}")),
    }
}

/// Whether `raw` holds a whole response: its head, and a body as long as its
/// `content-length`, or a chunked body up to its last chunk. Other bodies end with the
/// connection.
fn message_complete(raw: &[u8]) -> bool {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = &raw[head_end + 4..];
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= length;
    }
    if header("transfer-encoding") == Some("chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_at_its_content_length_or_last_chunk() {
        assert!(!message_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
        ));
        assert!(!message_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no"
        ));
        assert!(message_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!message_complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"
        ));
        assert!(message_complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
        assert!(
            !message_complete(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nok"),
            "without a length the body ends with the connection"
        );
    }
}
