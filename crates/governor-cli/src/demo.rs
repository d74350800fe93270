//! `governor demo`: an agent issuing transfers through governor on a fresh
//! SQLite file. Small transfers pass, large ones park for a CFO's approval,
//! some are denied by validation, authorization or the rate limit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use agent_governor::sqlite::SqliteStore;
use agent_governor::{
    ApprovalPolicy, AuditPolicy, AuthorizationPolicy, Condition, Display, DisplayField,
    ExecutionStatus, GovernError, Governor, Mask, PolicyExt, Principal, RateLimitPolicy,
    ValidationPolicy, govern,
};
use anyhow::Context;
use serde_json::{Value, json};

/// Options of `governor demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The SQLite file to create (replaced if it exists).
    #[arg(long, default_value = "governor-demo.db")]
    db: PathBuf,
    /// How many transfers the agent attempts.
    #[arg(long, default_value_t = 12)]
    calls: u32,
    /// Seed for the amounts.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Then keep going: serve the HTTP API on this file with fresh tokens
    /// while a simulated agent keeps asking over it, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Where to serve (with --serve).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Milliseconds between the served agent's requests (with --serve).
    #[arg(long, default_value_t = 3000)]
    agent_every_ms: u64,
    /// Email the CFO through this SMTP server (HOST:PORT, no TLS, such as
    /// a local Mailpit) instead of the demo's own sink (with --serve).
    #[arg(long, value_name = "HOST:PORT")]
    smtp: Option<String>,
}

static GOVERNOR: OnceLock<Governor> = OnceLock::new();

fn governor() -> &'static Governor {
    GOVERNOR.get_or_init(|| {
        Governor::builder()
            .build()
            .unwrap_or_else(|_| Governor::global().clone())
    })
}

#[govern(
    governor = governor(),
    policies = [
        ValidationPolicy::new().named("TransferValidation").input_schema(&json!({
            "type": "object",
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "recipient": {"type": "string", "minLength": 1},
                "account_number": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{6}$"}
            },
            "required": ["amount", "recipient", "account_number"]
        })),
        AuthorizationPolicy::new().named("PaymentsRole").require_roles(["payments"]),
        RateLimitPolicy::new(8, Duration::from_secs(60)).named("AgentRateLimit").per_principal(),
        AuditPolicy::new().named("ComplianceAudit").mask("account_number", Mask::Last4).compliance_tags(["SOC2", "GDPR"]),
        large_transfers(),
    ],
    display = Display::titled("Wire {amount:currency(EUR)} to {recipient}")
        .field(DisplayField::new("amount").label("Amount").currency("EUR"))
        .field(DisplayField::new("recipient").label("To"))
        .field(DisplayField::new("account_number").label("Account"))
        .on_approve("The money is sent to the recipient immediately."),
)]
async fn wire_transfer(amount: f64, recipient: String, account_number: String) -> Value {
    json!({"status": "completed", "amount": amount, "recipient": recipient, "reference": format!("TX-{:06}", amount as u64 % 1_000_000)})
}

/// Adds email to the served demo: through `--smtp`, else through the
/// demo's own sink, which prints each email's links.
async fn email(
    builder: agent_governor::GovernorBuilder,
    listener: &tokio::net::TcpListener,
    args: &Args,
) -> anyhow::Result<agent_governor::GovernorBuilder> {
    use agent_governor::notify::{EmailConfig, EmailTarget, SmtpSecurity};
    let public_url = format!("http://{}", listener.local_addr()?);
    let (host, port) = match &args.smtp {
        Some(server) => {
            let (host, port) = server
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .with_context(|| format!("--smtp {server}: expected HOST:PORT"))?;
            out!("Emails to the CFO go through {server}.");
            (host, port)
        }
        None => {
            let folder = args
                .db
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("governor-demo-mail");
            let sink = crate::demo_mail::start(folder.clone()).await?;
            out!(
                "Emails to the CFO go to the demo's own SMTP server ({sink}): each is saved in {} and its links printed here; open one to decide from it.",
                folder.display()
            );
            ("127.0.0.1".to_owned(), sink.port())
        }
    };
    let mut config = EmailConfig::new(host, "governor demo <governor@demo.localhost>", public_url);
    config.port = Some(port);
    config.security = SmtpSecurity::None;
    Ok(builder
        .deliver_to(EmailTarget::new(config)?)
        .link_key(agent_governor::LinkKey::from_bytes(
            crate::demo_serve::random_key()?,
        )))
}

