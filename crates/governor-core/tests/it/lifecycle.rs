use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor_core::store::EventQuery;
use governor_core::testing::{InterceptWrites, StoreWrite};
use governor_core::*;
use serde_json::{Value, json};

fn governor() -> Governor {
    Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap()
}

async fn only_execution(g: &Governor) -> Execution {
    let all = g.store().executions(&Default::default()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

async fn event_kinds(g: &Governor, id: ExecutionId) -> Vec<EventKind> {
    let q = EventQuery {
        execution_id: Some(id),
        ..Default::default()
    };
    g.store()
        .events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn a_plain_call_is_recorded_with_named_arguments_snapshots_events_and_audit() {
    let g = governor();
    let action = g.action("transfer").build().unwrap();
    let out: Value = action
        .run_as(
            Principal::new("agent-1").with_tenant("acme"),
            Args::new().arg("amount", &5000).arg("recipient", "Acme"),
            || async { Ok::<_, GovernError>(json!({"status": "completed"})) },
        )
        .await
        .unwrap();
    assert_eq!(out["status"], "completed");

    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Completed);
    assert_eq!(
        e.inputs.value(),
        json!({"amount": 5000, "recipient": "Acme"})
    );
    assert_eq!(e.output.as_ref().unwrap().value()["status"], "completed");
    assert_eq!(e.principal.id, "agent-1");
    assert_eq!(e.principal.tenant.as_deref(), Some("acme"));
    assert!(e.finished_at.is_some());
    assert_eq!(e.id.as_uuid().get_version_num(), 7);

    let snaps = g.store().snapshots(e.id).await.unwrap();
    let points: Vec<_> = snaps.iter().map(|s| s.checkpoint).collect();
    assert_eq!(
        points,
        vec![Checkpoint::PreExecution, Checkpoint::PostExecution]
    );

    let kinds = event_kinds(&g, e.id).await;
    assert_eq!(kinds.first(), Some(&EventKind::ExecutionStarted));
    assert_eq!(kinds.last(), Some(&EventKind::ExecutionCompleted));

    let audit = g.store().audit_entries(0, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].record.execution_id, e.id);
    assert_eq!(audit[0].record.status, ExecutionStatus::Completed);
    assert_eq!(&*audit[0].record.principal, "agent-1");
}

#[tokio::test]
async fn lifecycle_runs_in_the_documented_order() {
    let g = governor();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = |s: &'static str| {
        let log = Arc::clone(&log);
        move || log.lock().unwrap().push(s.to_owned())
    };
    let (pre, pol_pre, pol_post, post) = (
        l("pre-action"),
        l("pre-policy"),
        l("post-policy"),
        l("post-action"),
    );
    let action = g
        .action("ordered")
        .pre(Hook::new("setup", move |_| {
            pre();
            async { Ok(()) }
        }))
        .policy(policy_fn("pre", move |_| {
            pol_pre();
            Decision::Allow
        }))
        .policy(
            policy_fn("post", move |ctx| {
                assert_eq!(ctx.output, Some(&json!(42)));
                pol_post();
                Decision::Allow
            })
            .in_phase(PolicyPhase::PostExecution),
        )
        .post(Hook::new("notify", move |ctx| {
            assert_eq!(ctx.output.as_deref(), Some(&json!(42)));
            post();
            async { Ok(()) }
        }))
        .build()
        .unwrap();
    let run_log = Arc::clone(&log);
    let v: i32 = action
        .run(Args::new(), || async move {
            run_log.lock().unwrap().push("action".into());
            Ok::<_, GovernError>(42)
        })
        .await
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "pre-action",
            "pre-policy",
            "action",
            "post-policy",
            "post-action"
        ]
    );
}

/// A post-execution policy that says it does not read the result, and
/// records what it was given.
struct IgnoresOutput(Arc<Mutex<Vec<Option<Value>>>>);

