//! End-to-end tests of the `governor` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod multi_instance;
mod slack_serve;

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

/// The original's own policy file `name`, taken unchanged from its sdist
/// on PyPI by `scripts/seed-policies.sh` (fetched once, then cached).
fn seed(name: &str) -> String {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/seed-policies.sh");
        let out = Command::new("bash").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    });
    format!("{dir}/{name}")
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
    // The demo masks account numbers: only the last four stay visible.
    let account = show["execution"]["inputs"]["account_number"]
        .as_str()
        .unwrap();
    assert!(
        account.starts_with("***REDACTED***") && account.len() == "***REDACTED***".len() + 4,
        "{account}"
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
        "financial-services.yaml",
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
fn policy_check_shows_selectors_and_explain_gives_each_decision() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payments.yaml");
    std::fs::write(
        &file,
        "environment: production\npolicies:\n  - type: authorization\n    name: FinanceOnly\n    actions: [\"payments.*\"]\n    required_roles: [finance]\n  - type: approval\n    name: LargePayments\n    actions: [\"payments.*\"]\n    approvers: [cfo@company.com]\n    when: input.amount > 10000\n  - type: rate_limit\n    name: Limit\n    max_calls: 10\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = governor(&[
        "policy",
        "check",
        f,
        "--action",
        "payments.refund",
        "--action",
        "deploy",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("governs payments.* when input.amount > 10000"),
        "{text}"
    );
    assert!(
        text.contains("action payments.refund: FinanceOnly, LargePayments, Limit"),
        "{text}"
    );
    assert!(text.contains("action deploy: Limit"), "{text}");
    let out = governor(&["policy", "check", f, "--action", "deploy", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["actions"]["deploy"], serde_json::json!(["Limit"]));
    assert_eq!(
        doc[0]["policies"][0]["actions"],
        serde_json::json!(["payments.*"])
    );

    let explain = |input: &str, principal: &str| {
        let out = governor(&[
            "policy",
            "explain",
            f,
            "--action",
            "payments.transfer",
            "--input",
            input,
            "--principal",
            principal,
            "--json",
        ]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let big = explain(
        r#"{"amount": 50000}"#,
        r#"{"id": "ann", "roles": ["finance"]}"#,
    );
    assert_eq!(big["verdict"], "needs approval");
    assert_eq!(big["policies"][1]["outcome"], "require_approval");
    let small = explain(r#"{"amount": 5}"#, r#"{"id": "bob"}"#);
    assert_eq!(small["verdict"], "denied");
    assert!(
        small["policies"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("lacks required roles")
    );
    assert_eq!(small["policies"][1]["outcome"], "skipped");
    let human = governor(&["policy", "explain", f, "--action", "deploy"]);
    let text = stdout(&human);
    assert!(text.contains("deploy in production: allowed"), "{text}");
    assert!(
        text.contains("not applicable: governs payments.*"),
        "{text}"
    );
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

/// One HTTP/1.1 request over a plain socket; the status code and body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_body(addr, method, path, token, "")
}

/// [`http`] with a JSON body.
fn http_body(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn token_pair() -> (String, String) {
    let made = governor(&["token", "new"]);
    assert!(made.status.success(), "{made:?}");
    let text = stdout(&made);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("token:"), field("hash:"))
}

#[test]
fn token_hash_matches_the_hash_printed_with_a_new_token() {
    use std::io::Write;
    let (token, hash) = token_pair();
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), hash);

    // A guessable token is refused, with the reason and what to do.
    let mut child = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "cfo-token").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could be guessed") && err.contains("governor token new"),
        "{err}"
    );
}

#[test]
fn serve_answers_with_tokens_only_and_stops_on_sigterm() {
    use std::io::Read;
    let mut server = serve(
        &[(
            "principal = \"ops\"\npermissions = [\"governor:read\"]",
            "ops-token",
        )],
        "",
        &[],
    );
    let addr = server.addr.clone();
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    assert_eq!(http(&addr, "GET", "/readyz", None).0, 200);
    assert_eq!(http(&addr, "GET", "/govern/executions", None).0, 401);
    assert_eq!(
        http(&addr, "GET", "/govern/executions", Some("wrong")).0,
        401
    );
    let (status, body) = http(&addr, "GET", "/govern/executions", Some("ops-token"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"items\":[]"), "{body}");

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(rest.contains("governor stopped"), "{rest:?}");
}

#[test]
fn serve_logs_refused_tokens_without_the_token() {
    let mut server = serve(&[("principal = \"agent\"", "agent-token")], "", &[]);
    // Logs go to stderr, which `serve` writes to a file beside the config.
    let (status, _) = http(
        &server.addr,
        "GET",
        "/govern/executions",
        Some("guessed-secret-value"),
    );
    assert_eq!(status, 401);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let log = std::fs::read_to_string(server._dir.path().join("serve.log")).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("guessed-secret-value"), "{log}");
}

