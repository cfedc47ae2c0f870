//! Load generation with wrk (one thread, tokens rotated by `tokens.lua`) and the figures
//! parsed from its output.

use std::path::Path;

use anyhow::{Context as _, bail};
use tokio::process::Command;

use super::envoy_config::templates_dir;
use super::options::Options;
use super::tools::Tools;

#[derive(Debug, Clone, Copy, Default)]
pub struct WrkFigures {
    pub requests: u64,
    duration_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub status_errors: u64,
    pub socket_errors: u64,
}

impl WrkFigures {
    /// Seconds the measured run took.
    pub fn seconds(&self) -> f64 {
        self.duration_us.max(1) as f64 / 1e6
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    fn parse(output: &str) -> Option<Self> {
        let line = output.lines().find(|l| l.starts_with("BENCH "))?;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(Self {
            requests: field("requests")?,
            duration_us: field("duration_us")?,
            p50_us: field("p50_us")?,
            p90_us: field("p90_us")?,
            p99_us: field("p99_us")?,
            status_errors: field("status_errors")?,
            socket_errors: field("socket_errors")?,
        })
    }
}

pub async fn wrk(
    tools: &Tools,
    options: &Options,
    port: u16,
    tokens: &Path,
    first_token: u64,
    seconds: u64,
) -> anyhow::Result<WrkFigures> {
    let script = templates_dir().join("tokens.lua");
    let output = Command::new(&tools.wrk)
        .args([
            "-t1".to_owned(),
            format!("-c{}", options.connections),
            format!("-d{seconds}s"),
            "--timeout".to_owned(),
            "5s".to_owned(),
            "-s".to_owned(),
        ])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/bench"))
        .arg("--")
        .arg(tokens)
        .arg(first_token.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match WrkFigures::parse(&text) {
        Some(figures) if output.status.success() => Ok(figures),
        _ => bail!("wrk failed ({}):\n{text}", output.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_line_tokens_lua_prints() {
        let output = "Running 1s test @ http://127.0.0.1:18931/\n\
                      BENCH requests=950 duration_us=1001114 p50_us=1436 p90_us=5481 \
                      p99_us=10186 status_errors=3 socket_errors=1\n";
        let figures = WrkFigures::parse(output)
            .unwrap_or_else(|| panic!("the BENCH line was not read: {output}"));
        assert_eq!(
            (figures.p50_us, figures.p90_us, figures.p99_us),
            (1436, 5481, 10186)
        );
        assert_eq!((figures.status_errors, figures.socket_errors), (3, 1));
        assert!((figures.per_second() - 948.9).abs() < 0.1);
    }

    #[test]
    fn a_line_without_p90_is_not_read() {
        let old =
            "BENCH requests=1 duration_us=1 p50_us=1 p99_us=1 status_errors=0 socket_errors=0";
        assert!(
            WrkFigures::parse(old).is_none(),
            "a line missing p90 was read"
        );
    }
}
