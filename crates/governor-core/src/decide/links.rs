//! One-time approval links: an approver decides from an email without
//! signing in.
//!
//! A link is a token signed with the server's [`LinkKey`] (HMAC-SHA256)
//! that names one decision: the execution, the stage, the approver entry
//! the policy lists and the address it was sent to, approve or reject, the
//! digest of the arguments the email showed, and when it stops working.
//! It holds no state of its own: it works once because the decision it
//! makes is recorded on the stage (the same approver cannot decide a stage
//! twice), and it stops working when the request changes (another digest),
//! is decided, moves to another stage or expires.
//!
//! The identity a link decides as is the address the policy lists, so a
//! forwarded email is as strong as the mailbox it was sent to. A policy
//! that wants more sets `links: sign_in`: its emails link to the console,
//! where the approver signs in, and its links decide nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ApprovalError, Ask, Verdict};
use crate::approval::{ApprovalRequest, LinkMode};
use crate::execution::{Execution, ExecutionId, ExecutionStatus};
use crate::governor::Governor;
use crate::principal::Principal;

/// The prefix of every link token (its format's version).
const PREFIX: &str = "gl1.";

/// The longest a link works, whatever the request's expiry.
pub const LINK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How a decision made through a link is recorded on its stage.
pub const VIA_LINK: &str = "link";

/// The secret that signs approval links. Every instance that serves the
/// links' confirmation page needs the same key.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    /// A key from 32 random bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Result<Self, LinkError> {
        let hex = hex.trim();
        let bad = || LinkError::BadKey {
            reason: format!("expected 64 hex digits, got {} characters", hex.len()),
        };
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// The token of `link`.
    pub fn sign(&self, link: &ApprovalLink) -> String {
        let body = B64.encode(serde_json::to_vec(link).unwrap_or_default());
        let signed = format!("{PREFIX}{body}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = B64.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The link `token` names, if this key signed it and it has not
    /// expired at `now`.
    pub fn open(&self, token: &str, now: DateTime<Utc>) -> Result<ApprovalLink, LinkError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
        let body = signed.strip_prefix(PREFIX).ok_or(LinkError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| LinkError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| LinkError::Forged)?;
        let json = B64.decode(body).map_err(|_| LinkError::Malformed)?;
        let link: ApprovalLink = serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if link.expires_at <= now {
            return Err(LinkError::Expired {
                at: link.expires_at,
            });
        }
        Ok(link)
    }
}

/// What one link decides. Field names are one letter: the token is part
/// of a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalLink {
    /// The execution.
    #[serde(rename = "e")]
    pub execution_id: ExecutionId,
    /// The stage (from 0) it decides.
    #[serde(rename = "s")]
    pub stage: usize,
    /// The approver entry the stage lists (`cfo`, `cfo@example.com`,
    /// `role:finance`).
    #[serde(rename = "a")]
    pub approver: String,
    /// The address the link was sent to.
    #[serde(rename = "m")]
    pub address: String,
    /// Approve or reject.
    #[serde(rename = "v")]
    pub verdict: Verdict,
    /// The digest of the arguments the message showed.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When it stops working.
    #[serde(rename = "x", with = "chrono::serde::ts_seconds")]
    pub expires_at: DateTime<Utc>,
    /// The notification that carried it (its idempotency key).
    #[serde(rename = "n")]
    pub notification: uuid::Uuid,
}

impl ApprovalLink {
    /// Who decides through this link: the entry the policy lists, with
    /// the address as its email; for a role entry, the address itself
    /// holding that role.
    pub fn principal(&self, tenant: Option<&str>) -> Principal {
        let principal = match self.approver.strip_prefix("role:") {
            Some(role) => Principal::new(self.address.clone()).with_roles([role]),
            None => Principal::new(self.approver.clone()),
        };
        let principal = principal.with_attribute("email", self.address.clone());
        match tenant {
            Some(t) => principal.with_tenant(t),
            None => principal,
        }
    }
}

