//! A JWKS server on 127.0.0.1 in this process, serving the run's keys to the gateway
//! filter and to Envoy's `jwt_authn`, and counting the documents it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A JWKS server on 127.0.0.1 in this process (answers every GET with the key set);
/// stopped on drop.
pub struct JwksServer {
    pub port: u16,
    pub fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: Vec<u8>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let fetches = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&fetches);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            jwks.len()
        )
        .into_bytes();
        response.extend_from_slice(&jwks);
        let response: Arc<[u8]> = response.into();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = Arc::clone(&response);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if read_request_head(&mut stream).await.is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.write_all(&response).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            fetches,
            task,
        })
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request_head(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        ensure!(n > 0 && head.len() < 16 * 1024, "bad request");
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}
