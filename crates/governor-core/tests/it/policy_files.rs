//! Our additions to the seed's policy files: selectors, CEL conditions,
//! stages, includes and environment files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use governor_core::config::Format;
use governor_core::*;
use serde_json::{Value, json};

fn yaml(text: &str) -> PolicyFile {
    PolicyFile::parse(text, Format::Yaml).unwrap()
}

fn names(policies: &[Arc<dyn Policy>]) -> Vec<&str> {
    policies.iter().map(|p| p.name()).collect()
}

/// A JSON object's members as arguments.
fn args_of(input: &Value) -> Args {
    input
        .as_object()
        .unwrap()
        .iter()
        .fold(Args::new(), |args, (k, v)| args.arg(k, v))
}

/// Runs `action` governed by the file's policies for it, as `who`.
async fn call(
    file: &PolicyFile,
    action: &str,
    who: Principal,
    input: Value,
) -> Result<(), GovernError> {
    let g = Governor::builder().build().unwrap();
    let a = g
        .action(action)
        .policies(file.policies_for(action))
        .build()
        .unwrap();
    let args = args_of(&input);
    a.run_as(who, args, || async { Ok::<_, GovernError>(()) })
        .await
}

/// `err` is a denial by `policy` (any when empty), for `rule` if given.
fn assert_denied(err: &GovernError, policy: &str, rule: Option<&str>) {
    let GovernError::Denied {
        policy: by,
        rule: why,
        ..
    } = err
    else {
        panic!("expected a denial, got {err:?}")
    };
    assert!(policy.is_empty() || by == policy, "{err:?}");
    assert!(rule.is_none() || why.as_deref() == rule, "{err:?}");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("governor-policy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn selectors_choose_the_policies_of_each_action() {
    let file = yaml(
        r#"
actions: ["payments.*"]
policies:
  - type: audit
    name: AuditPayments
  - type: rate_limit
    name: DeployLimit
    actions: ["deploy_*", "rollback"]
    max_calls: 5
  - type: authorization
    name: Everyone
    actions: ["*"]
"#,
    );
    assert_eq!(
        names(&file.policies_for("payments.refund")),
        ["AuditPayments", "Everyone"]
    );
    assert_eq!(
        names(&file.policies_for("deploy_prod")),
        ["DeployLimit", "Everyone"]
    );
    assert_eq!(
        names(&file.policies_for("rollback")),
        ["DeployLimit", "Everyone"]
    );
    assert_eq!(names(&file.policies_for("send_email")), ["Everyone"]);
    assert_eq!(file.policies().len(), 3);
    let sel = file.entries[1].actions.as_ref().unwrap();
    assert_eq!(sel.patterns(), ["deploy_*", "rollback"]);
}

#[tokio::test]
async fn when_applies_a_policy_only_to_matching_calls() {
    let file = yaml(
        r#"
policies:
  - type: approval
    name: LargeTransfers
    approvers: [cfo@company.com]
    when: input.amount > 10000
  - type: authorization
    name: OnlyFinanceAtNight
    required_roles: [finance]
    when: "has(principal.attributes.shift) && principal.attributes.shift == 'night'"
  - type: authorization
    name: FailsClosed
    actions: [withdraw]
    required_roles: [finance]
    when: "principal.attributes.region == 'eu'"
"#,
    );
    let agent = Principal::new("agent");
    call(&file, "transfer", agent.clone(), json!({"amount": 50}))
        .await
        .unwrap();
    let big = call(&file, "transfer", agent.clone(), json!({"amount": 50_000})).await;
    assert!(matches!(big, Err(GovernError::Pending { .. })), "{big:?}");
    let night = agent.clone().with_attribute("shift", "night");
    let denied = call(&file, "transfer", night, json!({"amount": 5}))
        .await
        .unwrap_err();
    assert_denied(&denied, "OnlyFinanceAtNight", None);
    assert_eq!(
        file.entries[0].when.as_deref(),
        Some("input.amount > 10000")
    );
    // A condition that cannot be evaluated (no `region` attribute) applies
    // its policy: a broken condition never switches governance off.
    let err = call(&file, "withdraw", agent, json!({"amount": 5}))
        .await
        .unwrap_err();
    assert_denied(&err, "FailsClosed", None);
}

#[tokio::test]
async fn auto_approve_when_and_authorization_conditions_are_cel() {
    let file = yaml(
        r#"
policies:
  - type: authorization
    name: DepartmentRules
    conditions:
      same_department: principal.attributes.department == input.department
      not_weekend_bulk: "!(input.count > 1000 && now.getDayOfWeek() == 0)"
  - type: approval
    name: Refunds
    approvers: [role:support-lead]
    auto_approve_when: input.amount < 100 && 'support' in principal.roles
"#,
    );
    let ops = Principal::new("ann")
        .with_roles(["support"])
        .with_attribute("department", "ops");
    call(
        &file,
        "refund",
        ops.clone(),
        json!({"department": "ops", "amount": 20, "count": 1}),
    )
    .await
    .unwrap();
    let big = call(
        &file,
        "refund",
        ops.clone(),
        json!({"department": "ops", "amount": 500, "count": 1}),
    )
    .await;
    assert!(matches!(big, Err(GovernError::Pending { .. })), "{big:?}");
    let other = call(
        &file,
        "refund",
        ops,
        json!({"department": "sales", "amount": 20, "count": 1}),
    )
    .await
    .unwrap_err();
    assert_denied(&other, "", Some("same_department"));
}

#[tokio::test]
async fn stages_become_sequential_approvals_with_their_own_approvers() {
    let file = yaml(
        r#"
policies:
  - type: approval
    name: Deploy
    stages:
      - name: safety
        approvers: [ai-safety@company.com]
        expires_in_seconds: 600
      - name: executive
        approvers: [role:exec]
        quorum: 2
        auto_approve_when: input.environment == 'staging'
"#,
    );
    let stage_names: Vec<_> = file.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(stage_names, ["Deploy.safety", "Deploy.executive"]);

    let agent = Principal::new("agent");
    let production = json!({"environment": "production"});
    let request = parked(&file, "deploy", agent.clone(), production)
        .await
        .unwrap();
    assert_eq!(request.stages.len(), 2);
    assert_eq!(request.stages[0].spec.approvers, ["ai-safety@company.com"]);
    assert_eq!(request.stages[1].spec.quorum, 2);

    // In staging the executive stage approves itself; safety still asks.
    let staging = json!({"environment": "staging"});
    assert_eq!(stages_asked(&file, "deploy", agent, staging).await, 1);
}

#[test]
fn expression_mistakes_name_file_line_and_column() {
    let dir = temp_dir("cel-errors");
    let cases = [
        (
            "    when: input.amount >\n",
            "invalid CEL expression",
            4,
            11,
        ),
        (
            "    when: inptu.amount > 5\n",
            "unknown variable `inptu`",
            4,
            11,
        ),
        (
            "    when: \"'x' in principal.rolez\"\n",
            "unknown field `principal.rolez`",
            4,
            12,
        ),
        (
            "    when: env.stage == 'prod'\n",
            "unknown field `env.stage`",
            4,
            11,
        ),
        (
            "    when: output.ok\n",
            "does not exist before the action runs",
            4,
            11,
        ),
        (
            "    auto_approve_when: input.amount <\n",
            "invalid CEL expression",
            4,
            24,
        ),
    ];
    for (i, (line, message, at_line, at_col)) in cases.into_iter().enumerate() {
        let text = format!("policies:\n  - type: approval\n    approvers: [a]\n{line}");
        let path = write(&dir, &format!("case{i}.yaml"), &text);
        let err = PolicyFile::load(&path).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(path.as_path()), "{err}");
        assert!(err.message.contains(message), "{i}: {err}");
        assert_eq!(err.line, Some(at_line), "{i}: {err}");
        assert!(err.column.unwrap() >= at_col, "{i}: {err}");
    }
    // A post-execution policy may look at the output.
    let ok = "policies:\n  - type: validation\n    phase: post_execution\n    when: output.ok == false\n";
    PolicyFile::load(write(&dir, "post.yaml", ok)).unwrap();
    // A schema's own `type` keys do not confuse the positions of later entries.
    let text = "policies:\n  - type: validation\n    input_schema:\n      type: object\n  - type: audit\n    when: input.x >\n";
    let err = PolicyFile::load(write(&dir, "schema.yaml", text)).unwrap_err();
    assert_eq!(err.line, Some(6), "{err}");
}

