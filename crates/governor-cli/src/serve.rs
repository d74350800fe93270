//! `governor serve`: the HTTP API on a SQLite file, with the expiry
//! sweeper and a resume worker, until SIGINT/SIGTERM; and `governor token`
//! to make and hash API tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agent_governor::http::{ApiKeys, JwtVerifier, PrincipalClaims, hash_token};
use agent_governor::{Governor, LoadOptions, Principal, SealKey};

use crate::backends::Choice;
use crate::key_file;
use crate::serve_notify;
use crate::serve_policies::{self, ActionSpec, Sources};
use anyhow::{Context, bail};
use serde::Deserialize;

/// Options of `governor serve`; each overrides the config file.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file (TOML): bind, db, postgres_url, postgres_schema,
    /// postgres_ca_file,
    /// mongodb_url, mongodb_database, redis_url, rate_limits, sweep_seconds, resume_seconds,
    /// `[[keys]]` (hash, principal, roles, permissions, email, tenant) and
    /// `[[actions]]` (name, policies, report_within_seconds), policies
    /// (a shared file with selectors), reload_seconds, `[jwt]`
    /// (algorithm, secret_env or public_key_file, issuer, audience) and
    /// seal_key_env.
    #[arg(long, env = "GOVERNOR_CONFIG")]
    config: Option<PathBuf>,
    /// The SQLite database (default `governor.db`).
    #[arg(long, env = "GOVERNOR_DB")]
    db: Option<PathBuf>,
    /// Keep everything in PostgreSQL instead of SQLite (several instances
    /// may share it).
    #[arg(long, env = "GOVERNOR_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// The PostgreSQL schema (default `governor`).
    #[arg(long, env = "GOVERNOR_POSTGRES_SCHEMA")]
    postgres_schema: Option<String>,
    /// A PEM file of extra roots to trust for TLS to PostgreSQL (TLS is
    /// on when the URL has `sslmode=require`).
    #[arg(long, env = "GOVERNOR_POSTGRES_CA_FILE")]
    postgres_ca_file: Option<PathBuf>,
    /// Keep everything in MongoDB (a replica set) instead of SQLite.
    #[arg(long, env = "GOVERNOR_MONGODB_URL", conflicts_with = "postgres_url")]
    mongodb_url: Option<String>,
    /// The MongoDB database (default: the URL's, else `governor`).
    #[arg(long, env = "GOVERNOR_MONGODB_DATABASE")]
    mongodb_database: Option<String>,
    /// Redis for rate limits marked `shared: true`.
    #[arg(long, env = "GOVERNOR_REDIS_URL")]
    redis_url: Option<String>,
    /// Address to listen on (default `127.0.0.1:8080`; port 0 picks one).
    #[arg(long, env = "GOVERNOR_BIND")]
    bind: Option<SocketAddr>,
    /// How logs are written to stderr: `text` or `json` (one object per
    /// line). Levels and targets come from `GOVERNOR_LOG` (or
    /// `RUST_LOG`), default `info`.
    #[arg(long, env = "GOVERNOR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// How `governor serve` writes its logs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the log subscriber: warnings and errors of the library (store,
