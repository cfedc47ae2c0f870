//! What `up` and `status` report: every component's health in a table, the healthy hosts
//! Envoy sees per service cluster, and Prometheus's scrape targets and firing alerts.

use std::time::Duration;

use serde_json::Value;

use super::Local;
use super::settings::{replica_label, replica_name};
use super::ui::colours;
use crate::envoy::cluster_health_flags;
use crate::service::ServiceKind;

/// A component's health, as the table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ready,
    NotReady,
    Starting,
    Down,
}

impl Health {
    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::NotReady => "not ready",
            Self::Starting => "starting",
            Self::Down => "down",
        }
    }
}

impl Local {
    pub(super) async fn envoy_ready(&self) -> bool {
        let admin = self.settings.edge_admin_port;
        self.http_get(admin, "/ready")
            .await
            .is_some_and(|(status, body)| status == 200 && body.trim() == "LIVE")
            && self.http_status(self.settings.edge_port, "/healthz").await == Some(200)
    }

    pub(super) async fn prometheus_ready(&self) -> bool {
        self.http_status(self.settings.prometheus_port, "/-/ready")
            .await
            == Some(200)
    }

    /// One line with the healthy hosts of each service's cluster, from the admin's
    /// `/clusters` (`identity::127.0.0.1:50051::health_flags::healthy`), and whether every
    /// cluster has one host per replica, all healthy.
    pub(super) async fn envoy_hosts(&self) -> (String, bool) {
        let c = colours();
        let admin = self.settings.edge_admin_port;
        let Some((200, clusters)) = self.http_get(admin, "/clusters").await else {
            return (
                format!(
                    "Envoy healthy hosts: {}no answer from http://127.0.0.1:{admin}/clusters{}",
                    c.red, c.reset
                ),
                false,
            );
        };
        let replicas = self.settings.replicas;
        let mut all = true;
        let mut parts = Vec::new();
        for service in ServiceKind::EVERY {
            let flags = cluster_health_flags(&clusters, service.name());
            let healthy = flags.iter().filter(|flags| **flags == "healthy").count();
            let ok = healthy == replicas && flags.len() == replicas;
            all &= ok;
            let colour = if ok { c.green } else { c.red };
            parts.push(format!(
                "{} {colour}{healthy}/{}{}",
                service.name(),
                flags.len(),
                c.reset
            ));
        }
        (format!("Envoy healthy hosts: {}", parts.join(", ")), all)
    }

    async fn health(&self, name: &str) -> Health {
        let alive = || self.daemons.alive(name).is_some();
        let ready_or = |ready: bool, starting: bool| {
            if ready {
                Health::Ready
            } else if starting {
                Health::Starting
            } else {
                Health::Down
            }
        };
        let s = &self.settings;
        match name {
            "postgres" => ready_or(self.cluster.ready(), false),
            "redis" => ready_or(crate::redis::ping(s.redis_port).is_ok(), false),
            "mail" => ready_or(crate::mail::greeting(s.mail_port).is_ok(), false),
            "prometheus" => ready_or(self.prometheus_ready().await, alive()),
            "envoy" => ready_or(self.envoy_ready().await, alive()),
            replica => {
                let Some((service, i)) = super::settings::parse_replica_name(replica) else {
                    return Health::Down;
                };
                match self.http_status(s.admin_port(service, i), "/ready").await {
                    Some(200) => Health::Ready,
                    Some(503) => Health::NotReady,
                    _ => ready_or(false, alive()),
                }
            }
        }
    }

    /// Prints every component, each replica of a service on its own line, then the
    /// healthy hosts Envoy sees; `false` when one is not ready.
    pub(super) async fn print_table(&self) -> bool {
        let s = &self.settings;
        let c = colours();
        let mut rows: Vec<(String, String, String)> = vec![
            (
                "postgres".into(),
                "postgres".into(),
                format!("127.0.0.1:{}", s.pg_port),
            ),
            (
                "redis".into(),
                "redis".into(),
                format!("127.0.0.1:{}", s.redis_port),
            ),
            (
                "mail".into(),
                "mail".into(),
                format!("smtp://127.0.0.1:{}", s.mail_port),
            ),
        ];
        for service in ServiceKind::EVERY {
            for i in 0..s.replicas {
                rows.push((
                    replica_name(service, i),
                    replica_label(service, i),
                    format!(
                        "grpc 127.0.0.1:{} admin :{}",
                        s.grpc_port(service, i),
                        s.admin_port(service, i)
                    ),
                ));
            }
        }
        rows.push((
            "envoy".into(),
            "envoy".into(),
            format!(
                "http://127.0.0.1:{} (admin :{})",
                s.edge_port, s.edge_admin_port
            ),
        ));
        rows.push((
            "prometheus".into(),
            "prometheus".into(),
            format!("http://127.0.0.1:{}", s.prometheus_port),
        ));
        println!(
            "\n{}{:<12} {:<40} {:<10} LOG{}",
            c.bold, "COMPONENT", "ADDRESS", "HEALTH", c.reset
        );
        let mut all = true;
        for (name, label, address) in rows {
            let health = self.health(&name).await;
            let colour = if health == Health::Ready {
                c.green
            } else {
                all = false;
                c.red
            };
            println!(
                "{label:<12} {address:<40} {colour}{:<10}{} {}",
                health.word(),
                c.reset,
                s.rel(&s.log(&name))
            );
        }
        println!();
        if self.envoy_ready().await {
            let (line, hosts) = self.envoy_hosts().await;
            println!("{line}\n");
            all &= hosts;
        }
        all
    }

