//! A real SMTP server for one test: aiosmtpd from the workspace's virtualenv on a free
//! port, keeping every message it receives as one RFC 5322 file in a maildir
//! (`<dir>/new/`), and a reader that waits for a message and takes it apart.

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::process::ManagedChild;
use crate::wait::poll_until;
use crate::workspace::python_with_aiosmtpd;

/// How long aiosmtpd gets to greet on its port.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running aiosmtpd with the `Mailbox` handler; dropping it kills the server (the
/// maildir stays with the test's directory).
#[derive(Debug)]
pub struct MailServer {
    port: u16,
    maildir: PathBuf,
    process: Option<ManagedChild>,
    log: PathBuf,
    /// Messages [`MailServer::wait_for`] has handed out already.
    seen: Mutex<HashSet<PathBuf>>,
}

impl MailServer {
    /// Starts aiosmtpd on `127.0.0.1:port`, writing into the maildir `maildir` (created
    /// if missing), and waits for its SMTP greeting.
    pub async fn start(maildir: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        let mut server = Self::stopped(maildir, port, log);
        server.restart().await?;
        Ok(server)
    }

    /// The server's settings without starting it: the test starts it later with
    /// [`MailServer::restart`] (until then its port refuses connections).
    pub fn stopped(maildir: &Path, port: u16, log: &Path) -> Self {
        Self {
            port,
            maildir: maildir.to_path_buf(),
            process: None,
            log: log.to_path_buf(),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Starts the server (again) on the same port and maildir.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let python = python_with_aiosmtpd()?;
        let mut command = server_command(&python, &self.maildir, self.port)?;
        self.process = Some(ManagedChild::spawn("aiosmtpd", &mut command, &self.log)?);
        let port = self.port;
        poll_until("aiosmtpd greeting with 220", START_TIMEOUT, || async move {
            greeting(port)
        })
        .await
        .with_context(|| {
            format!(
                "aiosmtpd did not start; its log ends with:\n{}",
                crate::process::tail(&self.log, 20)
            )
        })
    }

    /// Stops the server (SIGTERM); senders see connection refused until it restarts.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop("TERM", Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`, the value of `auth.smtp_url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The maildir; each received message is a file in its `new/`.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The server's log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> anyhow::Result<Vec<MailMessage>> {
        let new = self.maildir.join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        let entries = match std::fs::read_dir(&new) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", new.display())),
        };
        for entry in entries {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            files.push((modified, entry.path()));
        }
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| MailMessage::read(&path))
            .collect()
    }

    /// Every message received so far for `to` (envelope or `To:`), oldest first.
    pub fn messages_to(&self, to: &str) -> anyhow::Result<Vec<MailMessage>> {
        Ok(self
            .messages()?
            .into_iter()
            .filter(|message| message.is_for(to))
            .collect())
    }

    /// The next message for `to` that this call has not returned before, waiting up to
    /// `timeout` for it; the error lists what did arrive.
    pub async fn wait_for(&self, to: &str, timeout: Duration) -> anyhow::Result<MailMessage> {
        poll_until(&format!("a mail to {to}"), timeout, || async {
            let messages = self.messages().map_err(|e| format!("{e:#}"))?;
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(message) = messages
                .iter()
                .find(|m| m.is_for(to) && !seen.contains(&m.path))
            {
                seen.insert(message.path.clone());
                return Ok(message.clone());
            }
            let received: Vec<String> = messages
                .iter()
                .map(|m| {
                    format!(
                        "{} {:?}",
                        m.to().unwrap_or("(no To)"),
                        m.subject().unwrap_or("")
                    )
                })
                .collect();
            Err(format!(
                "{} message(s) in {}: [{}]",
                messages.len(),
                self.maildir.join("new").display(),
                received.join(", ")
            ))
        })
        .await
    }
}

/// The handler class that keeps each message as a file of the maildir; the local mesh
/// knows its aiosmtpd by it in the command line.
pub(crate) const MAILBOX_HANDLER: &str = "aiosmtpd.handlers.Mailbox";

