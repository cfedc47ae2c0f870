//! Signed checkpoints: taken when the head moved, stored and written as files, listed
//! with their key; and `VerifyChain` against them: a log rewritten and re-hashed, or cut
//! short, by someone with the database's superuser rights is reported with the first
//! bad sequence, and forged or tampered checkpoints are refused.

use std::time::Duration;

use bulwark_audit::chain::{EventFields, GENESIS, link};
use bulwark_audit::checkpoint::CheckpointSigner;
use bulwark_audit::checkpoint_file::{self, file_name, to_json};
use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::audit::v1::{
    ChainProblem, Checkpoint, ListCheckpointsRequest, VerifyChainRequest, VerifyChainResponse,
};
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::support::{
    CHECKPOINT_SEED, Checkpointing, TestAudit, assert_status, event, events, stored, verify,
};

async fn append(audit: &TestAudit, from: i64, count: i64) {
    audit
        .append(
            (from..from + count)
                .map(|i| event("alice", "auth.login", i))
                .collect(),
        )
        .await;
}

/// Runs SQL as the database superuser.
async fn superuser(audit: &TestAudit, sql: &str) {
    audit
        .sql()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// What the schema's owner can do: switch the append-only trigger off, give event
/// `seq` another actor, and re-hash it and every later event so that the chain is
/// consistent again.
async fn rewrite_and_rehash(audit: &TestAudit, seq: i64) {
    let rows = stored(audit).await;
    let start = rows
        .iter()
        .position(|row| row.0 == seq)
        .unwrap_or_else(|| panic!("no event {seq}"));
    let mut prev = match start {
        0 => GENESIS.to_vec(),
        _ => rows[start - 1].11.clone(),
    };
    let mut sql = audit.sql().await;
    sql.batch_execute("ALTER TABLE events DISABLE TRIGGER events_no_update")
        .await
        .unwrap_or_else(|e| panic!("disabling the trigger: {e}"));
    for row in &rows[start..] {
        let actor = if row.0 == seq { "mallory" } else { &row.4 };
        let hash = link(
            &prev,
            &EventFields {
                id: row.1,
                occurred_at: row.2,
                service: &row.3,
                actor_id: actor,
                action: &row.5,
                target: &row.6,
                outcome: &row.7,
                trace_id: &row.8,
                details: &row.9,
            },
        )
        .to_vec();
        diesel::update(events::table.filter(events::seq.eq(row.0)))
            .set((
                events::actor_id.eq(actor),
                events::prev_hash.eq(&prev),
                events::hash.eq(&hash),
            ))
            .execute(&mut sql)
            .await
            .unwrap_or_else(|e| panic!("rewriting event {}: {e}", row.0));
        prev = hash;
    }
    sql.batch_execute("ALTER TABLE events ENABLE TRIGGER events_no_update")
        .await
        .unwrap_or_else(|e| panic!("enabling the trigger: {e}"));
}

/// Deletes the events after `seq`, going around the trigger as the owner can.
async fn truncate_after(audit: &TestAudit, seq: i64) {
    superuser(
        audit,
        &format!(
            "ALTER TABLE events DISABLE TRIGGER events_no_update; \
             DELETE FROM events WHERE seq > {seq}; \
             ALTER TABLE events ENABLE TRIGGER events_no_update;"
        ),
    )
    .await;
}

/// Removes every checkpoint Audit keeps: the rows and the files.
async fn erase_local_checkpoints(audit: &TestAudit) {
    superuser(
        audit,
        "ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_no_update; \
         DELETE FROM checkpoints; \
         ALTER TABLE checkpoints ENABLE TRIGGER checkpoints_no_update;",
    )
    .await;
    for file in checkpoint_files(audit) {
        std::fs::remove_file(audit.checkpoint_dir.path().join(file))
            .unwrap_or_else(|e| panic!("removing a checkpoint file: {e}"));
    }
}

/// The names in the checkpoint directory, sorted.
fn checkpoint_files(audit: &TestAudit) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(audit.checkpoint_dir.path())
        .unwrap_or_else(|e| panic!("reading the checkpoint directory: {e}"))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn problem(report: &VerifyChainResponse) -> ChainProblem {
    ChainProblem::try_from(report.problem).unwrap_or_else(|_| panic!("unknown problem {report:?}"))
}

/// The chain part of a report: problem, first bad, last good, head, events checked.
fn summary(report: &VerifyChainResponse) -> (ChainProblem, i64, i64, i64, i64) {
    (
        problem(report),
        report.first_bad_sequence,
        report.last_good_sequence,
        report.head_sequence,
        report.events_checked,
    )
}

#[tokio::test]
async fn a_checkpoint_is_signed_only_when_the_head_moved() {
    let audit = TestAudit::start().await;
    assert_eq!(
        audit.checkpoint().await,
        None,
        "an empty log was checkpointed"
    );
    append(&audit, 0, 3).await;
    let first = audit
        .checkpoint()
        .await
        .unwrap_or_else(|| panic!("no checkpoint of a new head"));
    assert_eq!(first.sequence, 3);
    assert_eq!(
        first.hash.to_vec(),
        stored(&audit).await[2].11,
        "not the head's hash"
    );
    assert_eq!(
        audit.checkpoint().await,
        None,
        "an unchanged head signed twice"
    );
    append(&audit, 3, 1).await;
    let second = audit.checkpoint().await.map(|c| c.sequence);
    assert_eq!(second, Some(4));
    audit.stop().await;
}

#[tokio::test]
async fn checkpoints_are_listed_newest_first_with_their_key_and_written_as_files() {
    let audit = TestAudit::start().await;
    let mut taken = Vec::new();
    for round in 0..3 {
        append(&audit, round * 2, 2).await;
        taken.push(
            audit
                .checkpoint()
                .await
                .unwrap_or_else(|| panic!("round {round}")),
        );
    }
    let first = audit.list_checkpoints(2, "").await;
    assert!(
        !first.next_page_token.is_empty(),
        "no token after a full page"
    );
    let second = audit.list_checkpoints(2, &first.next_page_token).await;
    assert!(
        second.next_page_token.is_empty(),
        "token after the last page"
    );
    let listed: Vec<Checkpoint> = first
        .checkpoints
        .into_iter()
        .chain(second.checkpoints)
        .collect();
    let expected: Vec<Checkpoint> = taken
        .iter()
        .rev()
        .map(checkpoint_file::to_message)
        .collect();
    assert_eq!(listed, expected, "not every checkpoint, newest first");

    let signer = CheckpointSigner::from_seed(&CHECKPOINT_SEED);
    assert_eq!(first.keys.len(), 1, "keys: {:?}", first.keys);
    assert_eq!(first.keys[0].key_id, signer.key_id());
    assert_eq!(first.keys[0].public_key, signer.public_key().as_bytes());
    assert!(first.keys[0].current);
    assert!(listed.iter().all(|c| c.key_id == signer.key_id()));

    // One file per checkpoint, holding the checkpoint as the API shows it.
    let names: Vec<String> = taken.iter().map(file_name).collect();
    assert_eq!(checkpoint_files(&audit), names);
    for checkpoint in &taken {
        let path = audit.checkpoint_dir.path().join(file_name(checkpoint));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, to_json(checkpoint), "{}", path.display());
    }
    audit.stop().await;
}

