//! Sealed arguments: approved calls with redacted fields still run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor_core::{
    Action, ApprovalPolicy, Args, AuditPolicy, Call, EventQuery, ExecutionId, ExecutionStatus,
    GovernError, Governor, MemoryStore, Principal, ResumeError, SealKey, Store,
};
use serde_json::{Value, json};

fn governor(store: Arc<dyn Store>, key: Option<SealKey>) -> Governor {
    let mut b = Governor::builder().shared_store(store);
    if let Some(k) = key {
        b = b.seal_key(k);
    }
    b.build().unwrap()
}

/// A wire transfer whose IBAN is redacted everywhere; records what ran.
fn wire(g: &Governor, seen: &Arc<Mutex<Vec<Value>>>) -> Action {
    let seen = Arc::clone(seen);
    g.action("wire")
        .policy(AuditPolicy::new().sensitive_fields(["iban"]))
        .policy(ApprovalPolicy::new(["cfo"]))
        .resumable(move |args: Value| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(args.clone());
                Ok::<_, GovernError>(json!({"sent": args["amount"]}))
            }
        })
        .build()
        .unwrap()
}

async fn park(action: &Action) -> ExecutionId {
    let call = Call::new(
        Args::new()
            .arg("amount", &900u32)
            .arg("iban", &"DE89370400440532013000"),
    )
    .principal(Principal::new("agent"));
    match action
        .run_with(
            call,
            || async { Ok::<_, GovernError>(json!(0)) },
            |v| Some(Ok(governor_core::Json::from(v))),
            |e| e.to_string(),
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approved_call_runs_with_its_sealed_arguments() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let g = governor(Arc::clone(&store), Some(SealKey::from_bytes([9; 32])));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let id = park(&wire(&g, &seen)).await;

    let stored = g.execution(id).await.unwrap().unwrap();
    assert!(stored.inputs.as_str().contains(governor_core::REDACTED));
    let sealed = stored
        .approval
        .as_ref()
        .unwrap()
        .sealed_inputs
        .clone()
        .unwrap();
    assert!(!sealed.contains("DE89"));
    let events = store
        .events(&EventQuery {
            execution_id: Some(id),
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(events.iter().all(|e| !e.data.as_str().contains(&sealed)));

    g.approve(id, &Principal::new("cfo"), None).await.unwrap();
    let done = g.resume(id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [json!({"amount": 900, "iban": "DE89370400440532013000"})]
    );
}

#[tokio::test]
async fn without_the_key_the_redacted_call_cannot_run() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sealing = governor(Arc::clone(&store), Some(SealKey::from_bytes([9; 32])));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let id = park(&wire(&sealing, &seen)).await;
    sealing
        .approve(id, &Principal::new("cfo"), None)
        .await
        .unwrap();

    for key in [None, Some(SealKey::from_bytes([1; 32]))] {
        let other = governor(Arc::clone(&store), key);
        wire(&other, &seen);
        let err = other.resume(id).await.unwrap_err();
        assert!(matches!(err, ResumeError::RedactedInputs { .. }), "{err}");
    }
    assert!(seen.lock().unwrap().is_empty());
    let still = store.execution(id).await.unwrap().unwrap();
    assert_eq!(still.status, ExecutionStatus::Approved);
}

#[tokio::test]
async fn an_external_runner_gets_the_sealed_arguments_after_approval() {
    let g = governor(
        Arc::new(MemoryStore::new()),
        Some(SealKey::from_bytes([3; 32])),
    );
    let action = g
        .action("wire")
        .policy(AuditPolicy::new().sensitive_fields(["iban"]))
        .policy(ApprovalPolicy::new(["cfo"]))
        .external(Duration::from_secs(60))
        .build()
        .unwrap();
    let call = Call::new(Args::new().arg("iban", &"GB29NWBK60161331926819"))
        .principal(Principal::new("agent"));
    let GovernError::Pending { execution_id } = action.admit(call).await.unwrap_err() else {
        panic!("expected pending");
    };
    g.approve(execution_id, &Principal::new("cfo"), None)
        .await
        .unwrap();
    let started = g.start_external(execution_id).await.unwrap();
    assert_eq!(
        started.arguments.value(),
        json!({"iban": "GB29NWBK60161331926819"})
    );
}

#[tokio::test]
async fn sealed_arguments_can_be_approved_with_edits_and_stay_sealed() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let g = governor(Arc::clone(&store), Some(SealKey::from_bytes([7; 32])));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let action = wire(&g, &seen);
    let cfo = Principal::new("cfo");

    // The approver saw the IBAN redacted and leaves it so: the IBAN is kept.
    let id = park(&action).await;
    g.approve_with_edits(
        id,
        &cfo,
        json!({"amount": 450, "iban": governor_core::REDACTED}),
        Some("half now"),
        None,
    )
    .await
    .unwrap();
    g.resume(id).await.unwrap();
    // A new IBAN replaces it, sealed too.
    let id2 = park(&action).await;
    g.approve_with_edits(
        id2,
        &cfo,
        json!({"amount": 900, "iban": "FR7630006000011234567890189"}),
        None,
        None,
    )
    .await
    .unwrap();
    let stored = store.execution(id2).await.unwrap().unwrap();
    let text = serde_json::to_string(&stored).unwrap();
    assert!(
        !text.contains("FR76300060") && !text.contains("DE893704"),
        "nothing sensitive is stored in clear: {text}"
    );
    g.resume(id2).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            json!({"amount": 450, "iban": "DE89370400440532013000"}),
            json!({"amount": 900, "iban": "FR7630006000011234567890189"}),
        ]
    );
    let events = store
        .events(&EventQuery {
            execution_id: Some(id2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("FR76300060")
    );

    // A redacted field the request does not have cannot be kept.
    let id3 = park(&action).await;
    let err = g
        .approve_with_edits(
            id3,
            &cfo,
            json!({"amount": 1, "iban": governor_core::REDACTED, "bic": governor_core::REDACTED}),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`bic`"), "{err}");

    // Without a key nothing can keep the edited IBAN: refused, not lost.
    let bare = governor(Arc::new(MemoryStore::new()), None);
    let action = wire(&bare, &seen);
    let id = park(&action).await;
    let err = bare
        .approve_with_edits(
            id,
            &cfo,
            json!({"amount": 1, "iban": governor_core::REDACTED}),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, governor_core::ApprovalError::NotEditable { .. }),
        "{err}"
    );
}
