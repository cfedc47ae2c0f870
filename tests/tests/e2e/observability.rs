//! The Grafana dashboards and the Prometheus rules against a real Prometheus scraping
//! the real mesh: every PromQL expression they hold must evaluate, and the ones that
//! traffic through the edge must feed have data.

use std::path::PathBuf;
use std::time::Duration;

use bulwark_e2e::prometheus::{self, Prometheus};
use bulwark_e2e::{Mesh, poll_until, workspace_root};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{new_trace_id, shipped_rules};

const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(60);
const DATA_TIMEOUT: Duration = Duration::from_secs(30);
const DASHBOARDS: &str = "observability/grafana/dashboards";

/// One PromQL expression and where it comes from, for failure messages.
struct Expression {
    origin: String,
    expr: String,
}

/// Every dashboard: its file name and its JSON.
fn dashboards() -> Vec<(String, Value)> {
    let dir = workspace_root().join(DASHBOARDS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
            let dashboard: Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", file.display()));
            let name = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            (name, dashboard)
        })
        .collect()
}

/// Every `expr` of every panel (nested row panels included) of every dashboard.
fn dashboard_expressions() -> Vec<Expression> {
    let mut expressions = Vec::new();
    for (name, dashboard) in dashboards() {
        let before = expressions.len();
        collect_panel_expressions(&name, &dashboard["panels"], &mut expressions);
        assert!(
            expressions.len() > before,
            "dashboard {name} has no panel with a PromQL expression"
        );
    }
    expressions
}

fn collect_panel_expressions(dashboard: &str, panels: &Value, out: &mut Vec<Expression>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(Expression {
                    origin: format!(
                        "dashboard {dashboard}, panel {title:?} (ref {})",
                        target["refId"].as_str().unwrap_or("?")
                    ),
                    expr: grafana_variables(expr),
                });
            }
        }
        // A collapsed row keeps its panels inside itself.
        collect_panel_expressions(dashboard, &panel["panels"], out);
    }
}

/// Grafana's built-in interval variables, as Grafana would fill them in before querying.
fn grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// Every recording and alerting rule's `expr` in every rule file the template loads.
fn rule_expressions() -> Vec<Expression> {
    shipped_rules()
        .into_iter()
        .map(|(file, group, rule)| {
            let name = rule["record"]
                .as_str()
                .map(|record| format!("recording rule {record}"))
                .or_else(|| rule["alert"].as_str().map(|alert| format!("alert {alert}")))
                .unwrap_or_else(|| "a rule without record or alert".to_owned());
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {file} has no expr"));
            Expression {
                origin: format!("{file} group {group}, {name}"),
                expr: expr.to_owned(),
            }
        })
        .collect()
}

/// `promtool check rules` on every rule file the template loads.
fn check_rule_files() {
    for file in prometheus::RULE_FILES {
        let path = workspace_root().join(file);
        prometheus::promtool(&["check", "rules", &path.display().to_string()])
            .unwrap_or_else(|err| panic!("{err:#}"));
    }
}

/// POSTs a JSON body through the edge; the status and the body text.
async fn post_json(mesh: &Mesh, path: &str, body: Value) -> (StatusCode, String) {
    let response = mesh
        .http()
        .post(mesh.edge_url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {path}: {err}"));
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// Registers a fresh user through the edge; its email and password.
async fn register(mesh: &Mesh) -> (String, String) {
    let email = format!("observer-{}@example.com", &new_trace_id()[..12]);
    let password = "observability-password-1".to_owned();
    let body =
        serde_json::json!({ "email": email, "password": password, "display_name": "Observer" });
    let (status, text) = post_json(mesh, "/v1/users", body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "registering through the edge: {text}"
    );
    (email, password)
}

/// Logs in, reads /me with the token and without one (a 401 of the gateway filter), and
/// fails a login with a wrong password (an error in Auth's and Identity's RPC series, a
/// 4xx at the edge), all through the edge.
async fn log_in_read_me_and_fail_a_login(mesh: &Mesh, email: &str, password: &str) {
    let credentials = serde_json::json!({ "email": email, "password": password });
    let (status, text) = post_json(mesh, "/v1/auth/login", credentials).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "logging in through the edge: {text}"
    );
    let login: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("login answer is not JSON ({err}): {text}"));
    let token = login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login answer has no access_token: {login}"));

    let response = mesh
        .http()
        .get(mesh.edge_url("/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/users/me");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /v1/users/me with the token: {text}"
    );

    // No token: the gateway filter answers 401 itself (its unauthenticated counter).
    let response = mesh
        .http()
        .get(mesh.edge_url("/v1/users/me"))
        .send()
        .await
        .expect("GET /v1/users/me without a token");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "GET /v1/users/me without a token"
    );

    let wrong = serde_json::json!({ "email": email, "password": "not-the-password-1" });
    let (status, text) = post_json(mesh, "/v1/auth/login", wrong).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "login with a wrong password: {text}"
    );
}

