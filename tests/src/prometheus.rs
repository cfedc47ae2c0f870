//! A real Prometheus (the Debian package's binary) scraping a test's mesh, configured
//! from the same template production starts from (`observability/prometheus/prometheus.yml`)
//! with the recording and alerting rules of `observability/prometheus/rules.yml` and the
//! SLOs of `observability/prometheus/slo.yml`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::template::fill_placeholders;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::mesh::Mesh;
use crate::net::free_port;
use crate::process::ManagedChild;
use crate::service::ServiceKind;
use crate::wait::poll_until;
use crate::workspace::workspace_root;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_HINT: &str = "`deploy/local/mesh test` (or `deploy/local/mesh up`) installs it, \
     or: apt-get install prometheus (the package also ships promtool)";

/// The scrape configuration template, relative to the workspace root.
pub const CONFIG_TEMPLATE: &str = "observability/prometheus/prometheus.yml";
/// The directory of the rule files, relative to the workspace root.
pub const RULES_DIR: &str = "observability/prometheus";
/// The rule files the template loads, relative to the workspace root.
pub const RULE_FILES: [&str; 2] = [
    "observability/prometheus/rules.yml",
    "observability/prometheus/slo.yml",
];
/// The `promtool test rules` unit tests of the rules, relative to the workspace root.
pub const RULE_TESTS_DIR: &str = "observability/prometheus/tests";

/// A running Prometheus; dropping it kills the process.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    config: PathBuf,
    process: ManagedChild,
}

/// `prometheus` on PATH (or `$BULWARK_PROMETHEUS`); missing is an error naming the fix.
pub fn prometheus_binary() -> anyhow::Result<PathBuf> {
    tool("prometheus", "BULWARK_PROMETHEUS")
}

/// `promtool` on PATH (or `$BULWARK_PROMTOOL`), from the same Debian package.
pub fn promtool_binary() -> anyhow::Result<PathBuf> {
    tool("promtool", "BULWARK_PROMTOOL")
}

fn tool(name: &str, override_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(override_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{override_var}={} does not exist", path.display());
    }
    if let Some(path) = crate::workspace::on_path(name) {
        return Ok(path);
    }
    let fallback = Path::new("/usr/bin").join(name);
    if fallback.is_file() {
        return Ok(fallback);
    }
    bail!("`{name}` not found (not on PATH, no /usr/bin/{name}). {INSTALL_HINT}")
}

/// Fills every `{{NAME}}` of the scrape template; a placeholder left over is an error.
/// Prometheus's own `{{ $labels.x }}` templates live in rules.yml, never here.
pub fn render_config(template: &str, values: &[(&str, String)]) -> anyhow::Result<String> {
    fill_placeholders(CONFIG_TEMPLATE, template, values)
}

/// The template's values for a mesh started with `.all_services().envoy()`: every
/// service's admin address, Envoy's admin address, the rules directory and the interval.
///
/// # Panics
/// If the mesh lacks a service or Envoy (a mistake in the test itself).
pub fn config_values(mesh: &Mesh, scrape_interval: Duration) -> Vec<(&'static str, String)> {
    let address = |url: String| url.trim_start_matches("http://").to_owned();
    let mut values = vec![
        (
            "SCRAPE_INTERVAL",
            format!("{}ms", scrape_interval.as_millis()),
        ),
        (
            "RULES_DIR",
            workspace_root().join(RULES_DIR).display().to_string(),
        ),
        ("ENVOY_ADMIN", address(mesh.envoy().admin_url(""))),
    ];
    for kind in ServiceKind::EVERY {
        values.push((
            admin_placeholder(kind),
            address(mesh.service(kind).admin_url("")),
        ));
    }
    values
}

/// The scrape template's placeholder of a service's admin targets.
pub(crate) fn admin_placeholder(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Identity => "IDENTITY_ADMIN",
        ServiceKind::Auth => "AUTH_ADMIN",
        ServiceKind::Authz => "AUTHZ_ADMIN",
        ServiceKind::Audit => "AUDIT_ADMIN",
        ServiceKind::Ratelimit => "RATELIMIT_ADMIN",
    }
}

