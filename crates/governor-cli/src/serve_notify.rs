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
    pub(crate) slack: Option<&'a SlackConfig>,
    pub(crate) webhooks: &'a [WebhookConfig],
    pub(crate) delivery: Option<&'a DeliveryConfig>,
}

impl NotifyConfig<'_> {
    /// Adds the configured targets, retry policy and link key to
    /// `builder`. `db` is the SQLite file, if that is the store (key files
    /// go beside it). Returns the Slack target too: its interactivity
    /// endpoint is served with the API.
    pub(crate) fn configure(
        &self,
        mut builder: GovernorBuilder,
        base: &Path,
        db: Option<&Path>,
    ) -> anyhow::Result<(GovernorBuilder, Option<agent_governor::notify::SlackTarget>)> {
        let slack = self
            .slack
            .map(|s| s.target(self.public_url, base))
            .transpose()?;
        if let Some(slack) = &slack {
            builder = builder.deliver_to(slack.clone());
        }
        for target in self.targets(base)? {
            if target.name() != agent_governor::notify::SLACK_TARGET {
                builder = builder.deliver_to_shared(target);
            }
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
        Ok((builder, slack))
    }

    /// Every configured target.
    pub(crate) fn targets(&self, base: &Path) -> anyhow::Result<Vec<Arc<dyn DeliveryTarget>>> {
        let mut targets: Vec<Arc<dyn DeliveryTarget>> = Vec::new();
        if let Some(slack) = self.slack {
            targets.push(Arc::new(slack.target(self.public_url, base)?));
        }
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

/// A secret from the environment variable `env` or the file `file`
/// (relative to `base`, trailing newline dropped): exactly one of them, or
/// neither (`None`).
fn secret(
    what: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
    base: &Path,
) -> anyhow::Result<Option<String>> {
    match (env, file) {
        (Some(_), Some(_)) => bail!("{what}: give the variable or the file, not both"),
        (Some(var), None) => std::env::var(var)
            .map(Some)
            .with_context(|| format!("{what}: the variable `{var}` is not set")),
        (None, Some(file)) => std::fs::read_to_string(base.join(file))
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .with_context(|| format!("{what}: cannot read {}", file.display())),
        (None, None) => Ok(None),
    }
}

/// `[slack]`: a channel where requests are posted with buttons.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlackConfig {
    /// The environment variable holding the bot token (`xoxb-...`).
    bot_token_env: Option<String>,
    /// Else a file holding it.
    bot_token_file: Option<PathBuf>,
    /// The environment variable holding the app's signing secret.
    signing_secret_env: Option<String>,
    /// Else a file holding it.
    signing_secret_file: Option<PathBuf>,
    /// The channel id requests are posted to.
    channel: String,
    /// The Web API's address (default `https://slack.com/api`).
    api_base: Option<String>,
    /// Slack user ids mapped to approver ids; others are known by their
    /// profile's email.
    #[serde(default)]
    users: BTreeMap<String, String>,
}

impl SlackConfig {
    fn target(
        &self,
        public_url: Option<&str>,
        base: &Path,
    ) -> anyhow::Result<agent_governor::notify::SlackTarget> {
        let token = secret(
            "[slack] bot token",
            self.bot_token_env.as_ref(),
            self.bot_token_file.as_ref(),
            base,
        )?
        .context("[slack] give bot_token_env or bot_token_file")?;
        let signing = secret(
            "[slack] signing secret",
            self.signing_secret_env.as_ref(),
            self.signing_secret_file.as_ref(),
            base,
        )?
        .context("[slack] give signing_secret_env or signing_secret_file")?;
        let mut c = agent_governor::notify::SlackConfig::new(token, signing, &self.channel);
        if let Some(api) = &self.api_base {
            c.api_base.clone_from(api);
        }
        c.users.clone_from(&self.users);
        c.public_url = public_url.map(str::to_owned);
        agent_governor::notify::SlackTarget::new(c).context("[slack]")
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
        let password = secret(
            "[smtp] password",
            self.password_env.as_ref(),
            self.password_file.as_ref(),
            base,
        )?;
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
        let what = format!("webhook `{}` secret", self.name);
        let secret = secret(
            &what,
            self.secret_env.as_ref(),
            self.secret_file.as_ref(),
            base,
        )?
        .with_context(|| format!("webhook `{}`: give secret_env or secret_file", self.name))?;
        let target = agent_governor::notify::WebhookTarget::new(&self.name, &self.url, &secret)
            .with_context(|| format!("webhook `{}`", self.name))?;
        Ok(if self.kinds.is_empty() {
            target
        } else {
            target.only(self.kinds.iter().copied())
        })
    }
}
