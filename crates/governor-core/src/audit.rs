//! The audit log: one record per execution outcome, hash-chained so that
//! any edit, insertion or deletion is detected.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::execution::{ExecutionId, ExecutionStatus};
use crate::json::Json;

/// One policy's decision, as kept in the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The policy.
    pub policy: Arc<str>,
    /// `allow`, `warn`, `deny` or `require_approval`.
    pub outcome: Cow<'static, str>,
    /// The reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the policy was in shadow mode (not enforced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// What the audit log keeps about one execution outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The governed action.
    pub action: Arc<str>,
    /// The caller's id (shared: a thread's calls by one principal
    /// share one copy).
    pub principal: Arc<str>,
    /// The caller's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The status the execution reached.
    pub status: ExecutionStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Every policy decision made on the call (shared: the calls that
    /// pass all of an action's policies have the same).
    #[serde(default, skip_serializing_if = "no_decisions")]
    pub decisions: Arc<[DecisionRecord]>,
    /// Redacted inputs, when an audit policy asks for them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json::present"
    )]
    pub inputs: Option<Json>,
    /// Redacted output, when an audit policy asks for it (JSON `null` for
    /// an action returning nothing; absent when not logged).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json::present"
    )]
    pub output: Option<Json>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Compliance tags (shared: every call of an action has the same).
    #[serde(default, skip_serializing_if = "no_tags")]
    pub tags: Arc<[String]>,
    /// For a decision: the digest of what was approved (see
    /// [`ApprovalRequest::digest`](crate::ApprovalRequest::digest)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_digest: Option<String>,
}

fn no_tags(tags: &Arc<[String]>) -> bool {
    tags.is_empty()
}

fn no_decisions(decisions: &Arc<[DecisionRecord]>) -> bool {
    decisions.is_empty()
}

/// A record's place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The record.
    pub record: AuditRecord,
    /// Hash of the previous entry (hex; all zeros for the first).
    pub prev_hash: String,
    /// `sha256(prev_hash || seq || record JSON)`, hex.
    pub hash: String,
}

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `prev_hash` of the first entry a [`crate::MemoryStore`] keeps after
/// entries it evicted before anyone read its log: those were never
/// hashed, so the chain starts again from this value.
pub const EVICTED_UNREAD_HASH: &str =
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

impl AuditEntry {
    /// Chains `record` after an entry with hash `prev_hash`.
    pub fn chain(seq: u64, record: AuditRecord, prev_hash: &str) -> Self {
        let hash = chain_hash(prev_hash, seq, &record);
        Self {
            seq,
            record,
            prev_hash: prev_hash.to_owned(),
            hash,
        }
    }

    /// Whether the stored hash matches the content.
    pub fn is_intact(&self) -> bool {
        chain_hash(&self.prev_hash, self.seq, &self.record) == self.hash
    }
}

/// The hash linking an entry to its predecessor:
/// `sha256(prev || seq || canonical(record))` over the previous hash's 32
/// raw bytes (zeros for the first entry), hex-encoded.
///
/// The canonical form is a fixed binary encoding of the record's fields
/// (length-prefixed strings, the inputs and output as their stored JSON
/// text), so every store computes the same hash for the same record
/// without serializing it first. A `prev_hash` that is not 64 hex digits
/// chains as zeros, and so fails verification.
pub fn chain_hash(prev_hash: &str, seq: u64, record: &AuditRecord) -> String {
    hex(&chain_digest(
        &unhex(prev_hash).unwrap_or([0; 32]),
        seq,
        record,
    ))
}

/// The raw digest behind [`chain_hash`].
pub(crate) fn chain_digest(prev: &[u8; 32], seq: u64, record: &AuditRecord) -> [u8; 32] {
    // The canonical bytes are gathered first and hashed in one go: fed
    // field by field, the hasher's buffering cost more than the hashing.
    let digest = |buf: &mut Vec<u8>| -> [u8; 32] {
        buf.extend_from_slice(prev);
        buf.extend_from_slice(&seq.to_be_bytes());
        record.feed(buf);
        Sha256::digest(&buf[..]).into()
    };
    CANONICAL.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let hash = digest(&mut buf);
            if buf.capacity() > KEPT_BUFFER_BYTES {
                *buf = Vec::new();
            }
            hash
        }
        Err(_) => digest(&mut Vec::new()),
    })
}

/// Largest canonical-form buffer kept between records.
const KEPT_BUFFER_BYTES: usize = 64 << 10;

