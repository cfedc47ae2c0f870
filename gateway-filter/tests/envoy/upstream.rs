//! The local server behind Envoy: `/jwks.json` serves the current key set (which a test
//! may change to simulate rotation); `/v1/oauth2/token` answers the status of the
//! request's `x-stub-status` header with the transcoder's error body
//! `{"code", "message"}`, the message taken from `x-stub-message`; any other path answers
//! 200 with the request headers it received, as JSON `{"method", "path", "headers":
//! {name: [values]}}`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub struct Upstream {
    pub port: u16,
    jwks: Arc<Mutex<Vec<u8>>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts serving on a free port; the thread lives until the test process ends.
    pub fn start(jwks: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let jwks = Arc::new(Mutex::new(jwks));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (jwks.clone(), jwks_fetches.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (served, counter) = (served.clone(), counter.clone());
                thread::spawn(move || handle(stream, &served, &counter));
            }
        });
        Self {
            port,
            jwks,
            jwks_fetches,
        }
    }

    pub fn set_jwks(&self, jwks: Vec<u8>) {
        *self.jwks.lock().unwrap() = jwks;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

fn handle(stream: TcpStream, jwks: &Mutex<Vec<u8>>, fetches: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                content_length = value.parse().unwrap_or(0);
            }
            headers.entry(name).or_default().push(value);
        }
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    let first = |name: &str| headers.get(name).and_then(|v| v.first()).cloned();
    let status: u16 = if path == "/v1/oauth2/token" {
        first("x-stub-status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200)
    } else {
        200
    };
    let answer = if path == "/v1/oauth2/token" {
        let message = first("x-stub-message").unwrap_or_default();
        serde_json::to_vec(&serde_json::json!({"code": 16, "message": message, "details": []}))
            .unwrap_or_default()
    } else if path == "/jwks.json" {
        fetches.fetch_add(1, Ordering::SeqCst);
        jwks.lock().map(|j| j.clone()).unwrap_or_default()
    } else {
        serde_json::to_vec(&serde_json::json!({"method": method, "path": path, "headers": headers}))
            .unwrap_or_default()
    };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} Stub\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&answer);
}