#[tokio::test]
async fn a_rewritten_and_rehashed_chain_is_reported_with_the_first_bad_sequence() {
    let audit = TestAudit::start().await;
    append(&audit, 0, 4).await;
    audit.checkpoint().await;
    append(&audit, 4, 6).await;
    audit.checkpoint().await;
    let intact = verify(&audit).await;
    assert!(intact.ok, "intact log reported: {intact:?}");
    assert_eq!(summary(&intact), (ChainProblem::None, 0, 10, 10, 10));
    // The same two checkpoints, each in the table and as a file.
    assert_eq!(intact.checkpoints_checked, 2);

    rewrite_and_rehash(&audit, 7).await;
    let report = verify(&audit).await;
    assert!(!report.ok, "a rewritten log passed: {report:?}");
    // Event 7 was rewritten: the checkpoint at 4 still holds, the one at 10 does not.
    assert_eq!(
        summary(&report),
        (ChainProblem::Rewritten, 10, 4, 10, 10),
        "{report:?}"
    );
    assert!(report.first_broken_event_id.is_empty());
    assert!(report.invalid_checkpoints.is_empty(), "{report:?}");
    audit.stop().await;
}

#[tokio::test]
async fn checkpoints_kept_elsewhere_catch_a_rewrite_whose_local_checkpoints_were_erased() {
    let audit = TestAudit::start().await;
    append(&audit, 0, 5).await;
    audit.checkpoint().await;
    // The operator ships the checkpoints off the box.
    let kept = audit.list_checkpoints(0, "").await.checkpoints;

    rewrite_and_rehash(&audit, 2).await;
    erase_local_checkpoints(&audit).await;
    let unaware = verify(&audit).await;
    assert!(
        unaware.ok && unaware.checkpoints_checked == 0,
        "with nothing to compare against, a consistent chain is all Audit can see: {unaware:?}"
    );
    let report = audit.verify_with(kept).await;
    assert_eq!(
        summary(&report),
        (ChainProblem::Rewritten, 5, 0, 5, 5),
        "{report:?}"
    );
    assert!(!report.ok);
    audit.stop().await;
}