/// The result vector of an instant query, or why there is none.
fn vector(data: &Value) -> Result<Vec<Value>, String> {
    match data["resultType"].as_str() {
        Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
        other => Err(format!("result type {other:?}, expected a vector: {data}")),
    }
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A series a label value names must be present; `check` judges its value.
fn require_each(
    samples: &[Value],
    label_name: &str,
    wanted: &[&str],
    check: impl Fn(f64) -> bool,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for want in wanted {
        match samples.iter().find(|s| label(s, label_name) == *want) {
            None => problems.push(format!("no series with {label_name}={want:?}")),
            Some(sample) if !check(value(sample)) => {
                problems.push(format!("{label_name}={want:?} has value {}", value(sample)))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}; series: {}",
            problems.join(", "),
            Value::from(samples.to_vec())
        ))
    }
}

/// Exactly one series, whose value `check` accepts.
fn one_value(samples: &[Value], check: impl Fn(f64) -> bool) -> Result<(), String> {
    match samples {
        [sample] if check(value(sample)) => Ok(()),
        _ => Err(format!(
            "expected one series with an acceptable value: {}",
            Value::from(samples.to_vec())
        )),
    }
}

const SERVICES: [&str; 5] = ["identity", "auth", "authz", "audit", "ratelimit"];
const DB_SERVICES: [&str; 4] = ["identity", "auth", "authz", "audit"];

/// An expression that must have data after the traffic, and why.
struct Expectation {
    expr: &'static str,
    why: &'static str,
    check: fn(&[Value]) -> Result<(), String>,
}

