//! Slack: requests posted to a channel with Approve and Reject buttons;
//! the message is updated when the request is decided anywhere.
//!
//! Delivery uses the Web API (`chat.postMessage`, `chat.update`, and
//! `chat.postEphemeral`, `views.open`, `users.info` for interactions) with
//! a bot token. Clicks come back to the interactivity endpoint
//! ([`SlackTarget::interactions`], mounted by `governor serve` at
//! `/slack/interactions`), which checks Slack's `v0` signature, maps the
//! Slack user to an approver (a configured table, else their profile's
//! email through `users.info`) and decides as them: governor, not Slack,
//! says who may approve.

mod blocks;
mod interact;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor_core::{
    DeliveryError, DeliveryTarget, ExecutionStatus, Governor, Notification, NotificationKind,
    NotificationQuery,
};
use serde_json::{Value, json};

pub use interact::{SlackSignature, verify_signature};

/// The target's name: policies list it in `notify.channels`.
pub const SLACK_TARGET: &str = "slack";

/// How governor talks to Slack.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The bot token (`xoxb-...`): scopes `chat:write`, and `users:read`
    /// with `users:read.email` to map clickers by email.
    pub bot_token: String,
    /// The app's signing secret, which interactions are signed with.
    pub signing_secret: String,
    /// Where requests are posted (a channel id such as `C0123456789`).
    pub channel: String,
    /// The Web API's address (default `https://slack.com/api`).
    pub api_base: String,
    /// Slack user ids mapped to approver ids (`U0123ABC = "cfo"`); others
    /// are known by their Slack profile's email.
    pub users: BTreeMap<String, String>,
    /// The console's address, linked from messages (optional).
    pub public_url: Option<String>,
}

impl SlackConfig {
    /// Posting to `channel` with `bot_token`, verifying interactions with
    /// `signing_secret`, through Slack's own API.
    pub fn new(
        bot_token: impl Into<String>,
        signing_secret: impl Into<String>,
        channel: impl Into<String>,
    ) -> Self {
        Self {
            bot_token: bot_token.into(),
            signing_secret: signing_secret.into(),
            channel: channel.into(),
            api_base: "https://slack.com/api".into(),
            users: BTreeMap::new(),
            public_url: None,
        }
    }
}

/// What is wrong with a Slack configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// A required setting is empty.
    #[error("slack: `{0}` is empty")]
    Missing(&'static str),
    /// The API address is not an http(s) URL.
    #[error("slack: api_base `{0}` is not an http:// or https:// URL")]
    BadApiBase(String),
    /// The HTTP client could not be built (no TLS provider installed).
    #[error("slack: the HTTP client could not be built: {0}")]
    Client(String),
}

/// Requests and decisions in a Slack channel.
#[derive(Clone)]
pub struct SlackTarget {
    inner: Arc<Inner>,
}

struct Inner {
    config: SlackConfig,
    client: reqwest::Client,
    /// Signatures seen within the replay window, with their timestamp.
    seen: Mutex<BTreeMap<String, i64>>,
}

impl std::fmt::Debug for SlackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackTarget")
            .field("channel", &self.inner.config.channel)
            .field("api_base", &self.inner.config.api_base)
            .finish_non_exhaustive()
    }
}

/// A Web API call that failed: the method's `error`, or the transport's.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) message: String,
    pub(crate) transient: bool,
}

impl From<ApiError> for DeliveryError {
    fn from(e: ApiError) -> Self {
        if e.transient {
            DeliveryError::transient(e.message)
        } else {
            DeliveryError::permanent(e.message)
        }
    }
}

