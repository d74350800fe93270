//! Webhooks signed the Standard Webhooks way: a receiver verifies them
//! with any Standard Webhooks (or Svix) library.
//!
//! Each delivery is a `POST` of `{"type", "timestamp", "data"}` with the
//! headers `webhook-id` (the notification's id: the same on every retry,
//! so receivers can drop duplicates), `webhook-timestamp` (Unix seconds)
//! and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of
//! `id.timestamp.body` under the secret).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use governor_core::{
    DeliveryError, DeliveryTarget, Governor, Notice, Notification, NotificationKind,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What is wrong with a webhook's configuration.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The secret is not `whsec_` followed by base64.
    #[error("a webhook secret is `whsec_` followed by base64 (at least 24 bytes): {0}")]
    BadSecret(String),
    /// The URL is not an http(s) URL.
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// The HTTP client could not be built (no TLS provider installed).
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// A webhook's signing secret: the bytes behind `whsec_<base64>`.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix may be left out, as the
    /// reference libraries allow).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| WebhookError::BadSecret(e.to_string()))?;
        if bytes.len() < 24 {
            return Err(WebhookError::BadSecret(format!(
                "{} bytes is too short",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// Signs one message: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // Any key length is valid for HMAC.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a received message: one of the space-separated `v1,`
    /// signatures matches (in constant time), and the timestamp is within
    /// `tolerance` of `now` (Unix seconds).
    pub fn verify(
        &self,
        id: &str,
        timestamp: i64,
        signatures: &str,
        body: &[u8],
        now: i64,
        tolerance: Duration,
    ) -> bool {
        let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
        if (now - timestamp).abs() > tolerance {
            return false;
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        signatures
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok())
    }
}

/// The event type a notification is sent as.
pub fn event_type(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Requested => "approval.requested",
        NotificationKind::StageAdvanced => "approval.stage_advanced",
        NotificationKind::Decided => "approval.decided",
        NotificationKind::Expired => "approval.expired",
        NotificationKind::Escalated => "approval.escalated",
        NotificationKind::Reminder => "approval.reminder",
    }
}

/// A webhook receiving every notification (or the kinds chosen).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    name: String,
    url: String,
    secret: WebhookSecret,
    kinds: Option<Vec<NotificationKind>>,
    client: reqwest::Client,
}

impl WebhookTarget {
    /// A webhook named `name` (the delivery target is `webhook:<name>`)
    /// posting to `url`, signed with `secret` (`whsec_...`).
    pub fn new(name: &str, url: &str, secret: &str) -> Result<Self, WebhookError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WebhookError::BadUrl(url.to_owned()));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Self {
            name: format!("webhook:{name}"),
            url: url.to_owned(),
            secret: WebhookSecret::parse(secret)?,
            kinds: None,
            client,
        })
    }

    /// Sends only these kinds of notification.
    pub fn only(mut self, kinds: impl IntoIterator<Item = NotificationKind>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// The body sent for `notification`, which tells `notice`.
    pub fn body(notification: &Notification, notice: &Notice) -> Result<Vec<u8>, DeliveryError> {
        serde_json::to_vec(&serde_json::json!({
            "type": event_type(notification.kind),
            "timestamp": notice.at,
            "data": notice,
        }))
        .map_err(|e| DeliveryError::permanent(e.to_string()))
    }
}

#[async_trait]
impl DeliveryTarget for WebhookTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, kind: NotificationKind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }

    async fn deliver(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<(), DeliveryError> {
        let notice = governor.notice_of(notification).await?;
        let body = Self::body(notification, &notice)?;
        let id = notification.id.to_string();
        // A fresh timestamp and signature on every attempt, as the
        // standard asks; the id stays.
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(&id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("POST {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("POST {} answered {status}", self.url);
        // A receiver that refuses the request itself will refuse it again;
        // one that is busy, timed out or broken may not.
        if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(DeliveryError::permanent(message))
        } else {
            Err(DeliveryError::transient(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let five_minutes = Duration::from_secs(300);
        let both = format!("v1,bm9wZQ== {signature}");
        assert!(secret.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            &both,
            body,
            1614265330,
            five_minutes
        ));
        assert!(
            !secret.verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                &signature,
                b"{}",
                1614265330,
                five_minutes
            ),
            "another body"
        );
        assert!(
            !secret.verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                &signature,
                body,
                1614265330 + 301,
                five_minutes
            ),
            "too old"
        );
        assert!(
            !secret.verify(
                "msg_other",
                1614265330,
                &signature,
                body,
                1614265330,
                five_minutes
            ),
            "another id"
        );
    }

    #[test]
    fn secrets_and_urls_are_checked() {
        assert!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok(),
            "the prefix is optional"
        );
        for bad in ["whsec_***", "whsec_c2hvcnQ="] {
            assert!(
                matches!(WebhookSecret::parse(bad), Err(WebhookError::BadSecret(_))),
                "{bad}"
            );
        }
        let e = WebhookTarget::new("ops", "ftp://x", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err();
        assert!(e.to_string().contains("ftp://x"), "{e}");
    }
}