/// Why a link decides nothing.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The token is not one of ours (cut short, or mangled by a mail
    /// client).
    #[error("this link is not a valid approval link; open the request in the console instead")]
    Malformed,
    /// The signature does not match: the token was altered, or signed
    /// with another key.
    #[error("this link's signature does not match: it was altered, or signed by another server")]
    Forged,
    /// The link's time is up.
    #[error("this link expired at {at}")]
    Expired {
        /// When.
        at: DateTime<Utc>,
    },
    /// The key is not usable.
    #[error("the approval link key is not usable: {reason}")]
    BadKey {
        /// Why.
        reason: String,
    },
    /// This governor has no link key.
    #[error("approval links are not configured on this server")]
    NotConfigured,
    /// The policy wants its approvers to sign in.
    #[error("this request's policy requires signing in to decide: open it in the console")]
    SignInRequired,
    /// The approver already decided this stage (through this link or
    /// otherwise).
    #[error("this link was already used: `{approver}` decided this request at {at}")]
    Used {
        /// Who.
        approver: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The arguments changed since the email was sent (an approver edited
    /// them): its links decide nothing; the new arguments need a new look.
    #[error(
        "this request was edited since the email was sent: open it in the console to see what would run now"
    )]
    Edited,
    /// The request is no longer waiting.
    #[error("this request is already {status}")]
    Decided {
        /// Its status.
        status: ExecutionStatus,
    },
    /// The stage the link decides is over (the request waits on another
    /// stage now).
    #[error("the stage this link was for is over; the request now waits on stage {now}")]
    StageOver {
        /// The stage (from 1) it waits on now.
        now: usize,
    },
    /// The execution is gone.
    #[error("this request no longer exists")]
    NotFound,
    /// The decision itself was refused (a reason required, the stage
    /// expired meanwhile, another approver first).
    #[error(transparent)]
    Decision(#[from] ApprovalError),
}

/// A link that still works, with what it decides.
#[derive(Debug, Clone)]
pub struct OpenLink {
    /// The link.
    pub link: ApprovalLink,
    /// The execution as stored now.
    pub execution: Execution,
}

impl OpenLink {
    /// The request's stage the link decides.
    pub fn stage(&self) -> Option<&crate::approval::ApprovalStage> {
        self.request().and_then(|r| r.stages.get(self.link.stage))
    }

    /// The approval request.
    pub fn request(&self) -> Option<&ApprovalRequest> {
        self.execution.approval.as_ref()
    }
}

impl Governor {
    /// The token of `link`, signed with this governor's link key (`None`
    /// without one).
    pub fn sign_link(&self, link: &ApprovalLink) -> Option<String> {
        self.link_key().map(|k| k.sign(link))
    }

    /// Whether this governor signs approval links.
    pub fn signs_links(&self) -> bool {
        self.link_key().is_some()
    }

    /// The link `token` names and its execution, if the link still
    /// decides: signed by this governor's key, unexpired, the request
    /// still waiting on the link's stage with the digest the link was
    /// sent with, and its approver not yet decided. Otherwise why not.
    pub async fn open_link(&self, token: &str) -> Result<OpenLink, LinkError> {
        let key = self.link_key().ok_or(LinkError::NotConfigured)?;
        let link = key.open(token, Utc::now())?;
        let execution = self
            .execution(link.execution_id)
            .await
            .map_err(ApprovalError::from)?
            .ok_or(LinkError::NotFound)?;
        check_state(&link, &execution)?;
        Ok(OpenLink { link, execution })
    }

    /// Makes the decision `token` names, with `reason`: only if the link
    /// still decides ([`open_link`](Self::open_link)) and the decision is
    /// allowed as any other is. Returns the execution after it.
    pub async fn decide_by_link(
        &self,
        token: &str,
        reason: Option<&str>,
    ) -> Result<Execution, LinkError> {
        let OpenLink { link, execution } = self.open_link(token).await?;
        let principal = link.principal(execution.principal.tenant.as_deref());
        let mut ask = Ask::new(link.verdict, reason, None);
        ask.expected_digest = link.digest.as_deref();
        ask.via = Some(VIA_LINK);
        Ok(self.record_decision(execution, &principal, ask).await?)
    }
}

