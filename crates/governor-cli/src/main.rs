//! `governor`: inspect executions, check policy files, verify the audit
//! log and run the demo, on the embedded SQLite store.

/// `println!` that exits quietly when stdout is closed (`governor ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(&format!($($arg)*))
    };
}

mod approvals;
mod backends;
mod demo;
mod demo_mail;
mod demo_serve;
mod executions;
mod grants;
mod key_file;
mod notifications;
mod notify;
mod output;
mod pause;
mod policy;
mod remote;
mod serve;
mod serve_notify;
mod serve_policies;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Governance for AI agents: policies, approvals, durable audit trails.
#[derive(Parser)]
#[command(name = "governor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide approval requests through a running server.
    Approvals {
        #[command(subcommand)]
        command: approvals::Command,
    },
    /// List and revoke standing grants through a running server.
    Grants {
        #[command(subcommand)]
        command: grants::Command,
    },
    /// Send a test notification to a configured target.
    Notify {
        #[command(subcommand)]
        command: notify::Command,
    },
    /// List notifications and retry dead ones through a running server.
    Notifications {
        #[command(subcommand)]
        command: notifications::Command,
    },
    /// Inspect recorded executions.
    Executions {
        #[command(subcommand)]
        command: executions::Command,
    },
    /// Check and explain policy files.
    Policy {
        #[command(subcommand)]
        command: policy::Command,
    },
    /// Verify the hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Kill switch: pause one action (or every action) until lifted.
    Pause(pause::PauseArgs),
    /// Lift a pause.
    Lift(pause::LiftArgs),
    /// List active pauses.
    Pauses {
        /// The SQLite database.
        #[arg(long, env = "GOVERNOR_DB", default_value = "governor.db")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the demo: an agent making governed transfers on a SQLite file.
    Demo(demo::Args),
    /// Serve the HTTP API (approvals, executions, health) on a SQLite file
    /// or PostgreSQL, with the expiry sweeper and a resume worker.
    Serve(serve::Args),
    /// Apply pending migrations to a PostgreSQL schema (serve also does on
    /// start).
    Migrate(backends::MigrateArgs),
    /// Make or hash API tokens for the server's config.
    Token {
        #[command(subcommand)]
        command: serve::TokenCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every audit entry's hash and link; exits 1 if the log was
    /// tampered with.
    Verify {
        /// The SQLite database.
        #[arg(long, env = "GOVERNOR_DB", default_value = "governor.db")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS for every HTTP client (remote commands, webhooks): rustls on
    // ring. Once per process; later installs find this one in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Approvals { command } => approvals::run(command).await,
            Command::Executions { command } => executions::run(command).await,
            Command::Grants { command } => grants::run(command).await,
            Command::Notifications { command } => notifications::run(command).await,
            Command::Notify { command } => notify::run(command).await,
            Command::Policy { command } => policy::run(command).await,
            Command::Audit {
                command: AuditCommand::Verify { db, json },
            } => executions::verify(&db, json).await,
            Command::Pause(args) => pause::pause(args).await,
            Command::Lift(args) => pause::lift(args).await,
            Command::Pauses { db, json } => pause::list(db, json).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Migrate(args) => backends::migrate(args).await,
            Command::Token { command } => serve::token(command),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn write_stdout(line: &str) {
    use std::io::Write;
    // Agent-controlled text never reaches the terminal as control
    // characters (escape sequences could rewrite what an approver reads);
    // values are escaped where they are printed, and this catches the rest.
    let line = output::escape_controls(line, true);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}
