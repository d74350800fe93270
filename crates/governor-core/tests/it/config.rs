use std::path::PathBuf;

use governor_core::config::Format;
use governor_core::*;
use serde_json::json;

/// The original's own policy file `name`, taken unchanged from its sdist
/// on PyPI by `scripts/seed-policies.sh` (fetched once, then cached).
fn seed(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/seed-policies.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .join(name)
}

fn finance_admin() -> Principal {
    Principal::new("ann")
        .with_roles(["finance"])
        .with_permissions(["payment.write", "transaction.approve"])
}

async fn call(
    policies: Vec<std::sync::Arc<dyn Policy>>,
    who: Principal,
    amount: i64,
) -> Result<(), GovernError> {
    let g = Governor::builder().build().unwrap();
    let action = g
        .action("process_payment")
        .policies(policies)
        .build()
        .unwrap();
    action
        .run_as(
            who,
            Args::new().arg("amount", &amount).arg("email", "a@b.c"),
            || async { Ok::<_, GovernError>(()) },
        )
        .await
}

#[tokio::test]
async fn seed_governance_files_load_unchanged_and_govern_calls() {
    for file in ["governance.yaml", "governance.json"] {
        let loaded = PolicyFile::load(seed(file)).unwrap();
        let names: Vec<_> = loaded.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "InputValidation",
                "RoleBasedAccess",
                "APIRateLimit",
                "ComplianceAudit",
                "LargeTransactionApproval"
            ],
            "{file}"
        );
        assert_eq!(loaded.metadata["version"], "1.0");
        assert!(loaded.entries[0].warnings[0].contains("checks nothing"));

        let denied = call(
            loaded.policies(),
            Principal::new("bob").with_roles(["intern"]),
            5,
        )
        .await
        .unwrap_err();
        let GovernError::Denied { policy, rule, .. } = &denied else {
            panic!("{denied:?}")
        };
        assert_eq!(
            (policy.as_str(), rule.as_deref()),
            ("RoleBasedAccess", Some("required_roles"))
        );

        let missing_perm = Principal::new("cy")
            .with_roles(["admin"])
            .with_permissions(["payment.write"]);
        let err = call(loaded.policies(), missing_perm, 5).await.unwrap_err();
        assert!(
            matches!(&err, GovernError::Denied { rule: Some(r), .. } if r == "required_permissions"),
            "{err:?}"
        );

        // Authorized: the approval policy applies to every call and parks it.
        let pending = call(loaded.policies(), finance_admin(), 5)
            .await
            .unwrap_err();
        let GovernError::Pending { .. } = pending else {
            panic!("{pending:?}")
        };
    }
}

#[tokio::test]
async fn seed_approval_settings_are_honoured_and_email_is_redacted() {
    let g = Governor::builder().build().unwrap();
    let action = g
        .action("pay")
        .policies(load_policies_from_file(seed("governance.yaml")).unwrap())
        .build()
        .unwrap();
    let err = action
        .run_as(
            finance_admin(),
            Args::new().arg("email", "ann@corp.com").arg("amount", &9),
            || async { Ok::<_, GovernError>(()) },
        )
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    let e = g.execution(execution_id).await.unwrap().unwrap();
    let stage = &e.approval.unwrap().stages[0];
    assert_eq!(
        stage.spec.approvers,
        ["cfo@company.com", "finance-lead@company.com"]
    );
    assert_eq!(
        stage.spec.expires_in,
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(stage.spec.require_reason);
    assert_eq!(stage.spec.on_expiry, OnExpiry::Reject);
    assert_eq!(e.inputs.value()["email"], REDACTED);
}

#[tokio::test]
async fn seed_per_user_rate_limit_applies_per_principal() {
    let mut policies = load_policies_from_file(seed("governance.yaml")).unwrap();
    policies.retain(|p| p.kind() == PolicyKind::RateLimit);
    let g = Governor::builder().build().unwrap();
    let action = g.action("pay").policies(policies).build().unwrap();
    let run = |id: &'static str| {
        action.run_as(Principal::new(id), Args::new(), || async {
            Ok::<_, GovernError>(())
        })
    };
    for _ in 0..100 {
        run("u1").await.unwrap();
    }
    assert!(matches!(
        run("u1").await,
        Err(GovernError::RateLimited { .. })
    ));
    run("u2").await.unwrap();
}

