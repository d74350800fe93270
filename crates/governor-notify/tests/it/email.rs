//! Email against a real SMTP server (aiosmtpd): approvers get personal
//! one-time links, STARTTLS and AUTH work, a server down for a minute
//! gets each email once it is back, requesters hear the outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use governor_core::*;
use governor_notify::{EmailConfig, EmailTarget, SmtpSecurity};
use serde_json::{Value, json};

use crate::sink::Sink;

fn config(sink: &Sink) -> EmailConfig {
    let mut c = EmailConfig::new(
        "127.0.0.1",
        "governor <governor@example.com>",
        "https://governor.example.com",
    );
    c.port = Some(sink.port);
    c.security = SmtpSecurity::None;
    c.addresses = BTreeMap::from([
        ("cfo".to_owned(), vec!["cfo@example.com".to_owned()]),
        (
            "role:finance".to_owned(),
            vec!["ana@example.com".to_owned(), "bo@example.com".to_owned()],
        ),
    ]);
    c
}

fn governor(target: EmailTarget, retry: RetryPolicy) -> Governor {
    Governor::builder()
        .deliver_to(target)
        .retry_policy(retry)
        .link_key(LinkKey::from_bytes([3; 32]))
        .build()
        .unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
        lease: Duration::from_secs(10),
    }
}

fn wire(g: &Governor) -> Action {
    g.action("wire")
        .display(
            Display::titled("Wire {amount:currency(EUR)} to {to}")
                .on_approve("the transfer is sent immediately"),
        )
        .policy(AuditPolicy::new().mask("iban", Mask::Last4))
        .policy(ApprovalPolicy::new(["cfo", "role:finance"]).named("Finance"))
        .build()
        .unwrap()
}

async fn park(action: &Action, requester: Principal) -> ExecutionId {
    match action
        .run_as(
            requester,
            Args::new()
                .arg("amount", &93_231)
                .arg("to", &"Globex")
                .arg("iban", &"DE89370400440532013000"),
            || async { Ok::<_, GovernError>(json!("sent")) },
        )
        .await
    {
        Err(GovernError::Pending { execution_id }) => execution_id,
        other => panic!("expected a parked call, got {other:?}"),
    }
}

fn header<'a>(m: &'a Value, name: &str) -> &'a str {
    m["headers"][name].as_str().unwrap_or("")
}

