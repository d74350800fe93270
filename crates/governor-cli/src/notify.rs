//! `governor notify test`: sends a test notification to a target the
//! config file sets, through the same outbox and delivery as a real
//! request, and says how it went.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_governor::{
    ApprovalPolicy, Args, DeliveryState, GovernError, Governor, NotificationQuery, Principal,
    RetryPolicy,
};
use anyhow::{Context, bail};
use clap::Subcommand;

use crate::output::clean;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Send a test notification (a request that waits for the approver
    /// `--to`) to one target and report the outcome.
    Test {
        /// The `governor serve` config file that sets the target.
        #[arg(long, env = "GOVERNOR_CONFIG")]
        config: PathBuf,
        /// The target: `email`, `slack`, `webhook:NAME` (or just NAME).
        #[arg(long)]
        channel: String,
        /// The approver the test request names (an email address, for
        /// `email`).
        #[arg(long, default_value = "governor-notify-test")]
        to: String,
    },
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Test {
        config,
        channel,
        to,
    } = command;
    let (targets, policy) = crate::serve::notify_targets(&config)?;
    let wanted = if channel.contains(':')
        || channel == agent_governor::notify::EMAIL_TARGET
        || channel == agent_governor::notify::SLACK_TARGET
    {
        channel.clone()
    } else {
        format!("webhook:{channel}")
    };
    let names: Vec<String> = targets.iter().map(|t| t.name().to_owned()).collect();
    let Some(target) = targets.into_iter().find(|t| t.name() == wanted) else {
        bail!(
            "no target `{wanted}` in {} (it sets: {})",
            config.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    // One attempt: the answer is about the target now, not after retries.
    let policy = RetryPolicy {
        max_attempts: 1,
        ..policy.unwrap_or_default()
    };
    let governor = Governor::builder()
        .deliver_to_shared(target)
        .retry_policy(policy)
        .build()?;
    let action = governor
        .action("governor.notify-test")
        .policy(ApprovalPolicy::new([to.as_str()]).named("NotifyTest"))
        .build()?;
    let sent = action
        .run_as(
            Principal::new("governor"),
            Args::new().arg(
                "message",
                &"a test notification from `governor notify test`",
            ),
            || async { Ok::<_, GovernError>(()) },
        )
        .await;
    let Err(GovernError::Pending { execution_id }) = sent else {
        bail!("the test request did not wait for approval");
    };
    let until = std::time::Instant::now() + policy.lease + Duration::from_secs(30);
    while std::time::Instant::now() < until {
        let found = governor
            .notifications(&NotificationQuery {
                execution_id: Some(execution_id),
                ..NotificationQuery::default()
            })
            .await
            .context("reading the outbox")?;
        match found.first() {
            Some(n) if n.state == DeliveryState::Delivered => {
                out!("delivered to {wanted}: notification {}", n.id);
                return Ok(ExitCode::SUCCESS);
            }
            Some(n) if n.state == DeliveryState::Dead => {
                out!(
                    "not delivered to {wanted}: {}",
                    clean(n.last_error.as_deref().unwrap_or("no reason given"))
                );
                return Ok(ExitCode::from(2));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    bail!("no outcome from {wanted} within the delivery lease")
}