#[tokio::test]
async fn production_auth_failure_asks_for_approval_instead_of_denying() {
    let policies = load_policies_from_file(seed("production.yaml")).unwrap();
    let err = call(policies, Principal::new("dev").with_roles(["developer"]), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, GovernError::Pending { .. }), "{err:?}");
}

#[tokio::test]
async fn development_file_lets_calls_through_and_redacts() {
    let file = PolicyFile::load(seed("development.yaml")).unwrap();
    assert_eq!(file.metadata["environment"], "development");
    call(file.policies(), Principal::new("dev"), 1)
        .await
        .unwrap();
}

fn err(yaml: &str) -> ConfigError {
    PolicyFile::parse(yaml, Format::Yaml).unwrap_err()
}

#[test]
fn mistakes_are_errors_with_line_column_and_expectation() {
    let typo = err("policies:\n  - type: rate_limit\n    max_cals: 10\n");
    assert_eq!(typo.line, Some(3), "{typo}");
    assert!(typo.message.contains("max_cals"), "{typo}");

    let wrong_type = err("policies:\n  - type: rate_limit\n    max_calls: lots\n");
    assert_eq!(wrong_type.line, Some(3), "{wrong_type}");

    let unknown_type = err("policies:\n  - type: rate_limiter\n");
    assert!(
        unknown_type
            .message
            .contains("expected validation, authorization"),
        "{unknown_type}"
    );
    assert_eq!(unknown_type.line, Some(2));

    let phase = err("policies:\n  - type: audit\n    phase: sometimes\n");
    assert_eq!((phase.line, phase.column), (Some(3), Some(5)), "{phase}");
    assert!(
        phase
            .message
            .contains("pre_execution, post_execution or both")
    );

    let misplaced = err("policies:\n  - type: audit\n    max_calls: 3\n");
    assert!(
        misplaced
            .message
            .contains("does not apply to a audit policy"),
        "{misplaced}"
    );
    assert_eq!(misplaced.line, Some(3));

    let no_approvers = err("policies:\n  - type: approval\n");
    assert!(no_approvers.message.contains("at least one approver"));

    let json = PolicyFile::parse(
        "{\"policies\": [{\"type\": \"audit\", \"bogus\": 1}]}",
        Format::Json,
    )
    .unwrap_err();
    assert_eq!(json.line, Some(1));
    assert!(json.message.contains("bogus"));
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("gov-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        "policies:\n  - type: validation\n    strict: maybe\n",
    )
    .unwrap();
    let e = PolicyFile::load(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:3:", path.display())),
        "{e}"
    );
    assert!(PolicyFile::load(dir.join("x.toml")).is_err());
}

#[test]
fn policies_load_from_values_and_disabled_entries_are_skipped() {
    let file = PolicyFile::from_value(json!({"policies": [
        {"type": "audit", "name": "A", "enabled": false},
        {"type": "validation", "input_schema": {"type": "object", "required": ["x"]}},
    ]}))
    .unwrap();
    assert_eq!(file.entries.len(), 2);
    assert_eq!(file.policies().len(), 1);
    assert!(file.entries[1].warnings.is_empty());
}

#[tokio::test]
async fn shadow_entries_record_without_enforcing() {
    let file = PolicyFile::parse(
        "policies:\n  - type: authorization\n    name: WouldDeny\n    required_roles: [admin]\n    shadow: true\n",
        Format::Yaml,
    )
    .unwrap();
    assert!(file.entries[0].policy.is_shadow());
    call(file.policies(), Principal::new("nobody"), 1)
        .await
        .unwrap();
}

