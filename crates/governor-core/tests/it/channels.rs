use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor_core::*;
use serde_json::json;
use tokio::io::AsyncReadExt;

fn parked_action(g: &Governor, wait: Duration) -> Action {
    g.action("wire_transfer")
        .policy(AuditPolicy::new().sensitive_fields(["iban"]))
        .policy(ApprovalPolicy::new(["cfo@company.com"]).wait(wait))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_hear_of_requests_only_once_they_are_stored() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let g = Governor::builder()
        .channel(CallbackChannel::new(
            "record",
            move |g: Governor, notice: ApprovalNotice| {
                let s = Arc::clone(&s);
                async move {
                    let stored = g
                        .execution(notice.execution_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    s.lock().unwrap().push((notice, stored.map(|e| e.status)));
                    Ok(())
                }
            },
        ))
        .channel(CallbackChannel::new("broken", |_, _| async {
            Err("smtp server down".to_string())
        }))
        .build()
        .unwrap();
    let err = parked_action(&g, Duration::ZERO)
        .run(
            Args::new()
                .arg("iban", "DE44500105175407324931")
                .arg("amount", &9_000),
            || async { Ok::<_, GovernError>(()) },
        )
        .await
        .unwrap_err();
    let GovernError::Pending { execution_id } = err else {
        panic!("{err:?}")
    };
    for _ in 0..200 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = seen.lock().unwrap();
    let (notice, status) = &seen[0];
    assert_eq!(notice.execution_id, execution_id);
    assert_eq!(
        *status,
        Some(ExecutionStatus::AwaitingApproval),
        "stored before announced"
    );
    assert_eq!(notice.inputs.value()["iban"], REDACTED);
    assert_eq!(notice.request.stages[0].spec.approvers, ["cfo@company.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_at_the_terminal_decides_and_the_waiting_caller_continues() {
    let (mut screen, terminal_out) = tokio::io::duplex(64 * 1024);
    let keyboard = tokio::io::BufReader::new(&b"maybe\ny invoice checked\n"[..]);
    let operator = Principal::new("carol").with_attribute("email", "cfo@company.com");
    let g = Governor::builder()
        .channel(CliChannel::with_io(operator, keyboard, terminal_out))
        .build()
        .unwrap();
    let out: serde_json::Value = parked_action(&g, Duration::from_secs(10))
        .run(
            Args::new().arg("iban", "DE44500105175407324931"),
            || async { Ok::<_, GovernError>(json!({"status": "sent"})) },
        )
        .await
        .unwrap();
    assert_eq!(out["status"], "sent");
    drop(g);
    let mut text = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), screen.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    text.push_str(&String::from_utf8_lossy(&buf[..n]));
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(50), screen.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.contains("action       wire_transfer"), "{text}");
    assert!(
        text.contains(REDACTED) && !text.contains("DE44500105175407324931"),
        "{text}"
    );
    assert!(text.contains("please answer y or n"), "{text}");
    assert!(text.contains("recorded: execution"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_operator_is_still_checked_against_the_approvers() {
    let (mut screen, terminal_out) = tokio::io::duplex(64 * 1024);
    let keyboard = tokio::io::BufReader::new(&b"y\n"[..]);
    let g = Governor::builder()
        .channel(CliChannel::with_io(
            Principal::new("bob"),
            keyboard,
            terminal_out,
        ))
        .build()
        .unwrap();
    let err = parked_action(&g, Duration::from_millis(300))
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
        .unwrap_err();
    assert!(matches!(err, GovernError::Pending { .. }), "{err:?}");
    let mut text = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !text.contains("not recorded") {
        let n = tokio::time::timeout(Duration::from_secs(5), screen.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.contains("`bob` is not an approver"), "{text}");
}