/// Runs `promtool` with `args`; `Err` carries its output when it refuses.
pub fn promtool(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(promtool_binary()?)
        .args(args)
        .output()
        .with_context(|| format!("running promtool {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "promtool {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        );
    }
    Ok(text)
}

impl Prometheus {
    /// Renders the template for `mesh` into `<mesh dir>/prometheus/`, starts Prometheus on
    /// a free loopback port with its storage there (log: `<mesh dir>/logs/prometheus.log`,
    /// so it is in the mesh's failure report) and waits for `/-/ready`.
    pub async fn start_for(mesh: &Mesh, scrape_interval: Duration) -> anyhow::Result<Self> {
        let template_path = workspace_root().join(CONFIG_TEMPLATE);
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("reading {}", template_path.display()))?;
        let dir = mesh.dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            render_config(&template, &config_values(mesh, scrape_interval))?,
        )?;
        let port = free_port()?;
        let mut command = Command::new(prometheus_binary()?);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let log = mesh.dir().join("logs/prometheus.log");
        let mut prometheus = Self {
            port,
            config,
            process: ManagedChild::spawn("prometheus", &mut command, &log)?,
        };
        prometheus.wait_ready(mesh.http()).await?;
        Ok(prometheus)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = self.url("/-/ready");
        self.process
            .wait_ready("prometheus /-/ready", READY_TIMEOUT, || async {
                match http.get(&url).send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("answered {}", response.status())),
                    Err(err) => Err(err.to_string()),
                }
            })
            .await
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The rendered configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Prometheus's log.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// An instant query at the current time through `/api/v1/query`: the `data` object
    /// (`resultType`, `result`) on success; a PromQL error is `Err` with Prometheus's
    /// `errorType` and `error`.
    pub async fn query(&self, http: &reqwest::Client, expr: &str) -> anyhow::Result<Value> {
        let now = unix_now();
        let response = http
            .post(self.url("/api/v1/query"))
            .form(&[("query", expr), ("time", &format!("{now:.3}"))])
            .send()
            .await
            .with_context(|| format!("POST /api/v1/query {expr:?}"))?;
        let status = response.status();
        let text = response.text().await?;
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("/api/v1/query answered {status} with non-JSON: {text}"))?;
        if body["status"] != "success" {
            bail!(
                "Prometheus refused the query ({status}, {}): {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or(&text)
            );
        }
        Ok(body["data"].clone())
    }

    /// The active scrape targets (`/api/v1/targets`, `data.activeTargets`).
    pub async fn targets(&self, http: &reqwest::Client) -> anyhow::Result<Vec<Value>> {
        let text = http
            .get(self.url("/api/v1/targets?state=active"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("/api/v1/targets answered non-JSON: {text}"))?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until every active target is up and has been scraped at least twice since
    /// now, so that every series present now has two samples and `rate()` has a value.
    pub async fn wait_two_scrapes(
        &self,
        http: &reqwest::Client,
        scrape_interval: Duration,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        // A scrape that started more than one interval from now had a predecessor that
        // started after now too.
        let second_scrape_after = unix_now() + scrape_interval.as_secs_f64();
        poll_until(
            "every Prometheus target scraped twice",
            timeout,
            || async move {
                let targets = self.targets(http).await.map_err(|err| err.to_string())?;
                if targets.is_empty() {
                    return Err("no active targets".to_owned());
                }
                let pending: Vec<String> = targets
                    .iter()
                    .filter(|target| {
                        target["health"] != "up"
                            || last_scrape_seconds(target)
                                .is_none_or(|last| last <= second_scrape_after)
                    })
                    .map(|target| {
                        format!(
                            "{} ({}, last scrape {}, error {:?})",
                            target["scrapeUrl"].as_str().unwrap_or("?"),
                            target["health"].as_str().unwrap_or("?"),
                            target["lastScrape"].as_str().unwrap_or("?"),
                            target["lastError"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if pending.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not yet: {}", pending.join("; ")))
                }
            },
        )
        .await
    }
}

/// Seconds since the Unix epoch, as Prometheus's API takes and gives times.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `lastScrape` (RFC 3339 with nanoseconds, UTC or an offset) in Unix seconds.
fn last_scrape_seconds(target: &Value) -> Option<f64> {
    parse_rfc3339(target["lastScrape"].as_str()?)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into Unix seconds.
fn parse_rfc3339(text: &str) -> Option<f64> {
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (clock, offset_seconds) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else {
        let split = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(split);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset[1..].split_once(':')?;
        (
            clock,
            sign * (hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60),
        )
    };
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: f64 = clock_parts.next()?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 - offset_seconds) as f64 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5Z"),
            Some(1_709_208_000.5)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T13:30:00.5+01:30"),
            Some(1_709_208_000.5)
        );
        assert_eq!(parse_rfc3339("not a time"), None);
    }

    #[test]
    fn render_refuses_a_placeholder_left_over() {
        let err = render_config("a: {{ONE}}\nb: {{TWO}}", &[("ONE", "1".to_owned())])
            .expect_err("TWO is not filled");
        assert!(err.to_string().contains("{{TWO}}"), "{err}");
    }
}