thread_local! {
    static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Parses 64 hex digits.
pub(crate) fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl AuditRecord {
    /// Appends the canonical form: length-prefixed strings, flags for
    /// optional fields, big-endian numbers.
    fn feed(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn opt(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                Some(s) => {
                    out.push(1);
                    text(out, s);
                }
                None => out.push(0),
            }
        }
        out.extend_from_slice(self.execution_id.as_uuid().as_bytes());
        text(out, &self.action);
        text(out, &self.principal);
        opt(out, self.tenant.as_deref());
        text(out, self.status.as_str());
        out.extend_from_slice(&self.at.timestamp().to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_subsec_nanos().to_be_bytes());
        out.extend_from_slice(&(self.decisions.len() as u64).to_be_bytes());
        for d in self.decisions.iter() {
            text(out, &d.policy);
            text(out, &d.outcome);
            opt(out, d.reason.as_deref());
            out.push(u8::from(d.shadow));
        }
        opt(out, self.inputs.as_ref().map(Json::as_str));
        opt(out, self.output.as_ref().map(Json::as_str));
        opt(out, self.failure.as_deref());
        out.extend_from_slice(&(self.tags.len() as u64).to_be_bytes());
        for t in self.tags.iter() {
            text(out, t);
        }
        // Fed only when present, so records written before the field
        // existed keep their hashes.
        if let Some(d) = &self.approved_digest {
            out.push(b'd');
            text(out, d);
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Where a chain stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// An entry's content does not match its hash (it was edited).
    #[error("audit entry {seq} was modified: its hash does not match its content")]
    Tampered {
        /// The entry.
        seq: u64,
    },
    /// An entry does not point at its predecessor (one was removed or
    /// inserted).
    #[error("audit entry {seq} does not follow entry {prev}: the chain is broken")]
    Broken {
        /// The entry.
        seq: u64,
        /// The entry before it.
        prev: u64,
    },
}

/// Checks a contiguous run of entries: each intact and linked to the one
/// before. The first entry's own `prev_hash` is trusted (stores that keep a
/// bounded window start mid-chain).
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
) -> Result<u64, ChainError> {
    let mut prev: Option<&AuditEntry> = None;
    let mut count = 0;
    for e in entries {
        if !e.is_intact() {
            return Err(ChainError::Tampered { seq: e.seq });
        }
        if let Some(p) = prev
            && (e.prev_hash != p.hash || e.seq != p.seq + 1)
        {
            return Err(ChainError::Broken {
                seq: e.seq,
                prev: p.seq,
            });
        }
        prev = Some(e);
        count += 1;
    }
    Ok(count)
}

/// How a run of the stored audit log checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// Entries checked.
    pub entries: u64,
    /// The first place the chain is not intact, if any.
    pub error: Option<ChainError>,
    /// The last entry checked, when more entries follow: pass it as
    /// `from` to check on from there.
    pub next: Option<u64>,
}

/// Checks up to `max` stored entries from entry `from` on (`0`: from the
/// first), a page at a time, keeping one page in memory: each entry
/// intact and linked to the one before (the first one checked is trusted,
/// as in [`verify_chain`]).
pub async fn check_audit_log(
    store: &dyn crate::store::Store,
    from: u64,
    max: u64,
) -> Result<LogCheck, crate::error::StoreError> {
    const PAGE: usize = 10_000;
    let mut checked = 0u64;
    let mut last: Option<AuditEntry> = None;
    let mut after = from.saturating_sub(1);
    while checked < max {
        let want = usize::try_from(max - checked).unwrap_or(PAGE).min(PAGE);
        let page = store.audit_entries(after, want).await?;
        let Some(tail) = page.last().cloned() else {
            break;
        };
        // The page, linked to the last entry of the one before.
        if let Err(e) = verify_chain(last.iter().chain(page.iter())) {
            return Ok(LogCheck {
                entries: checked,
                error: Some(e),
                next: None,
            });
        }
        checked += page.len() as u64;
        after = tail.seq;
        last = Some(tail);
    }
    let more = match &last {
        Some(l) if checked >= max => !store.audit_entries(l.seq, 1).await?.is_empty(),
        _ => false,
    };
    Ok(LogCheck {
        entries: checked,
        error: None,
        next: last.filter(|_| more).map(|l| l.seq),
    })
}

/// Every entry `store` holds, in order, read a page at a time.
pub async fn read_audit_log(
    store: &dyn crate::store::Store,
) -> Result<Vec<AuditEntry>, crate::error::StoreError> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(entries);
        };
        after = last.seq;
        entries.extend(page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            execution_id: ExecutionId::new(),
            action: "a".into(),
            principal: format!("p{n}").into(),
            tenant: None,
            status: ExecutionStatus::Completed,
            at: Utc::now(),
            decisions: Arc::default(),
            inputs: None,
            output: None,
            failure: None,
            tags: Arc::default(),
            approved_digest: None,
        }
    }

    #[test]
    fn detects_edits_and_removals() {
        let a = AuditEntry::chain(1, record(1), GENESIS_HASH);
        let b = AuditEntry::chain(2, record(2), &a.hash);
        let c = AuditEntry::chain(3, record(3), &b.hash);
        assert_eq!(verify_chain([&a, &b, &c]), Ok(3));
        let mut edited = b.clone();
        edited.record.principal = "mallory".into();
        assert_eq!(
            verify_chain([&a, &edited, &c]),
            Err(ChainError::Tampered { seq: 2 })
        );
        assert_eq!(
            verify_chain([&a, &c]),
            Err(ChainError::Broken { seq: 3, prev: 1 })
        );
    }

    /// Stored chains must keep verifying: the canonical form, and so the
    /// hash of a fixed record, never changes.
    #[test]
    fn the_hash_of_a_fixed_record_is_stable() {
        let fixed = AuditRecord {
            execution_id: "0190f3a2-0000-7000-8000-000000000001".parse().unwrap(),
            action: "transfer".into(),
            principal: "agent-7".into(),
            tenant: Some("acme".into()),
            status: ExecutionStatus::Completed,
            at: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            decisions: vec![DecisionRecord {
                policy: "limits".into(),
                outcome: "allow".into(),
                reason: Some("under the cap".into()),
                shadow: true,
            }]
            .into(),
            inputs: Some(Json::parse(r#"{"amount":5}"#).unwrap()),
            output: None,
            failure: Some("no".into()),
            tags: Arc::from(["SOC2".to_owned(), "GDPR".to_owned()]),
            approved_digest: Some("d1".into()),
        };
        assert_eq!(
            chain_hash(GENESIS_HASH, 7, &fixed),
            "debca1c65122828ca8bcb086e4f0a8ccc14b5464e0c2489060f1357ca1525305"
        );
    }

    #[test]
    fn hash_survives_a_json_round_trip() {
        let a = AuditEntry::chain(1, record(1), GENESIS_HASH);
        let text = serde_json::to_string(&a).unwrap();
        let back: AuditEntry = serde_json::from_str(&text).unwrap();
        assert!(back.is_intact());
    }
}
