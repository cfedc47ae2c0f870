//! Liveness and readiness of the services, with their dependencies up and down, and a
//! service that must not start at all (the default admin password outside `local`).

use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use serde_json::Value;

/// GETs an admin path; returns the status and the body parsed as JSON (Null if not JSON).
async fn admin_get(mesh: &Mesh, kind: ServiceKind, path: &str) -> Result<(u16, Value), String> {
    let response = mesh
        .http()
        .get(mesh.service(kind).admin_url(path))
        .send()
        .await
        .map_err(|err| format!("GET {path} on {}: {err}", kind.name()))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|err| err.to_string())?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn check<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_ready_answer_200_on_every_service() {
    let mesh = Mesh::builder()
        .all_services()
        .start()
        .await
        .expect("starting the mesh");
    for kind in ServiceKind::ALL {
        let (status, body) = admin_get(&mesh, kind, "/healthz")
            .await
            .expect("calling /healthz");
        assert_eq!(
            status,
            200,
            "{} /healthz answered {status}: {body}",
            kind.name()
        );

        let (status, report) = admin_get(&mesh, kind, "/ready")
            .await
            .expect("calling /ready");
        assert_eq!(
            status,
            200,
            "{} /ready answered {status}: {report}",
            kind.name()
        );
        assert_eq!(
            report["ready"],
            true,
            "{} /ready body says not ready: {report}",
            kind.name()
        );
        for dependency in ["postgres", "redis"] {
            let outcome = check(&report, dependency).unwrap_or_else(|| {
                panic!(
                    "{} /ready does not list a {dependency} check: {report}",
                    kind.name()
                )
            });
            assert_eq!(
                outcome["ok"],
                true,
                "{} /ready: {dependency} check failed: {report}",
                kind.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_postgres_is_down_and_recovers() {
    let mut mesh = Mesh::builder()
        .service(ServiceKind::Identity)
        .start()
        .await
        .expect("starting identity");
    let pid = mesh.service(ServiceKind::Identity).pid();

    mesh.stop_postgres().expect("stopping postgres");
    let report = poll_until(
        "identity /ready = 503 with postgres down",
        Duration::from_secs(10),
        || async {
            match admin_get(&mesh, ServiceKind::Identity, "/ready").await? {
                (503, report) => Ok(report),
                (status, report) => Err(format!("answered {status}: {report}")),
            }
        },
    )
    .await
    .expect("identity kept saying ready while its database was down");
    let postgres = check(&report, "postgres")
        .unwrap_or_else(|| panic!("503 body does not name postgres: {report}"));
    assert_eq!(
        postgres["ok"], false,
        "503 body does not mark postgres as failing: {report}"
    );
    let (status, _) = admin_get(&mesh, ServiceKind::Identity, "/healthz")
        .await
        .expect("calling /healthz");
    assert_eq!(
        status, 200,
        "liveness must not depend on the database, /healthz answered {status}"
    );

    mesh.start_postgres()
        .await
        .expect("starting postgres again");
    poll_until(
        "identity /ready = 200 after postgres is back",
        Duration::from_secs(30),
        || async {
            match admin_get(&mesh, ServiceKind::Identity, "/ready").await? {
                (200, _) => Ok(()),
                (status, report) => Err(format!("answered {status}: {report}")),
            }
        },
    )
    .await
    .expect("identity did not recover once postgres was back");

    let identity = mesh.service_mut(ServiceKind::Identity);
    identity
        .ensure_running()
        .expect("identity must survive a database outage");
    assert_eq!(
        identity.pid(),
        pid,
        "identity was restarted; it must recover in the same process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_refuses_the_default_admin_password_outside_local() {
    // The harness sets no admin password: Identity would create the admin with the
    // documented default.
    let refused = Mesh::builder()
        .service(ServiceKind::Identity)
        .service_env(
            ServiceKind::Identity,
            "BULWARK_SERVICE__ENVIRONMENT",
            "production",
        )
        .start()
        .await
        .err()
        .map(|error| format!("{error:#}"))
        .unwrap_or_else(|| {
            panic!("identity started in production with the default admin password")
        });
    // A configuration error: status 2, the message naming the setting and the fix.
    for expected in [
        "identity exited (exit status: 2)",
        "configuration key `admin_password` is invalid",
        "service.environment",
        "`production`",
        "set BULWARK_ADMIN_PASSWORD",
    ] {
        assert!(
            refused.contains(expected),
            "{expected:?} is not in the start error:\n{refused}"
        );
    }

    // The same environment with a password of the operator's own starts and is ready.
    Mesh::builder()
        .service(ServiceKind::Identity)
        .service_env(
            ServiceKind::Identity,
            "BULWARK_SERVICE__ENVIRONMENT",
            "production",
        )
        .service_env(
            ServiceKind::Identity,
            "BULWARK_ADMIN_PASSWORD",
            "an admin password of our own",
        )
        .start()
        .await
        .expect("identity in production with its own admin password");
}