#[async_trait]
impl Policy for IgnoresOutput {
    fn name(&self) -> &str {
        "ignores_output"
    }
    fn phase(&self) -> PolicyPhase {
        PolicyPhase::PostExecution
    }
    fn reads_output(&self) -> bool {
        false
    }
    async fn evaluate(&self, ctx: &PolicyContext<'_>) -> Decision {
        self.0.lock().unwrap().push(ctx.output.cloned());
        Decision::Allow
    }
}

#[tokio::test]
async fn the_result_is_given_to_post_policies_when_one_of_them_reads_it() {
    let g = governor();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let alone = g
        .action("nobody_reads_output")
        .policy(IgnoresOutput(Arc::clone(&seen)))
        .policy(AuditPolicy::new())
        .build()
        .unwrap();
    let with_reader = g
        .action("one_reads_output")
        .policy(IgnoresOutput(Arc::clone(&seen)))
        .policy(ValidationPolicy::new().output_validator(|out: &Value| out == &json!(7)))
        .build()
        .unwrap();
    for action in [&alone, &with_reader] {
        let v: i32 = action
            .run(Args::new(), || async { Ok::<_, GovernError>(7) })
            .await
            .unwrap();
        assert_eq!(v, 7);
    }
    assert_eq!(*seen.lock().unwrap(), vec![None, Some(json!(7))]);
    let completed = g.store().executions(&Default::default()).await.unwrap();
    assert!(
        completed
            .iter()
            .all(|e| e.output.as_ref().map(|o| o.as_str()) == Some("7")),
        "{completed:?}"
    );
}

