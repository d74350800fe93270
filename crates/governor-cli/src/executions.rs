//! `governor executions list|show` and `governor audit verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_governor::sqlite::SqliteStore;
use agent_governor::store::EventQuery;
use agent_governor::{ExecutionId, ExecutionQuery, ExecutionStatus, Store, verify_chain};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::output::{duration, table, time};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List executions, newest first.
    List {
        /// The SQLite database.
        #[arg(long, env = "GOVERNOR_DB", default_value = "governor.db")]
        db: PathBuf,
        /// Only these statuses (repeatable).
        #[arg(long)]
        status: Vec<ExecutionStatus>,
        /// Only this action.
        #[arg(long)]
        action: Option<String>,
        /// Only this principal id.
        #[arg(long)]
        principal: Option<String>,
        /// Only executions older than this id (for paging).
        #[arg(long)]
        before: Option<ExecutionId>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one execution with its snapshots, events and audit entries.
    Show {
        /// The execution id.
        id: ExecutionId,
        /// The SQLite database.
        #[arg(long, env = "GOVERNOR_DB", default_value = "governor.db")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn open(db: &Path) -> anyhow::Result<SqliteStore> {
    if !db.exists() {
        bail!(
            "no governor database at `{}` (set --db or GOVERNOR_DB)",
            db.display()
        );
    }
    SqliteStore::open(db)
        .await
        .with_context(|| format!("opening `{}`", db.display()))
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            db,
            status,
            action,
            principal,
            before,
            limit,
            json,
        } => {
            let store = open(&db).await?;
            let query = ExecutionQuery {
                statuses: status,
                action,
                principal,
                before,
                limit,
                ..Default::default()
            };
            let list = store.executions(&query).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.status.to_string(),
                        e.action.to_string(),
                        e.principal.id.clone(),
                        time(e.created_at),
                        duration(e),
                    ]
                })
                .collect();
            table(
                &["ID", "STATUS", "ACTION", "PRINCIPAL", "CREATED", "DURATION"],
                &rows,
            );
            if list.is_empty() {
                out!("(no executions)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id, db, json } => show(&db, id, json).await,
    }
}

async fn show(db: &Path, id: ExecutionId, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(db).await?;
    let Some(e) = store.execution(id).await? else {
        eprintln!("error: no execution {id}");
        return Ok(ExitCode::from(1));
    };
    let snapshots = store.snapshots(id).await?;
    let events = store
        .events(&EventQuery {
            execution_id: Some(id),
            ..Default::default()
        })
        .await?;
    let audit: Vec<_> = store
        .audit_entries(0, usize::MAX)
        .await?
        .into_iter()
        .filter(|a| a.record.execution_id == id)
        .collect();
    if json {
        let doc = json!({"execution": e, "snapshots": snapshots, "events": events, "audit": audit});
        out!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("execution  {}", e.id);
    out!("action     {}", e.action);
    out!("status     {}", e.status);
    out!(
        "principal  {}{}",
        e.principal.id,
        e.principal
            .tenant
            .as_ref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default()
    );
    out!("created    {}", time(e.created_at));
    out!("duration   {}", duration(&e));
    out!("inputs     {}", e.inputs);
    if let Some(o) = &e.output {
        out!("output     {o}");
    }
    if let Some(f) = &e.failure {
        out!("failure    [{}] {}", f.kind, f.message);
    }
    if let Some(a) = &e.approval {
        for (i, s) in a.stages.iter().enumerate() {
            let until = s.expires_at.map(time).unwrap_or_else(|| "never".into());
            out!(
                "approval   stage {}: {} (approvers: {}; expires {until})",
                i + 1,
                s.spec.policy,
                s.spec.approvers.join(", ")
            );
            for d in &s.decisions {
                let verdict = if d.approved { "approved" } else { "rejected" };
                let reason = d
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                out!(
                    "             {verdict} by {} at {}{reason}",
                    d.approver,
                    time(d.at)
                );
            }
        }
    }
    out!("\ntimeline");
    for ev in &events {
        out!("  {}  {:<22} {}", time(ev.time), ev.kind.as_str(), ev.data);
    }
    out!("\nsnapshots");
    for s in &snapshots {
        out!(
            "  {}  {:<18} {}",
            time(s.captured_at),
            s.checkpoint.as_str(),
            s.state
        );
    }
    out!("\naudit");
    for a in &audit {
        out!("  #{} {} {}", a.seq, a.record.status, &a.hash[..16]);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn verify(db: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(db).await?;
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        entries.extend(page);
    }
    let result = verify_chain(&entries);
    if json {
        let doc = match &result {
            Ok(n) => json!({"ok": true, "entries": n}),
            Err(e) => json!({"ok": false, "entries": entries.len(), "error": e.to_string()}),
        };
        out!("{doc}");
    } else {
        match &result {
            Ok(n) => out!("audit log intact: {n} entries verified"),
            Err(e) => out!("audit log TAMPERED: {e}"),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
