//! The notification settings of `governor serve`'s config file: where
//! notifications go (`[smtp]`, `[[webhooks]]`), how failed deliveries are
//! retried (`[delivery]`), and the key approval links are signed with.
//! Secrets come from the environment or files, never from the file itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_governor::{DeliveryTarget, GovernorBuilder, LinkKey, RetryPolicy};
use anyhow::{Context, bail};
use serde::Deserialize;

use crate::key_file;

/// The targets a config file sets and its retry policy.
pub(crate) type Targets = (Vec<Arc<dyn DeliveryTarget>>, Option<RetryPolicy>);

/// The config file's notification keys, as the serve config holds them.
pub(crate) struct NotifyConfig<'a> {
    pub(crate) public_url: Option<&'a str>,
    pub(crate) link_key_env: Option<&'a String>,
    pub(crate) link_key_file: Option<&'a PathBuf>,
    pub(crate) smtp: Option<&'a SmtpConfig>,
    pub(crate) webhooks: &'a [WebhookConfig],
    pub(crate) delivery: Option<&'a DeliveryConfig>,
}

impl NotifyConfig<'_> {
    /// Adds the configured targets, retry policy and link key to
    /// `builder`. `db` is the SQLite file, if that is the store (key files
    /// go beside it).
    pub(crate) fn configure(
        &self,
        mut builder: GovernorBuilder,
        base: &Path,
        db: Option<&Path>,
    ) -> anyhow::Result<GovernorBuilder> {
        for target in self.targets(base)? {
            builder = builder.deliver_to_shared(target);
        }
        if let Some(delivery) = &self.delivery {
            builder = builder.retry_policy(delivery.policy()?);
        }
        if self.smtp.is_some() || self.link_key_env.is_some() || self.link_key_file.is_some() {
            let source = key_file::Source::of(
                key_file::LINK,
                self.link_key_env,
                self.link_key_file,
                base,
                db,
            )?;
            builder = builder.link_key(LinkKey::from_bytes(key_file::load(
                key_file::LINK,
                &source,
            )?));
        }
        Ok(builder)
    }

    /// Every configured target.
    pub(crate) fn targets(&self, base: &Path) -> anyhow::Result<Vec<Arc<dyn DeliveryTarget>>> {
        let mut targets: Vec<Arc<dyn DeliveryTarget>> = Vec::new();
        if let Some(smtp) = &self.smtp {
            let public_url = self.public_url.context("[smtp] needs `public_url` (the address people open this server at): links in emails point there")?;
            targets.push(Arc::new(smtp.target(public_url, base)?));
        }
        for hook in self.webhooks {
            targets.push(Arc::new(hook.target(base)?));
        }
        Ok(targets)
    }

    /// The retry policy, if set.
    pub(crate) fn retry_policy(&self) -> anyhow::Result<Option<RetryPolicy>> {
        self.delivery.map(DeliveryConfig::policy).transpose()
    }
}

/// `[smtp]`: email through an SMTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmtpConfig {
    host: String,
    /// Default 587 (starttls), 465 (tls), 25 (none).
    port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    security: Option<String>,
    username: Option<String>,
    /// The environment variable holding the password.
    password_env: Option<String>,
    /// Else a file holding it.
    password_file: Option<PathBuf>,
    /// The sender: `governor <governor@example.com>`.
    from: String,
    /// Extra root certificates (PEM) for a server with a private CA.
    ca_file: Option<PathBuf>,
    /// Connections kept open (default 4).
    pool_size: Option<u32>,
    /// Seconds one SMTP exchange may take (default 30).
    timeout_seconds: Option<u64>,
    /// Whether requesters hear the outcome of their requests.
    #[serde(default)]
    notify_requester: bool,
    /// Addresses of approver entries and requesters that are not
    /// addresses: `cfo = "cfo@example.com"`, `"role:finance" = [...]`.
    #[serde(default)]
    addresses: BTreeMap<String, Addresses>,
}

