//! `#[govern]` functions are resumable by name, without explicit
//! registration, even on an instance that never called them.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_governor::*;
use serde::Serialize;
use serde_json::json;

fn approval() -> ApprovalPolicy {
    ApprovalPolicy::new(["cfo"]).timeout_seconds(600)
}

fn cfo() -> Principal {
    Principal::new("cfo")
}

async fn park(call: impl std::future::Future<Output = Result<(), GovernError>>) -> ExecutionId {
    match Principal::new("agent").scope(call).await {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

static PAY: LazyLock<Governor> = LazyLock::new(|| Governor::builder().build().unwrap());
static PAID: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, thiserror::Error)]
enum PayError {
    #[error("recipient `{0}` is blocked")]
    Blocked(String),
    #[error(transparent)]
    Governance(#[from] GovernError),
}

#[govern(governor = &*PAY, policies = [approval()])]
async fn pay(amount: f64, mut to: String) -> Result<String, PayError> {
    if to == "Mallory" {
        return Err(PayError::Blocked(to));
    }
    PAID.fetch_add(1, Ordering::SeqCst);
    to.push('!');
    Ok(format!("paid {amount} to {to}"))
}

/// Parks a payment (the approval comes before the body checks anything).
async fn park_payment(amount: f64, to: &str) -> ExecutionId {
    park(async {
        pay(amount, to.into()).await.map(drop).map_err(|e| match e {
            PayError::Governance(g) => g,
            PayError::Blocked(_) => unreachable!("parked before the body runs"),
        })
    })
    .await
}

/// Both payment cases share `PAY`, and `resume_approved` takes every approved
/// execution of it, so they run one after the other.
#[tokio::test]
async fn a_parked_payment_resumes_through_the_function_itself() {
    an_approved_call_resumes_through_the_function_itself().await;
    a_resumed_function_error_fails_the_execution_with_its_message().await;
}

async fn an_approved_call_resumes_through_the_function_itself() {
    let id = park_payment(5000.0, "Acme").await;
    PAY.approve(id, &cfo(), Some("budgeted")).await.unwrap();
    let before = PAID.load(Ordering::SeqCst);
    assert_eq!(PAY.resume_approved("worker", 10).await.unwrap(), 1);
    let done = PAY.execution(id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value(), json!("paid 5000 to Acme!"));
    assert_eq!(PAID.load(Ordering::SeqCst), before + 1);
    // The execution id is the idempotency key: it ran once.
    assert!(PAY.resume(id).await.is_err());
    assert_eq!(PAID.load(Ordering::SeqCst), before + 1);
}

async fn a_resumed_function_error_fails_the_execution_with_its_message() {
    let id = park_payment(10.0, "Mallory").await;
    PAY.approve(id, &cfo(), None).await.unwrap();
    let done = PAY.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(
        done.failure.unwrap().message,
        "recipient `Mallory` is blocked"
    );
}

static LINKED: LazyLock<Governor> = LazyLock::new(|| Governor::builder().build().unwrap());

#[govern(governor = &*LINKED, policies = [approval()])]
async fn linked_refund(order: u32) -> u32 {
    order * 2
}

#[tokio::test]
async fn a_function_never_called_here_is_found_by_name() {
    // The call was parked by another program with the same action (here:
    // the builder API under the same name, which is not resumable).
    let elsewhere = Action::builder("linked_refund")
        .governor(LINKED.clone())
        .policy(approval())
        .build()
        .unwrap();
    let id = park(async {
        elsewhere
            .run(Args::new().arg("order", &21u32), || async {
                Err::<u32, GovernError>(GovernError::Config("parked calls do not run".into()))
            })
            .await
            .map(drop)
    })
    .await;
    LINKED.approve(id, &cfo(), None).await.unwrap();
    let done = LINKED.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.output.unwrap().value(), json!(42));
}

static OPAQUE: LazyLock<Governor> = LazyLock::new(|| Governor::builder().build().unwrap());

/// Serializable (so recorded) but not Deserialize (so not restorable).
#[derive(Serialize)]
struct Receipt {
    id: u32,
}

#[govern(governor = &*OPAQUE, policies = [approval()])]
async fn file_receipt(receipt: Receipt) -> u32 {
    receipt.id
}

#[tokio::test]
async fn a_function_whose_arguments_cannot_be_restored_is_not_resumable() {
    let id = park(async { file_receipt(Receipt { id: 7 }).await.map(drop) }).await;
    OPAQUE.approve(id, &cfo(), None).await.unwrap();
    let err = OPAQUE.resume(id).await.unwrap_err();
    assert!(
        matches!(err, ResumeError::NotRegistered { ref action } if action == "file_receipt"),
        "{err:?}"
    );
    let parked = OPAQUE.execution(id).await.unwrap().unwrap();
    assert_eq!(parked.status, ExecutionStatus::Approved);
}

static LOCAL: LazyLock<Governor> = LazyLock::new(|| Governor::builder().build().unwrap());

/// A body that is not `Send` opts out; it still runs when called.
#[govern(governor = &*LOCAL, policies = [approval()], resumable = false)]
async fn local_only(n: u32) -> u32 {
    let shared = std::rc::Rc::new(n);
    tokio::task::yield_now().await;
    *shared
}

#[tokio::test]
async fn a_function_marked_not_resumable_is_not_registered() {
    let id = park(async { local_only(3).await.map(drop) }).await;
    LOCAL.approve(id, &cfo(), None).await.unwrap();
    let err = LOCAL.resume(id).await.unwrap_err();
    assert!(matches!(err, ResumeError::NotRegistered { .. }), "{err:?}");
}