    /// Prints the scrape targets that are down and the alerts that fire (with `wait`,
    /// first waits up to two scrape intervals for every target's first scrape); `false`
    /// when a target is down or an alert fires.
    pub(super) async fn prometheus_report(&self, wait: bool) -> bool {
        let c = colours();
        let s = &self.settings;
        let url = format!("http://127.0.0.1:{}", s.prometheus_port);
        if !self.prometheus_ready().await {
            println!("Prometheus: {}not running{}", c.red, c.reset);
            return false;
        }
        let expected = 1 + ServiceKind::EVERY.len() * s.replicas;
        let targets_path = "/api/v1/targets?state=active";
        if wait {
            // Until the reloaded configuration's targets (the edge and every replica) are
            // discovered, and each has been scraped once.
            let deadline = tokio::time::Instant::now()
                + interval(&s.scrape_interval) * 2
                + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                let targets = self.prometheus_data(targets_path).await;
                let active = targets
                    .as_ref()
                    .and_then(|t| t["activeTargets"].as_array().cloned())
                    .unwrap_or_default();
                if active.len() == expected && active.iter().all(|t| t["health"] != "unknown") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let (Some(targets), Some(alerts), Some(rules)) = (
            self.prometheus_data(targets_path).await,
            self.prometheus_data("/api/v1/alerts").await,
            self.prometheus_data("/api/v1/rules").await,
        ) else {
            println!("Prometheus: {}no answer from {url}{}", c.red, c.reset);
            return false;
        };
        let targets = targets["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
        let rule_count: usize = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|group| group["rules"].as_array().map_or(0, Vec::len))
            .sum();
        let up = targets.iter().filter(|t| t["health"] == "up").count();
        let mut good = !targets.is_empty();
        let colour = if good && up == targets.len() {
            c.green
        } else {
            c.red
        };
        println!(
            "Prometheus {url}: {colour}{up}/{} targets up{}, {rule_count} rules loaded",
            targets.len(),
            c.reset
        );
        for target in targets.iter().filter(|t| t["health"] != "up") {
            good = false;
            let labels = &target["labels"];
            let name = labels["service"]
                .as_str()
                .or(labels["job"].as_str())
                .unwrap_or("?");
            let error = target["lastError"]
                .as_str()
                .filter(|e| !e.is_empty())
                .or(target["health"].as_str())
                .unwrap_or("?");
            println!(
                "  {}down{}  {name:<10} {}  {error}",
                c.red,
                c.reset,
                target["scrapeUrl"].as_str().unwrap_or("?")
            );
        }
        let firing: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "firing").collect();
        if firing.is_empty() {
            let pending = alerts.iter().filter(|a| a["state"] == "pending").count();
            if pending > 0 {
                println!(
                    "Alerts firing: none ({}{pending} pending{})",
                    c.yellow, c.reset
                );
            } else {
                println!("Alerts firing: none");
            }
        } else {
            good = false;
            println!("{}Alerts firing:{}", c.red, c.reset);
            for alert in firing {
                let labels = &alert["labels"];
                let what = labels["service"]
                    .as_str()
                    .or(labels["slo"].as_str())
                    .unwrap_or("");
                println!(
                    "  {} ({}) {what}: {}",
                    labels["alertname"].as_str().unwrap_or("?"),
                    labels["severity"].as_str().unwrap_or("?"),
                    alert["annotations"]["summary"].as_str().unwrap_or("")
                );
            }
        }
        good
    }

    /// The `data` of a Prometheus API answer.
    async fn prometheus_data(&self, path: &str) -> Option<Value> {
        let (status, body) = self.http_get(self.settings.prometheus_port, path).await?;
        if status != 200 {
            return None;
        }
        let mut value: Value = serde_json::from_str(&body).ok()?;
        Some(value["data"].take())
    }
}

/// A Prometheus duration (`15s`, `1m`, `500ms`), at least one second.
fn interval(text: &str) -> Duration {
    let secs = if text.ends_with("ms") {
        1
    } else if let Some(secs) = text.strip_suffix('s') {
        secs.parse().unwrap_or(15)
    } else if let Some(minutes) = text.strip_suffix('m') {
        minutes.parse::<u64>().map_or(15, |m| m * 60)
    } else {
        15
    };
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_intervals_read_as_prometheus_spells_them() {
        assert_eq!(interval("15s"), Duration::from_secs(15));
        assert_eq!(interval("2m"), Duration::from_secs(120));
        assert_eq!(interval("500ms"), Duration::from_secs(1));
        assert_eq!(interval("1h"), Duration::from_secs(15));
    }
}
