//! End-to-end tests of the `governor` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn governor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_governor"))
        .args(args)
        .env_remove("GOVERNOR_DB")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn seed(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/policies")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn demo_then_inspect_then_detect_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let db = db.to_str().unwrap();

    let demo = governor(&["demo", "--db", db]);
    assert!(demo.status.success(), "{demo:?}");
    let text = stdout(&demo);
    for needle in [
        "completed",
        "PENDING",
        "DENIED",
        "RATE LIMITED",
        "12 executions recorded",
    ] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }

    let list = governor(&["executions", "list", "--db", db, "--json"]);
    assert!(list.status.success());
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 12);
    assert!(stdout(&governor(&["executions", "list", "--db", db])).contains("wire_transfer"));

    let pending = governor(&[
        "executions",
        "list",
        "--db",
        db,
        "--status",
        "awaiting_approval",
        "--json",
    ]);
    let pending: serde_json::Value = serde_json::from_slice(&pending.stdout).unwrap();
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let show = governor(&["executions", "show", &id, "--db", db, "--json"]);
    assert!(show.status.success());
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(show["execution"]["id"], id.as_str());
    assert_eq!(
        show["execution"]["inputs"]["account_number"],
        "***REDACTED***"
    );
    assert!(
        show["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "approval.requested")
    );
    let human = stdout(&governor(&["executions", "show", &id, "--db", db]));
    assert!(
        human.contains("approval   stage 1: LargeTransferApproval"),
        "{human}"
    );

    let ok = governor(&["audit", "verify", "--db", db]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("12 entries verified"));

    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE audit SET record = replace(record, 'agent-7', 'mallory') WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let bad = governor(&["audit", "verify", "--db", db, "--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let bad: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("entry 2"));
}

#[test]
fn policy_check_accepts_the_seed_files_and_rejects_mistakes_with_positions() {
    let files: Vec<String> = [
        "governance.yaml",
        "governance.json",
        "production.yaml",
        "development.yaml",
    ]
    .iter()
    .map(|f| seed(f))
    .collect();
    let mut args = vec!["policy", "check"];
    args.extend(files.iter().map(String::as_str));
    let ok = governor(&args);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("LargeTransactionApproval"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "policies:\n  - type: audit\n    phase: later\n").unwrap();
    let out = governor(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:5") && err.contains("unknown phase `later`"),
        "{err}"
    );

    let json = governor(&["policy", "check", bad.to_str().unwrap(), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc[0]["line"], 3);
}

#[test]
fn a_missing_database_is_a_clear_error() {
    let out = governor(&["executions", "list", "--db", "/nonexistent/governor.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no governor database at `/nonexistent/governor.db`")
    );
}

#[test]
fn pause_list_and_lift_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pause.db");
    let db = db.to_str().unwrap();
    assert!(governor(&["demo", "--db", db]).status.success());

    let paused = governor(&[
        "pause",
        "--db",
        db,
        "--action",
        "wire_transfer",
        "--mode",
        "hold",
        "--reason",
        "incident 42",
        "--as",
        "sre-on-call",
    ]);
    assert!(paused.status.success(), "{paused:?}");
    assert!(stdout(&paused).contains("paused wire_transfer"));

    let list = governor(&["pauses", "--db", db, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["action"], "wire_transfer");
    assert_eq!(list[0]["mode"], "hold");
    assert_eq!(list[0]["by"], "sre-on-call");
    assert!(stdout(&governor(&["pauses", "--db", db])).contains("incident 42"));

    let lift = [
        "lift",
        "--db",
        db,
        "--action",
        "wire_transfer",
        "--reason",
        "fixed",
        "--as",
        "sre-on-call",
    ];
    assert!(governor(&lift).status.success());
    assert_eq!(
        governor(&lift).status.code(),
        Some(1),
        "nothing left to lift"
    );

    let ops = governor(&[
        "executions",
        "list",
        "--db",
        db,
        "--action",
        "governor.pause",
        "--json",
    ]);
    let ops: serde_json::Value = serde_json::from_slice(&ops.stdout).unwrap();
    assert_eq!(
        ops.as_array().unwrap().len(),
        1,
        "the pause is a recorded execution"
    );
    let verify = governor(&["audit", "verify", "--db", db]);
    assert!(verify.status.success(), "{verify:?}");
}