/// CEL, resume and channel failures, refused authentications) reach
/// stderr instead of being lost.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("GOVERNOR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("warning: GOVERNOR_LOG `{filter}` is not a filter ({e}); logging at info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: logging is not set up: {e}");
    }
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    bind: Option<SocketAddr>,
    db: Option<PathBuf>,
    /// PostgreSQL instead of SQLite (better in the environment, since the
    /// URL may hold a password).
    postgres_url: Option<String>,
    postgres_schema: Option<String>,
    /// Extra TLS roots for PostgreSQL (PEM).
    postgres_ca_file: Option<PathBuf>,
    /// MongoDB instead of SQLite.
    mongodb_url: Option<String>,
    mongodb_database: Option<String>,
    /// Redis for `shared: true` rate limits.
    redis_url: Option<String>,
    /// `redis` or `postgres`: the backend of `shared: true` rate limits.
    rate_limits: Option<String>,
    /// Seconds between sweeps for expired approval requests (default 5).
    sweep_seconds: Option<u64>,
    /// A policy file whose `actions` selectors choose the policies of
    /// every configured action without its own `policies`.
    policies: Option<PathBuf>,
    /// Seconds between looks for changed policy files (default 2; 0 turns
    /// hot reload off).
    reload_seconds: Option<u64>,
    /// Seconds between resume-worker rounds (default 1).
    resume_seconds: Option<u64>,
    /// Longest a submission may hold its connection for a decision
    /// (default 300).
    max_wait_seconds: Option<u64>,
    /// The largest request body, in bytes (default 2 MiB).
    max_body_bytes: Option<usize>,
    /// The longest a request may take, in seconds (default 30; a
    /// submission may wait up to `max_wait_seconds`).
    request_timeout_seconds: Option<u64>,
    /// The most requests handled at once (default 1,024).
    max_concurrent_requests: Option<usize>,
    /// Origins whose web pages may call the API (CORS); none by default.
    #[serde(default)]
    cors_origins: Vec<String>,
    /// The environment variable holding the seal key (64 hex digits) that
    /// keeps redacted arguments of parked calls runnable.
    seal_key_env: Option<String>,
    /// Else a file holding it, created (0600) on first start; default
    /// `<db>.seal-key` beside the SQLite file, or `governor.seal-key`
    /// beside the config file for a shared database.
    seal_key_file: Option<PathBuf>,
    #[serde(default)]
    keys: Vec<Key>,
    /// Actions agents submit by name over HTTP and run themselves.
    #[serde(default)]
    actions: Vec<ActionConfig>,
    /// Also accept JWTs signed by this key.
    jwt: Option<JwtConfig>,
    /// The URL people reach this server at: links in emails point there.
    public_url: Option<String>,
    /// The environment variable holding the approval-link key (64 hex
    /// digits).
    link_key_env: Option<String>,
    /// Else a file holding it, created (0600) on first start; default
    /// `<db>.link-key`, or `governor.link-key` beside the config file.
    link_key_file: Option<PathBuf>,
    /// Email (`[smtp]`).
    smtp: Option<serve_notify::SmtpConfig>,
    /// Slack (`[slack]`).
    slack: Option<serve_notify::SlackConfig>,
    /// Signed webhooks told about requests and decisions (`[[webhooks]]`).
    #[serde(default)]
    webhooks: Vec<serve_notify::WebhookConfig>,
    /// How notifications are retried.
    delivery: Option<serve_notify::DeliveryConfig>,
}

impl Config {
    /// The notification settings.
    fn notify(&self) -> serve_notify::NotifyConfig<'_> {
        serve_notify::NotifyConfig {
            public_url: self.public_url.as_deref(),
            link_key_env: self.link_key_env.as_ref(),
            link_key_file: self.link_key_file.as_ref(),
            smtp: self.smtp.as_ref(),
            slack: self.slack.as_ref(),
            webhooks: &self.webhooks,
            delivery: self.delivery.as_ref(),
        }
    }
}

/// `[jwt]`: HS256 with a secret from the environment, or a public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtConfig {
    /// `HS256`, `RS256`, `ES256` or `EdDSA`.
    algorithm: String,
    /// HS256: the environment variable holding the secret (never the
    /// secret itself in the file).
    secret_env: Option<String>,
    /// The others: a PEM public key file, relative to the config file.
    public_key_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Accept tokens for any audience. Off by default: without an
    /// audience, a token your identity provider issued to any other
    /// application would be accepted here.
    #[serde(default)]
    allow_any_audience: bool,
}

impl JwtConfig {
    fn verifier(&self, base: &Path) -> anyhow::Result<JwtVerifier> {
        if self.audience.is_none() && !self.allow_any_audience {
            bail!(
                "[jwt] needs `audience` (the `aud` your identity provider puts in tokens for governor); without it a token issued to any other application would be accepted. Set `allow_any_audience = true` only if your provider issues tokens for governor alone"
            );
        }
        let mut v = if self.algorithm == "HS256" {
            let name = self
                .secret_env
                .as_deref()
                .context("[jwt] HS256 needs `secret_env`, the variable holding the secret")?;
            let secret = std::env::var(name)
                .with_context(|| format!("[jwt] environment variable `{name}` is not set"))?;
            JwtVerifier::hs256(secret.as_bytes())?
        } else {
            let file = self
                .public_key_file
                .as_ref()
                .with_context(|| format!("[jwt] {} needs `public_key_file`", self.algorithm))?;
            let pem = std::fs::read(base.join(file))
                .with_context(|| format!("[jwt] cannot read {}", file.display()))?;
            JwtVerifier::public_key_pem(&self.algorithm, &pem)?
        };
        if let Some(iss) = &self.issuer {
            v = v.issuer(iss);
        }
        if let Some(aud) = &self.audience {
            v = v.audience(aud);
        }
        Ok(v)
    }
}

/// An action agents submit with `POST /govern/executions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionConfig {
    name: String,
    /// A policy file (YAML or JSON), relative to the config file.
    policies: Option<PathBuf>,
    /// Seconds the agent has to report the outcome (default 3600).
    report_within_seconds: Option<u64>,
}

/// One API key: the token's hash and the principal it speaks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    /// `sha256:<hex>`, from `governor token new` or `governor token hash`.
    hash: String,
    principal: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    email: Option<String>,
    tenant: Option<String>,
    /// Let this key's permissions reach every tenant (default: its own
    /// tenant only).
    #[serde(default)]
    cross_tenant: bool,
}

