use std::sync::Arc;

use governor_core::*;
use governor_sqlite::{SCHEMA_VERSION, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let id = {
        let g = Governor::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .build()
            .unwrap();
        let a = g
            .action("persist")
            .policy(AuditPolicy::new().sensitive_fields(["ssn"]))
            .build()
            .unwrap();
        a.run(Args::new().arg("ssn", "123").arg("n", &1), || async {
            Ok::<_, GovernError>(2)
        })
        .await
        .unwrap();
        g.store().executions(&Default::default()).await.unwrap()[0].id
    };
    let reopened = SqliteStore::open(&path).await.unwrap();
    let e = reopened.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(e.inputs.value()["ssn"], REDACTED);
    assert_eq!(e.output.unwrap().value(), serde_json::json!(2));
    let audit = reopened.audit_entries(0, 10).await.unwrap();
    assert_eq!(verify_chain(&audit), Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_are_committed_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("g.db")).await.unwrap());
    let g = Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let action = Arc::new(g.action("burst").build().unwrap());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let action = Arc::clone(&action);
        tasks.push(tokio::spawn(async move {
            action
                .run(Args::new().arg("i", &i), || async move {
                    Ok::<_, GovernError>(i)
                })
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let done = store
        .executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Completed],
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), 200);
    let audit = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(verify_chain(&audit), Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_a_typed_error_and_the_action_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = SqliteStore::open_with(
        &path,
        governor_sqlite::SqliteOptions::new().busy_timeout(std::time::Duration::from_millis(100)),
    )
    .await
    .unwrap();
    // Another process holds the write lock.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let g = Governor::builder().store(store).build().unwrap();
    let action = g.action("pay").build().unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = Arc::clone(&ran);
    let err = action
        .run(Args::new(), || async move {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap_err();
    let GovernError::Store(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(e.to_string().contains("locked"), "{e}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    blocker.execute_batch("ROLLBACK").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_or_editing_an_audit_row_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    {
        let g = Governor::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .build()
            .unwrap();
        let a = g.action("pay").build().unwrap();
        for i in 0..4 {
            a.run(Args::new().arg("i", &i), || async {
                Ok::<_, GovernError>(())
            })
            .await
            .unwrap();
        }
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let entries = store.audit_entries(0, 10).await.unwrap();
    assert!(
        verify_chain(&entries).is_err(),
        "a deleted entry must be detected"
    );
    conn.execute(
        "UPDATE audit SET record = replace(record, 'pay', 'refund') WHERE seq = 3",
        [],
    )
    .unwrap();
    let entries = store.audit_entries(2, 10).await.unwrap();
    assert_eq!(verify_chain(&entries), Err(ChainError::Tampered { seq: 3 }));
}

#[derive(serde::Deserialize)]
struct Transfer {
    amount: f64,
}

fn transfer_action(g: &Governor) -> Action {
    g.action("large_wire_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(|t: Transfer| async move {
            Ok::<_, GovernError>(serde_json::json!({"sent": t.amount}))
        })
        .build()
        .unwrap()
}

async fn sqlite_governor(path: &std::path::Path) -> Governor {
    Governor::builder()
        .store(SqliteStore::open(path).await.unwrap())
        .build()
        .unwrap()
}

/// Makes the agent's $50,000 transfer, which is parked for the CFO.
async fn park_transfer(g: &Governor) -> ExecutionId {
    let err = transfer_action(g)
        .run(Args::new().arg("amount", &50_000.0), || async {
            Ok::<_, GovernError>(serde_json::json!(null))
        })
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    execution_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_survives_a_restart_and_completes_after_approval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    // The first process: the agent's call is parked and the process ends.
    let id = park_transfer(&sqlite_governor(&path).await).await;
    // Hours later, another process: the CFO approves and it completes.
    let g = sqlite_governor(&path).await;
    let _registered = transfer_action(&g);
    let cfo = Principal::new("carol").with_attribute("email", "cfo@company.com");
    g.approve(id, &cfo, Some("checked the invoice"))
        .await
        .unwrap();
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(
        done.output.unwrap().value(),
        serde_json::json!({"sent": 50000.0})
    );
    let audit = g.store().audit_entries(0, 100).await.unwrap();
    assert_eq!(verify_chain(&audit), Ok(3), "parked, approved, completed");
}

/// Redacted account numbers survive a restart sealed, and the approved
/// transfer runs with the real one; a sealed blob edited in the file is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_arguments_survive_a_restart_and_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let key = || governor_core::SealKey::from_bytes([5; 32]);
    let sealing = |path: std::path::PathBuf| async move {
        Governor::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .seal_key(key())
            .build()
            .unwrap()
    };
    let wire = |g: &Governor| {
        g.action("wire")
            .policy(governor_core::AuditPolicy::new().sensitive_fields(["iban"]))
            .policy(ApprovalPolicy::new(["cfo"]))
            .resumable(|v: serde_json::Value| async move {
                Ok::<_, GovernError>(serde_json::json!({"paid_to": v["iban"]}))
            })
            .build()
            .unwrap()
    };
    let park = |g: Governor| async move {
        let err = wire(&g)
            .run(
                Args::new().arg("iban", &"DE44500105175407324931"),
                || async { Ok::<_, GovernError>(serde_json::json!(null)) },
            )
            .await
            .unwrap_err();
        let GovernError::Pending { execution_id } = err else {
            panic!("{err:?}")
        };
        execution_id
    };
    let first = park(sealing(path.clone()).await).await;
    let second = park(sealing(path.clone()).await).await;
    let raw = rusqlite::Connection::open(&path).unwrap();
    let text: String = raw
        .query_row(
            "SELECT group_concat(approval, '') FROM executions",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !text.contains("DE44500105175407324931"),
        "plain IBAN in the file"
    );

    let g = sealing(path.clone()).await;
    wire(&g);
    for id in [first, second] {
        g.approve(id, &Principal::new("cfo"), None).await.unwrap();
    }
    // Swap the two sealed blobs in the file: each is bound to its own
    // execution and no longer opens.
    let sealed_of =
        |e: Option<governor_core::Execution>| e.unwrap().approval.unwrap().sealed_inputs.unwrap();
    let a = sealed_of(g.store().execution(first).await.unwrap());
    let b = sealed_of(g.store().execution(second).await.unwrap());
    raw.execute(
        "UPDATE executions SET approval = replace(approval, ?1, ?2)",
        [&a, &b],
    )
    .unwrap();
    let done = g.resume(second).await.unwrap();
    assert_eq!(
        done.output.unwrap().value(),
        serde_json::json!({"paid_to": "DE44500105175407324931"})
    );
    let refused = g.resume(first).await.unwrap_err();
    assert!(
        matches!(refused, governor_core::ResumeError::RedactedInputs { .. }),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_edited_in_the_database_after_approval_do_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let g = sqlite_governor(&path).await;
    let id = park_transfer(&g).await;
    let cfo = Principal::new("carol").with_attribute("email", "cfo@company.com");
    g.approve(id, &cfo, Some("50k is fine")).await.unwrap();
    // Someone with the database file raises the amount after approval.
    let changed = rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE executions SET inputs = '{\"amount\":5000000.0}' WHERE id = ?1",
            [id.as_uuid().as_bytes().as_slice()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let err = g.resume(id).await.unwrap_err();
    assert!(
        matches!(err, ResumeError::NotWhatWasApproved { .. }),
        "{err:?}"
    );
    let e = g.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(e.output.is_none(), "nothing ran");
    let audit = g.store().audit_entries(0, 100).await.unwrap();
    assert_eq!(
        verify_chain(&audit),
        Ok(3),
        "parked, approved (with the digest), refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_sees_a_decision_written_through_another_handle_of_the_file() {
    // Two store handles on one file share nothing in memory, like two
    // processes: the waiter can only learn of the decision from the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let here = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .build()
        .unwrap();
    let there = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .build()
        .unwrap();
    let action = here
        .action("deploy")
        .policy(ApprovalPolicy::new(["sre-lead"]).wait(std::time::Duration::from_secs(30)))
        .build()
        .unwrap();
    let caller = tokio::spawn(async move {
        action
            .run(Args::new().arg("service", "api"), || async {
                Ok::<_, GovernError>("deployed")
            })
            .await
    });
    let id = loop {
        let parked = there
            .store()
            .executions(&ExecutionQuery {
                statuses: vec![ExecutionStatus::AwaitingApproval],
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(e) = parked.first() {
            break e.id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    there
        .approve(id, &Principal::new("sre-lead"), None)
        .await
        .unwrap();
    assert_eq!(caller.await.unwrap().unwrap(), "deployed");
    assert_eq!(
        here.execution(id).await.unwrap().unwrap().status,
        ExecutionStatus::Completed
    );
}

/// Runs only as the child of `killing_a_waiting_process_loses_nothing`:
/// makes a call that waits for approval, and is killed while waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by killing_a_waiting_process_loses_nothing"]
async fn child_waiting_for_approval() {
    let Ok(path) = std::env::var("GOVERNOR_CHILD_DB") else {
        return;
    };
    let g = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .build()
        .unwrap();
    let action = transfer_action_waiting(&g);
    let _ = action
        .run(Args::new().arg("amount", &777.0), || async {
            Ok::<_, GovernError>(serde_json::json!("in place"))
        })
        .await;
}

fn transfer_action_waiting(g: &Governor) -> Action {
    g.action("large_wire_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(std::time::Duration::from_secs(600)))
        .resumable(|t: Transfer| async move {
            Ok::<_, GovernError>(serde_json::json!({"sent": t.amount}))
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_waiting_process_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    // Create the file first so parent and child agree on the schema.
    drop(SqliteStore::open(&path).await.unwrap());
    let mut child = spawn_child("durability::child_waiting_for_approval", &path);
    let here = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .build()
        .unwrap();
    let id = loop {
        let parked = here
            .store()
            .executions(&ExecutionQuery {
                statuses: vec![ExecutionStatus::AwaitingApproval],
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(e) = parked.first() {
            break e.id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited before parking its call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL: no cleanup runs in the child.
    child.wait().unwrap();

    let _registered = transfer_action_waiting(&here);
    let cfo = Principal::new("carol").with_attribute("email", "cfo@company.com");
    here.approve(id, &cfo, None).await.unwrap();
    let done = here.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(
        done.output.unwrap().value(),
        serde_json::json!({"sent": 777.0})
    );
    assert!(
        matches!(here.resume(id).await, Err(ResumeError::NotApproved { .. })),
        "completed exactly once"
    );
}

fn worker_action(g: &Governor, takes: std::time::Duration) -> Action {
    g.action("long_transfer")
        .policy(ApprovalPolicy::new(["cfo@company.com"]))
        .resumable(move |t: Transfer| async move {
            tokio::time::sleep(takes).await;
            Ok::<_, GovernError>(serde_json::json!({"sent": t.amount}))
        })
        .build()
        .unwrap()
}

/// Runs only as the child of `killing_a_worker_mid_run_loses_nothing`: a
/// resume worker whose action takes a minute, killed while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by killing_a_worker_mid_run_loses_nothing"]
async fn child_worker_mid_run() {
    let Ok(path) = std::env::var("GOVERNOR_CHILD_DB") else {
        return;
    };
    let g = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .resume_lease(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let _action = worker_action(&g, std::time::Duration::from_secs(60));
    let _ = g.resume_approved("child-worker", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let here = Governor::builder()
        .store(SqliteStore::open(&path).await.unwrap())
        .resume_lease(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let action = worker_action(&here, std::time::Duration::ZERO);
    let id = match action
        .run(Args::new().arg("amount", &42.0), || async {
            Ok::<_, GovernError>(serde_json::json!(0))
        })
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("{other:?}"),
    };
    here.approve(
        id,
        &Principal::new("carol").with_attribute("email", "cfo@company.com"),
        None,
    )
    .await
    .unwrap();

    let mut child = spawn_child("durability::child_worker_mid_run", &path);
    loop {
        let e = here.execution(id).await.unwrap().unwrap();
        if e.status == ExecutionStatus::Running {
            assert_ne!(
                e.lease.as_ref().map(|l| l.owner.as_str()),
                Some(here.instance())
            );
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited before running the action"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL mid-run: the lease is no longer renewed.
    child.wait().unwrap();

    let mut taken = 0;
    for _ in 0..200 {
        taken += here.take_over_abandoned(10).await.unwrap();
        if taken > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(taken, 1, "the dead worker's run was taken over");
    let e = here.execution(id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(e.output.unwrap().value(), serde_json::json!({"sent": 42.0}));
    assert_eq!(
        here.take_over_abandoned(10).await.unwrap(),
        0,
        "completed exactly once"
    );
}

/// Runs one of this binary's ignored `child_*` tests as a separate process
/// working on the SQLite file at `path`.
fn spawn_child(test: &str, path: &std::path::Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test])
        .env("GOVERNOR_CHILD_DB", path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A watcher learns of commits made through another connection to the
/// file (another process, here another handle) without waiting for its
/// next re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_of_commits_made_by_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let here = SqliteStore::open(&path).await.unwrap();
    let elsewhere = SqliteStore::open(&path).await.unwrap();
    let mut rx = governor_core::Store::watch(&here);
    // Let the watcher take its first reading.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let e = governor_core::Execution::new(
        "pay".into(),
        std::sync::Arc::new(Principal::new("p")),
        governor_core::Json::null(),
    );
    governor_core::Store::create(&elsewhere, &governor_core::Creation::new(e))
        .await
        .unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if rx.recv().await.unwrap().is_elsewhere() {
                return;
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "no change announced from the other connection"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let g = Governor::builder().store(store).build().unwrap();
    let a = g.action("write").build().unwrap();
    a.run(Args::new().arg("n", &1), || async {
        Ok::<_, GovernError>(1)
    })
    .await
    .unwrap();
    for name in ["private.db", "private.db-wal", "private.db-shm"] {
        let file = dir.path().join(name);
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
}
