//! Delivery targets for governor's notification outbox.
//!
//! A governor writes a notification for every target in the same store
//! write as the change it tells about, and delivers it at least once (see
//! [`governor_core::DeliveryTarget`]). This crate holds the targets that
//! reach outside the process:
//!
//! - [`EmailTarget`]: email through SMTP, with one-time approve and reject
//!   links that open a confirmation page on `governor serve`.
//! - [`SlackTarget`]: a channel message with Approve and Reject buttons,
//!   updated when the request is decided anywhere.
//! - [`WebhookTarget`]: a `POST` signed the Standard Webhooks way.
//!
//! ```no_run
//! use governor_core::Governor;
//! use governor_notify::WebhookTarget;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // reqwest uses rustls without a built-in provider: install one first.
//! # #[cfg(any())]
//! rustls::crypto::ring::default_provider().install_default();
//! let hook = WebhookTarget::new("ops", "https://ops.example.com/governor", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let governor = Governor::builder().deliver_to(hook).build()?;
//! # Ok(())
//! # }
//! ```

mod email;
mod slack;
mod webhook;

pub use email::{EMAIL_TARGET, Email, EmailConfig, EmailError, EmailTarget, SmtpSecurity};
pub use slack::{
    SLACK_TARGET, SlackConfig, SlackError, SlackSignature, SlackTarget, verify_signature,
};
pub use webhook::{WebhookError, WebhookSecret, WebhookTarget, event_type};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
