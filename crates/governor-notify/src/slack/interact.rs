//! Slack's interactivity endpoint: a click on Approve or Reject, or a
//! reason dialog submitted, signed by Slack.
//!
//! Every request must carry a `v0` signature (HMAC-SHA256 of
//! `v0:timestamp:body` under the app's signing secret) and a timestamp
//! within five minutes; a signature seen before within that window is a
//! replay and refused. The clicker is mapped to an approver and the
//! decision is made as them, only on the stage and arguments the message
//! showed.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor_core::{ExecutionId, Governor, Principal, Verdict};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::SlackTarget;
use super::blocks::{APPROVE, REJECT};

/// How old a signed request may be.
const TOLERANCE_SECONDS: i64 = 300;

/// The headers Slack signs a request with.
#[derive(Debug, Clone, Copy)]
pub struct SlackSignature<'a> {
    /// `X-Slack-Request-Timestamp`: Unix seconds.
    pub timestamp: &'a str,
    /// `X-Slack-Signature`: `v0=` and hex.
    pub signature: &'a str,
}

/// Whether `signature` is Slack's `v0` signature of `body` sent at
/// `timestamp`, under `signing_secret` (compared in constant time). The
/// timestamp's age is checked separately.
pub fn verify_signature(signing_secret: &str, signed: SlackSignature<'_>, body: &[u8]) -> bool {
    let Some(hex) = signed.signature.strip_prefix("v0=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(signed.timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

fn json_reply(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl SlackTarget {
    /// The interactivity endpoint as a router (`POST /slack/interactions`),
    /// deciding on `governor`. Point the Slack app's Interactivity
    /// Request URL at it.
    pub fn interactions(&self, governor: Governor) -> axum::Router {
        axum::Router::new()
            .route("/slack/interactions", axum::routing::post(receive))
            .with_state((self.clone(), governor))
    }

    /// Why a signed request is refused, if it is: unsigned, stale, not
    /// Slack's signature, or seen before.
    fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signature)) =
            (h("x-slack-request-timestamp"), h("x-slack-signature"))
        else {
            return Err("unsigned request");
        };
        let at = i64::from_str(timestamp).map_err(|_| "bad timestamp")?;
        if (now - at).abs() > TOLERANCE_SECONDS {
            return Err("stale request");
        }
        let signed = SlackSignature {
            timestamp,
            signature,
        };
        if !verify_signature(&self.inner.config.signing_secret, signed, body) {
            return Err("bad signature");
        }
        let Ok(mut seen) = self.inner.seen.lock() else {
            return Err("replay check unavailable");
        };
        seen.retain(|_, t| now - *t <= TOLERANCE_SECONDS);
        if seen.insert(signature.to_owned(), at).is_some() {
            return Err("replayed request");
        }
        Ok(())
    }

    /// The approver a Slack user is: the configured table, else the
    /// email of their Slack profile.
    async fn approver(&self, user_id: &str) -> Result<Principal, String> {
        if let Some(id) = self.inner.config.users.get(user_id) {
            return Ok(Principal::new(id.clone()));
        }
        let info = self
            .read("users.info", &[("user", user_id)])
            .await
            .map_err(|e| format!("cannot tell who you are: {}", e.message))?;
        let email = info["user"]["profile"]["email"]
            .as_str()
            .filter(|e| e.contains('@'))
            .ok_or("your Slack profile has no email governor can match to an approver")?;
        Ok(Principal::new(email).with_attribute("email", email))
    }

    /// Decides as the Slack user `user_id` what a button with `value`
    /// showed.
    async fn decide(
        &self,
        governor: &Governor,
        user_id: &str,
        value: &str,
        verdict: Verdict,
        reason: Option<&str>,
    ) -> Result<(), String> {
        let (id, stage, digest) = parse_value(value).ok_or("this button is not governor's")?;
        let execution = governor
            .execution(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("this request no longer exists")?;
        let waiting = execution
            .approval
            .as_ref()
            .and_then(|r| r.current_stage())
            .map(|(i, _)| i);
        if waiting.is_some_and(|w| w != stage) {
            return Err("this message is out of date: the request moved to another stage".into());
        }
        let mut who = self.approver(user_id).await?;
        if let Some(t) = &execution.principal.tenant {
            who = who.with_tenant(t.clone());
        }
        let digest = (!digest.is_empty()).then_some(digest);
        governor
            .decide_through(id, &who, verdict, reason, digest, "slack")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Opens the reason dialog for a click.
    async fn ask_reason(
        &self,
        trigger: &str,
        verdict: Verdict,
        value: &str,
        required: bool,
    ) -> Result<(), String> {
        let verb = if verdict == Verdict::Approve {
            "Approve"
        } else {
            "Reject"
        };
        let view = json!({
            "type": "modal",
            "callback_id": "governor.decide",
            "private_metadata": format!("{}|{value}", verb.to_lowercase()),
            "title": {"type": "plain_text", "text": verb},
            "submit": {"type": "plain_text", "text": format!("Confirm: {verb}")},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [{
                "type": "input", "block_id": "reason", "optional": !required,
                "label": {"type": "plain_text", "text": if required { "Reason (required)" } else { "Reason" }},
                "element": {"type": "plain_text_input", "action_id": "reason", "multiline": true},
            }],
        });
        self.call("views.open", &json!({"trigger_id": trigger, "view": view}))
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// Tells only `user` what went wrong.
    async fn tell(&self, channel: &str, user: &str, text: &str) {
        if let Err(e) = self
            .call(
                "chat.postEphemeral",
                &json!({"channel": channel, "user": user, "text": text}),
            )
            .await
        {
            tracing::warn!("slack: cannot tell {user}: {}", e.message);
        }
    }
}

/// `execution|stage|digest`.
fn parse_value(value: &str) -> Option<(ExecutionId, usize, &str)> {
    let mut parts = value.splitn(3, '|');
    let id = ExecutionId::from_str(parts.next()?).ok()?;
    let stage = parts.next()?.parse().ok()?;
    Some((id, stage, parts.next().unwrap_or("")))
}

async fn receive(
    State((slack, governor)): State<(SlackTarget, Governor)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = slack.check(&headers, &body, chrono::Utc::now().timestamp()) {
        tracing::warn!("slack: refused an interaction: {why}");
        return plain(StatusCode::UNAUTHORIZED, why);
    }
    let Some(payload) = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok())
    else {
        return plain(StatusCode::BAD_REQUEST, "no payload");
    };
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    match payload["type"].as_str() {
        Some("block_actions") => {
            let action = &payload["actions"][0];
            let verdict = match action["action_id"].as_str() {
                Some(APPROVE) => Verdict::Approve,
                Some(REJECT) => Verdict::Reject,
                _ => return plain(StatusCode::OK, ""),
            };
            let value = action["value"].as_str().unwrap_or_default();
            let channel = payload["channel"]["id"]
                .as_str()
                .or(payload["container"]["channel_id"].as_str())
                .unwrap_or_default();
            let required = match parse_value(value) {
                Some((id, stage, _)) => governor
                    .execution(id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|e| e.approval)
                    .and_then(|r| r.stages.get(stage).map(|s| s.spec.require_reason))
                    .unwrap_or(false),
                None => false,
            };
            let outcome = if required || verdict == Verdict::Reject {
                let trigger = payload["trigger_id"].as_str().unwrap_or_default();
                slack.ask_reason(trigger, verdict, value, required).await
            } else {
                slack.decide(&governor, user, value, verdict, None).await
            };
            if let Err(e) = outcome {
                slack
                    .tell(channel, user, &format!("Not recorded: {e}"))
                    .await;
            }
            plain(StatusCode::OK, "")
        }
        Some("view_submission") if payload["view"]["callback_id"] == "governor.decide" => {
            let meta = payload["view"]["private_metadata"]
                .as_str()
                .unwrap_or_default();
            let (verdict, value) = match meta.split_once('|') {
                Some(("approve", v)) => (Verdict::Approve, v),
                Some(("reject", v)) => (Verdict::Reject, v),
                _ => return plain(StatusCode::BAD_REQUEST, "not governor's dialog"),
            };
            let reason = payload["view"]["state"]["values"]["reason"]["reason"]["value"].as_str();
            match slack.decide(&governor, user, value, verdict, reason).await {
                // An empty answer closes the dialog.
                Ok(()) => plain(StatusCode::OK, ""),
                Err(e) => json_reply(&json!({
                    "response_action": "errors",
                    "errors": {"reason": format!("Not recorded: {e}")},
                })),
            }
        }
        _ => plain(StatusCode::OK, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own example, from "Verifying requests from Slack".
    #[test]
    fn the_signature_matches_slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signed = SlackSignature {
            timestamp: "1531420618",
            signature: "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        };
        assert!(verify_signature(
            "8f742231b10e8888abcd99yyyzzz85a5",
            signed,
            body.as_bytes()
        ));
        assert!(!verify_signature("another secret", signed, body.as_bytes()));
        assert!(!verify_signature(
            "8f742231b10e8888abcd99yyyzzz85a5",
            SlackSignature {
                timestamp: "1531420619",
                ..signed
            },
            body.as_bytes()
        ));
        assert!(!verify_signature(
            "8f742231b10e8888abcd99yyyzzz85a5",
            signed,
            format!("{body}&x=1").as_bytes()
        ));
        for bad in ["", "v0=", "v1=a2114d57", "v0=zz"] {
            assert!(!verify_signature(
                "8f742231b10e8888abcd99yyyzzz85a5",
                SlackSignature {
                    signature: bad,
                    ..signed
                },
                body.as_bytes()
            ));
        }
    }

    #[test]
    fn button_values_parse() {
        let id = ExecutionId::new();
        assert_eq!(parse_value(&format!("{id}|1|abc")), Some((id, 1, "abc")));
        assert_eq!(parse_value("nonsense"), None);
    }
}