#[test]
fn serve_refuses_configs_without_keys_or_with_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("governor.toml");
    std::fs::write(&config, "bind = \"127.0.0.1:0\"\n").unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API keys configured"));

    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n\n[[keys]]\nhash = \"abc\"\nprincipal = \"x\"\n",
    )
    .unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("keys[0]") && err.contains("`abc`"), "{err}");

    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n[jwt]\nalgorithm = \"HS256\"\naudience = \"governor\"\nsecret_env = \"GOVERNOR_TEST_UNSET\"\n",
    )
    .unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("GOVERNOR_TEST_UNSET") && err.contains("not set"),
        "{err}"
    );

    // A JWT of any audience would let tokens for other applications in.
    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n[jwt]\nalgorithm = \"HS256\"\nsecret_env = \"GOVERNOR_TEST_UNSET\"\n",
    )
    .unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("[jwt] needs `audience`") && err.contains("allow_any_audience"),
        "{err}"
    );
    // The explicit opt-out gets past that check (to the unset secret).
    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\n[jwt]\nalgorithm = \"HS256\"\nallow_any_audience = true\nsecret_env = \"GOVERNOR_TEST_UNSET\"\n",
    )
    .unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("GOVERNOR_TEST_UNSET"), "{err}");

    std::fs::write(&config, "bind = \"127.0.0.1:0\"\nport = 9\n").unwrap();
    let out = governor(&["serve", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("line 2") && err.contains("port"), "{err}");
}