#[test]
fn approval_additions_load_with_their_meaning() {
    let file = PolicyFile::parse(
        "policies:
  - type: approval
    name: Board
    approvers: [ann, bob, cy]
    quorum: 2
    veto: false
    wait_seconds: 5
    expires_in_seconds: never
  - type: approval
    name: Cfo
    approvers: [cfo@company.com]
    timeout_seconds: 60
    on_timeout: escalate
    escalate_to: [ceo@company.com]
    escalate_expires_in_seconds: 600
    allow_self_approval: true
",
        Format::Yaml,
    )
    .unwrap();
    let ctx_input = json!({});
    let who = Principal::new("x");
    let ctx = PolicyContext {
        execution_id: ExecutionId::new(),
        action: "a",
        phase: PolicyPhase::PreExecution,
        input: &ctx_input,
        output: None,
        principal: &who,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let specs: Vec<ApprovalSpec> = file
        .policies()
        .iter()
        .map(|p| match rt.block_on(p.evaluate(&ctx)) {
            Decision::RequireApproval(spec) => spec,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        (specs[0].quorum, specs[0].veto, specs[0].expires_in),
        (2, false, None)
    );
    assert_eq!(specs[0].wait, std::time::Duration::from_secs(5));
    assert_eq!(
        specs[1].on_expiry,
        OnExpiry::Escalate {
            approvers: vec!["ceo@company.com".into()],
            expires_in: Some(std::time::Duration::from_secs(600))
        }
    );
    assert!(specs[1].allow_self_approval);

    let bad = PolicyFile::parse(
        "policies:\n  - type: approval\n    approvers: [a]\n    on_timeout: escalate\n",
        Format::Yaml,
    )
    .unwrap_err();
    assert!(bad.message.contains("escalate_to"), "{bad}");
    assert_eq!(bad.line, Some(4));
}

/// A backend that keeps one count for every key: enough to show which
/// limit a file's entry was bound to.
struct CountingBackend {
    taken: std::sync::atomic::AtomicU32,
    up: bool,
}

#[async_trait::async_trait]
impl RateLimitBackend for CountingBackend {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn acquire(&self, _key: &str, _limit: Limit) -> Result<Admission, RateLimitBackendError> {
        if !self.up {
            return Err(RateLimitBackendError {
                backend: "counting",
                message: "down".into(),
            });
        }
        let n = self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(if n < 2 {
            Admission::Admitted
        } else {
            Admission::Limited {
                retry_after: std::time::Duration::from_secs(1),
            }
        })
    }
    async fn release(&self, _key: &str, _limit: Limit) -> Result<(), RateLimitBackendError> {
        Ok(())
    }
}

fn shared_file(extra: &str, up: bool) -> Result<PolicyFile, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        format!("policies:\n  - name: api\n    type: rate_limit\n    max_calls: 100\n    shared: true\n{extra}"),
    )
    .unwrap();
    let backend = std::sync::Arc::new(CountingBackend {
        taken: Default::default(),
        up,
    });
    PolicyFile::load_with(
        &path,
        LoadOptions {
            shared_rate_limits: Some(backend),
        },
    )
}

#[tokio::test]
async fn shared_rate_limits_use_the_backend_given_at_load() {
    let file = shared_file("", true).unwrap();
    let results: Vec<_> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(call(file.policies(), finance_admin(), 1).await);
        }
        out
    };
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(GovernError::RateLimited { .. })));
    // Down: denied by default, let through with `on_backend_error: allow`.
    let down = shared_file("", false).unwrap();
    assert!(matches!(
        call(down.policies(), finance_admin(), 1).await,
        Err(GovernError::Denied { rule: Some(r), .. }) if r == "backend_unavailable"
    ));
    let open = shared_file("    on_backend_error: allow\n", false).unwrap();
    call(open.policies(), finance_admin(), 1).await.unwrap();
}

#[test]
fn shared_rate_limits_without_a_backend_or_with_bad_keys_are_refused() {
    let e = err("policies:\n  - name: api\n    type: rate_limit\n    shared: true\n");
    assert!(e.to_string().contains("shared rate-limit backend"), "{e}");
    assert!(e.to_string().contains("4:"), "points at the key: {e}");
    let e = err("policies:\n  - name: api\n    type: rate_limit\n    on_backend_error: allow\n");
    assert!(e.to_string().contains("needs `shared: true`"), "{e}");
    let e = shared_file("    on_backend_error: maybe\n", true).unwrap_err();
    assert!(e.to_string().contains("`deny` or `allow`"), "{e}");
}
