//! Email through SMTP: approvers get the request with personal one-time
//! approve and reject links; requesters may hear the outcome.
//!
//! Each approver of the waiting stage whose address is known (an entry
//! that is an address, or one the [`EmailConfig::addresses`] table maps)
//! gets one email per notification, carrying links signed by the governor's
//! [`LinkKey`](governor_core::LinkKey). A link opens a confirmation page
//! (`/links/{token}` on `governor serve`); nothing is decided until the
//! approver confirms there. A policy with `links: sign_in` gets a link to
//! the console instead. The email's `Message-ID` is the notification's id,
//! the same on every retry, so a duplicate after a crash is recognisable.

mod message;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use governor_core::{
    ApprovalRequest, DeliveryError, DeliveryTarget, Execution, ExecutionStatus, Governor,
    Notification, NotificationKind,
};
use lettre::message::Mailbox;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use message::Email;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed
    /// (port 587, the default).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a test sink
    /// (port 25).
    None,
}

/// Where and how email is sent.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The SMTP server's host name.
    pub host: String,
    /// Its port (default: 587 for STARTTLS, 465 for TLS, 25 without).
    pub port: Option<u16>,
    /// How the connection is secured.
    pub security: SmtpSecurity,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender (`governor <governor@example.com>`).
    pub from: String,
    /// The address people reach `governor serve` at
    /// (`https://governor.example.com`): links point there.
    pub public_url: String,
    /// Addresses of approver entries and requesters that are not
    /// addresses themselves: `cfo` → `cfo@example.com`, `role:finance` →
    /// everyone in finance.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Whether requesters hear of the outcome (decided, expired) at the
    /// address their principal's `email` attribute or the table gives.
    pub notify_requester: bool,
    /// Connections kept open to the server (default 4).
    pub pool_size: u32,
    /// How long one SMTP exchange may take (default 30 s).
    pub timeout: Duration,
    /// Extra root certificates (PEM) to trust, for a server with a
    /// private CA.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl EmailConfig {
    /// Sending through `host` from `from`, linking to `public_url`, with
    /// the defaults: STARTTLS, no authentication, no address table.
    pub fn new(
        host: impl Into<String>,
        from: impl Into<String>,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port: None,
            security: SmtpSecurity::StartTls,
            credentials: None,
            from: from.into(),
            public_url: public_url.into(),
            addresses: BTreeMap::new(),
            notify_requester: false,
            pool_size: 4,
            timeout: Duration::from_secs(30),
            extra_roots_pem: None,
        }
    }
}

/// What is wrong with an email configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The sender is not a mailbox.
    #[error("`from = {from:?}` is not an email address: {reason}")]
    BadFrom {
        /// As given.
        from: String,
        /// Why.
        reason: String,
    },
    /// An address in the table is not one.
    #[error("`{entry}` maps to `{address}`, which is not an email address")]
    BadAddress {
        /// The entry.
        entry: String,
        /// The address.
        address: String,
    },
    /// The public URL is not an http(s) URL.
    #[error("public_url `{0}` is not an http:// or https:// URL")]
    BadPublicUrl(String),
    /// TLS could not be set up (a bad certificate).
    #[error("SMTP TLS: {0}")]
    Tls(String),
}

/// Approvers and requesters by email.
#[derive(Clone)]
pub struct EmailTarget {
    config: EmailConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTarget")
            .field("host", &self.config.host)
            .field("from", &self.config.from)
            .finish_non_exhaustive()
    }
}

/// The target's name: policies list it in `notify.channels`.
pub const EMAIL_TARGET: &str = "email";

impl EmailTarget {
    /// A target sending as `config` says. Nothing connects yet: the pool
    /// opens connections when the first email goes out.
    pub fn new(config: EmailConfig) -> Result<Self, EmailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| EmailError::BadFrom {
                from: config.from.clone(),
                reason: e.to_string(),
            })?;
        if !(config.public_url.starts_with("http://") || config.public_url.starts_with("https://"))
        {
            return Err(EmailError::BadPublicUrl(config.public_url.clone()));
        }
        for (entry, addresses) in &config.addresses {
            if let Some(bad) = addresses
                .iter()
                .find(|a| a.parse::<lettre::Address>().is_err())
            {
                return Err(EmailError::BadAddress {
                    entry: entry.clone(),
                    address: bad.clone(),
                });
            }
        }
        let transport = transport(&config)?;
        Ok(Self {
            config,
            from,
            transport,
        })
    }

    /// The addresses `entry` (an approver entry or a principal id) reaches.
    fn addresses_of(&self, entry: &str) -> Vec<String> {
        match self.config.addresses.get(entry) {
            Some(list) => list.clone(),
            None if entry.contains('@') && !entry.starts_with("role:") => vec![entry.to_owned()],
            None => Vec::new(),
        }
    }

    /// The entry of `stage_approvers` that `address` was sent to for.
    fn entry_for(&self, stage_approvers: &[String], address: &str) -> Option<String> {
        stage_approvers
            .iter()
            .find(|entry| {
                self.addresses_of(entry)
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(address))
            })
            .cloned()
    }

    /// The addresses of the people the waiting stage's policy informs
    /// (`notify.recipients`), who do not decide.
    fn informed(&self, request: Option<&ApprovalRequest>) -> Option<Vec<String>> {
        let (_, stage) = request?.current_stage()?;
        Some(
            stage
                .spec
                .notify
                .recipients
                .iter()
                .flat_map(|entry| self.addresses_of(entry))
                .collect(),
        )
    }

    fn requester_address(&self, execution: &Execution) -> Option<String> {
        let principal = &execution.principal;
        principal
            .attributes
            .get("email")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| self.addresses_of(&principal.id).into_iter().next())
    }

    async fn send(&self, email: Email, to: &str) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| DeliveryError::permanent(format!("`{to}` is not an address: {e}")))?;
        let message = email
            .into_message(self.from.clone(), to)
            .map_err(|e| DeliveryError::permanent(format!("the email cannot be built: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(DeliveryError::transient(format!("SMTP: {e}"))),
        }
    }
}

