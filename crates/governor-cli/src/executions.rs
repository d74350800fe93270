//! `governor executions list|show|resume` (on the SQLite file, or through
//! a server with `--server`) and `governor audit verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_governor::sqlite::SqliteStore;
use agent_governor::store::EventQuery;
use agent_governor::{
    AuditEntry, Event, Execution, ExecutionId, ExecutionQuery, ExecutionStatus, Snapshot, Store,
};
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::approvals::encode;
use crate::output::{clean, duration, table, time};
use crate::remote::{Remote, RemoteArgs};

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
        /// Ask a running server instead of reading the file.
        #[command(flatten)]
        remote: RemoteArgs,
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
        /// Ask a running server instead of reading the file.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run an approved execution now, on a running server (needs
    /// `governor:resume`).
    Resume {
        /// The execution id.
        id: ExecutionId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
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
            remote,
        } => {
            let query = ExecutionQuery {
                statuses: status,
                action,
                principal,
                before,
                limit,
                ..Default::default()
            };
            let list = match remote.server {
                Some(_) => list_remote(Remote::new(remote)?, &query).await?,
                None => open(&db).await?.executions(&query).await?,
            };
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
        Command::Show {
            id,
            db,
            json,
            remote,
        } => match remote.server {
            Some(_) => show_remote(Remote::new(remote)?, id, json).await,
            None => show(&db, id, json).await,
        },
        Command::Resume { id, json, remote } => {
            let path = format!("/govern/executions/{id}/resume");
            let e: Execution =
                serde_json::from_value(Remote::new(remote)?.post(&path, &json!({})).await?)?;
            if json {
                out!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                out!("{} {} is now {}", clean(&e.action), e.id, e.status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One page of executions from a server, with the same filters.
async fn list_remote(remote: Remote, q: &ExecutionQuery) -> anyhow::Result<Vec<Execution>> {
    let mut path = format!("/govern/executions?limit={}", q.limit.clamp(1, 500));
    if !q.statuses.is_empty() {
        let statuses: Vec<&str> = q.statuses.iter().map(|s| s.as_str()).collect();
        path.push_str(&format!("&status={}", statuses.join(",")));
    }
    for (key, value) in [("action", &q.action), ("principal", &q.principal)] {
        if let Some(v) = value {
            path.push_str(&format!("&{key}={}", encode(v)));
        }
    }
    if let Some(b) = q.before {
        path.push_str(&format!("&cursor={b}"));
    }
    let mut page = remote.get(&path).await?;
    Ok(serde_json::from_value(page["items"].take())?)
}

async fn show_remote(remote: Remote, id: ExecutionId, json: bool) -> anyhow::Result<ExitCode> {
    let mut detail = remote.get(&format!("/govern/executions/{id}")).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(ExitCode::SUCCESS);
    }
    let e: Execution = serde_json::from_value(detail["execution"].take())?;
    let events: Vec<Event> = serde_json::from_value(detail["events"].take())?;
    let snapshots: Vec<Snapshot> = serde_json::from_value(detail["snapshots"].take())?;
    render(&e, &events, &snapshots, None);
    Ok(ExitCode::SUCCESS)
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
    render(&e, &events, &snapshots, Some(&audit));
    Ok(ExitCode::SUCCESS)
}

/// The human-readable form of one execution (`audit` only from the file).
fn render(e: &Execution, events: &[Event], snapshots: &[Snapshot], audit: Option<&[AuditEntry]>) {
    out!("execution  {}", e.id);
    out!("action     {}", clean(&e.action));
    out!("status     {}", e.status);
    out!(
        "principal  {}{}",
        clean(&e.principal.id),
        e.principal
            .tenant
            .as_ref()
            .map(|t| format!(" (tenant {})", clean(t)))
            .unwrap_or_default()
    );
    out!("created    {}", time(e.created_at));
    out!("duration   {}", duration(e));
    out!("inputs     {}", e.inputs);
    if let Some(edited) = e.approval.as_ref().and_then(|a| a.edited_inputs.as_ref()) {
        out!("will run   {edited}  (edited by an approver)");
    }
    if let Some(o) = &e.output {
        out!("output     {o}");
    }
    if let Some(f) = &e.failure {
        out!("failure    [{}] {}", clean(&f.kind), clean(&f.message));
    }
    if let Some(a) = &e.approval {
        for (i, s) in a.stages.iter().enumerate() {
            let until = s.expires_at.map(time).unwrap_or_else(|| "never".into());
            out!(
                "approval   stage {}: {} (approvers: {}; expires {until})",
                i + 1,
                clean(&s.spec.policy),
                clean(&s.spec.approvers.join(", "))
            );
            for d in &s.decisions {
                let verdict = if d.approved { "approved" } else { "rejected" };
                let reason = d
                    .reason
                    .as_deref()
                    .map(|r| format!(": {}", clean(r)))
                    .unwrap_or_default();
                out!(
                    "             {verdict} by {} at {}{reason}{}",
                    clean(&d.approver),
                    time(d.at),
                    if d.superseded {
                        " (superseded: the arguments were edited after it)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    out!("\ntimeline");
    for ev in events {
        out!("  {}  {:<22} {}", time(ev.time), ev.kind.as_str(), ev.data);
    }
    out!("\nsnapshots");
    for s in snapshots {
        out!(
            "  {}  {:<18} {}",
            time(s.captured_at),
            s.checkpoint.as_str(),
            s.state
        );
    }
    if let Some(audit) = audit {
        out!("\naudit");
        for a in audit {
            out!("  #{} {} {}", a.seq, a.record.status, &a.hash[..16]);
        }
    }
}

pub(crate) async fn verify(db: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(db).await?;
    // A page at a time: the whole log is never held in memory.
    let check = agent_governor::check_audit_log(&store, 0, u64::MAX).await?;
    let n = check.entries;
    if json {
        let doc = match &check.error {
            None => json!({"ok": true, "entries": n}),
            Some(e) => json!({"ok": false, "entries": n, "error": e.to_string()}),
        };
        out!("{doc}");
    } else {
        match &check.error {
            None => out!("audit log intact: {n} entries verified"),
            Some(e) => out!("audit log TAMPERED: {e}"),
        }
    }
    Ok(if check.error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