#[tokio::test]
async fn deleting_the_newest_events_is_reported_as_a_truncation() {
    let audit = TestAudit::start().await;
    append(&audit, 0, 5).await;
    audit.checkpoint().await;
    append(&audit, 5, 5).await;
    audit.checkpoint().await;

    truncate_after(&audit, 7).await;
    let report = verify(&audit).await;
    assert!(!report.ok, "a truncated log passed: {report:?}");
    // The chain is intact up to its new head 7; the checkpoint at 10 is past it.
    assert_eq!(
        summary(&report),
        (ChainProblem::Truncated, 10, 5, 7, 7),
        "{report:?}"
    );

    truncate_after(&audit, 0).await;
    let emptied = verify(&audit).await;
    assert_eq!(
        summary(&emptied),
        (ChainProblem::Truncated, 5, 0, 0, 0),
        "an emptied log: {emptied:?}"
    );
    audit.stop().await;
}

#[tokio::test]
async fn forged_tampered_and_unreadable_checkpoints_are_reported() {
    let audit = TestAudit::start().await;
    append(&audit, 0, 3).await;
    let genuine = audit
        .checkpoint()
        .await
        .unwrap_or_else(|| panic!("no checkpoint"));
    let dir = audit.checkpoint_dir.path();

    // The file of the genuine checkpoint, edited to vouch for another hash.
    let path = dir.join(file_name(&genuine));
    let mut tampered = genuine.clone();
    tampered.hash = [0xaa; 32];
    std::fs::write(&path, to_json(&tampered)).unwrap_or_else(|e| panic!("{e}"));
    // A checkpoint signed with a key of the forger's own, under the genuine key's id.
    let forger = CheckpointSigner::from_seed(&[9; 32]);
    let mut forged = forger.sign(3, [0xbb; 32], genuine.signed_at);
    forged.key_id = genuine.key_id.clone();
    std::fs::write(dir.join("checkpoint-forged.json"), to_json(&forged))
        .unwrap_or_else(|e| panic!("{e}"));
    // Signed under a key Audit does not know.
    let stranger = forger.sign(2, [0xcc; 32], genuine.signed_at);
    std::fs::write(dir.join("checkpoint-stranger.json"), to_json(&stranger))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("checkpoint-garbage.json"), "{not json")
        .unwrap_or_else(|e| panic!("{e}"));
    // Other files in the directory are not checkpoints and are left alone.
    std::fs::write(dir.join("README.txt"), "shipped nightly").unwrap_or_else(|e| panic!("{e}"));

    let mut in_request = checkpoint_file::to_message(&genuine);
    in_request.signature[10] ^= 1;
    let report = audit.verify_with(vec![in_request]).await;
    assert!(!report.ok, "forged checkpoints passed: {report:?}");
    // The chain itself matches the genuine checkpoint, still in the table.
    assert_eq!(summary(&report), (ChainProblem::None, 0, 3, 3, 3));
    let mut refused: Vec<(String, i64, String)> = report
        .invalid_checkpoints
        .iter()
        .map(|i| (i.source.clone(), i.sequence, i.reason.clone()))
        .collect();
    refused.sort();
    let signature = "signature does not verify".to_owned();
    let mut expected = vec![
        (
            format!("file {}", file_name(&genuine)),
            3,
            signature.clone(),
        ),
        (
            "file checkpoint-forged.json".to_owned(),
            3,
            signature.clone(),
        ),
        (
            "file checkpoint-stranger.json".to_owned(),
            2,
            format!("signed by an unknown key {:?}", forger.key_id()),
        ),
        ("request[0]".to_owned(), 3, signature),
    ];
    expected.sort();
    let garbage = refused
        .iter()
        .position(|(source, _, _)| source == "file checkpoint-garbage.json")
        .map(|index| refused.remove(index));
    assert!(
        garbage
            .is_some_and(|(_, sequence, reason)| sequence == 0
                && reason.starts_with("not a checkpoint's JSON")),
        "the unreadable file was not reported: {report:?}"
    );
    assert_eq!(refused, expected);
    audit.stop().await;
}