fn transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let tls_parameters = || {
        let mut builder = TlsParameters::builder(config.host.clone());
        if let Some(pem) = &config.extra_roots_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| EmailError::Tls(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| EmailError::Tls(e.to_string()))
    };
    let (tls, default_port) = match config.security {
        SmtpSecurity::StartTls => (Tls::Required(tls_parameters()?), 587),
        SmtpSecurity::Tls => (Tls::Wrapper(tls_parameters()?), 465),
        SmtpSecurity::None => (Tls::None, 25),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(config.timeout))
        .pool_config(PoolConfig::new().max_size(config.pool_size.max(1)));
    if let Some((user, password)) = &config.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

#[async_trait]
impl DeliveryTarget for EmailTarget {
    fn name(&self) -> &str {
        EMAIL_TARGET
    }

    fn wants(&self, kind: NotificationKind) -> bool {
        match kind {
            NotificationKind::Requested
            | NotificationKind::StageAdvanced
            | NotificationKind::Escalated
            | NotificationKind::Reminder => true,
            NotificationKind::Decided | NotificationKind::Expired => self.config.notify_requester,
        }
    }

    fn recipients(
        &self,
        kind: NotificationKind,
        execution: &Execution,
        request: Option<&ApprovalRequest>,
    ) -> Vec<Option<String>> {
        let mut to: Vec<String> = match kind {
            NotificationKind::Decided | NotificationKind::Expired => {
                self.requester_address(execution).into_iter().collect()
            }
            _ => {
                // A reminder skips whoever decided already (as the entry,
                // or as an address through a link).
                let decided: Vec<&str> = match (kind, request.and_then(|r| r.current_stage())) {
                    (NotificationKind::Reminder, Some((_, stage))) => stage
                        .decisions
                        .iter()
                        .filter(|d| !d.superseded)
                        .map(|d| d.approver.as_str())
                        .collect(),
                    _ => Vec::new(),
                };
                let mut to: Vec<String> = governor_core::waiting_approvers(request)
                    .iter()
                    .filter(|entry| !decided.contains(&entry.as_str()))
                    .flat_map(|entry| self.addresses_of(entry))
                    .filter(|a| !decided.iter().any(|d| d.eq_ignore_ascii_case(a)))
                    .collect();
                if kind != NotificationKind::Reminder {
                    to.extend(self.informed(request).into_iter().flatten());
                }
                to
            }
        };
        to.sort_by_key(|a| a.to_ascii_lowercase());
        to.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        to.into_iter().map(Some).collect()
    }

    async fn deliver(
        &self,
        governor: &Governor,
        notification: &Notification,
    ) -> Result<(), DeliveryError> {
        let Some(to) = notification.recipient.as_deref() else {
            return Ok(());
        };
        let execution = governor
            .execution(notification.execution_id)
            .await
            .map_err(|e| DeliveryError::transient(e.to_string()))?
            .ok_or_else(|| DeliveryError::permanent("the execution is no longer stored"))?;
        let brief = governor.brief(&execution);
        let email = match notification.kind {
            NotificationKind::Decided | NotificationKind::Expired => {
                // The status the change left, which the notice keeps.
                let notice = governor.notice_of(notification).await?;
                message::outcome(
                    &self.config.public_url,
                    notification,
                    &notice,
                    &brief,
                    &execution,
                )
            }
            _ => {
                // Asked again after a decision or a move to another stage
                // (a retry, a slow worker): nobody needs this email now.
                if execution.status != ExecutionStatus::AwaitingApproval {
                    return Ok(());
                }
                let approvers = governor_core::waiting_approvers(execution.approval.as_ref());
                let entry = self.entry_for(&approvers, to);
                let informed = || {
                    self.informed(execution.approval.as_ref())
                        .is_some_and(|i| i.iter().any(|a| a.eq_ignore_ascii_case(to)))
                };
                if entry.is_none() && !informed() {
                    return Ok(());
                }
                message::request(
                    governor,
                    &self.config.public_url,
                    notification,
                    &execution,
                    &brief,
                    entry.as_deref(),
                    to,
                )
            }
        };
        self.send(email, to).await
    }
}
