//! Start-up refuses what would only fail later, with a message saying what to fix.

use crate::support::{LimitsFile, redis_url, try_start};

fn start_error(result: anyhow::Result<bulwark_kernel::Running>) -> String {
    match result {
        Ok(_) => panic!("the service started with a bad configuration"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_bad_limit_file_stops_the_start_naming_file_and_field() {
    let limits = LimitsFile::new(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n  - key: b\n    rate_limit: { unit: weeks, requests_per_unit: 1 }\n",
    );
    let message = start_error(try_start(Some(&redis_url()), Some(&limits.path), &[]).await);
    let expected = format!(
        "{}: descriptors[1].rate_limit.unit: unknown unit \"weeks\"",
        limits.path.display()
    );
    assert!(
        message.contains(&expected),
        "expected {expected:?} in {message:?}"
    );
}

#[tokio::test]
async fn a_missing_redis_url_stops_the_start() {
    let limits = LimitsFile::new("domain: d\n");
    let message = start_error(try_start(None, Some(&limits.path), &[]).await);
    assert!(
        message.contains("redis.url") && message.contains("BULWARK_REDIS__URL"),
        "message does not say how to set Redis: {message:?}"
    );
}

#[tokio::test]
async fn a_missing_limit_path_stops_the_start() {
    let message = start_error(try_start(Some(&redis_url()), None, &[]).await);
    assert!(
        message.contains("ratelimit.config_path")
            && message.contains("BULWARK_RATELIMIT__CONFIG_PATH"),
        "message does not say how to set the limit file: {message:?}"
    );
}

#[tokio::test]
async fn a_directory_holds_one_domain_per_file_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::write(dir.path().join("a.yaml"), "domain: a\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("b.yml"), "domain: a\n").unwrap_or_else(|e| panic!("{e}"));
    let message = start_error(try_start(Some(&redis_url()), Some(dir.path()), &[]).await);
    assert!(
        message.contains("domain \"a\" is already configured in"),
        "two files for one domain accepted: {message:?}"
    );
    std::fs::write(dir.path().join("b.yml"), "domain: b\n").unwrap_or_else(|e| panic!("{e}"));
    let running = try_start(Some(&redis_url()), Some(dir.path()), &[])
        .await
        .unwrap_or_else(|e| panic!("a directory of two domains refused: {e:#}"));
    running.shutdown().await;
}

#[tokio::test]
async fn bad_lease_settings_stop_the_start_naming_the_key() {
    let limits = LimitsFile::new("domain: d\n");
    for (key, value, rule) in [
        (
            "min_rate_per_second",
            serde_json::json!(-1.0),
            "must be a finite number of at least 0",
        ),
        (
            "lease_seconds",
            serde_json::json!(0),
            "must be a finite number greater than 0",
        ),
        (
            "valid_for_ms",
            serde_json::json!(0),
            "must be greater than 0",
        ),
        ("max_items", serde_json::json!(0), "must be 1 to 1024"),
        ("max_items", serde_json::json!(5000), "must be 1 to 1024"),
    ] {
        let setting = format!("ratelimit.lease.{key}");
        let message = start_error(
            try_start(
                Some(&redis_url()),
                Some(&limits.path),
                &[(setting.as_str(), value.clone())],
            )
            .await,
        );
        let variable = format!("BULWARK_RATELIMIT__LEASE__{}", key.to_ascii_uppercase());
        assert!(
            message.contains(&format!("configuration key `{setting}` {rule}"))
                && message.contains(&variable),
            "{setting} = {value}: the message does not name the key, the rule and \
             {variable}: {message:?}"
        );
    }
}