/// The CFO decides transfers of 10,000 or more (with a reason).
pub(crate) fn large_transfers() -> Result<impl agent_governor::Policy, GovernError> {
    let condition = Condition::compile_pre("input.amount >= 10000", "demo")
        .map_err(|e| GovernError::Config(e.to_string()))?;
    Ok(ApprovalPolicy::new(["cfo@company.com"])
        .named("LargeTransferApproval")
        .timeout_seconds(4 * 3600)
        .require_reason(true)
        .when(condition))
}

/// A tiny deterministic generator, so the demo is reproducible.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = args.db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let store = SqliteStore::open(&args.db)
        .await
        .with_context(|| format!("creating `{}`", args.db.display()))?;
    // Account numbers are redacted; sealed, parked transfers can still
    // run once approved (the key lives only as long as this process).
    let key = crate::demo_serve::random_key()?;
    let mut builder = Governor::builder()
        .store(store)
        .seal_key(agent_governor::SealKey::from_bytes(key));
    // Serving: the CFO is emailed approve and reject links to this server.
    let listener = match args.serve {
        true => Some(
            tokio::net::TcpListener::bind(args.bind)
                .await
                .with_context(|| format!("cannot listen on {}", args.bind))?,
        ),
        false => None,
    };
    if let Some(listener) = &listener {
        builder = email(builder, listener, &args).await?;
    }
    let built = builder.build()?;
    let _ = GOVERNOR.set(built);
    out!(
        "governor demo: an agent issues {} transfers; every call is governed and recorded in {}\n",
        args.calls,
        args.db.display()
    );

    let mut rng = Lcg(args.seed);
    let agent = Principal::new("agent-7")
        .with_roles(["payments"])
        .with_tenant(crate::demo_serve::DEMO_TENANT);
    let intern = Principal::new("intern-bot").with_roles(["readonly"]);
    let recipients = ["Acme Corp", "BigCorp", "Globex", ""];
    let mut tickets = Vec::new();
    for i in 0..args.calls {
        let amount = match rng.next() % 10 {
            0..=5 => (rng.next() % 5_000 + 50) as f64,
            6..=8 => (rng.next() % 90_000 + 10_000) as f64,
            _ => -((rng.next() % 100) as f64),
        };
        let recipient = recipients[(rng.next() % 4) as usize].to_string();
        let who = if i % 5 == 4 {
            intern.clone()
        } else {
            agent.clone()
        };
        let caller = who.id.clone();
        let account = format!("DE{:06}", rng.next() % 1_000_000);
        let result = who
            .scope(wire_transfer(amount, recipient.clone(), account))
            .await;
        let line = match result {
            Ok(v) => format!("completed  {}", v["reference"].as_str().unwrap_or("")),
            Err(GovernError::Pending { execution_id }) => {
                tickets.push(execution_id);
                format!("PENDING    approval by cfo@company.com, ticket {execution_id}")
            }
            Err(GovernError::RateLimited { retry_after, .. }) => {
                format!("RATE LIMITED  retry in {:.0}s", retry_after.as_secs_f64())
            }
            Err(e) => format!("DENIED     {e}"),
        };
        out!("  {caller:<11} transfer {amount:>9.2} to {recipient:<10} -> {line}");
    }

    let all = governor()
        .store()
        .executions(&agent_governor::ExecutionQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let count = |s: ExecutionStatus| all.iter().filter(|e| e.status == s).count();
    out!(
        "\n{} executions recorded: {} completed, {} awaiting approval, {} denied",
        all.len(),
        count(ExecutionStatus::Completed),
        count(ExecutionStatus::AwaitingApproval),
        count(ExecutionStatus::Denied)
    );
    let db = args.db.display();
    out!("\nInspect them:");
    out!("  governor executions list --db {db}");
    if let Some(t) = tickets.first() {
        out!("  governor executions show {t} --db {db}");
    }
    out!("  governor executions list --db {db} --status awaiting_approval --json");
    out!("  governor audit verify --db {db}");
    out!(
        "\nAccount numbers are redacted everywhere they are stored; the audit log is hash-chained."
    );
    if let Some(listener) = listener {
        let every = std::time::Duration::from_millis(args.agent_every_ms.max(1));
        crate::demo_serve::run(governor().clone(), listener, args.seed, every).await?;
    }
    Ok(ExitCode::SUCCESS)
}