impl Key {
    fn principal(&self) -> Principal {
        let mut permissions = self.permissions.clone();
        if self.cross_tenant {
            permissions.push(agent_governor::http::CROSS_TENANT_PERMISSION.to_owned());
        }
        PrincipalClaims {
            roles: self.roles.clone(),
            permissions,
            email: self.email.clone(),
            tenant: self.tenant.clone(),
        }
        .into_principal(self.principal.clone())
    }
}

/// The notification settings a config file sets, for `governor notify
/// test`.
pub(crate) fn notify_targets(path: &Path) -> anyhow::Result<serve_notify::Targets> {
    let config = load(path)?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let notify = config.notify();
    Ok((notify.targets(&base)?, notify.retry_policy()?))
}

fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// The configured actions, as the policy loader takes them.
fn action_specs(config: &Config) -> Vec<ActionSpec> {
    config
        .actions
        .iter()
        .map(|a| ActionSpec {
            name: a.name.clone(),
            policies: a.policies.clone(),
            report_within: Duration::from_secs(a.report_within_seconds.unwrap_or(3600)),
        })
        .collect()
}

fn keys(config: &Config, base: &Path) -> anyhow::Result<ApiKeys> {
    let mut keys = ApiKeys::new();
    if let Some(jwt) = &config.jwt {
        keys = keys.with_jwt(jwt.verifier(base)?);
    }
    for (i, key) in config.keys.iter().enumerate() {
        keys = keys
            .with_hash(&key.hash, key.principal())
            .with_context(|| format!("keys[{i}] (principal `{}`)", key.principal))?;
    }
    if keys.is_empty() {
        bail!(
            "no API keys configured: add [[keys]] with a `hash` from `governor token new` (or a [jwt] section) to the config file; the server accepts no anonymous requests"
        );
    }
    Ok(keys)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let config = match &args.config {
        Some(path) => load(path)?,
        None => Config::default(),
    };
    let base = args
        .config
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."))
        .to_owned();
    let keys = keys(&config, &base)?;
    let bind = args
        .bind
        .or(config.bind)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let backends = Choice {
        db: args.db.or_else(|| config.db.clone()),
        postgres_url: args.postgres_url.or_else(|| config.postgres_url.clone()),
        postgres_schema: args
            .postgres_schema
            .or_else(|| config.postgres_schema.clone()),
        postgres_ca_file: args
            .postgres_ca_file
            .or_else(|| config.postgres_ca_file.clone()),
        mongodb_url: args.mongodb_url.or_else(|| config.mongodb_url.clone()),
        mongodb_database: args
            .mongodb_database
            .or_else(|| config.mongodb_database.clone()),
        redis_url: args.redis_url.or_else(|| config.redis_url.clone()),
        rate_limits: config.rate_limits.clone(),
    }
    .open()
    .await?;
    let db = backends.sqlite_file.as_deref();
    let seal_source = key_file::Source::of(
        key_file::SEAL,
        config.seal_key_env.as_ref(),
        config.seal_key_file.as_ref(),
        &base,
        db,
    )?;
    let builder = Governor::builder()
        .shared_store(backends.store)
        .seal_key(SealKey::from_bytes(key_file::load(
            key_file::SEAL,
            &seal_source,
        )?));
    let (builder, slack) = config.notify().configure(builder, &base, db)?;
    let governor = builder.build()?;
    // Notifications left undelivered by a stopped process go out now.
    governor.spawn_delivery();
    let sources = Sources {
        shared: config.policies.clone(),
        actions: action_specs(&config),
        base: base.clone(),
        options: LoadOptions {
            shared_rate_limits: backends.shared_rate_limits,
        },
    };
    let loaded = sources.load()?;
    serve_policies::apply(&governor, &sources.actions, &loaded)?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "listening beyond this machine in plain HTTP: tokens and decisions cross the network in clear unless a TLS-terminating proxy is in front (see DEPLOYMENT.md)"
        );
    }
    out!(
        "governor serving http://{local} ({}, {} API keys, {} actions)",
        backends.describe,
        keys.len(),
        config.actions.len()
    );
    let every = |s: Option<u64>, default: u64| Duration::from_secs(s.unwrap_or(default).max(1));
    let sweeper = governor.spawn_expiry_sweeper(every(config.sweep_seconds, 5));
    // Stopped after the API: the runs of its current round finish, so no
    // lease is left held by this process.
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = governor.spawn_resume_worker_until(
        format!("serve-{}", std::process::id()),
        every(config.resume_seconds, 1),
        async move {
            let _ = worker_stopped.await;
        },
    );
    let watcher = match config.reload_seconds.unwrap_or(2) {
        0 => None,
        secs => Some(serve_policies::spawn_watcher(
            governor.clone(),
            sources,
            loaded,
            Duration::from_secs(secs),
        )),
    };
    let max_wait = Duration::from_secs(config.max_wait_seconds.unwrap_or(300));
    let defaults = agent_governor::http::Limits::default();
    let limits = agent_governor::http::Limits {
        max_body_bytes: config.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        request_timeout: config
            .request_timeout_seconds
            .map_or(defaults.request_timeout, Duration::from_secs),
        max_concurrent: config
            .max_concurrent_requests
            .unwrap_or(defaults.max_concurrent),
        ..defaults
    };
    let slack_routes = slack.map(|s| s.interactions(governor.clone()));
    let state = agent_governor::http::ApiState::new(governor, keys)
        .max_wait(max_wait)
        .limits(limits)
        .allow_origins(&config.cors_origins)
        .context("cors_origins")?;
    let key_watcher = match (&args.config, config.reload_seconds.unwrap_or(2)) {
        (Some(path), secs) if secs > 0 => Some(spawn_key_watcher(
            path.clone(),
            base.clone(),
            state.key_ring(),
            Duration::from_secs(secs),
        )),
        _ => None,
    };
    let mut app = agent_governor::http::router(state);
    if let Some(routes) = slack_routes {
        app = app.merge(routes);
    }
    agent_governor::http::serve(listener, app, shutdown_signal()).await?;
    sweeper.abort();
    let _ = stop_worker.send(());
    if tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .is_err()
    {
        eprintln!(
            "warning: resume runs still going after 30 s; they are taken over elsewhere after their lease"
        );
    }
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(w) = key_watcher {
        w.abort();
    }
    out!("governor stopped");
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the config file's `[[keys]]` (and `[jwt]`) when the file
/// changes: a key removed is refused from then on (an open event stream
/// within a second); a config that does not load keeps the old keys.
fn spawn_key_watcher(
    path: PathBuf,
    base: PathBuf,
    ring: agent_governor::http::KeyRing,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut seen = modified(&path);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&path).and_then(|config| keys(&config, &base)) {
                Ok(new) => {
                    tracing::info!(
                        keys = new.len(),
                        "API keys reloaded from {}",
                        path.display()
                    );
                    ring.replace(new);
                }
                Err(e) => tracing::error!("API keys not reloaded, the old ones stay: {e:#}"),
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// `governor token`.
#[derive(clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Makes a random token; prints it and the hash to put in the config.
    New,
    /// Reads a token from stdin and prints its hash.
    Hash,
}