/// The series the traffic must produce. Most expressions are a panel's or a rule's
/// verbatim, the others select what a panel shows per service: a panel that stays
/// empty although the traffic should fill it fails here.
fn expectations() -> Vec<Expectation> {
    vec![
        Expectation {
            expr: r#"up{job="bulwark-services"}"#,
            why: "every service was started and answers /metrics (overview \"Services up\")",
            check: |s| require_each(s, "service", &SERVICES, |v| v == 1.0),
        },
        Expectation {
            expr: r#"up{job="bulwark-edge"}"#,
            why: "Envoy's /stats/prometheus is scraped with the edge's service label",
            check: |s| require_each(s, "service", &["edge"], |v| v == 1.0),
        },
        Expectation {
            expr: r#"up{job="bulwark-services"} == 0"#,
            why: "the BulwarkServiceDown alert must not fire while everything runs",
            check: |s| {
                if s.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "services reported down: {}",
                        Value::from(s.to_vec())
                    ))
                }
            },
        },
        Expectation {
            expr: r#"sum by (service) (rate(function_calls_total{module!="grpc.health.v1.Health"}[5m]))"#,
            why: "the login (auth, and identity's VerifyCredentials) and /me (identity) of \
                  the second burst happened between scrapes: positive RPC rates",
            check: |s| require_each(s, "service", &["identity", "auth"], |v| v > 0.0),
        },
        Expectation {
            expr: r#"sum by (service) (rate(function_calls_total{result="error", module!="grpc.health.v1.Health"}[5m])) / clamp_min(sum by (service) (rate(function_calls_total{module!="grpc.health.v1.Health"}[5m])), 1e-9)"#,
            why: "the wrong-password login is an error of auth's Login (overview error ratio)",
            check: |s| require_each(s, "service", &["auth"], |v| v > 0.0 && v < 1.0),
        },
        Expectation {
            expr: r#"histogram_quantile(0.95, sum by (le) (rate(function_calls_duration_seconds_bucket{service="auth", function="Login"}[5m])))"#,
            why: "two logins between scrapes give Login's p95 (auth dashboard, SLA panel)",
            check: |s| match s {
                [sample] if value(sample).is_finite() && value(sample) > 0.0 => Ok(()),
                _ => Err(format!(
                    "expected one finite positive p95: {}",
                    Value::from(s.to_vec())
                )),
            },
        },
        Expectation {
            expr: r#"sum by (grpc_code) (rate(function_calls_total{service="auth", function="Login"}[5m]))"#,
            why: "logins succeeded and failed (auth \"Logins by outcome\")",
            check: |s| require_each(s, "grpc_code", &["OK", "UNAUTHENTICATED"], |v| v > 0.0),
        },
        Expectation {
            expr: r#"sum by (result) (rate(function_calls_total{service="identity", function="CreateUser"}[5m]))"#,
            why: "one registration succeeded (identity \"Registrations by outcome\")",
            check: |s| require_each(s, "result", &["ok"], |v| v >= 0.0),
        },
        Expectation {
            expr: "sum by (service, state) (db_pool_connections)",
            why: "every database service reports its pool, by the target's service label \
                  (overview \"Database connections by service\")",
            check: |s| require_each(s, "service", &DB_SERVICES, |v| v >= 0.0),
        },
        Expectation {
            expr: "max by (service) (db_pool_max_connections)",
            why: "the pool size is the kernel's default database.max_connections (10)",
            check: |s| require_each(s, "service", &DB_SERVICES, |v| v == 10.0),
        },
        Expectation {
            expr: "max by (service_name, version, commit) (build_info)",
            why: "every service publishes build_info (overview \"Versions running\")",
            check: |s| require_each(s, "service_name", &SERVICES, |v| v == 1.0),
        },
        Expectation {
            expr: r#"sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="edge"}[5m]))"#,
            why: "the edge answered 200s and a 401 between scrapes (overview \"Edge responses by class\")",
            check: |s| require_each(s, "envoy_response_code_class", &["2", "4"], |v| v > 0.0),
        },
        Expectation {
            expr: r#"sum(envoy_http_downstream_rq_active{envoy_http_conn_manager_prefix="edge"})"#,
            why: "the edge's in-flight gauge exists (overview \"Edge requests in flight\")",
            check: |s| match s {
                [sample] if value(sample) >= 0.0 => Ok(()),
                _ => Err(format!("expected one series: {}", Value::from(s.to_vec()))),
            },
        },
        Expectation {
            expr: r#"service:rpc_requests:rate5m{service="auth", function="Login"}"#,
            why: "rules.yml is loaded and its recording rules evaluate over the scraped series",
            check: |s| require_each(s, "function", &["Login"], |v| v > 0.0),
        },
        Expectation {
            expr: "rate(bulwark_gateway_allowed[5m])",
            why: "the gateway filter admitted the logins and /me (edge \"Gateway filter decisions\")",
            check: |s| one_value(s, |v| v > 0.0),
        },
        Expectation {
            expr: "rate(bulwark_gateway_unauthenticated[5m])",
            why: "the filter answered /me without a token with 401 (edge \"Gateway filter decisions\")",
            check: |s| one_value(s, |v| v > 0.0),
        },
        Expectation {
            expr: "bulwark_gateway_jwks_refreshes",
            why: "the filter fetched the JWKS at least once before it verified a token (edge \"JWKS refreshes and failures\")",
            check: |s| one_value(s, |v| v >= 1.0),
        },
        Expectation {
            expr: r#"sum by (envoy_cluster_name, envoy_response_code_class) (rate(envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"identity|auth|authz|audit"}[5m]))"#,
            why: "registration and /me went to identity, logins to auth (edge \"Requests by route and status class\")",
            check: |s| require_each(s, "envoy_cluster_name", &["identity", "auth"], |v| v > 0.0),
        },
        Expectation {
            expr: r#"histogram_quantile(0.95, sum by (le) (rate(envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="edge"}[5m])))"#,
            why: "the edge's latency histogram has the burst's requests (edge \"Edge latency\")",
            check: |s| one_value(s, |v| v.is_finite() && v > 0.0),
        },
        Expectation {
            expr: r#"sum by (domain, descriptor, decision) (rate(ratelimit_decisions_total{service="ratelimit", descriptor="route=/v1/auth/login;client_ip"}[5m]))"#,
            why: "the logins were counted against the per-address login limit (rate limiter \"Decisions by limit\", its login row)",
            check: |s| require_each(s, "decision", &["ok"], |v| v > 0.0),
        },
        Expectation {
            expr: r#"histogram_quantile(0.95, sum by (le) (rate(ratelimit_redis_duration_seconds_bucket{service="ratelimit"}[5m])))"#,
            why: "each decision timed its Redis work (rate limiter \"Redis latency per decision\")",
            check: |s| one_value(s, |v| v.is_finite() && v > 0.0),
        },
        Expectation {
            expr: r#"slo:sli_error:ratio_rate5m{slo="auth-latency"}"#,
            why: "slo.yml is loaded and Auth's latency SLI (calls over the le=\"0.1\" bucket) evaluates over the scraped series",
            check: |s| one_value(s, |v| (0.0..=1.0).contains(&v)),
        },
        Expectation {
            expr: r#"slo:sli_error:ratio_rate5m{slo="edge-availability"}"#,
            why: "slo.yml is loaded and the edge's 5xx ratio evaluates over the scraped series (no 5xx in the traffic)",
            check: |s| one_value(s, |v| v == 0.0),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_query_real_prometheus() {
    check_rule_files();

    let mesh = Mesh::builder()
        .all_services()
        .envoy()
        .start()
        .await
        .expect("starting the mesh");
    let prometheus = Prometheus::start_for(&mesh, SCRAPE_INTERVAL)
        .await
        .unwrap_or_else(|err| panic!("starting prometheus: {err:#}"));
    prometheus::promtool(&[
        "check",
        "config",
        &prometheus.config().display().to_string(),
    ])
    .unwrap_or_else(|err| panic!("the rendered scrape configuration: {err:#}"));
    let http = mesh.http();

    // Two bursts with scrapes between them, so that every counter the traffic creates
    // has an earlier sample and rates and quantiles have real values.
    let (email, password) = register(&mesh).await;
    log_in_read_me_and_fail_a_login(&mesh, &email, &password).await;
    prometheus
        .wait_two_scrapes(http, SCRAPE_INTERVAL, SCRAPE_TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    log_in_read_me_and_fail_a_login(&mesh, &email, &password).await;
    prometheus
        .wait_two_scrapes(http, SCRAPE_INTERVAL, SCRAPE_TIMEOUT)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));

    let mut failures = Vec::new();
    let expressions: Vec<Expression> = dashboard_expressions()
        .into_iter()
        .chain(rule_expressions())
        .collect();
    for Expression { origin, expr } in &expressions {
        if let Err(err) = prometheus.query(http, expr).await {
            failures.push(format!("{origin}: {err:#}\n    expr: {expr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} PromQL expressions fail on the real Prometheus:\n{}",
        failures.len(),
        expressions.len(),
        failures.join("\n")
    );

    for Expectation { expr, why, check } in expectations() {
        let prometheus = &prometheus;
        poll_until(
            &format!("data for `{expr}` ({why})"),
            DATA_TIMEOUT,
            || async move {
                let data = prometheus
                    .query(http, expr)
                    .await
                    .map_err(|err| format!("{err:#}"))?;
                check(&vector(&data)?)
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    }
}

/// The alerts against synthetic series (`promtool test rules`): each SLO burn-rate alert
/// fires when its budget burns as fast as its windows say, and stays silent within
/// budget, with no traffic, and after a burn has stopped; the mail-outbox alert fires
/// when mail has waited 15 minutes with none sent, not while a backlog drains. The cases
/// are in observability/prometheus/tests/, beside the rules.
#[test]
fn alerts_fire_when_they_should_and_stay_silent_otherwise() {
    check_rule_files();
    let dir = workspace_root().join(prometheus::RULE_TESTS_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no promtool rule tests in {}",
        dir.display()
    );
    for file in files {
        let output = prometheus::promtool(&["test", "rules", &file.display().to_string()])
            .unwrap_or_else(|err| panic!("{err:#}"));
        assert!(
            output.contains("SUCCESS"),
            "promtool test rules {}: {output}",
            file.display()
        );
    }
}

/// The datasource references of a panel list (targets and nested rows included).
fn datasource_references(panels: &Value, out: &mut Vec<(String, Value)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().into_iter().flatten();
        for reference in std::iter::once(&panel["datasource"])
            .chain(targets.map(|target| &target["datasource"]))
            .filter(|reference| !reference.is_null())
        {
            out.push((title.to_owned(), reference.clone()));
        }
        datasource_references(&panel["panels"], out);
    }
}

#[test]
fn grafana_provisioning_serves_the_datasource_every_dashboard_uses() {
    let provisioning = workspace_root().join("observability/grafana/provisioning");
    let read_yaml = |name: &str| -> Value {
        let path = provisioning.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
    };
    let datasources = read_yaml("datasource.yml");
    let prometheus = datasources["datasources"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["type"] == "prometheus"))
        .unwrap_or_else(|| {
            panic!("datasource.yml provisions no prometheus datasource: {datasources}")
        });
    let uid = prometheus["uid"].as_str().unwrap_or_else(|| {
        panic!("the provisioned prometheus datasource has no uid: {prometheus}")
    });
    let providers = read_yaml("dashboards.yml");
    assert!(
        providers["providers"].as_array().is_some_and(|all| all
            .iter()
            .any(|p| p["type"] == "file" && p["options"]["path"].is_string())),
        "dashboards.yml has no file provider loading the dashboards: {providers}"
    );

    let mut problems = Vec::new();
    let mut uids = std::collections::BTreeSet::new();
    for (name, dashboard) in dashboards() {
        if !uids.insert(dashboard["uid"].to_string()) {
            problems.push(format!("{name}: uid {} is used twice", dashboard["uid"]));
        }
        let mut references = Vec::new();
        datasource_references(&dashboard["panels"], &mut references);
        if references.is_empty() {
            problems.push(format!("{name}: no panel names a datasource"));
        }
        for (panel, reference) in references {
            if reference["uid"] != uid || reference["type"] != "prometheus" {
                problems.push(format!(
                    "{name}, panel {panel:?}: datasource {reference} is not the provisioned \
                     prometheus datasource (uid {uid})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "Grafana dashboards:\n  {}",
        problems.join("\n  ")
    );
}