/// One address or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl SmtpConfig {
    fn target(
        &self,
        public_url: &str,
        base: &Path,
    ) -> anyhow::Result<agent_governor::notify::EmailTarget> {
        use agent_governor::notify::{EmailConfig, EmailTarget, SmtpSecurity};
        let mut c = EmailConfig::new(&self.host, &self.from, public_url);
        c.port = self.port;
        c.security = match self.security.as_deref().unwrap_or("starttls") {
            "starttls" => SmtpSecurity::StartTls,
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            other => bail!("[smtp] security `{other}`: expected starttls, tls or none"),
        };
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => bail!("[smtp] give password_env or password_file, not both"),
            (Some(var), None) => Some(
                std::env::var(var)
                    .with_context(|| format!("[smtp] the password variable `{var}` is not set"))?,
            ),
            (None, Some(file)) => Some(
                std::fs::read_to_string(base.join(file))
                    .with_context(|| {
                        format!("[smtp] cannot read the password file {}", file.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        c.credentials = match (&self.username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (None, None) => None,
            _ => {
                bail!("[smtp] username and a password (password_env or password_file) go together")
            }
        };
        if let Some(file) = &self.ca_file {
            c.extra_roots_pem = Some(
                std::fs::read(base.join(file))
                    .with_context(|| format!("[smtp] cannot read ca_file {}", file.display()))?,
            );
        }
        if let Some(size) = self.pool_size {
            c.pool_size = size;
        }
        if let Some(secs) = self.timeout_seconds {
            c.timeout = std::time::Duration::from_secs(secs.max(1));
        }
        c.notify_requester = self.notify_requester;
        c.addresses = self
            .addresses
            .iter()
            .map(|(entry, a)| {
                let list = match a {
                    Addresses::One(one) => vec![one.clone()],
                    Addresses::Many(many) => many.clone(),
                };
                (entry.clone(), list)
            })
            .collect();
        EmailTarget::new(c).context("[smtp]")
    }
}

/// `[delivery]`: retries of the notification outbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryConfig {
    /// Attempts before a notification is dead (default 12).
    max_attempts: Option<u32>,
    /// Seconds before the first retry, doubled for each further one
    /// (default 1).
    first_retry_seconds: Option<f64>,
    /// The longest wait between retries, in seconds (default 300).
    max_retry_seconds: Option<f64>,
    /// Seconds a worker holds a notification it delivers; a worker that
    /// dies mid-delivery leaves it to another after this long (default 60).
    lease_seconds: Option<f64>,
}

impl DeliveryConfig {
    fn policy(&self) -> anyhow::Result<RetryPolicy> {
        let d = RetryPolicy::default();
        let secs = |v: Option<f64>, key: &str, default: std::time::Duration| match v {
            None => Ok(default),
            Some(s) => std::time::Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("[delivery] {key} must be a positive number of seconds")),
        };
        let max_attempts = self.max_attempts.unwrap_or(d.max_attempts);
        if max_attempts == 0 {
            bail!("[delivery] max_attempts must be at least 1");
        }
        Ok(RetryPolicy {
            max_attempts,
            first_delay: secs(
                self.first_retry_seconds,
                "first_retry_seconds",
                d.first_delay,
            )?,
            max_delay: secs(self.max_retry_seconds, "max_retry_seconds", d.max_delay)?,
            lease: secs(self.lease_seconds, "lease_seconds", d.lease)?,
        })
    }
}

/// `[[webhooks]]`: a receiver of signed notifications.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookConfig {
    /// Names the delivery target (`webhook:<name>`): keep it stable.
    name: String,
    url: String,
    /// The environment variable holding the secret (`whsec_...`).
    secret_env: Option<String>,
    /// Else a file holding it.
    secret_file: Option<PathBuf>,
    /// Only these kinds (`requested`, `stage_advanced`, `decided`,
    /// `expired`, `escalated`, `reminder`); every kind by default.
    #[serde(default)]
    kinds: Vec<agent_governor::NotificationKind>,
}

impl WebhookConfig {
    fn target(&self, base: &Path) -> anyhow::Result<agent_governor::notify::WebhookTarget> {
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(var), None) => std::env::var(var).with_context(|| {
                format!(
                    "webhook `{}`: the secret variable `{var}` is not set",
                    self.name
                )
            })?,
            (None, Some(file)) => std::fs::read_to_string(base.join(file)).with_context(|| {
                format!(
                    "webhook `{}`: cannot read the secret file {}",
                    self.name,
                    file.display()
                )
            })?,
            _ => bail!(
                "webhook `{}`: give secret_env or secret_file (one of them)",
                self.name
            ),
        };
        let target = agent_governor::notify::WebhookTarget::new(&self.name, &self.url, &secret)
            .with_context(|| format!("webhook `{}`", self.name))?;
        Ok(if self.kinds.is_empty() {
            target
        } else {
            target.only(self.kinds.iter().copied())
        })
    }
}