/// aiosmtpd (run by `python`) on 127.0.0.1:`port`, keeping every message in the maildir
/// `maildir` (its parts made now); the tests' server and the local mesh's.
pub(crate) fn server_command(python: &Path, maildir: &Path, port: u16) -> anyhow::Result<Command> {
    // aiosmtpd creates the maildir's parts only when the directory itself is missing.
    for part in ["tmp", "new", "cur"] {
        let dir = maildir.join(part);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the maildir {}", dir.display()))?;
    }
    let mut command = Command::new(python);
    command
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", MAILBOX_HANDLER])
        .arg(maildir);
    Ok(command)
}

/// Reads the server's `220` greeting.
pub(crate) fn greeting(port: u16) -> Result<(), String> {
    let timeout = Duration::from_millis(500);
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 64];
    let read = stream.read(&mut reply).map_err(|e| e.to_string())?;
    if reply[..read].starts_with(b"220") {
        Ok(())
    } else {
        Err(format!(
            "unexpected greeting {:?}",
            String::from_utf8_lossy(&reply[..read])
        ))
    }
}

/// One received message: its headers (unfolded, in order) and its decoded text body.
#[derive(Debug, Clone)]
pub struct MailMessage {
    pub path: PathBuf,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl MailMessage {
    /// Reads and parses a maildir file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(path, &String::from_utf8_lossy(&raw))
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses an RFC 5322 message whose body is 7bit, 8bit, quoted-printable or base64
    /// text (what a plain-text mail is); encoded words in headers are left as they are.
    pub fn parse(path: &Path, raw: &str) -> anyhow::Result<Self> {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                let Some((_, value)) = headers.last_mut() else {
                    bail!("a continuation line before any header: {line:?}");
                };
                value.push(' ');
                value.push_str(line.trim());
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            } else {
                bail!("not a header line: {line:?}");
            }
        }
        let mut message = Self {
            path: path.to_path_buf(),
            headers,
            body: String::new(),
        };
        let encoding = message
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        message.body = match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(body)?,
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .context("body is not base64")?;
                String::from_utf8(bytes)
                    .context("body is not UTF-8")?
                    .replace("\r\n", "\n")
            }
            _ => body.to_owned(),
        };
        Ok(message)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn to(&self) -> Option<&str> {
        self.header("To")
    }

    pub fn from(&self) -> Option<&str> {
        self.header("From")
    }

    pub fn subject(&self) -> Option<&str> {
        self.header("Subject")
    }

    /// Whether `address` is a recipient: in the envelope (aiosmtpd's `X-RcptTo`) or `To:`.
    pub fn is_for(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        ["X-RcptTo", "To"].iter().any(|name| {
            self.header(name)
                .is_some_and(|value| value.to_ascii_lowercase().contains(&address))
        })
    }

    /// The first `http://` or `https://` link of the body.
    pub fn first_link(&self) -> Option<&str> {
        self.body
            .split_whitespace()
            .find(|word| word.starts_with("http://") || word.starts_with("https://"))
    }

    /// The decoded `token` query parameter of the first link.
    pub fn token(&self) -> anyhow::Result<String> {
        let link = self
            .first_link()
            .with_context(|| format!("no link in the body:\n{}", self.body))?;
        let url = reqwest::Url::parse(link).with_context(|| format!("bad link {link}"))?;
        let tokens: Vec<String> = url
            .query_pairs()
            .filter(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
            .collect();
        match tokens.as_slice() {
            [token] => Ok(token.clone()),
            _ => bail!("the link {link} has {} token parameters", tokens.len()),
        }
    }
}

