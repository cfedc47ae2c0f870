//! Auth in a mesh sends its mail to the mesh's SMTP server: a message in Auth's outbox
//! arrives in the maildir with its recipient, subject and link, and is recorded as sent.

use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};

#[tokio::test]
async fn auth_delivers_its_outbox_to_the_mesh_smtp_server() -> anyhow::Result<()> {
    let mesh = Mesh::builder().service(ServiceKind::Auth).start().await?;
    let pg = mesh.postgres().expect("the mesh runs postgres for auth");
    // As Auth's runtime role, in its schema: what a flow's transaction writes.
    pg.psql_as(
        "auth_svc",
        "bulwark",
        "INSERT INTO auth.mail_outbox (id, kind, recipient, subject, body) VALUES \
         ('0190e0c2-0000-7000-8000-000000000001', 'password_reset', 'grace@example.com', \
          'Reset your password', \
          'open http://127.0.0.1:1/reset-password?token=e2e%2Btoken')",
    )?;

    let message = mesh
        .mail()
        .wait_for("grace@example.com", Duration::from_secs(20))
        .await?;
    assert_eq!(message.subject(), Some("Reset your password"));
    assert_eq!(message.token()?, "e2e+token");
    assert!(
        message
            .from()
            .is_some_and(|from| from.contains("@bulwark.local")),
        "From: {:?}",
        message.from()
    );
    // The relay records the send just after the server took the message.
    poll_until(
        "the outbox row sent, its body blanked, on the first attempt",
        Duration::from_secs(10),
        || async {
            let row = pg
                .psql(
                    "bulwark",
                    "SELECT sent_at IS NOT NULL, body = '', attempts FROM auth.mail_outbox",
                )
                .map_err(|e| format!("{e:#}"))?;
            if row == "t|t|0" {
                Ok(())
            } else {
                Err(format!("row (sent, blank, attempts) = {row}"))
            }
        },
    )
    .await
}
