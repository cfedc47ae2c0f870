//! A minimal Redis client (RESP2 over one TCP connection, one command in flight) for the
//! reference the rate-limit service is measured against: the GCRA script called with
//! `EVALSHA` straight from this process, one round trip per decision.

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One reply, as far as the script's and `SCRIPT LOAD`'s answers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

pub struct RedisConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RedisConnection {
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to Redis on 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(512),
        })
    }

    /// Sends one command and waits for its reply.
    pub async fn command(&mut self, parts: &[&[u8]]) -> anyhow::Result<Reply> {
        self.stream.write_all(&encode(parts)).await?;
        loop {
            if let Some((reply, used)) = parse(&self.buffer)? {
                self.buffer.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("Redis closed the connection");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A command as a RESP array of bulk strings.
fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first reply in `bytes` and how many bytes it took; `None` while incomplete.
fn parse(bytes: &[u8]) -> anyhow::Result<Option<(Reply, usize)>> {
    let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = bytes[..line_end].split_first() else {
        bail!("an empty line from Redis");
    };
    let line = std::str::from_utf8(line).context("a reply line that is not UTF-8")?;
    let after = line_end + 2;
    let number = || -> anyhow::Result<i64> {
        line.parse()
            .with_context(|| format!("not a number in a reply: {line:?}"))
    };
    Ok(match kind {
        b'+' => Some((Reply::Simple(line.to_owned()), after)),
        b'-' => Some((Reply::Error(line.to_owned()), after)),
        b':' => Some((Reply::Integer(number()?), after)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Bulk(None), after)));
            };
            if bytes.len() < after + len + 2 {
                return Ok(None);
            }
            Some((
                Reply::Bulk(Some(bytes[after..after + len].to_vec())),
                after + len + 2,
            ))
        }
        b'*' => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Some((Reply::Array(Vec::new()), after)));
            };
            let mut items = Vec::with_capacity(count);
            let mut at = after;
            for _ in 0..count {
                let Some((item, used)) = parse(&bytes[at..])? else {
                    return Ok(None);
                };
                items.push(item);
                at += used;
            }
            Some((Reply::Array(items), at))
        }
        other => bail!("an unknown reply type {:?} from Redis", char::from(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"EVALSHA", b"ab", b"1"]),
            b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n".to_vec()
        );
    }

    #[test]
    fn the_scripts_array_of_integers_is_read_whole_and_only_when_complete() {
        let reply = b"*4\r\n:1\r\n:99\r\n:10000\r\n:0\r\n";
        let parsed = parse(reply).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            parsed,
            Some((
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Integer(99),
                    Reply::Integer(10_000),
                    Reply::Integer(0)
                ]),
                reply.len()
            ))
        );
        for cut in 1..reply.len() {
            let partial = parse(&reply[..cut]).unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(partial, None, "{cut} bytes of the reply parsed as complete");
        }
    }

    #[test]
    fn bulk_strings_errors_and_nil_are_read() {
        let sha = b"$5\r\nab\r\nc\r\n";
        assert_eq!(
            parse(sha).unwrap_or_else(|e| panic!("{e:#}")),
            Some((Reply::Bulk(Some(b"ab\r\nc".to_vec())), sha.len()))
        );
        assert_eq!(
            parse(b"-NOSCRIPT No matching script\r\n").unwrap_or_else(|e| panic!("{e:#}")),
            Some((Reply::Error("NOSCRIPT No matching script".to_owned()), 30))
        );
        assert_eq!(
            parse(b"$-1\r\n").unwrap_or_else(|e| panic!("{e:#}")),
            Some((Reply::Bulk(None), 5))
        );
    }
}