#[test]
fn misplaced_stage_keys_and_bad_selectors_are_errors() {
    for (text, message) in [
        (
            "policies:\n  - type: approval\n    approvers: [a]\n    stages:\n      - approvers: [b]\n",
            "belongs on each stage",
        ),
        (
            "policies:\n  - type: approval\n    stages:\n      - approvers: [b]\n        actions: [x]\n",
            "does not apply to a stage",
        ),
        (
            "policies:\n  - type: approval\n    stages: []\n",
            "`stages` is empty",
        ),
        (
            "policies:\n  - type: audit\n    actions: []\n",
            "the list is empty",
        ),
        (
            "policies:\n  - type: audit\n    conditions: {a: 'true'}\n",
            "does not apply to a audit policy",
        ),
    ] {
        let err = PolicyFile::parse(text, Format::Yaml).unwrap_err();
        assert!(err.message.contains(message), "{text}: {err}");
        assert!(err.line.is_some(), "{err}");
    }
    let err = PolicyFile::parse("policies:\n  - name: x\n", Format::Yaml).unwrap_err();
    assert!(err.message.contains("missing key `type`"), "{err}");
}

#[test]
fn includes_compose_files_and_later_entries_replace_earlier_ones() {
    let dir = temp_dir("includes");
    write(
        &dir,
        "base.yaml",
        "version: '1'\npolicies:\n  - type: audit\n    name: Audit\n  - type: rate_limit\n    name: Limit\n    max_calls: 100\n",
    );
    let prod = write(
        &dir,
        "production.yaml",
        "include: [base.yaml]\nenvironment: production\npolicies:\n  - type: rate_limit\n    name: Limit\n    max_calls: 5\n  - type: authorization\n    name: Auth\n",
    );
    let file = PolicyFile::load(&prod).unwrap();
    let names: Vec<_> = file.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Audit", "Limit", "Auth"]);
    assert!(
        file.entries[1].policy.fingerprint()
            != PolicyFile::load(dir.join("base.yaml")).unwrap().entries[1]
                .policy
                .fingerprint()
    );
    assert_eq!(file.metadata["version"], "1");
    assert_eq!(file.metadata["environment"], "production");

    write(&dir, "a.yaml", "include: [b.yaml]\npolicies: []\n");
    write(&dir, "b.yaml", "include: [a.yaml]\npolicies: []\n");
    let err = PolicyFile::load(dir.join("a.yaml")).unwrap_err();
    assert!(err.message.contains("cycle"), "{err}");
    write(
        &dir,
        "broken.yaml",
        "policies:\n  - type: audit\n    bogus: 1\n",
    );
    write(&dir, "top.yaml", "include: [broken.yaml]\npolicies: []\n");
    let err = PolicyFile::load(dir.join("top.yaml")).unwrap_err();
    assert_eq!(
        err.file.as_deref(),
        Some(dir.join("broken.yaml").as_path()),
        "the error names the included file"
    );
}