/// A running `governor serve`; killed on drop.
struct Served {
    child: std::process::Child,
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `governor serve` with `keys` (principal line, token) and the
/// config's `extra` TOML; files are `(name, text)` written beside it.
fn serve(keys: &[(&str, &str)], extra: &str, files: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut config = format!(
        "bind = \"127.0.0.1:0\"\ndb = \"{}\"\n{extra}\n",
        dir.path().join("serve.db").display()
    );
    for (principal, token) in keys {
        let hash = agent_governor_hash(token);
        config.push_str(&format!("\n[[keys]]\nhash = \"{hash}\"\n{principal}\n"));
    }
    let path = dir.path().join("governor.toml");
    std::fs::write(&path, config).unwrap();
    let (child, stdout, addr) = spawn_serve(dir.path());
    Served {
        child,
        stdout: Some(stdout),
        addr,
        _dir: dir,
    }
}

type ServeOutput = std::io::BufReader<std::process::ChildStdout>;

/// Runs `governor serve` on the config in `dir` (logging to
/// `serve.log`); the child, its stdout past the first line, its address.
fn spawn_serve(dir: &Path) -> (std::process::Child, ServeOutput, String) {
    use std::io::{BufRead, BufReader};
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args([
            "serve",
            "--config",
            dir.join("governor.toml").to_str().unwrap(),
        ])
        .env_remove("GOVERNOR_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (child, out, addr)
}

/// The configured form of `token` (the tests' tokens are short; `governor
/// token hash` refuses those).
fn agent_governor_hash(token: &str) -> String {
    agent_governor::http::hash_token(token)
}

#[test]
fn a_python_agent_is_governed_through_governor_serve() {
    use std::io::{BufRead, BufReader};
    let server = serve(
        &[
            ("principal = \"agent\"", "agent-token"),
            ("principal = \"cfo\"", "cfo-token"),
        ],
        "[[actions]]\nname = \"lookup\"\n\n[[actions]]\nname = \"wire\"\npolicies = \"wire.yaml\"\n\n[[actions]]\nname = \"refund\"\npolicies = \"refund.yaml\"\n",
        &[
            (
                "wire.yaml",
                "policies:\n  - type: authorization\n    name: TreasuryOnly\n    required_roles: [treasury]\n",
            ),
            (
                "refund.yaml",
                "policies:\n  - type: approval\n    name: RefundApproval\n    approvers: [cfo]\n",
            ),
        ],
    );
    let client =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/governor_client.py");
    let mut python = Command::new("python3")
        .arg(client)
        .args([
            "--url",
            &format!("http://{}", server.addr),
            "--token",
            "agent-token",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next =
        || -> serde_json::Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let lookup = next();
    assert_eq!(lookup["output"], serde_json::json!({"hits": 4}));
    let wire = next();
    assert_eq!(wire["refused"], true);
    assert_eq!(wire["policy"], "TreasuryOnly");
    let pending = next();
    let id = pending["pending"].as_str().unwrap().to_owned();
    let path = format!("/govern/approvals/{id}/approve");
    let (status, body) = http(&server.addr, "POST", &path, Some("cfo-token"));
    assert_eq!(status, 200, "{body}");
    let refund = next();
    assert_eq!(refund["output"], serde_json::json!({"refunded": 900}));
    assert!(python.wait().unwrap().success());

    // The audit trail is whole: every call recorded with its outcome.
    let (status, body) = http(
        &server.addr,
        "GET",
        "/govern/executions",
        Some("agent-token"),
    );
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let statuses: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "denied", "completed"]);
}

#[test]
fn approvals_and_executions_are_decided_and_inspected_through_the_server() {
    let server = serve(
        &[
            ("principal = \"agent\"", "agent-token"),
            (
                "principal = \"cfo\"\npermissions = [\"governor:read\"]",
                "cfo-token",
            ),
        ],
        "[[actions]]\nname = \"refund\"\npolicies = \"refund.yaml\"\n",
        &[(
            "refund.yaml",
            "displays:\n  - actions: [refund]\n    title: \"Refund {amount:currency(USD)}\"\npolicies:\n  - type: approval\n    name: RefundApproval\n    approvers: [cfo]\n    require_reason: true\n    when: input.amount > 10\n",
        )],
    );
    let submit = |amount: u32| {
        let (status, body) = http_body(
            &server.addr,
            "POST",
            "/govern/executions",
            Some("agent-token"),
            &format!("{{\"action\":\"refund\",\"arguments\":{{\"amount\":{amount}}}}}"),
        );
        assert_eq!(status, 202, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["execution_id"].as_str().unwrap().to_owned()
    };
    let first = submit(900);
    let second = submit(40);
    let url = format!("http://{}", server.addr);
    let cli = |token: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_governor"))
            .args(args)
            .env("GOVERNOR_SERVER", &url)
            .env("GOVERNOR_TOKEN", token)
            .env_remove("GOVERNOR_DB")
            .output()
            .unwrap()
    };

    let list = cli("cfo-token", &["approvals", "list", "--mine"]);
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert!(text.contains(&first) && text.contains(&second), "{text}");
    assert!(
        text.contains("RefundApproval") && text.contains("Refund $900.00"),
        "{text}"
    );
    // `show` gives the title, the arguments and why the stage asks.
    let shown = stdout(&cli("cfo-token", &["approvals", "show", &first]));
    assert!(
        shown.contains("title      Refund $900.00")
            && shown.contains(
                "why        rule RefundApproval asks when input.amount > 10; here amount = 900"
            ),
        "{shown}"
    );

    // The policy wants a reason; the requester may not decide at all.
    let no_reason = cli("cfo-token", &["approvals", "approve", &first]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_reason.stderr).contains("422 reason-required"));
    let agent = cli(
        "agent-token",
        &["approvals", "approve", &first, "--reason", "mine"],
    );
    assert!(String::from_utf8_lossy(&agent.stderr).contains("403 not-an-approver"));
    let anonymous = cli("", &["approvals", "list"]);
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("GOVERNOR_TOKEN"));

