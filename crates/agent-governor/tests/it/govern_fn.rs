use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use agent_governor::store::EventQuery;
use agent_governor::*;
use serde_json::{Value, json};

fn gov() -> Governor {
    Governor::builder().build().unwrap()
}

static PLAIN: LazyLock<Governor> = LazyLock::new(gov);

#[govern(governor = &*PLAIN)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[tokio::test]
async fn plain_return_becomes_result_and_arguments_are_bound_by_name() {
    assert_eq!(add(2, 3).await.unwrap(), 5);
    let e = PLAIN
        .store()
        .executions(&Default::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(&*e.action, "add");
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(e.inputs.value(), json!({"a": 2, "b": 3}));
    assert_eq!(e.output.unwrap().value(), json!(5));
}

#[govern]
async fn uses_the_global_governor(msg: String) -> String {
    msg.to_uppercase()
}

#[tokio::test]
async fn no_arguments_uses_the_global_governor() {
    assert_eq!(uses_the_global_governor("hi".into()).await.unwrap(), "HI");
    let all = Governor::global()
        .store()
        .executions(&ExecutionQuery {
            action: Some("uses_the_global_governor".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[derive(Debug, thiserror::Error)]
enum TransferError {
    #[error("recipient `{0}` is blocked")]
    Blocked(String),
    #[error(transparent)]
    Governance(#[from] GovernError),
}

static BANK: LazyLock<Governor> = LazyLock::new(gov);

#[govern(
    governor = &*BANK,
    policies = [
        ValidationPolicy::new().input_validator(|i: &Value| i["amount"].as_f64().is_some_and(|a| a > 0.0)),
        AuthorizationPolicy::new().require_roles(["finance"]),
    ],
    context = Principal::new(user.clone()).with_roles(roles.clone()),
)]
async fn wire_transfer(
    user: String,
    roles: Vec<String>,
    amount: f64,
    recipient: String,
) -> Result<Value, TransferError> {
    if recipient == "mallory" {
        return Err(TransferError::Blocked(recipient));
    }
    let fee = amount * 0.01;
    Ok(json!({"status": "completed", "amount": amount, "fee": fee}))
}

#[tokio::test]
async fn result_functions_keep_their_error_type_and_context_sets_the_principal() {
    let ok = wire_transfer("ann".into(), vec!["finance".into()], 100.0, "Acme".into())
        .await
        .unwrap();
    assert_eq!(ok["fee"], 1.0);

    let blocked = wire_transfer("ann".into(), vec!["finance".into()], 5.0, "mallory".into())
        .await
        .unwrap_err();
    assert!(matches!(blocked, TransferError::Blocked(_)));

    let denied = wire_transfer("bob".into(), vec![], 5.0, "Acme".into())
        .await
        .unwrap_err();
    let TransferError::Governance(GovernError::Denied { rule, .. }) = denied else {
        panic!("{denied:?}")
    };
    assert_eq!(rule.as_deref(), Some("required_roles"));

    let invalid = wire_transfer("ann".into(), vec!["finance".into()], -5.0, "Acme".into())
        .await
        .unwrap_err();
    assert!(matches!(
        invalid,
        TransferError::Governance(GovernError::Invalid { .. })
    ));

    let all = BANK.store().executions(&Default::default()).await.unwrap();
    let statuses: Vec<_> = all
        .iter()
        .map(|e| (e.principal.id.as_str(), e.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("ann", ExecutionStatus::Denied),
            ("bob", ExecutionStatus::Denied),
            ("ann", ExecutionStatus::Failed),
            ("ann", ExecutionStatus::Completed),
        ]
    );
    assert_eq!(
        all[2].failure.as_ref().unwrap().message,
        "recipient `mallory` is blocked"
    );
}

static ANY: LazyLock<Governor> = LazyLock::new(gov);

#[govern(governor = &*ANY, name = "reports.export")]
async fn export(rows: u32) -> anyhow::Result<u32> {
    anyhow::ensure!(rows < 1000, "too many rows: {rows}");
    Ok(rows)
}

#[tokio::test]
async fn anyhow_results_and_custom_names_work() {
    assert_eq!(export(3).await.unwrap(), 3);
    let err = export(5000).await.unwrap_err();
    assert!(err.to_string().contains("too many rows"));
    let names: Vec<_> = ANY
        .store()
        .executions(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|e| e.action.to_string())
        .collect();
    assert_eq!(names, vec!["reports.export", "reports.export"]);
}

static PARK: LazyLock<Governor> = LazyLock::new(gov);
static SAVED: Mutex<Vec<ExecutionId>> = Mutex::new(Vec::new());

#[govern(
    governor = &*PARK,
    policies = [ApprovalPolicy::new(["cfo@company.com"]).timeout_seconds(10)],
    capture_state = true,
    on_state_saved = |id, _state| SAVED.lock().unwrap().push(id),
)]
async fn large_transfer(amount: f64, recipient: String) -> Value {
    json!({"status": "completed", "amount": amount, "to": recipient})
}

#[tokio::test]
async fn approval_returns_pending_with_the_ticket_id() {
    let err = large_transfer(50_000.0, "BigCorp".into())
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    assert_eq!(SAVED.lock().unwrap().as_slice(), &[execution_id]);
    let e = PARK.execution(execution_id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
    assert_eq!(e.inputs.value()["recipient"], "BigCorp");
}

static HOOKS: LazyLock<Governor> = LazyLock::new(gov);
static HOOK_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log_hook(tag: &'static str) -> Hook {
    Hook::new(tag, move |ctx| {
        HOOK_LOG
            .lock()
            .unwrap()
            .push(format!("{tag}:{}", ctx.action));
        async { Ok(()) }
    })
}

struct NotSerializable;

#[govern(governor = &*HOOKS, pre = [log_hook("pre")], post = [log_hook("post")], capture_state = false)]
async fn opaque_result() -> NotSerializable {
    NotSerializable
}

#[tokio::test]
async fn hooks_run_and_unserializable_outputs_are_recorded_as_null() {
    let _value: NotSerializable = opaque_result().await.unwrap();
    assert_eq!(
        *HOOK_LOG.lock().unwrap(),
        vec!["pre:opaque_result", "post:opaque_result"]
    );
    let e = HOOKS
        .store()
        .executions(&Default::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(e.output.unwrap().value(), Value::Null);
    assert!(
        HOOKS.store().snapshots(e.id).await.unwrap().is_empty(),
        "capture_state = false"
    );
}

static LIMITED: LazyLock<Governor> = LazyLock::new(gov);

#[govern(governor = &*LIMITED, policies = [RateLimitPolicy::new(2, Duration::from_secs(60)).per_principal()])]
async fn ping() {}

#[tokio::test]
async fn unit_functions_and_per_principal_limits() {
    let alice = || Principal::new("alice");
    alice().scope(ping()).await.unwrap();
    alice().scope(ping()).await.unwrap();
    let err = alice().scope(ping()).await.unwrap_err();
    assert!(matches!(err, GovernError::RateLimited { .. }));
    Principal::new("bob").scope(ping()).await.unwrap();
}

static EVENTS: LazyLock<Governor> = LazyLock::new(gov);

#[govern(governor = &*EVENTS, policies = shared_policies())]
async fn with_shared_policies(x: u8) -> u8 {
    x
}

fn shared_policies() -> Vec<Arc<dyn Policy>> {
    vec![AuditPolicy::new().compliance_tags(["SOC2"]).boxed()]
}

#[tokio::test]
async fn policy_lists_from_expressions_and_events_are_stored() {
    with_shared_policies(1).await.unwrap();
    let events = EVENTS.store().events(&EventQuery::default()).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::PolicyEvaluated));
    let audit = EVENTS.store().audit_entries(0, 10).await.unwrap();
    assert_eq!(&*audit[0].record.tags, ["SOC2"]);
}
