//! Sealed arguments. Sensitive fields are redacted in everything stored,
//! so a parked call whose arguments include them could not run after its
//! approval. With a [`SealKey`] configured, the arguments as given are
//! also kept encrypted (XChaCha20-Poly1305, random 24-byte nonce) in the
//! approval request; the associated data binds the sealed text to its
//! execution id, action and requester, so it cannot be moved to another
//! execution. Only a governor with the key can open it.

use std::fmt;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::GovernError;
use crate::execution::Execution;

/// Marks the sealed form's version.
const PREFIX: &str = "xc20p1:";

/// The key sealed arguments are encrypted with. Keep it outside the store
/// (an environment variable, a secret manager): whoever holds both can
/// read the sensitive fields. Cheap to clone.
#[derive(Clone)]
pub struct SealKey(Arc<XChaCha20Poly1305>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A key from 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Arc::new(XChaCha20Poly1305::new(&key.into())))
    }

    /// A key from 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, GovernError> {
        let hex = hex.trim();
        let bad = || GovernError::Config("a seal key is 64 hex digits (32 bytes)".into());
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            key[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Self::from_bytes(key))
    }

    /// Encrypts `plaintext` (the arguments' JSON) for `execution`.
    pub(crate) fn seal(&self, execution: &Execution, plaintext: &str) -> Option<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(execution);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .ok()?;
        let mut out = String::with_capacity(PREFIX.len() + 2 * (nonce.len() + sealed.len()));
        out.push_str(PREFIX);
        for b in nonce.iter().chain(&sealed) {
            out.push_str(&format!("{b:02x}"));
        }
        Some(out)
    }

    /// Decrypts what [`seal`](Self::seal) made for this same execution;
    /// `None` if it was made for another one, with another key, or changed.
    pub(crate) fn open(&self, execution: &Execution, sealed: &str) -> Option<String> {
        let hex = sealed.strip_prefix(PREFIX)?;
        let bytes: Vec<u8> = hex
            .as_bytes()
            .chunks_exact(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect::<Option<_>>()?;
        if bytes.len() < 24 + 16 {
            return None;
        }
        let (nonce, text) = bytes.split_at(24);
        let aad = associated_data(execution);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: text,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

fn associated_data(e: &Execution) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    for part in [
        "governor seal v1".as_bytes(),
        e.id.as_uuid().as_bytes(),
        e.action.as_bytes(),
        e.principal.id.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::json::Json;
    use crate::principal::Principal;

    fn execution(action: &str, who: &str) -> Execution {
        Execution::new(
            Arc::from(action),
            Arc::new(Principal::new(who)),
            Json::null(),
        )
    }

    #[test]
    fn sealed_text_opens_only_for_its_execution_and_key() {
        let key = SealKey::from_hex(&"ab".repeat(32)).unwrap();
        let e = execution("wire", "agent");
        let sealed = key.seal(&e, r#"{"iban":"DE0012"}"#).unwrap();
        assert!(!sealed.contains("DE0012"));
        assert_eq!(key.open(&e, &sealed).unwrap(), r#"{"iban":"DE0012"}"#);
        assert!(key.open(&execution("wire", "agent"), &sealed).is_none());
        let mut other = e.clone();
        other.principal = Arc::new(Principal::new("mallory"));
        assert!(key.open(&other, &sealed).is_none());
        let other_key = SealKey::from_bytes([7; 32]);
        assert!(other_key.open(&e, &sealed).is_none());
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(key.open(&e, &String::from_utf8(flipped).unwrap()).is_none());
        assert_ne!(key.seal(&e, "x").unwrap(), key.seal(&e, "x").unwrap());
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_printed() {
        assert!(SealKey::from_hex("abc").is_err());
        assert!(SealKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{:?}", SealKey::from_bytes([1; 32])), "SealKey(..)");
    }
}
