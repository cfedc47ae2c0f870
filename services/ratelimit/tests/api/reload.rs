//! Hot reload: a changed limit file applies without a restart; a broken one keeps the
//! limits in force and is reported.

use std::time::Duration;

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;

use crate::support::{Service, descriptor, eventually, request, unique_domain};

fn per_hour(domain: &str, requests: u32) -> String {
    format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: hour, requests_per_unit: {requests} }}\n"
    )
}

#[tokio::test]
async fn a_changed_limit_file_applies_without_restart() {
    let domain = unique_domain("reload");
    let service = Service::start(&per_hour(&domain, 1)).await;
    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    assert_eq!(ask().await.overall_code(), Code::Ok);
    assert_eq!(
        ask().await.overall_code(),
        Code::OverLimit,
        "1/hour let a second request through"
    );

    service.limits.write(&per_hour(&domain, 5));
    let applied = eventually(Duration::from_secs(5), || async {
        let response = ask().await;
        response.overall_code() == Code::Ok
            && response.statuses[0]
                .current_limit
                .as_ref()
                .is_some_and(|limit| limit.requests_per_unit == 5)
    })
    .await;
    assert!(
        applied,
        "the raised limit was not applied within 5 s of the file changing"
    );
}

#[tokio::test]
async fn a_broken_limit_file_keeps_the_previous_limits_and_is_reported() {
    let domain = unique_domain("broken");
    let service = Service::start(&per_hour(&domain, 3)).await;
    let path = service.limits.path.display().to_string();
    service.limits.write(&format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: weeks, requests_per_unit: 3 }}\n"
    ));
    let reported = eventually(Duration::from_secs(5), || async {
        service
            .metric_lines(&path)
            .await
            .iter()
            .any(|l| l.starts_with("ratelimit_config_file_valid") && l.ends_with(" 0"))
    })
    .await;
    assert!(
        reported,
        "the refused file was not reported (ratelimit_config_file_valid{{path}} 0):\n{}",
        service.metric_lines(&path).await.join("\n")
    );
    assert!(
        service.metric_lines(&path).await.iter().any(|l| {
            l.starts_with("ratelimit_config_reloads_total") && l.contains("outcome=\"error\"")
        }),
        "the refused reload was not counted"
    );

    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    for i in 0..3 {
        let response = ask().await;
        assert_eq!(
            response.overall_code(),
            Code::Ok,
            "request {i} refused: limits dropped?"
        );
        assert_eq!(
            response.statuses[0]
                .current_limit
                .as_ref()
                .map(|l| l.requests_per_unit),
            Some(3),
            "the previous limit is not in force"
        );
    }
    assert_eq!(
        ask().await.overall_code(),
        Code::OverLimit,
        "limits were dropped with the broken file"
    );

    service.limits.write(&per_hour(&domain, 10));
    let recovered = eventually(Duration::from_secs(5), || async {
        ask().await.overall_code() == Code::Ok
    })
    .await;
    assert!(
        recovered,
        "a fixed file was not picked up after a broken one"
    );
}