#[tokio::test]
async fn environment_files_are_chosen_by_name_and_seen_by_conditions() {
    let dir = temp_dir("environments");
    let text = "policies:\n  - type: authorization\n    name: ProdOnlyAdmins\n    required_roles: [admin]\n    when: env.name == 'production'\n";
    write(&dir, "production.yaml", text);
    write(
        &dir,
        "staging.yaml",
        &format!("include: [production.yaml]\n{}", "policies: []\n"),
    );
    let prod = PolicyFile::load_environment(&dir, "production").unwrap();
    assert_eq!(prod.environment, "production");
    let staging = PolicyFile::load_environment(&dir, "staging").unwrap();
    assert_eq!(
        staging.environment, "staging",
        "included files see the including environment"
    );
    let agent = Principal::new("agent");
    assert!(
        call(&prod, "deploy", agent.clone(), json!({}))
            .await
            .is_err()
    );
    call(&staging, "deploy", agent, json!({})).await.unwrap();

    let err = PolicyFile::load_environment(&dir, "qa").unwrap_err();
    assert!(err.message.contains("qa.yaml, qa.yml, qa.json"), "{err}");
    assert!(PolicyFile::load_environment(&dir, "../etc").is_err());
}

fn starter(name: &str) -> PolicyFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .join(name);
    PolicyFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Makes a call of `action` under the file's policies; the approval