/// The `/links/` token after `label` in a plain-text part.
fn token(text: &str, label: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"));
    line.rsplit("/links/").next().unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_approver_gets_an_email_with_personal_links_that_decide_once() {
    let sink = Sink::start();
    let g = governor(EmailTarget::new(config(&sink)).unwrap(), quick());
    let id = park(&wire(&g), Principal::new("agent")).await;
    let mail = sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 3, "{mail:#?}");
    let mut to: Vec<&str> = mail
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["ana@example.com", "bo@example.com", "cfo@example.com"]);
    let notifications = g
        .notifications(&NotificationQuery {
            execution_id: Some(id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    for m in &mail {
        assert_eq!(
            header(m, "subject"),
            "Approval needed: Wire €93,231.00 to Globex"
        );
        assert_eq!(header(m, "from"), "governor <governor@example.com>");
        assert_eq!(header(m, "x-governor-execution"), id.to_string());
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        for fact in [
            "agent asks to run wire",
            "rule Finance: approval required from: cfo, role:finance",
            "Expires:",
            "Approving: the transfer is sent immediately",
            "••••3000",
        ] {
            assert!(text.contains(fact), "{fact} missing from:\n{text}");
        }
        assert!(
            !text.contains("DE89370400440532013000"),
            "the IBAN is masked"
        );
        assert!(
            html.contains("Approve…") && html.contains("https://governor.example.com/links/gl1.")
        );
        // The Message-ID is the notification: the idempotency key.
        let message_id = header(m, "message-id");
        assert!(
            notifications
                .iter()
                .any(|n| message_id == format!("<{}@governor>", n.id)
                    && n.recipient.as_deref() == m["rcpt_tos"][0].as_str()),
            "{message_id}"
        );
    }
    // Each link is personal: ana's decides as ana, once.
    let ana = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ana@example.com")
        .unwrap();
    let approve = token(ana["text"].as_str().unwrap(), "Approve:");
    let reject = token(ana["text"].as_str().unwrap(), "Reject:");
    assert_ne!(approve, reject);
    let open = g.open_link(&approve).await.unwrap();
    assert_eq!(open.link.address, "ana@example.com");
    assert_eq!(open.link.approver, "role:finance");
    let e = g
        .decide_by_link(&approve, Some("invoice matches"))
        .await
        .unwrap();
    assert_eq!(e.status, ExecutionStatus::Approved);
    assert!(matches!(
        g.decide_by_link(&approve, None).await,
        Err(LinkError::Used { .. })
    ));
    assert!(g.decide_by_link(&reject, None).await.is_err());
    // bo's link now tells that the request was decided.
    let bo = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "bo@example.com")
        .unwrap();
    assert!(matches!(
        g.open_link(&token(bo["text"].as_str().unwrap(), "Approve:"))
            .await,
        Err(LinkError::Decided { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_are_used_and_a_refused_login_goes_dead() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = Sink::with(true, Some("governor:s3cret"));
    let mut c = config(&sink);
    c.security = SmtpSecurity::StartTls;
    c.extra_roots_pem = Some(sink.certificate());
    c.credentials = Some(("governor".into(), "s3cret".into()));
    let g = governor(EmailTarget::new(c.clone()).unwrap(), quick());
    park(&wire(&g), Principal::new("agent")).await;
    let mail = sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 3, "delivered over STARTTLS with AUTH");

    c.credentials = Some(("governor".into(), "wrong".into()));
    let g = governor(EmailTarget::new(c.clone()).unwrap(), quick());
    let id = park(&wire(&g), Principal::new("agent")).await;
    let dead = wait_states(&g, id, |s| s == DeliveryState::Dead).await;
    assert!(
        dead.iter()
            .all(|n| n.last_error.as_deref().is_some_and(|e| e.contains("SMTP"))),
        "{dead:#?}"
    );
    // Without trusting the server's certificate, nothing is sent.
    c.credentials = Some(("governor".into(), "s3cret".into()));
    c.extra_roots_pem = None;
    let g = governor(EmailTarget::new(c).unwrap(), quick());
    let id = park(&wire(&g), Principal::new("agent")).await;
    wait_states(&g, id, |s| s == DeliveryState::Dead).await;
    assert_eq!(sink.messages().len(), 3);
}

async fn wait_states(
    g: &Governor,
    id: ExecutionId,
    done: impl Fn(DeliveryState) -> bool,
) -> Vec<Notification> {
    for _ in 0..600 {
        let all = g
            .notifications(&NotificationQuery {
                execution_id: Some(id),
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        if !all.is_empty() && all.iter().all(|n| done(n.state)) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("notifications of {id} never reached the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_a_minute_each_email_arrives_once_it_is_back() {
    let mut sink = Sink::down_at_first();
    let retry = RetryPolicy {
        max_attempts: 50,
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        lease: Duration::from_secs(30),
    };
    let g = governor(EmailTarget::new(config(&sink)).unwrap(), retry);
    let id = park(&wire(&g), Principal::new("agent")).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let waiting = g
        .notifications(&NotificationQuery {
            execution_id: Some(id),
            ..NotificationQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(waiting.len(), 3);
    assert!(
        waiting
            .iter()
            .all(|n| n.state == DeliveryState::Pending && n.attempts >= 3),
        "retried while the server was down: {waiting:#?}"
    );
    sink.up();
    let delivered = wait_states(&g, id, |s| s == DeliveryState::Delivered).await;
    // Give duplicates, if any, time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mail = sink.messages();
    assert_eq!(mail.len(), 3, "{mail:#?}");
    let mut ids: Vec<&str> = mail.iter().map(|m| header(m, "message-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "exactly one email per notification");
    for n in &delivered {
        assert!(ids.contains(&format!("<{}@governor>", n.id).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_hears_the_outcome_and_sign_in_policies_link_the_console() {
    let sink = Sink::start();
    let mut c = config(&sink);
    c.notify_requester = true;
    let g = governor(EmailTarget::new(c).unwrap(), quick());
    let id = park(
        &wire(&g),
        Principal::new("agent").with_attribute("email", "owner@example.com"),
    )
    .await;
    sink.wait_for(3, Duration::from_secs(20)).await;
    g.reject(id, &Principal::new("cfo"), Some("wrong vendor"))
        .await
        .unwrap();
    let mail = sink.wait_for(4, Duration::from_secs(20)).await;
    let outcome = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "owner@example.com")
        .expect("the requester's email");
    assert_eq!(
        header(outcome, "subject"),
        "Your request was rejected: Wire €93,231.00 to Globex"
    );
    assert!(
        outcome["text"]
            .as_str()
            .unwrap()
            .contains("by cfo: “wrong vendor”")
    );

    let signed_in = g
        .action("wire_signed_in")
        .policy(ApprovalPolicy::new(["cfo"]).notify(NotifySpec {
            links: LinkMode::SignIn,
            ..NotifySpec::default()
        }))
        .build()
        .unwrap();
    let id = park(&signed_in, Principal::new("agent")).await;
    let mail = sink.wait_for(5, Duration::from_secs(20)).await;
    let text = mail[4]["text"].as_str().unwrap();
    assert!(!text.contains("/links/"), "{text}");
    assert!(text.contains(&format!(
        "Sign in to decide: https://governor.example.com/dashboard/#/pending/{id}"
    )));
    // A policy naming other channels sends no email.
    let elsewhere = g
        .action("wire_slack_only")
        .policy(ApprovalPolicy::new(["cfo"]).notify(NotifySpec {
            channels: vec!["slack".into()],
            ..NotifySpec::default()
        }))
        .build()
        .unwrap();
    park(&elsewhere, Principal::new("agent")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 5);
}

#[test]
fn bad_configurations_are_named() {
    let mut c = EmailConfig::new(
        "smtp.example.com",
        "not an address",
        "https://g.example.com",
    );
    assert!(
        EmailTarget::new(c.clone())
            .unwrap_err()
            .to_string()
            .contains("not an email address")
    );
    c.from = "governor@example.com".into();
    c.public_url = "governor.example.com".into();
    assert!(
        EmailTarget::new(c.clone())
            .unwrap_err()
            .to_string()
            .contains("public_url")
    );
    c.public_url = "https://g.example.com".into();
    c.addresses.insert("cfo".into(), vec!["nope".into()]);
    assert!(
        EmailTarget::new(c)
            .unwrap_err()
            .to_string()
            .contains("`cfo` maps to `nope`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_reaches_only_the_approvers_who_have_not_decided() {
    let sink = Sink::start();
    let g = governor(EmailTarget::new(config(&sink)).unwrap(), quick());
    let action = g
        .action("wire")
        .policy(
            ApprovalPolicy::new(["role:finance"])
                .quorum(2, true)
                .expires_in(Some(Duration::from_secs(3600)))
                .notify(NotifySpec {
                    remind_before_seconds: vec![7200],
                    ..NotifySpec::default()
                }),
        )
        .build()
        .unwrap();
    park(&action, Principal::new("agent")).await;
    let mail = sink.wait_for(2, Duration::from_secs(20)).await;
    let ana = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ana@example.com")
        .unwrap();
    g.decide_by_link(&token(ana["text"].as_str().unwrap(), "Approve:"), None)
        .await
        .unwrap();
    assert_eq!(g.sweep_expired().await.unwrap(), 1);
    let mail = sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 3, "{mail:#?}");
    let reminder = &mail[2];
    assert_eq!(reminder["rcpt_tos"][0], "bo@example.com");
    assert!(header(reminder, "subject").starts_with("Reminder: approval needed"));
    assert!(
        reminder["text"]
            .as_str()
            .unwrap()
            .contains("1 of 2 approvals so far")
    );
    g.sweep_expired().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 3, "each reminder once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_the_policy_informs_get_the_request_without_links() {
    let sink = Sink::start();
    let g = governor(EmailTarget::new(config(&sink)).unwrap(), quick());
    let action = g
        .action("wire")
        .policy(ApprovalPolicy::new(["cfo"]).notify(NotifySpec {
            recipients: vec!["ops@example.com".into()],
            ..NotifySpec::default()
        }))
        .build()
        .unwrap();
    park(&action, Principal::new("agent")).await;
    let mail = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let ops = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ops@example.com")
        .unwrap();
    assert!(header(ops, "subject").starts_with("For your information: approval requested"));
    let text = ops["text"].as_str().unwrap();
    assert!(!text.contains("/links/"), "no decision links: {text}");
    assert!(text.contains("cfo decide it"), "{text}");
    let cfo = mail
        .iter()
        .find(|m| m["rcpt_tos"][0] == "cfo@example.com")
        .unwrap();
    assert!(cfo["text"].as_str().unwrap().contains("/links/gl1."));
}