/// Why `link` no longer decides `execution` as stored, if it does not.
fn check_state(link: &ApprovalLink, execution: &Execution) -> Result<(), LinkError> {
    let request = execution.approval.as_ref().ok_or(LinkError::NotFound)?;
    let stage = request.stages.get(link.stage).ok_or(LinkError::Malformed)?;
    if stage.spec.notify.links == LinkMode::SignIn {
        return Err(LinkError::SignInRequired);
    }
    let principal = link.principal(execution.principal.tenant.as_deref());
    if let Some(d) = stage
        .decisions
        .iter()
        .find(|d| d.approver == principal.id && !d.superseded)
    {
        return Err(LinkError::Used {
            approver: d.approver.clone(),
            at: d.at,
        });
    }
    if execution.status != ExecutionStatus::AwaitingApproval {
        return Err(LinkError::Decided {
            status: execution.status,
        });
    }
    if request.digest != link.digest {
        return Err(LinkError::Edited);
    }
    match request.current_stage() {
        Some((index, _)) if index == link.stage => Ok(()),
        Some((index, _)) => Err(LinkError::StageOver { now: index + 1 }),
        None => Err(LinkError::Decided {
            status: execution.status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> ApprovalLink {
        ApprovalLink {
            execution_id: ExecutionId::new(),
            stage: 0,
            approver: "role:finance".into(),
            address: "ana@example.com".into(),
            verdict: Verdict::Approve,
            digest: Some("abc".into()),
            // Whole seconds: the token keeps no more.
            expires_at: DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap(),
            notification: uuid::Uuid::now_v7(),
        }
    }

    #[test]
    fn a_signed_link_opens_and_an_altered_one_does_not() {
        let key = LinkKey::from_bytes([7; 32]);
        let l = link();
        let token = key.sign(&l);
        assert!(token.starts_with(PREFIX));
        assert_eq!(key.open(&token, Utc::now()).unwrap(), l);
        // Another key, a changed body, a changed tag, garbage.
        assert!(matches!(
            LinkKey::from_bytes([8; 32]).open(&token, Utc::now()),
            Err(LinkError::Forged)
        ));
        let mut other = l.clone();
        other.verdict = Verdict::Reject;
        let forged_body = key.sign(&other);
        let spliced = format!(
            "{}.{}",
            forged_body.rsplit_once('.').unwrap().0,
            token.rsplit_once('.').unwrap().1
        );
        assert!(matches!(
            key.open(&spliced, Utc::now()),
            Err(LinkError::Forged)
        ));
        // A character inside the tag (the last one also carries padding
        // bits, so changing it may make the base64 malformed instead).
        let mut bytes = token.clone().into_bytes();
        let inside = bytes.len() - 10;
        bytes[inside] = if bytes[inside] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            key.open(&String::from_utf8(bytes).unwrap(), Utc::now()),
            Err(LinkError::Forged)
        ));
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            key.open(&String::from_utf8(bytes).unwrap(), Utc::now()),
            Err(LinkError::Forged | LinkError::Malformed)
        ));
        for junk in ["", "gl1.", "x.y", "gl1.!!.!!", "gl1.e30.AAAA"] {
            assert!(key.open(junk, Utc::now()).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_link_expires() {
        let key = LinkKey::from_bytes([7; 32]);
        let l = link();
        let token = key.sign(&l);
        assert!(matches!(
            key.open(&token, l.expires_at + chrono::Duration::seconds(1)),
            Err(LinkError::Expired { .. })
        ));
    }

    #[test]
    fn keys_come_from_64_hex_digits() {
        assert!(LinkKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(LinkKey::from_hex("abc").is_err());
        assert!(LinkKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{:?}", LinkKey::from_bytes([1; 32])), "LinkKey(…)");
    }

    #[test]
    fn a_role_link_decides_as_its_address_with_the_role() {
        let p = link().principal(Some("acme"));
        assert_eq!(p.id, "ana@example.com");
        assert!(p.has_role("finance"));
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        let mut l = link();
        l.approver = "cfo".into();
        assert_eq!(l.principal(None).id, "cfo");
    }
}