/// RFC 2045 quoted-printable: `=XX` bytes and `=` soft line breaks.
fn decode_quoted_printable(text: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' {
                let hex = line
                    .get(i + 1..i + 3)
                    .with_context(|| format!("truncated escape in {line:?}"))?;
                bytes.push(
                    u8::from_str_radix(hex, 16)
                        .with_context(|| format!("bad escape ={hex} in {line:?}"))?,
                );
                i += 3;
            } else {
                bytes.push(raw[i]);
                i += 1;
            }
        }
        if !soft_break && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8(bytes).context("quoted-printable body is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    const QP: &str = "Subject: Reset your password\r\n\
        To: ada@example.com\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        X-RcptTo: ada@example.com\r\n\
        \r\n\
        Hello,\r\n\
        \r\n\
        http://127.0.0.1:8080/reset-password?token=3Dabc_-=\r\n\
        123%2B4\r\n\
        -- caf=C3=A9\r\n";

    #[test]
    fn quoted_printable_bodies_are_decoded_and_the_token_found() {
        let message = MailMessage::parse(Path::new("m"), QP).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(message.subject(), Some("Reset your password"));
        assert!(message.is_for("ADA@example.com"));
        assert!(!message.is_for("bob@example.com"));
        assert_eq!(
            message.first_link(),
            Some("http://127.0.0.1:8080/reset-password?token=abc_-123%2B4")
        );
        assert_eq!(message.token().unwrap_or_default(), "abc_-123+4");
        assert!(message.body.ends_with("-- café\n"), "{:?}", message.body);
    }

    #[test]
    fn folded_headers_and_base64_bodies_are_read() {
        let raw = "Subject: a long\r\n  subject\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                   aHR0cHM6Ly94LmV4YW1w\r\nbGUvdj90b2tlbj1rMQ==\r\n";
        let message = MailMessage::parse(Path::new("m"), raw).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(message.subject(), Some("a long subject"));
        assert_eq!(message.token().unwrap_or_default(), "k1");
    }
}

#[cfg(test)]
mod server_tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    /// One SMTP conversation, checking each reply code.
    fn send(port: u16, to: &str, data: &str) -> anyhow::Result<()> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut expect = |code: &str| -> anyhow::Result<()> {
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                anyhow::ensure!(line.starts_with(code), "expected {code}, got {line:?}");
                // `250-...` continues a multi-line reply; `250 ...` ends it.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(());
                }
            }
        };
        expect("220")?;
        for (command, code) in [
            ("EHLO test.local".to_owned(), "250"),
            ("MAIL FROM:<sender@test.local>".to_owned(), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_owned(), "354"),
            (format!("{data}\r\n."), "250"),
            ("QUIT".to_owned(), "221"),
        ] {
            writer.write_all(format!("{command}\r\n").as_bytes())?;
            expect(code)?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_message_sent_over_smtp_lands_in_the_maildir_and_is_handed_out_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = crate::free_port().unwrap_or_else(|e| panic!("{e:#}"));
        let mut server =
            MailServer::start(&dir.path().join("mail"), port, &dir.path().join("mail.log"))
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
        let data = "To: ada@example.com\r\nSubject: Verify\r\n\r\n\
                    open http://127.0.0.1:1/verify-email?token=t%2B1 now";
        tokio::task::spawn_blocking(move || send(port, "ada@example.com", data))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("sending to aiosmtpd: {e:#}"));

        let message = server
            .wait_for("ada@example.com", Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(message.subject(), Some("Verify"));
        assert_eq!(message.token().unwrap_or_default(), "t+1");
        assert!(message.path.starts_with(server.maildir().join("new")));
        let again = server
            .wait_for("ada@example.com", Duration::from_millis(300))
            .await;
        assert!(again.is_err(), "the same message was handed out twice");
        assert_eq!(
            server.messages_to("ada@example.com").map(|m| m.len()).ok(),
            Some(1)
        );

        server.stop().unwrap_or_else(|e| panic!("{e:#}"));
        assert!(greeting(port).is_err(), "aiosmtpd still answers after stop");
        server.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(server.messages().map(|m| m.len()).ok(), Some(1));
    }
}
