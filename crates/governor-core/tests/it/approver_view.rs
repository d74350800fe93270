//! What an approver is shown: the action's display, masked sensitive
//! values, and the condition that made the call ask.

use std::sync::{Arc, Mutex};

use governor_core::config::Format;
use governor_core::*;
use serde_json::{Value, json};

const FILE: &str = r#"
displays:
  - actions: [wire]
    title: "Wire {amount:currency(EUR)} to {to} ({iban})"
    fields:
      - name: amount
        label: Amount
        currency: eur
      - to
      - iban
    on_approve: The transfer is sent immediately.
policies:
  - type: audit
    name: WireAudit
    sensitive_fields:
      - ssn
      - field: iban
        mask: last4
      - field: email
        mask: domain
  - type: approval
    name: LargeWire
    approvers: [cfo]
    when: input.amount >= 10000
"#;

fn wire(g: &Governor, file: &PolicyFile, seen: &Arc<Mutex<Vec<Value>>>) -> Action {
    let seen = Arc::clone(seen);
    g.action("wire")
        .policies(file.policies_for("wire"))
        .display(file.display_for("wire").cloned().unwrap())
        .resumable(move |args: Value| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(args.clone());
                Ok::<_, GovernError>(json!("sent"))
            }
        })
        .build()
        .unwrap()
}

async fn park(action: &Action, amount: u32) -> ExecutionId {
    let call = Call::new(
        Args::new()
            .arg("amount", &amount)
            .arg("to", &"Globex")
            .arg("iban", &"DE89370400440532013000")
            .arg("email", &"ap@globex.example"),
    )
    .principal(Principal::new("agent"));
    match action
        .run_with(
            call,
            || async { Ok::<_, GovernError>(json!(0)) },
            |v| Some(Ok(Json::from(v))),
            |e| e.to_string(),
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

#[tokio::test]
async fn an_approver_sees_the_title_masked_values_and_the_trigger() {
    let file = PolicyFile::parse(FILE, Format::Yaml).unwrap();
    let g = Governor::builder()
        .seal_key(SealKey::from_bytes([3; 32]))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let action = wire(&g, &file, &seen);
    let id = park(&action, 93_231).await;

    let stored = g.execution(id).await.unwrap().unwrap();
    let inputs = stored.inputs.value();
    assert_eq!(inputs["iban"], format!("{REDACTED}3000"));
    assert_eq!(inputs["email"], format!("{REDACTED}@globex.example"));
    assert!(!stored.inputs.as_str().contains("DE89"));

    let display = g.action_display("wire").unwrap();
    assert_eq!(
        display.title(&inputs).as_deref(),
        Some("Wire €93,231.00 to Globex (••••3000)")
    );
    assert_eq!(display.fields[0].currency.as_deref(), Some("EUR"));
    assert_eq!(
        display.on_approve.as_deref(),
        Some("The transfer is sent immediately.")
    );

    let stage = &stored.approval.as_ref().unwrap().stages[0];
    let trigger = stage.spec.trigger.as_ref().unwrap();
    assert_eq!(trigger.condition, "input.amount >= 10000");
    assert_eq!(trigger.fields, ["amount"]);
    assert!(!trigger.unless);

    // A small wire does not ask; nothing was triggered.
    let small = action
        .run_as(
            Principal::new("agent"),
            Args::new().arg("amount", &5u32).arg("to", &"Globex"),
            || async { Ok::<_, GovernError>(json!("sent")) },
        )
        .await;
    assert!(small.is_ok(), "{small:?}");

    // Left as shown, a masked value keeps the value it hides; a masked
    // value that shows something else is refused, not guessed.
    let cfo = Principal::new("cfo");
    let mut edits = inputs.clone();
    edits["iban"] = json!(format!("{REDACTED}9999"));
    let err = g
        .approve_with_edits(id, &cfo, edits, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("iban"), "{err}");
    let mut edits = inputs.clone();
    edits["amount"] = json!(90_000);
    g.approve_with_edits(id, &cfo, edits, None, None)
        .await
        .unwrap();
    g.resume(id).await.unwrap();
    let ran = seen.lock().unwrap().clone();
    assert_eq!(ran[0]["iban"], "DE89370400440532013000");
    assert_eq!(ran[0]["email"], "ap@globex.example");
    assert_eq!(ran[0]["amount"], 90_000);
}

#[tokio::test]
async fn an_auto_approval_that_did_not_hold_is_the_trigger() {
    let file = PolicyFile::parse(
        "policies:\n  - type: approval\n    name: Big\n    approvers: [cfo]\n    auto_approve_when: input.amount < 10000\n",
        Format::Yaml,
    )
    .unwrap();
    let g = Governor::builder().build().unwrap();
    let action = g
        .action("pay")
        .policies(file.policies_for("pay"))
        .resumable(|_: Value| async { Ok::<_, GovernError>(json!(1)) })
        .build()
        .unwrap();
    let id = park(&action, 20_000).await;
    let stored = g.execution(id).await.unwrap().unwrap();
    let trigger = stored.approval.unwrap().stages[0]
        .spec
        .trigger
        .clone()
        .unwrap();
    assert_eq!(trigger.condition, "input.amount < 10000");
    assert!(trigger.unless);
}

#[test]
fn mistakes_in_displays_and_masks_are_named() {
    let cases = [
        (
            "displays:\n  - actions: [wire]\n    title: \"Wire {amount:money}\"\n",
            "`displays[0].title`",
        ),
        (
            "displays:\n  - actions: [wire]\n    fields: [{name: amount, currency: euros}]\n",
            "`displays[0].title`",
        ),
        (
            "displays:\n  - actions: [wire]\n    fields: [{name: amount, colour: red}]\n",
            "`displays[0].fields[0]`",
        ),
        (
            "displays:\n  - actions: [wire]\n    fields: [7]\n",
            "`displays[0].fields[0]`",
        ),
        (
            "policies:\n  - type: audit\n    sensitive_fields: [{field: iban, mask: first4}]\n",
            "last4 or domain",
        ),
        (
            "policies:\n  - type: audit\n    sensitive_fields: [{field: iban, masks: last4}]\n",
            "unknown key `masks`",
        ),
        (
            "policies:\n  - type: audit\n    sensitive_fields: [{mask: last4}]\n",
            "needs `field`",
        ),
    ];
    for (text, says) in cases {
        let e = PolicyFile::parse(text, Format::Yaml).unwrap_err();
        assert!(e.to_string().contains(says), "{text}\n=> {e}");
    }
    let e = Governor::builder()
        .build()
        .unwrap()
        .action("x")
        .display(Display::titled("{amount"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("action `x`"), "{e}");
}