#[tokio::test]
async fn a_forged_checkpoint_cannot_make_a_rewrite_pass() {
    // The forger rewrites the log and signs a checkpoint of the new head with a key of
    // their own: refused, and the genuine checkpoint still reports the rewrite.
    let audit = TestAudit::start().await;
    append(&audit, 0, 4).await;
    let genuine = audit
        .checkpoint()
        .await
        .unwrap_or_else(|| panic!("no checkpoint"));
    rewrite_and_rehash(&audit, 1).await;
    let new_head: [u8; 32] = stored(&audit).await[3]
        .11
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("hash length"));
    let mut forged = CheckpointSigner::from_seed(&[9; 32]).sign(4, new_head, genuine.signed_at);
    forged.key_id = genuine.key_id;
    let report = audit
        .verify_with(vec![checkpoint_file::to_message(&forged)])
        .await;
    assert_eq!(problem(&report), ChainProblem::Rewritten, "{report:?}");
    assert_eq!(report.first_bad_sequence, 4);
    assert_eq!(report.invalid_checkpoints.len(), 1, "{report:?}");
    audit.stop().await;
}

#[tokio::test]
async fn checkpoints_are_taken_at_the_configured_interval() {
    let audit = TestAudit::start_with(Checkpointing::Every {
        interval_seconds: 1,
    })
    .await;
    append(&audit, 0, 2).await;
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = audit.list_checkpoints(0, "").await.checkpoints;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        listed.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        [2],
        "no checkpoint of the head within 5 s at a 1 s interval"
    );
    assert_eq!(checkpoint_files(&audit).len(), 1);
    audit.stop().await;
}

#[tokio::test]
async fn the_checkpoints_table_refuses_update_delete_and_truncate() {
    let audit = TestAudit::start().await;
    append(&audit, 0, 1).await;
    audit.checkpoint().await;
    let mut sql = audit.sql().await;
    for statement in [
        "UPDATE checkpoints SET sequence = 2",
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints",
    ] {
        let error = sql
            .batch_execute(statement)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("append-only"),
            "{statement} was not refused: {error:?}"
        );
    }
    audit.stop().await;
}

#[tokio::test]
async fn checkpoint_calls_need_audit_read_and_a_bounded_request() {
    let audit = TestAudit::start().await;
    let mut client = audit.client.clone();
    let anonymous = client
        .list_checkpoints(Request::new(ListCheckpointsRequest::default()))
        .await;
    assert_status(
        anonymous,
        Code::Unauthenticated,
        "missing or invalid bearer token",
        "no token",
    );
    let stranger = client
        .list_checkpoints(
            audit
                .tokens
                .request(Uuid::new_v4(), ListCheckpointsRequest::default()),
        )
        .await;
    assert_status(
        stranger,
        Code::PermissionDenied,
        "requires permission audit:read",
        "no audit:read",
    );
    let bad_token = client
        .list_checkpoints(audit.tokens.request(
            audit.reader,
            ListCheckpointsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_status(
        bad_token,
        Code::InvalidArgument,
        "page_token: ",
        "bad token",
    );
    let too_many = client
        .verify_chain(audit.tokens.request(
            audit.reader,
            VerifyChainRequest {
                checkpoints: vec![Checkpoint::default(); 1001],
            },
        ))
        .await;
    assert_status(
        too_many,
        Code::InvalidArgument,
        "checkpoints: must hold at most 1000",
        "1001 checkpoints",
    );
    audit.stop().await;
}

#[tokio::test]
async fn without_a_key_the_chain_alone_is_verified_and_checkpoint_calls_fail() {
    let audit = TestAudit::start_with(Checkpointing::Off).await;
    append(&audit, 0, 3).await;
    let report = verify(&audit).await;
    assert!(report.ok && report.events_checked == 3, "{report:?}");
    let mut client = audit.client.clone();
    let listed = client
        .list_checkpoints(
            audit
                .tokens
                .request(audit.reader, ListCheckpointsRequest::default()),
        )
        .await;
    assert_status(
        listed,
        Code::FailedPrecondition,
        "checkpoints are not configured",
        "list without a key",
    );
    let kept = CheckpointSigner::from_seed(&CHECKPOINT_SEED).sign(3, [1; 32], chrono::Utc::now());
    let verified = client
        .verify_chain(audit.tokens.request(
            audit.reader,
            VerifyChainRequest {
                checkpoints: vec![checkpoint_file::to_message(&kept)],
            },
        ))
        .await;
    assert_status(
        verified,
        Code::FailedPrecondition,
        "checkpoints are not configured",
        "verify with checkpoints without a key",
    );
    assert!(
        checkpoint_files(&audit).is_empty(),
        "files written without a key"
    );
    audit.stop().await;
}