/// request it waits on, if it was parked.
async fn parked(
    file: &PolicyFile,
    action: &str,
    who: Principal,
    input: Value,
) -> Option<ApprovalRequest> {
    let g = Governor::builder().build().unwrap();
    let a = g
        .action(action)
        .policies(file.policies_for(action))
        .build()
        .unwrap();
    let args = args_of(&input);
    match a
        .run_as(who, args, || async { Ok::<_, GovernError>(()) })
        .await
    {
        Ok(()) => None,
        Err(GovernError::Pending { execution_id }) => {
            g.execution(execution_id).await.unwrap().unwrap().approval
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// The number of approval stages a call waits for (0: it ran).
async fn stages_asked(file: &PolicyFile, action: &str, who: Principal, input: Value) -> usize {
    parked(file, action, who, input)
        .await
        .map_or(0, |r| r.stages.len())
}

#[tokio::test]
async fn the_development_starter_records_but_does_not_block() {
    let file = starter("development.yaml");
    assert_eq!(file.environment, "development");
    let nobody = Principal::new("dev");
    call(&file, "users.delete", nobody.clone(), json!({"id": 1}))
        .await
        .unwrap();
    assert!(file.entries.iter().filter(|e| e.policy.is_shadow()).count() == 2);
}

#[tokio::test]
async fn the_production_starter_checks_roles_tenants_and_destructive_actions() {
    let file = starter("production.yaml");
    let op = Principal::new("op")
        .with_roles(["operator"])
        .with_tenant("acme");
    call(&file, "report", op.clone(), json!({"tenant": "acme"}))
        .await
        .unwrap();
    let err = call(&file, "report", op.clone(), json!({"tenant": "globex"}))
        .await
        .unwrap_err();
    assert_denied(&err, "", Some("tenant_matches"));
    let err = call(&file, "report", Principal::new("guest"), json!({}))
        .await
        .unwrap_err();
    assert_denied(&err, "", Some("required_roles"));
    assert_eq!(
        stages_asked(&file, "db.delete_all", op.clone(), json!({})).await,
        1
    );
    assert_eq!(
        stages_asked(&file, "db.delete_all", op, json!({"dry_run": true})).await,
        0
    );
}

#[tokio::test]
async fn the_financial_services_starter_escalates_with_the_amount() {
    let file = starter("financial-services.yaml");
    assert!(
        file.policies_for("send_email").is_empty(),
        "only payments are governed"
    );
    let ann = Principal::new("ann")
        .with_roles(["finance"])
        .with_permissions(["payment.write"]);
    // Small pass, large ask the CFO, very large also the risk committee.
    for (action, amount, stages) in [
        ("payments.transfer", 500.0, 0),
        ("transfer_funds", 50_000.0, 1),
        ("payments.transfer", 2_000_000.0, 2),
    ] {
        let asked = stages_asked(&file, action, ann.clone(), json!({ "amount": amount })).await;
        assert_eq!(asked, stages, "{action} {amount}");
    }
    let err = call(
        &file,
        "payments.transfer",
        ann.clone(),
        json!({"amount": -5.0}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, GovernError::Invalid { policy, .. } if policy == "PaymentShape"),
        "{err:?}"
    );
    let err = call(
        &file,
        "payments.transfer",
        ann.clone(),
        json!({"amount": 5.0, "beneficiary": "ann"}),
    )
    .await
    .unwrap_err();
    assert_denied(&err, "", Some("no_self_payment"));
    let err = call(
        &file,
        "payments.transfer",
        Principal::new("eve"),
        json!({"amount": 5.0}),
    )
    .await
    .unwrap_err();
    assert_denied(&err, "FinanceOnly", None);
}

#[tokio::test]
async fn the_template_has_one_policy_of_each_type() {
    let file = starter("template.yaml");
    let kinds: Vec<_> = file.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "validation",
            "authorization",
            "rate_limit",
            "audit",
            "approval"
        ]
    );
    let manager = Principal::new("m").with_roles(["user", "manager"]);
    // Business hours are a condition on the clock: outside them the rule
    // denies, inside the call passes (the manager approves themselves).
    let hour = || {
        chrono::Utc::now()
            .format("%H")
            .to_string()
            .parse::<u32>()
            .unwrap()
    };
    let before = hour();
    let result = call(&file, "anything", manager, json!({"amount": 5000.0})).await;
    if before != hour() {
        return; // the hour turned during the call
    }
    if (6..22).contains(&before) {
        result.unwrap();
    } else {
        assert!(
            matches!(result, Err(GovernError::Denied { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn deeply_nested_documents_are_errors_not_crashes() {
    for depth in [200, 20_000] {
        let yaml = format!("policies: {}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(PolicyFile::parse(&yaml, Format::Yaml).is_err());
        let json = format!(
            "{{\"policies\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(PolicyFile::parse(&json, Format::Json).is_err());
        let schema = format!(
            "policies:\n  - type: validation\n    input_schema: {}{}\n",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        );
        assert!(PolicyFile::parse(&schema, Format::Yaml).is_err());
    }
}

#[cfg(not(feature = "cedar"))]
#[test]
fn cedar_in_a_file_without_the_feature_says_so() {
    let err = PolicyFile::parse(
        "policies:\n  - type: authorization\n    cedar: \"permit(principal, action, resource);\"\n",
        Format::Yaml,
    )
    .unwrap_err();
    assert!(err.message.contains("`cedar` feature"), "{err}");
}

#[tokio::test]
async fn grant_limits_in_a_file_bound_what_approvers_may_grant() {
    let file = yaml(
        r#"
policies:
  - type: approval
    name: Limited
    actions: [limited]
    approvers: [cfo]
    grants: {max_window_seconds: 3600, same_arguments_only: true}
  - type: approval
    name: NoGrants
    actions: [strict]
    approvers: [cfo]
    grants: false
"#,
    );
    let g = Governor::builder().build().unwrap();
    let cfo = Principal::new("cfo");
    let park = |action: &'static str| {
        let a = g
            .action(action)
            .policies(file.policies_for(action))
            .build()
            .unwrap();
        async move {
            match a
                .run_as(
                    Principal::new("agent"),
                    Args::new().arg("n", &1),
                    || async { Ok::<_, GovernError>(()) },
                )
                .await
            {
                Err(GovernError::Pending { execution_id }) => execution_id,
                other => panic!("{other:?}"),
            }
        }
    };
    let hour = std::time::Duration::from_secs(3600);
    let id = park("limited").await;
    let too_long = g
        .approve_and_grant(id, &cfo, None, hour * 2, true, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&too_long, ApprovalError::GrantRefused { reason, .. } if reason.contains("at most 3600s")),
        "{too_long}"
    );
    let any_args = g
        .approve_and_grant(id, &cfo, None, hour, false, None)
        .await
        .unwrap_err();
    assert!(
        any_args.to_string().contains("same arguments"),
        "{any_args}"
    );
    let (done, grant) = g
        .approve_and_grant(id, &cfo, None, hour, true, None)
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Approved);
    assert!(grant.arguments.is_some());

    let id = park("strict").await;
    let none = g
        .approve_and_grant(id, &cfo, None, hour, true, None)
        .await
        .unwrap_err();
    assert!(none.to_string().contains("no standing grants"), "{none}");
    // A plain approval is still possible.
    g.approve(id, &cfo, None).await.unwrap();

    let err = PolicyFile::parse(
        "policies:\n  - type: approval\n    approvers: [a]\n    grants: {max_window: 5}\n",
        Format::Yaml,
    )
    .unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
}

#[tokio::test]
async fn notify_settings_in_a_file_reach_the_request() {
    let file = yaml(
        r#"
policies:
  - type: approval
    name: Wires
    approvers: [cfo@example.com]
    notify: {channels: [email], recipients: [ops@example.com], links: sign_in, remind_before_seconds: [3600, 300]}
"#,
    );
    let g = Governor::builder().build().unwrap();
    let a = g
        .action("wire")
        .policies(file.policies_for("wire"))
        .build()
        .unwrap();
    let Err(GovernError::Pending { execution_id }) = a
        .run_as(
            Principal::new("agent"),
            Args::new().arg("n", &1),
            || async { Ok::<_, GovernError>(()) },
        )
        .await
    else {
        panic!("expected a parked call");
    };
    let e = g.execution(execution_id).await.unwrap().unwrap();
    let notify = &e.approval.unwrap().stages[0].spec.notify;
    assert_eq!(notify.channels, ["email"]);
    assert_eq!(notify.links, LinkMode::SignIn);
    assert_eq!(notify.recipients, ["ops@example.com"]);
    assert_eq!(notify.remind_before_seconds, [3600, 300]);
    assert!(notify.reaches("email") && !notify.reaches("webhook:ops"));
    for (bad, says) in [
        ("{links: maybe}", "notify.links must be one_time or sign_in"),
        ("{channels: email}", "notify.channels must be a list"),
        ("{remind_before_seconds: [-5]}", "positive whole seconds"),
        ("{remind: [5]}", "unknown key `notify.remind`"),
    ] {
        let err = PolicyFile::parse(
            &format!("policies:\n  - type: approval\n    approvers: [a]\n    notify: {bad}\n"),
            Format::Yaml,
        )
        .unwrap_err();
        assert!(err.message.contains(says), "{bad}: {err}");
        assert_eq!(err.line, Some(4), "{err}");
    }
}

#[test]
fn input_fields_are_checked_against_a_closed_input_schema() {
    let file = |when: &str, schema_actions: &str| {
        format!(
            "actions: [\"payments.*\"]\npolicies:\n  - type: validation\n    name: Shape\n{schema_actions}    input_schema:\n      type: object\n      additionalProperties: false\n      properties:\n        amount: {{type: number}}\n        to: {{type: string}}\n  - type: approval\n    approvers: [cfo]\n    when: {when}\n"
        )
    };
    PolicyFile::parse(&file("input.amount > 5 && has(input.to)", ""), Format::Yaml).unwrap();
    let err = PolicyFile::parse(&file("input.amout > 5", ""), Format::Yaml).unwrap_err();
    assert!(
        err.message.contains("unknown input field `input.amout`"),
        "{err}"
    );
    assert!(err.message.contains("`Shape` allows: amount, to"), "{err}");
    assert_eq!((err.line, err.column), (Some(13), Some(11)), "{err}");
    // A schema over other actions says nothing about these.
    let other = file("input.amout > 5", "    actions: [deploy]\n");
    PolicyFile::parse(&other, Format::Yaml).unwrap();
    // An open schema (no additionalProperties: false) allows any field.
    let open = file("input.anything > 5", "").replace("      additionalProperties: false\n", "");
    PolicyFile::parse(&open, Format::Yaml).unwrap();
}

#[test]
fn a_staged_approval_takes_no_approval_keys_of_its_own() {
    // Each would be silently ignored, since only the stages ask.
    for key in [
        "veto: false",
        "allow_self_approval: true",
        "escalate_expires_in_seconds: 5",
    ] {
        let text = format!(
            "policies:\n  - type: approval\n    {key}\n    stages:\n      - approvers: [b]\n"
        );
        let err = PolicyFile::parse(&text, Format::Yaml).unwrap_err();
        assert!(
            err.message.contains("belongs on each stage"),
            "{key}: {err}"
        );
    }
}
