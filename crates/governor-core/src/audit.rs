//! The audit log: one record per execution outcome, hash-chained so that
//! any edit, insertion or deletion is detected.

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
    pub policy: String,
    /// `allow`, `warn`, `deny` or `require_approval`.
    pub outcome: String,
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
    /// The caller's id.
    pub principal: String,
    /// The caller's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The status the execution reached.
    pub status: ExecutionStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Every policy decision made on the call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// Redacted inputs, when an audit policy asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Json>,
    /// Redacted output, when an audit policy asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Json>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Compliance tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
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

/// The hash linking an entry to its predecessor.
pub fn chain_hash(prev_hash: &str, seq: u64, record: &AuditRecord) -> String {
    // Serializing a plain struct of strings, numbers and raw JSON cannot
    // fail; an empty body would still be chained and then fail verification.
    chain_hash_json(
        prev_hash,
        seq,
        &serde_json::to_vec(record).unwrap_or_default(),
    )
}

/// [`chain_hash`] over a record already serialized with `serde_json`.
pub fn chain_hash_json(prev_hash: &str, seq: u64, record_json: &[u8]) -> String {
    hex(&chain_digest(prev_hash, seq, record_json))
}

/// The raw digest behind [`chain_hash_json`].
pub(crate) fn chain_digest(prev_hash: &str, seq: u64, record_json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(record_json);
    h.finalize().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            execution_id: ExecutionId::new(),
            action: "a".into(),
            principal: format!("p{n}"),
            tenant: None,
            status: ExecutionStatus::Completed,
            at: Utc::now(),
            decisions: vec![],
            inputs: None,
            output: None,
            failure: None,
            tags: vec![],
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

    #[test]
    fn hash_survives_a_json_round_trip() {
        let a = AuditEntry::chain(1, record(1), GENESIS_HASH);
        let text = serde_json::to_string(&a).unwrap();
        let back: AuditEntry = serde_json::from_str(&text).unwrap();
        assert!(back.is_intact());
    }
}