#[tokio::test]
async fn authorization_denial_names_the_rule_and_the_action_never_runs() {
    let g = governor();
    let action = g
        .action("admin_operation")
        .policy(AuthorizationPolicy::new().require_roles(["admin"]))
        .build()
        .unwrap();
    let ran = Arc::new(Mutex::new(false));
    let r = Arc::clone(&ran);
    let err = action
        .run_as(
            Principal::new("intern").with_roles(["user"]),
            Args::new(),
            || async move {
                *r.lock().unwrap() = true;
                Ok::<_, GovernError>(())
            },
        )
        .await
        .unwrap_err();
    let GovernError::Denied {
        policy,
        rule,
        reason,
        phase,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(policy, "AuthorizationPolicy");
    assert_eq!(rule.as_deref(), Some("required_roles"));
    assert!(reason.contains("admin"));
    assert_eq!(*phase, PolicyPhase::PreExecution);
    assert!(!*ran.lock().unwrap());
    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Denied);
    assert_eq!(
        e.failure.as_ref().unwrap().policy.as_deref(),
        Some("AuthorizationPolicy")
    );
    let kinds = event_kinds(&g, e.id).await;
    assert!(
        kinds.contains(&EventKind::PolicyViolated) && kinds.contains(&EventKind::ExecutionDenied)
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_gives_retry_after_and_denied_calls_do_not_use_quota() {
    let g = governor();
    let limiter = Arc::new(RateLimitPolicy::new(2, Duration::from_secs(60)));
    let action = g
        .action("search")
        .policies([limiter.clone() as Arc<dyn Policy>])
        .policy(policy_fn("no_secret_queries", |ctx| {
            if ctx.input["q"] == "secret" {
                Decision::deny("forbidden query")
            } else {
                Decision::Allow
            }
        }))
        .build()
        .unwrap();
    let call = |q: &'static str| {
        action.run(Args::new().arg("q", q), || async {
            Ok::<_, GovernError>(())
        })
    };
    for _ in 0..5 {
        assert!(matches!(
            call("secret").await,
            Err(GovernError::Denied { .. })
        ));
    }
    call("a").await.unwrap();
    call("b").await.unwrap();
    let err = call("c").await.unwrap_err();
    let GovernError::RateLimited {
        retry_after,
        policy,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(policy, "RateLimitPolicy");
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
}

#[tokio::test]
async fn validation_lists_every_failing_field() {
    let g = governor();
    let action = g
        .action("create_user")
        .policy(
            ValidationPolicy::new()
                .input_schema(&json!({
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
                    "required": ["name", "age"]
                }))
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = action
        .run(Args::new().arg("name", &7).arg("age", &-3), || async {
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap_err();
    let GovernError::Invalid { errors, .. } = &err else {
        panic!("{err:?}")
    };
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"/name") && paths.contains(&"/age"),
        "{paths:?}"
    );
    assert_eq!(only_execution(&g).await.status, ExecutionStatus::Denied);
}

#[tokio::test]
async fn approval_parks_the_execution_and_reports_state() {
    let g = governor();
    let saved = Arc::new(Mutex::new(Vec::<(ExecutionId, Value)>::new()));
    let s = Arc::clone(&saved);
    let action = g
        .action("large_transfer")
        .policy(
            ApprovalPolicy::new(["cfo@company.com"])
                .timeout_seconds(10)
                .auto_approve_when(|i, _| i["amount"].as_f64().is_some_and(|a| a < 1000.0)),
        )
        .on_state_saved(move |id, state| s.lock().unwrap().push((id, state.clone())))
        .build()
        .unwrap();
    let small: Value = action
        .run(Args::new().arg("amount", &500), || async {
            Ok::<_, GovernError>(json!("done"))
        })
        .await
        .unwrap();
    assert_eq!(small, "done");

    let err = action
        .run(Args::new().arg("amount", &50_000), || async {
            Ok::<_, GovernError>(json!("done"))
        })
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    let e = g.execution(execution_id).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::AwaitingApproval);
    let approval = e.approval.unwrap();
    assert_eq!(approval.stages[0].spec.approvers, vec!["cfo@company.com"]);
    assert!(approval.stages[0].expires_at.is_some());
    let snaps = g.store().snapshots(execution_id).await.unwrap();
    assert_eq!(snaps[0].checkpoint, Checkpoint::AwaitingApproval);
    assert_eq!(snaps[0].state.value()["amount"], 50_000);
    let last = saved.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0, execution_id);
    assert_eq!(last.1["approval_required"], true);
    assert!(
        event_kinds(&g, execution_id)
            .await
            .contains(&EventKind::ApprovalRequested)
    );
}

#[tokio::test]
async fn failing_post_policy_marks_failed_after_side_effects() {
    let g = governor();
    let side_effect = Arc::new(Mutex::new(0));
    let action = g
        .action("export")
        .policy(
            ValidationPolicy::new().output_validator(|o: &Value| -> Result<(), String> {
                if o["rows"].as_u64() > Some(100) {
                    Err("too many rows exported".into())
                } else {
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let se = Arc::clone(&side_effect);
    let err = action
        .run(Args::new(), || async move {
            *se.lock().unwrap() += 1;
            Ok::<_, GovernError>(json!({"rows": 5000}))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            GovernError::Invalid {
                phase: PolicyPhase::PostExecution,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(*side_effect.lock().unwrap(), 1, "the action did run");
    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(e.failure.unwrap().message.contains("too many rows"));
}

#[tokio::test]
async fn action_errors_are_recorded_and_returned_unchanged() {
    #[derive(Debug, thiserror::Error)]
    enum PayError {
        #[error("insufficient funds: {0}")]
        Funds(u32),
        #[error(transparent)]
        Govern(#[from] GovernError),
    }
    let g = governor();
    let action = g.action("pay").build().unwrap();
    let err = action
        .run(Args::new(), || async { Err::<(), _>(PayError::Funds(3)) })
        .await
        .unwrap_err();
    assert!(matches!(err, PayError::Funds(3)));
    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.failure.unwrap().message, "insufficient funds: 3");
}

#[tokio::test]
async fn a_dropped_call_is_marked_cancelled() {
    let g = governor();
    let action = g.action("slow").build().unwrap();
    let call = action.run(Args::new(), || async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, GovernError>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err()
    );
    for _ in 0..100 {
        if only_execution(&g).await.status == ExecutionStatus::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Cancelled);
    assert!(
        event_kinds(&g, e.id)
            .await
            .contains(&EventKind::ExecutionCancelled)
    );
}

#[tokio::test]
async fn sensitive_fields_never_reach_storage_events_snapshots_audit_or_errors() {
    let g = governor();
    let mut stream = g.events().subscribe();
    let action = g
        .action("onboard")
        .policy(
            AuditPolicy::new()
                .sensitive_fields(["ssn", "Password"])
                .compliance_tags(["GDPR"]),
        )
        .build()
        .unwrap();
    let out: Value = action
        .run(
            Args::new().arg(
                "user",
                &json!({"name": "Bo", "SSN": "123-45-6789", "pets": [{"password": "hunter2"}]}),
            ),
            || async { Ok::<_, GovernError>(json!({"ok": true, "ssn": "123-45-6789"})) },
        )
        .await
        .unwrap();
    assert_eq!(
        out["ssn"], "123-45-6789",
        "the caller still gets the real value"
    );

    let e = only_execution(&g).await;
    let mut everything = vec![serde_json::to_string(&e).unwrap()];
    for s in g.store().snapshots(e.id).await.unwrap() {
        everything.push(serde_json::to_string(&s).unwrap());
    }
    for ev in g.store().events(&EventQuery::default()).await.unwrap() {
        everything.push(serde_json::to_string(&ev).unwrap());
    }
    while let Ok(ev) = stream.try_recv() {
        everything.push(serde_json::to_string(&*ev).unwrap());
    }
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    everything.push(serde_json::to_string(&audit).unwrap());
    let all = everything.join("\n");
    assert!(
        !all.contains("123-45-6789") && !all.contains("hunter2"),
        "{all}"
    );
    assert!(all.contains(REDACTED));
    assert_eq!(&*audit[0].record.tags, ["GDPR"]);
    assert!(audit[0].record.inputs.is_some() && audit[0].record.output.is_some());

    let failing = g
        .action("login")
        .policy(AuditPolicy::new().sensitive_fields(["password"]))
        .build()
        .unwrap();
    let _ = failing
        .run(Args::new(), || async {
            Err::<(), GovernError>(GovernError::Config("bad password=hunter2".into()))
        })
        .await;
    let failed = g
        .store()
        .executions(&ExecutionQuery {
            action: Some("login".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        !failed[0]
            .failure
            .as_ref()
            .unwrap()
            .message
            .contains("hunter2")
    );
}

#[tokio::test]
async fn shadow_policies_record_but_do_not_enforce() {
    let g = governor();
    let action = g
        .action("deploy")
        .policy(AuthorizationPolicy::new().require_roles(["sre"]).shadow())
        .policy(policy_fn("soft", |_| Decision::Warn("unusual hour".into())))
        .build()
        .unwrap();
    action
        .run_as(Principal::new("dev"), Args::new(), || async {
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap();
    let e = only_execution(&g).await;
    assert_eq!(e.status, ExecutionStatus::Completed);
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    let d = &audit[0].record.decisions;
    assert_eq!(d[0].outcome, "deny");
    assert!(d[0].shadow);
    assert_eq!(d[1].outcome, "warn");
    assert_eq!(
        event_kinds(&g, e.id)
            .await
            .iter()
            .filter(|k| **k == EventKind::PolicyFailed)
            .count(),
        2
    );
}

#[tokio::test]
async fn principal_comes_from_the_task_local_scope() {
    let g = governor();
    let action = g
        .action("who")
        .policy(AuthorizationPolicy::new().require_permissions(["read"]))
        .build()
        .unwrap();
    let caller = Principal::new("scoped").with_permissions(["read"]);
    caller
        .scope(async {
            action
                .run(Args::new(), || async { Ok::<_, GovernError>(()) })
                .await
                .unwrap()
        })
        .await;
    assert_eq!(only_execution(&g).await.principal.id, "scoped");
    let err = action
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
        .unwrap_err();
    assert!(matches!(err, GovernError::Denied { rule: Some(ref r), .. } if r == "principal"));
}

#[tokio::test]
async fn failing_pre_action_stops_the_call() {
    let g = governor();
    let action = g
        .action("guarded")
        .pre(Hook::new("check_budget", |_| async {
            Err("budget service down".to_string())
        }))
        .build()
        .unwrap();
    let err = action
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GovernError::Hook {
                stage: "pre-action",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(only_execution(&g).await.status, ExecutionStatus::Failed);
}

#[tokio::test]
async fn slow_event_handlers_do_not_slow_the_call() {
    let g = governor();
    g.events()
        .on_async(None, |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await
        })
        .unwrap();
    g.events()
        .on(EventKind::ExecutionCompleted, |_| panic!("handler bug"))
        .unwrap();
    let action = g.action("fast").build().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        action
            .run(Args::new(), || async { Ok::<_, GovernError>(()) })
            .await
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn unserializable_arguments_are_a_typed_error_and_nothing_runs() {
    let g = governor();
    let action = g.action("bad_args").build().unwrap();
    let mut weird = std::collections::HashMap::new();
    weird.insert(vec![1u8], 1);
    let err = action
        .run(Args::new().arg("m", &weird), || async {
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap_err();
    let GovernError::Serialization { action, what, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((action.as_str(), what.as_str()), ("bad_args", "m"));
    assert!(
        g.store()
            .executions(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_store_is_a_typed_error_and_the_action_does_not_run_unrecorded() {
    let g = Governor::builder()
        .store(failing_store(usize::MAX))
        .build()
        .unwrap();
    let action = g.action("pay").build().unwrap();
    let ran = Arc::new(Mutex::new(false));
    let r = Arc::clone(&ran);
    let err = action
        .run(Args::new(), || async move {
            *r.lock().unwrap() = true;
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap_err();
    let GovernError::Store(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind(), StoreErrorKind::Unavailable);
    assert!(!*ran.lock().unwrap());
}

#[tokio::test]
async fn finish_time_is_taken_after_the_action_returns() {
    let g = governor();
    let action = g.action("sleepy").build().unwrap();
    action
        .run(Args::new(), || async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok::<_, GovernError>(())
        })
        .await
        .unwrap();
    let e = only_execution(&g).await;
    assert!(e.duration_ms().unwrap() >= 30, "{:?}", e.duration_ms());
    let snaps = g.store().snapshots(e.id).await.unwrap();
    assert!(snaps[1].captured_at - snaps[0].captured_at >= chrono::Duration::milliseconds(30));
}

/// A memory store that fails its first `failures` creates, like a disk
/// that filled up (and, for a finite count, was cleared again).
fn failing_store(failures: usize) -> InterceptWrites<MemoryStore> {
    let left = std::sync::atomic::AtomicUsize::new(failures);
    InterceptWrites::new(MemoryStore::new(), move |write| {
        let StoreWrite::Create(_) = write else {
            return None;
        };
        let ordering = std::sync::atomic::Ordering::SeqCst;
        left.fetch_update(ordering, ordering, |n| n.checked_sub(1))
            .ok()
            .map(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "create",
                    "disk full",
                ))
            })
    })
}

#[tokio::test(start_paused = true)]
async fn an_unrecorded_call_gives_its_quota_back() {
    let g = Governor::builder().store(failing_store(1)).build().unwrap();
    let action = g
        .action("pay")
        .policy(RateLimitPolicy::new(1, Duration::from_secs(60)))
        .build()
        .unwrap();
    let call = || action.run(Args::new(), || async { Ok::<_, GovernError>(()) });
    assert!(matches!(call().await, Err(GovernError::Store(_))));
    call().await.unwrap();
    assert!(matches!(call().await, Err(GovernError::RateLimited { .. })));
}

/// Collects the `kind` of every `governor::event` tracing event.
struct EventKinds(Arc<Mutex<Vec<String>>>);

impl tracing::field::Visit for &EventKinds {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "kind" {
            self.0.lock().unwrap().push(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl tracing::Subscriber for EventKinds {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "governor::event"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut &*self);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

async fn plain_call(g: &Governor) -> ExecutionId {
    let action = g.action("observed").build().unwrap();
    action
        .run(Args::new().arg("n", &1), || async {
            Ok::<_, GovernError>(2)
        })
        .await
        .unwrap();
    only_execution(g).await.id
}

/// The memory store moves a call's events into itself; whoever observes
/// events still gets each one as stored.
#[tokio::test]
async fn streams_get_every_event_as_stored() {
    let g = governor();
    let mut stream = g.events().subscribe();
    let id = plain_call(&g).await;
    let q = EventQuery {
        execution_id: Some(id),
        ..Default::default()
    };
    let stored = g.store().events(&q).await.unwrap();
    let mut streamed = Vec::new();
    while let Ok(e) = stream.try_recv() {
        streamed.push(e);
    }
    assert!(stored.len() >= 4, "{stored:?}");
    // Ids are given at the write, in the order the events happened.
    assert!(stored.iter().all(|e| !e.id.is_nil()), "{stored:?}");
    assert!(stored.windows(2).all(|w| w[0].time <= w[1].time));
    let fields = |e: &Event| {
        (
            e.id,
            e.kind,
            e.time,
            e.data.as_str().to_owned(),
            e.execution_id,
        )
    };
    assert_eq!(
        streamed.iter().map(|e| fields(e)).collect::<Vec<_>>(),
        stored.iter().map(fields).collect::<Vec<_>>()
    );
    assert!(streamed.iter().all(|e| &*e.action == "observed"));
}

#[test]
fn tracing_gets_every_event_with_no_other_listener() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = EventKinds(Arc::clone(&seen));
    let stored = tracing::subscriber::with_default(subscriber, || {
        // Other tests' threads may have cached "nobody listens" for the
        // event callsite while no subscriber was set: ask again.
        tracing::callsite::rebuild_interest_cache();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let g = governor();
            let id = plain_call(&g).await;
            event_kinds(&g, id).await
        })
    });
    let stored: Vec<String> = stored.iter().map(|k| k.as_str().to_owned()).collect();
    assert!(stored.len() >= 4, "{stored:?}");
    assert_eq!(*seen.lock().unwrap(), stored);
}

/// Calls every policy allows share one decision list in their audit
/// records; a call with a different outcome gets its own.
#[tokio::test]
async fn calls_passing_every_policy_share_their_decision_list() {
    let g = governor();
    let action = g
        .action("shared_decisions")
        .policy(ValidationPolicy::new().input_validator(|i: &Value| i["n"].as_i64() != Some(13)))
        .policy(RateLimitPolicy::new(1_000, Duration::from_secs(60)))
        .policy(AuditPolicy::new().compliance_tags(["SOC2"]))
        .build()
        .unwrap();
    for n in [1, 2, 13] {
        let _ = action
            .run(Args::new().arg("n", &n), || async {
                Ok::<_, GovernError>(n)
            })
            .await;
    }
    let audit = g.store().audit_entries(0, 10).await.unwrap();
    let lists: Vec<_> = audit.iter().map(|a| &a.record.decisions).collect();
    assert_eq!(lists.len(), 3, "{audit:?}");
    assert!(Arc::ptr_eq(lists[0], lists[1]), "{lists:?}");
    let names: Vec<&str> = lists[0].iter().map(|d| &*d.policy).collect();
    // The audit policy decides before the body runs and after.
    let expected = [
        "ValidationPolicy",
        "RateLimitPolicy",
        "AuditPolicy",
        "AuditPolicy",
    ];
    assert_eq!(names, expected);
    assert!(
        lists[0]
            .iter()
            .all(|d| d.outcome == "allow" && d.reason.is_none())
    );
    assert!(!Arc::ptr_eq(lists[0], lists[2]));
    assert_eq!(
        lists[2].last().map(|d| &*d.outcome),
        Some("deny"),
        "{:?}",
        lists[2]
    );
}