    let approved = cli(
        "cfo-token",
        &[
            "approvals",
            "approve",
            &first,
            "--reason",
            "ok",
            "--edits",
            "{\"amount\":500}",
        ],
    );
    assert!(approved.status.success(), "{approved:?}");
    assert!(stdout(&approved).contains("is now approved"));
    // Every view shows what will run, marked edited, and what changed.
    let shown = cli("cfo-token", &["approvals", "show", &first]);
    let text = stdout(&shown);
    assert!(
        text.contains("will run   {\"amount\":500} (edited)")
            && text.contains("changed amount: 900 -> 500")
            && text.contains("asked      {\"amount\":900}"),
        "{text}"
    );
    // A decision on what the approver saw earlier is refused once it
    // changed.
    let stale = cli(
        "cfo-token",
        &[
            "approvals",
            "reject",
            &second,
            "--reason",
            "no",
            "--expected-digest",
            "0123",
        ],
    );
    assert_eq!(stale.status.code(), Some(2), "{stale:?}");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("409 changed-since-seen"));
    let rejected = cli(
        "cfo-token",
        &[
            "approvals",
            "reject",
            &second,
            "--reason",
            "duplicate\u{1b}[2J\u{1b}]0;pwned\u{7}",
            "--json",
        ],
    );
    let view: serde_json::Value = serde_json::from_slice(&rejected.stdout).unwrap();
    assert_eq!(view["status"], "rejected");

    // A standing grant is given, listed and revoked from the CLI.
    let third = submit(70);
    let granted = cli(
        "cfo-token",
        &[
            "approvals",
            "approve",
            &third,
            "--reason",
            "weekly",
            "--grant-seconds",
            "3600",
        ],
    );
    assert!(granted.status.success(), "{granted:?}");
    let grants = cli("cfo-token", &["grants", "list", "--json"]);
    let grants: serde_json::Value = serde_json::from_slice(&grants.stdout).unwrap();
    let grant = grants[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(grants[0]["arguments"], serde_json::json!({"amount": 70}));
    let listed = stdout(&cli("cfo-token", &["grants", "list"]));
    assert!(
        listed.contains(&grant) && listed.contains("refund"),
        "{listed}"
    );
    let revoked = cli(
        "cfo-token",
        &["grants", "revoke", &grant, "--reason", "payroll done"],
    );
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(stdout(&revoked).contains("revoked"));
    let none = stdout(&cli("cfo-token", &["grants", "list"]));
    assert!(none.contains("(no grants in force)"), "{none}");

    let listed = cli("cfo-token", &["executions", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let statuses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    // The newest is the revocation itself, a governed call on the record.
    assert_eq!(statuses, ["completed", "approved", "rejected", "approved"]);
    let shown = cli("agent-token", &["executions", "show", &first]);
    let text = stdout(&shown);
    assert!(
        text.contains("approved by cfo") && text.contains("approval.granted"),
        "{text}"
    );
    // Text from agents and approvers never reaches the terminal as
    // control characters.
    let shown = cli("cfo-token", &["executions", "show", &second]);
    assert!(shown.status.success(), "{shown:?}");
    assert!(!shown.stdout.contains(&0x1b) && !shown.stdout.contains(&0x07));
    assert!(
        stdout(&shown).contains("duplicate\\u{1b}[2J"),
        "{}",
        stdout(&shown)
    );
    let resume = cli("cfo-token", &["executions", "resume", &first]);
    assert!(
        String::from_utf8_lossy(&resume.stderr).contains("403"),
        "{resume:?}"
    );
}

#[test]
fn the_served_demo_takes_decisions_from_the_cli() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args([
            "demo",
            "--serve",
            "--bind",
            "127.0.0.1:0",
            "--agent-every-ms",
            "20",
        ])
        .arg("--db")
        .arg(&db)
        .env_remove("GOVERNOR_DB")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = || lines.next().unwrap().unwrap();
    let (mut url, mut token, mut ticket) = (String::new(), String::new(), String::new());
    let pending = loop {
        let l = line();
        if let Some((_, t)) = l.split_once("ticket ")
            && ticket.is_empty()
        {
            ticket = t.trim().to_owned();
        } else if let Some(u) = l.strip_prefix("Serving the approval API at ") {
            url = u.trim().to_owned();
        } else if let Some(t) = l.trim().strip_prefix("CFO token:") {
            token = t.trim().to_owned();
        } else if !url.is_empty()
            && let Some((_, rest)) = l.split_once("-> PENDING ")
        {
            break rest.split(':').next().unwrap().to_owned();
        }
    };
    let approve = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args(["approvals", "approve", &pending, "--reason", "checked"])
        .env("GOVERNOR_SERVER", &url)
        .env("GOVERNOR_TOKEN", &token)
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    let done = format!("approved transfer {pending} -> completed");
    while !line().contains(&done) {}

    // A transfer parked in the first part (its account number redacted,
    // its arguments sealed) completes once approved, by the resume worker.
    let approve = Command::new(env!("CARGO_BIN_EXE_governor"))
        .args([
            "approvals",
            "approve",
            &ticket,
            "--reason",
            "invoice checked",
        ])
        .env("GOVERNOR_SERVER", &url)
        .env("GOVERNOR_TOKEN", &token)
        .output()
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    let status = (0..200).find_map(|_| {
        let shown = Command::new(env!("CARGO_BIN_EXE_governor"))
            .args(["executions", "show", &ticket, "--json"])
            .env("GOVERNOR_SERVER", &url)
            .env("GOVERNOR_TOKEN", &token)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        let status = v["execution"]["status"].as_str().unwrap_or("").to_owned();
        if status == "completed" {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    assert_eq!(status.as_deref(), Some("completed"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn serve_reloads_changed_policies_and_keeps_the_old_ones_on_a_bad_edit() {
    let server = serve(
        &[(
            "principal = \"agent\"\npermissions = [\"governor:read\"]",
            "agent-token",
        )],
        "policies = \"shared.yaml\"\nreload_seconds = 1\n\n[[actions]]\nname = \"payments.transfer\"\n\n[[actions]]\nname = \"lookup\"\n",
        &[(
            "shared.yaml",
            "policies:\n  - type: audit\n    name: Audit\n",
        )],
    );
    let dir = server._dir.path().to_owned();
    let submit = |action: &str| {
        let body = format!(r#"{{"action": "{action}", "arguments": {{"amount": 5}}}}"#);
        http_body(
            &server.addr,
            "POST",
            "/govern/executions",
            Some("agent-token"),
            &body,
        )
        .0
    };
    let until = |want: u16, action: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let got = submit(action);
            if got == want || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    assert_eq!(submit("payments.transfer"), 200);

    // A valid change: payments now need the treasury role; lookups do not.
    std::fs::write(
        dir.join("shared.yaml"),
        "policies:\n  - type: authorization\n    name: TreasuryOnly\n    actions: [\"payments.*\"]\n    required_roles: [treasury]\n",
    )
    .unwrap();
    assert_eq!(
        until(403, "payments.transfer"),
        403,
        "the new policy applies"
    );
    assert_eq!(submit("lookup"), 200);

    // An invalid change is rejected and the last good policies stay.
    std::fs::write(
        dir.join("shared.yaml"),
        "policies:\n  - type: authorisation\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(submit("payments.transfer"), 403);
    assert_eq!(submit("lookup"), 200);

    // The reload is on the record with the files' digest.
    let (status, body) = http(
        &server.addr,
        "GET",
        "/govern/executions?action=governor.policies.reload",
        Some("agent-token"),
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["status"], "completed");
    assert_eq!(items[0]["principal"]["id"], "system:policy-reload");
    assert_eq!(
        items[0]["inputs"]["digest"].as_str().unwrap().len(),
        64,
        "{body}"
    );
}

#[test]
fn two_servers_share_one_mongodb_database() {
    let url = std::env::var("GOVERNOR_TEST_MONGODB_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into());
    // `t_` and a v7 id: the MongoDB store's tests drop it after an hour.
    let database = format!(
        "t_{}",
        agent_governor::ExecutionId::new().as_uuid().simple()
    );
    let keys = [
        ("principal = \"agent\"", "agent-token"),
        (
            "principal = \"cfo\"\npermissions = [\"governor:read\"]",
            "cfo-token",
        ),
    ];
    let extra = format!(
        "mongodb_url = \"{url}\"\nmongodb_database = \"{database}\"\n\
         [[actions]]\nname = \"refund\"\npolicies = \"refund.yaml\"\n"
    );
    let files = [(
        "refund.yaml",
        "policies:\n  - type: approval\n    name: RefundApproval\n    approvers: [cfo]\n",
    )];
    let (a, b) = (serve(&keys, &extra, &files), serve(&keys, &extra, &files));
    let (status, body) = http_body(
        &a.addr,
        "POST",
        "/govern/executions",
        Some("agent-token"),
        "{\"action\":\"refund\",\"arguments\":{\"amount\":900}}",
    );
    assert_eq!(status, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["execution_id"].as_str().unwrap();
    let (status, body) = http_body(
        &b.addr,
        "POST",
        &format!("/govern/approvals/{id}/approve"),
        Some("cfo-token"),
        "{\"reason\":\"ok\"}",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        &a.addr,
        "GET",
        &format!("/govern/executions/{id}"),
        Some("cfo-token"),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["execution"]["status"], "approved", "{body}");
}

/// Following the README's "Over HTTP" set-up with a sensitive field: no
/// seal key configured, yet the approved call starts with its arguments,
/// also after an approver's edit, and nothing sensitive is stored in clear.
#[test]
fn serve_creates_a_seal_key_so_sensitive_calls_run_after_approval() {
    let server = serve(
        &[
            ("principal = \"agent\"", "agent-token"),
            ("principal = \"cfo\"", "cfo-token"),
        ],
        "[[actions]]\nname = \"wire\"\npolicies = \"wire.yaml\"\n",
        &[(
            "wire.yaml",
            "policies:\n  - type: audit\n    sensitive_fields: [iban]\n  - type: approval\n    name: Cfo\n    approvers: [cfo]\n",
        )],
    );
    let dir = server._dir.path();
    let key = dir.join("serve.db.seal-key");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600, "the key file is private");
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("created a new seal key"), "{log}");

    let submit = |amount: u32| {
        let body = format!(
            "{{\"action\":\"wire\",\"arguments\":{{\"amount\":{amount},\"iban\":\"DE89370400440532013000\"}}}}"
        );
        let (status, body) = http_body(
            &server.addr,
            "POST",
            "/govern/executions",
            Some("agent-token"),
            &body,
        );
        assert_eq!(status, 202, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["execution_id"].as_str().unwrap().to_owned()
    };
    let start = |id: &str| {
        let (status, body) = http_body(
            &server.addr,
            "POST",
            &format!("/govern/executions/{id}/start"),
            Some("agent-token"),
            "",
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["arguments"].clone()
    };

    let plain = submit(500);
    let (status, body) = http_body(
        &server.addr,
        "POST",
        &format!("/govern/approvals/{plain}/approve"),
        Some("cfo-token"),
        "{}",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        start(&plain),
        serde_json::json!({"amount": 500, "iban": "DE89370400440532013000"})
    );

    let edited = submit(9000);
    let redacted = "***REDACTED***";
    let (status, body) = http_body(
        &server.addr,
        "POST",
        &format!("/govern/approvals/{edited}/approve"),
        Some("cfo-token"),
        &format!("{{\"edits\":{{\"amount\":900,\"iban\":\"{redacted}\"}}}}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        start(&edited),
        serde_json::json!({"amount": 900, "iban": "DE89370400440532013000"})
    );
    let db = std::fs::read(dir.join("serve.db")).unwrap();
    let wal = std::fs::read(dir.join("serve.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(10).any(|w| w == b"DE89370400"),
            "the IBAN is never stored in clear"
        );
    }
}

/// `governor approvals` reaches an https:// server: a test CA (made with
/// openssl) signs the certificate of a Python TLS server speaking for
/// `governor serve`; trusted with `GOVERNOR_CA_FILE`, refused without.
#[test]
fn the_cli_reaches_an_https_server_it_trusts() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=governor test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    let server = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == "Bearer tls-token"
        body = json.dumps({"items": [], "next_cursor": None} if ok else {"status": 401}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json" if ok else "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://localhost:{}", port.trim());
    let list = |ca: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_governor"));
        cmd.args(["approvals", "list"])
            .env("GOVERNOR_SERVER", &url)
            .env("GOVERNOR_TOKEN", "tls-token")
            .env_remove("GOVERNOR_CA_FILE");
        if let Some(ca) = ca {
            cmd.env("GOVERNOR_CA_FILE", ca);
        }
        cmd.output().unwrap()
    };
    let trusted = list(Some(&d.join("ca.pem")));
    let untrusted = list(None);
    let _ = child.kill();
    let _ = child.wait();
    assert!(trusted.status.success(), "{trusted:?}");
    assert!(stdout(&trusted).contains("(no approvals waiting)"));
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");
    let err = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn serve_reloads_its_keys_and_a_removed_key_is_refused() {
    let server = serve(
        &[
            ("principal = \"stays\"", "stays-token"),
            ("principal = \"goes\"", "goes-token"),
        ],
        "reload_seconds = 1",
        &[],
    );
    let (status, _) = http(&server.addr, "GET", "/govern/me", Some("goes-token"));
    assert_eq!(status, 200);
    let config = server._dir.path().join("governor.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let kept: Vec<&str> = text
        .split("\n[[keys]]")
        .filter(|block| !block.contains("principal = \"goes\""))
        .collect();
    // A different length too, so that the change is seen even within the
    // file system's time resolution.
    std::fs::write(
        &config,
        format!("{}\n# goes removed\n", kept.join("\n[[keys]]")),
    )
    .unwrap();
    let refused = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        http(&server.addr, "GET", "/govern/me", Some("goes-token")).0 == 401
    });
    assert!(refused, "the removed key is refused after the reload");
    let (status, _) = http(&server.addr, "GET", "/govern/me", Some("stays-token"));
    assert_eq!(status, 200);
}

/// A webhook receiver on a thread: records (webhook-id, body) of each
/// request; leaves the first `hold` requests unanswered (their
/// connections open), answers the others 204.
fn webhook_receiver(hold: usize) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut id, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("webhook-id:") {
                    id = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send((id, String::from_utf8_lossy(&body).into_owned()));
            if held.len() < hold {
                held.push(stream);
            } else {
                let mut stream = stream;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        }
    });
    (url, rx)
}

#[test]
fn a_webhook_killed_mid_delivery_is_delivered_after_restart_with_the_same_id() {
    let (url, received) = webhook_receiver(1);
    let mut server = serve(
        &[
            ("principal = \"agent\"", "agent-token"),
            (
                "principal = \"ops\"\npermissions = [\"governor:read\", \"governor:resume\"]",
                "ops-token",
            ),
        ],
        &format!(
            "[[actions]]\nname = \"refund\"\npolicies = \"refund.yaml\"\n\n[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n\n[[webhooks]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"hook.secret\"\nkinds = [\"requested\"]\n\n[delivery]\nlease_seconds = 1\nfirst_retry_seconds = 0.2\nmax_attempts = 1\n"
        ),
        &[
            (
                "refund.yaml",
                "policies:\n  - type: approval\n    name: RefundApproval\n    approvers: [cfo]\n",
            ),
            ("hook.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"),
        ],
    );
    let (status, body) = http_body(
        &server.addr,
        "POST",
        "/govern/executions",
        Some("agent-token"),
        "{\"action\":\"refund\",\"arguments\":{\"amount\":75}}",
    );
    assert_eq!(status, 202, "{body}");
    let wait = std::time::Duration::from_secs(20);
    let (first_id, first_body) = received.recv_timeout(wait).expect("the first attempt");
    assert!(first_body.contains("approval.requested"), "{first_body}");
    // Killed while the receiver has the webhook but has not answered.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let dir = server._dir.path().to_path_buf();
    let (child, output, addr) = spawn_serve(&dir);
    server.child = child;
    server.stdout = Some(output);
    server.addr = addr;
    let (again_id, again_body) = received
        .recv_timeout(wait)
        .expect("the delivery after restart");
    assert_eq!(
        again_id, first_id,
        "the same webhook-id: receivers drop the duplicate"
    );
    assert!(again_body.contains("approval.requested"), "{again_body}");
    let db = rusqlite::Connection::open(dir.join("serve.db")).unwrap();
    let mut state = String::new();
    for _ in 0..100 {
        state = db
            .query_row(
                "SELECT state FROM outbox WHERE notification LIKE '%webhook:ops%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if state == "delivered" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(state, "delivered");
    assert!(
        received.try_recv().is_err(),
        "delivered once the receiver answered"
    );

    // The unreachable webhook is dead after its one attempt: listed, and
    // sent again on demand.
    let url = format!("http://{}", server.addr);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_governor"))
            .args(args)
            .env("GOVERNOR_SERVER", &url)
            .env("GOVERNOR_TOKEN", "ops-token")
            .output()
            .unwrap()
    };
    let mut dead = String::new();
    for _ in 0..100 {
        dead = stdout(&cli(&["notifications", "list", "--state", "dead"]));
        if dead.contains("webhook:gone") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        dead.contains("webhook:gone") && dead.contains("requested"),
        "{dead}"
    );
    let all = stdout(&cli(&["notifications", "list", "--json"]));
    let page: serde_json::Value = serde_json::from_str(&all).unwrap();
    let gone = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["target"] == "webhook:gone")
        .unwrap();
    assert!(
        gone["last_error"].as_str().unwrap().contains("127.0.0.1:9"),
        "{gone}"
    );
    assert!(all.contains("\"delivered\""), "{all}");
    let retried = cli(&["notifications", "retry", gone["id"].as_str().unwrap()]);
    assert!(retried.status.success(), "{retried:?}");
    assert!(
        stdout(&retried).contains("pending again"),
        "{}",
        stdout(&retried)
    );
}

#[test]
fn notify_test_sends_a_real_notification_to_a_configured_target() {
    let (url, received) = webhook_receiver(0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hook.secret"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    .unwrap();
    let config = dir.path().join("governor.toml");
    std::fs::write(
        &config,
        format!(
            "[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n\n[[webhooks]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"hook.secret\"\n"
        ),
    )
    .unwrap();
    let notify = |channel: &str| {
        Command::new(env!("CARGO_BIN_EXE_governor"))
            .args([
                "notify",
                "test",
                "--config",
                config.to_str().unwrap(),
                "--channel",
                channel,
            ])
            .output()
            .unwrap()
    };
    let sent = notify("ops");
    assert!(sent.status.success(), "{sent:?}");
    assert!(
        stdout(&sent).contains("delivered to webhook:ops"),
        "{}",
        stdout(&sent)
    );
    let (id, body) = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        stdout(&sent).contains(&id),
        "the notification id is the webhook-id"
    );
    assert!(body.contains("governor.notify-test"), "{body}");

    let failed = notify("webhook:gone");
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert!(
        stdout(&failed).contains("not delivered to webhook:gone"),
        "{}",
        stdout(&failed)
    );
    let unknown = notify("pager");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("webhook:ops, webhook:gone"),
        "{unknown:?}"
    );
}
