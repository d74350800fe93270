//! JWT bearer tokens (feature `jwt`): verified against one configured key
//! (HS256 secret, or an RS256/ES256/EdDSA public key in PEM), with `exp`
//! required, `nbf` honoured and `iss`/`aud` checked when configured.
//! Claims become the principal: `sub` the id, `roles`, `permissions`,
//! `tenant`, and `email` only when `email_verified` is true (an identity
//! provider that lets users type any address must not make them an
//! approver listed by that address).

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use governor_core::Principal;

use crate::auth::PrincipalClaims;

/// A key or claim configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("JWT verification cannot be set up: {0}")]
pub struct JwtConfigError(String);

/// Verifies JWTs signed by one key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(flatten)]
    principal: PrincipalClaims,
}

impl JwtVerifier {
    /// HS256 with a shared secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtConfigError> {
        if secret.len() < 32 {
            return Err(JwtConfigError(format!(
                "an HS256 secret needs at least 32 bytes, not {}",
                secret.len()
            )));
        }
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// A public key in PEM for `algorithm` (`RS256`, `ES256` or `EdDSA`).
    pub fn public_key_pem(algorithm: &str, pem: &[u8]) -> Result<Self, JwtConfigError> {
        let bad = |e: jsonwebtoken::errors::Error| JwtConfigError(format!("{algorithm} key: {e}"));
        let (key, alg) = match algorithm {
            "RS256" => (
                DecodingKey::from_rsa_pem(pem).map_err(bad)?,
                Algorithm::RS256,
            ),
            "ES256" => (
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
                Algorithm::ES256,
            ),
            "EdDSA" => (
                DecodingKey::from_ed_pem(pem).map_err(bad)?,
                Algorithm::EdDSA,
            ),
            other => {
                return Err(JwtConfigError(format!(
                    "algorithm `{other}` is not one of RS256, ES256, EdDSA"
                )));
            }
        };
        Ok(Self::with(key, alg))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// Only tokens from this issuer.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.validation.set_issuer(&[iss]);
        self
    }

    /// Only tokens for this audience.
    pub fn audience(mut self, aud: &str) -> Self {
        self.validation.set_audience(&[aud]);
        self.validation.validate_aud = true;
        self
    }

    /// The principal a valid token speaks for; `None` for anything else
    /// (bad signature, expired, wrong issuer or audience, malformed).
    pub fn verify(&self, token: &str) -> Option<Principal> {
        let mut claims = match decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => data.claims,
            Err(e) => {
                // The reason, never the token.
                tracing::warn!(reason = %e, "a JWT was refused");
                return None;
            }
        };
        if claims.email_verified != Some(true) {
            claims.principal.email = None;
        }
        Some(claims.principal.into_principal(claims.sub))
    }
}