impl SlackTarget {
    /// A target for `config`.
    pub fn new(config: SlackConfig) -> Result<Self, SlackError> {
        for (value, name) in [
            (&config.bot_token, "bot_token"),
            (&config.signing_secret, "signing_secret"),
            (&config.channel, "channel"),
        ] {
            if value.trim().is_empty() {
                return Err(SlackError::Missing(name));
            }
        }
        if !(config.api_base.starts_with("http://") || config.api_base.starts_with("https://")) {
            return Err(SlackError::BadApiBase(config.api_base.clone()));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SlackError::Client(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                seen: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    fn config(&self) -> &SlackConfig {
        &self.inner.config
    }

    /// Calls the Web API method `method` with a JSON body; its answer
    /// when `ok`.
    pub(crate) async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}/{method}", self.config().api_base.trim_end_matches('/'));
        let sent = self
            .inner
            .client
            .post(&url)
            .bearer_auth(&self.config().bot_token)
            .json(body)
            .send()
            .await;
        self.answer(method, sent).await
    }

    /// Calls a read method (`users.info`) with query parameters.
    pub(crate) async fn read(
        &self,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let url = format!(
            "{}/{method}?{query}",
            self.config().api_base.trim_end_matches('/')
        );
        let sent = self
            .inner
            .client
            .get(&url)
            .bearer_auth(&self.config().bot_token)
            .send()
            .await;
        self.answer(method, sent).await
    }

    async fn answer(
        &self,
        method: &str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, ApiError> {
        let response = sent.map_err(|e| ApiError {
            message: format!("slack {method}: {e}"),
            transient: true,
        })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(ApiError {
                message: format!("slack {method}: HTTP {status}"),
                transient: true,
            });
        }
        let body: Value = response.json().await.map_err(|e| ApiError {
            message: format!("slack {method}: the answer is not JSON: {e}"),
            transient: true,
        })?;
        if body["ok"].as_bool() == Some(true) {
            return Ok(body);
        }
        let error = body["error"].as_str().unwrap_or("unknown_error").to_owned();
        Err(ApiError {
            transient: matches!(
                error.as_str(),
                "ratelimited"
                    | "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout"
            ),
            message: format!("slack {method}: {error}"),
        })
    }

    /// The messages posted earlier about the execution of `n` (their
    /// `channel|ts` receipts).
    async fn posted(
        &self,
        governor: &Governor,
        n: &Notification,
    ) -> Result<Vec<String>, DeliveryError> {
        let all = governor
            .notifications(&NotificationQuery {
                execution_id: Some(n.execution_id),
                ..NotificationQuery::default()
            })
            .await
            .map_err(|e| DeliveryError::transient(e.to_string()))?;
        Ok(all
            .into_iter()
            .filter(|m| m.target == SLACK_TARGET && m.id != n.id)
            .filter_map(|m| m.receipt)
            .collect())
    }

    /// Replaces each earlier message with `blocks` (no buttons): nobody
    /// acts on a stale message.
    async fn update_all(
        &self,
        receipts: &[String],
        text: &str,
        blocks: &Value,
    ) -> Result<(), DeliveryError> {
        for receipt in receipts {
            let Some((channel, ts)) = receipt.split_once('|') else {
                continue;
            };
            self.call(
                "chat.update",
                &json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks}),
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl DeliveryTarget for SlackTarget {
    fn name(&self) -> &str {
        SLACK_TARGET
    }

    async fn deliver(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<(), DeliveryError> {
        self.deliver_with_receipt(governor, notification)
            .await
            .map(|_| ())
    }

    async fn deliver_with_receipt(
        &self,
        governor: &Governor,
        n: &Notification,
    ) -> Result<Option<String>, DeliveryError> {
        let execution = governor
            .execution(n.execution_id)
            .await
            .map_err(|e| DeliveryError::transient(e.to_string()))?
            .ok_or_else(|| DeliveryError::permanent("the execution is no longer stored"))?;
        let brief = governor.brief(&execution);
        let earlier = self.posted(governor, n).await?;
        let console = self.config().public_url.as_deref();
        // Whatever happened, the earlier messages now tell it.
        let (text, status) = blocks::status(&execution, &brief, console);
        if n.kind != NotificationKind::Reminder {
            self.update_all(&earlier, &text, &status).await?;
        }
        let waiting = execution.status == ExecutionStatus::AwaitingApproval;
        match n.kind {
            NotificationKind::Reminder if waiting => {
                let Some((channel, ts)) = earlier.last().and_then(|r| r.split_once('|')) else {
                    return Ok(None);
                };
                let text = blocks::reminder(&brief);
                self.call(
                    "chat.postMessage",
                    &json!({"channel": channel, "thread_ts": ts, "text": text, "reply_broadcast": true}),
                )
                .await?;
                Ok(None)
            }
            NotificationKind::Requested
            | NotificationKind::StageAdvanced
            | NotificationKind::Escalated
                if waiting =>
            {
                let (text, request) = blocks::request(&execution, &brief, console);
                let posted = self
                    .call(
                        "chat.postMessage",
                        &json!({"channel": self.config().channel, "text": text, "blocks": request}),
                    )
                    .await?;
                let channel = posted["channel"].as_str().unwrap_or(&self.config().channel);
                Ok(posted["ts"].as_str().map(|ts| format!("{channel}|{ts}")))
            }
            _ => Ok(None),
        }
    }
}