pub(crate) fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::New => {
            let token = crate::demo_serve::random_token()?;
            out!("token: {token}");
            out!("hash:  {}", hash_token(&token));
        }
        TokenCommand::Hash => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .context("cannot read the token from stdin")?;
            let token = token.trim();
            if token.is_empty() {
                bail!("no token on stdin");
            }
            let bits = token_entropy_bits(token);
            if bits < MIN_TOKEN_BITS {
                bail!(
                    "this token could be guessed: about {bits:.0} bits of entropy, and a token needs at least {MIN_TOKEN_BITS:.0} (for example 22 random letters and digits, or 32 random hex digits); `governor token new` makes one"
                );
            }
            out!("{}", hash_token(token));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The least entropy a token hashed for the config may have.
const MIN_TOKEN_BITS: f64 = 128.0;

/// An upper estimate of a token's entropy: its length times the bits of
/// the character classes it draws from (lower case, upper case, digits,
/// other printable ASCII, anything else), none if it repeats a few
/// characters only. A token under the bar is surely weak; one over it is
/// as strong as its source was random.
fn token_entropy_bits(token: &str) -> f64 {
    let has = |f: fn(&char) -> bool| token.chars().any(|c| f(&c));
    let mut pool = 0u32;
    for (present, size) in [
        (has(char::is_ascii_lowercase), 26),
        (has(char::is_ascii_uppercase), 26),
        (has(char::is_ascii_digit), 10),
        (has(char::is_ascii_punctuation), 32),
        (has(|c| !c.is_ascii()), 1024),
    ] {
        if present {
            pool += size;
        }
    }
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct < 8 {
        return 0.0;
    }
    token.chars().count() as f64 * f64::from(pool.max(1)).log2()
}

#[cfg(test)]
mod tests {
    use super::token_entropy_bits;

    #[test]
    fn guessable_tokens_are_under_the_bar_and_random_ones_over() {
        for weak in [
            "agent-token",
            "password1234password1234",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "correct-horse",
        ] {
            assert!(token_entropy_bits(weak) < 128.0, "{weak}");
        }
        for strong in [
            "gov_3f9a1c77b0d24e5f8a6b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
            "Zq3xV9mK2pL7wR4tY8uN1b",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ] {
            assert!(token_entropy_bits(strong) >= 128.0, "{strong}");
        }
    }
}
