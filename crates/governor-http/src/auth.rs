//! Bearer-token authentication: API keys kept only as SHA-256 hashes, each
//! mapped to the principal it speaks for.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor_core::Principal;
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::state::ApiState;

/// The prefix of a stored key hash: `sha256:<64 hex digits>`.
const HASH_PREFIX: &str = "sha256:";

/// A key hash that is not `sha256:` followed by 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API key hash `{0}` is not `sha256:` followed by 64 hex digits")]
pub struct BadKeyHash(pub String);

/// The API keys a server accepts. Only hashes are held: a leaked
/// configuration does not leak usable tokens.
#[derive(Debug, Default, Clone)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
    #[cfg(feature = "jwt")]
    jwt: Option<crate::jwt::JwtVerifier>,
}

impl ApiKeys {
    /// No keys: every request is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` for `principal` (hashed at once; the token itself
    /// is not kept).
    pub fn with_token(mut self, token: &str, principal: Principal) -> Self {
        self.by_hash.insert(digest(token), Arc::new(principal));
        self
    }

    /// Accepts the token whose hash is `hash` (as printed by
    /// [`hash_token`]) for `principal`.
    pub fn with_hash(mut self, hash: &str, principal: Principal) -> Result<Self, BadKeyHash> {
        let bytes = parse_hash(hash).ok_or_else(|| BadKeyHash(hash.to_owned()))?;
        self.by_hash.insert(bytes, Arc::new(principal));
        Ok(self)
    }

    /// Also accepts JWTs that `verifier` verifies (feature `jwt`).
    #[cfg(feature = "jwt")]
    pub fn with_jwt(mut self, verifier: crate::jwt::JwtVerifier) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// The principal `token` speaks for, if any: a configured API key, or
    /// (feature `jwt`) a JWT the configured verifier accepts.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        if let Some(p) = self.by_hash.get(&digest(token)) {
            return Some(Arc::clone(p));
        }
        #[cfg(feature = "jwt")]
        if let Some(jwt) = &self.jwt {
            return jwt.verify(token).map(Arc::new);
        }
        None
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether nothing is accepted: no key and no JWT verifier.
    pub fn is_empty(&self) -> bool {
        #[cfg(feature = "jwt")]
        if self.jwt.is_some() {
            return false;
        }
        self.by_hash.is_empty()
    }
}

/// The form a token is configured in: `sha256:<hex>`.
pub fn hash_token(token: &str) -> String {
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for b in digest(token) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix(HASH_PREFIX)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// What a key or a token says about its principal besides its id.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct PrincipalClaims {
    /// Roles (`role:<name>` approvers, role requirements).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions (`governor:read`, `governor:resume`, ...).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Matched against approvers given as email addresses.
    pub email: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
}

impl PrincipalClaims {
    /// The principal `id` with these claims.
    pub fn into_principal(self, id: impl Into<String>) -> Principal {
        let mut p = Principal::new(id)
            .with_roles(self.roles)
            .with_permissions(self.permissions);
        if let Some(email) = self.email {
            p = p.with_attribute("email", email);
        }
        if let Some(tenant) = self.tenant {
            p = p.with_tenant(tenant);
        }
        p
    }
}

/// The authenticated principal making a request. Extracting it refuses
/// the request with 401 when the `Authorization: Bearer` token is missing
/// or unknown; identity never comes from any other header.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl Caller {
    /// Whether the caller holds `permission`.
    pub fn may(&self, permission: &str) -> bool {
        self.0.has_permission(permission)
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        state
            .keys
            .current()
            .authenticate_headers(&parts.headers)
            .map(Caller)
    }
}

/// `GET /govern/me`: who the bearer token speaks for.
pub(crate) async fn me(caller: Caller) -> axum::Json<Principal> {
    axum::Json((*caller.0).clone())
}

/// The WebSocket subprotocol the dashboard offers beside its token
/// (`bearer.<token>`), since browsers cannot set headers on a WebSocket.
pub(crate) const WS_PROTOCOL: &str = "governor";
const WS_TOKEN_PREFIX: &str = "bearer.";

impl ApiKeys {
    /// [`authenticate_headers`](Self::authenticate_headers), also taking
    /// the token from a WebSocket subprotocol `bearer.<token>` (offered
    /// with `governor`) when there is no `Authorization` header.
    /// Also answers the token, so that a long-lived connection can be
    /// authenticated again while it lasts.
    pub(crate) fn authenticate_upgrade(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<(Arc<Principal>, String), Problem> {
        if headers.contains_key(AUTHORIZATION) {
            let token = bearer(headers)?;
            let principal = self.authenticate(&token).ok_or_else(refused)?;
            return Ok((principal, token));
        }
        let offered = headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        let mut token = None;
        let mut ours = false;
        for p in offered {
            if p == WS_PROTOCOL {
                ours = true;
            } else if let Some(t) = p.strip_prefix(WS_TOKEN_PREFIX) {
                token = Some(t);
            }
        }
        match token.filter(|t| ours && !t.is_empty()) {
            Some(t) => Ok((self.authenticate(t).ok_or_else(refused)?, t.to_owned())),
            None => Err(Problem::unauthenticated(
                "an `Authorization: Bearer <token>` header (or the `bearer.<token>` subprotocol) is required",
            )),
        }
    }

    /// The principal a request's `Authorization: Bearer <token>` header
    /// speaks for; 401 when it is missing, malformed or unknown.
    pub fn authenticate_headers(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Arc<Principal>, Problem> {
        self.authenticate(&bearer(headers)?).ok_or_else(refused)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &axum::http::HeaderMap) -> Result<String, Problem> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
        tracing::debug!("a request without an Authorization header was refused");
        Problem::unauthenticated("an `Authorization: Bearer <token>` header is required")
    })?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            tracing::warn!(
                "authentication failed: the Authorization header is not `Bearer <token>`"
            );
            Problem::unauthenticated("the Authorization header must be `Bearer <token>`")
        })
}

/// A token nobody configured: logged (never the token itself) and refused.
fn refused() -> Problem {
    tracing::warn!("authentication failed: the bearer token is not valid");
    Problem::unauthenticated("the bearer token is not valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_tokens_are_not_kept() {
        let hash = hash_token("s3cret");
        let keys = ApiKeys::new()
            .with_hash(&hash, Principal::new("alice"))
            .unwrap();
        assert_eq!(keys.authenticate("s3cret").unwrap().id, "alice");
        assert!(keys.authenticate("s3cret ").is_none());
        assert!(!format!("{keys:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_hashes_are_named() {
        for bad in [
            "s3cret",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let err = ApiKeys::new()
                .with_hash(bad, Principal::new("x"))
                .unwrap_err();
            assert_eq!(err.0, bad);
        }
    }
}
