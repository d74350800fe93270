//! Governing an agent's methods with `#[govern]` on an `impl` block (the
//! seed's `govern_class`).
//!
//! Run: `cargo run -p agent-governor --example govern_impl`

use agent_governor::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
struct ResearchAgent {
    name: String,
    model: String,
}

#[govern(methods = ["search", "write_file"], policies = [
    AuthorizationPolicy::new().require_permissions(["fs.write"]),
    AuditPolicy::new().compliance_tags(["agent-actions"]),
])]
impl ResearchAgent {
    async fn search(&self, query: String) -> Vec<String> {
        vec![format!("result for {query} by {}", self.model)]
    }

    async fn write_file(&self, path: String, contents: String) -> Result<usize, GovernError> {
        // A real agent would write to `path`; the example only counts.
        let _ = path;
        Ok(contents.len())
    }

    /// Not listed in `methods`: not governed.
    async fn think(&self) -> &'static str {
        "thinking"
    }
}

#[tokio::main]
async fn main() -> Result<(), GovernError> {
    let agent = ResearchAgent {
        name: "researcher-1".into(),
        model: "small".into(),
    };
    let writer = Principal::new("researcher-1").with_permissions(["fs.write"]);

    let hits = writer
        .clone()
        .scope(agent.search("rust governance".into()))
        .await?;
    println!("search: {hits:?}");
    let written = writer
        .scope(agent.write_file("notes.md".into(), "hello".into()))
        .await?;
    println!("write_file: {written} bytes");
    println!("think: {}", agent.think().await);

    let denied = Principal::new("guest")
        .scope(agent.write_file("/etc/passwd".into(), "x".into()))
        .await;
    println!(
        "guest write_file: {}",
        denied
            .as_ref()
            .map(|_| "allowed".to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    assert!(matches!(denied, Err(GovernError::Denied { .. })));

    let records = Governor::global()
        .store()
        .executions(&Default::default())
        .await?;
    for e in records.iter().rev() {
        println!(
            "  {:<28} {:<10} by {:<13} inputs={}",
            e.action,
            e.status.as_str(),
            e.principal.id,
            e.inputs
        );
    }
    assert_eq!(records.len(), 3);
    assert_eq!(&*records[2].action, "ResearchAgent.search");
    println!(
        "(agent `{}`'s state is recorded with each call because it is Serialize)",
        agent.name
    );
    Ok(())
}
