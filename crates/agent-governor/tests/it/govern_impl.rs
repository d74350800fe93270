use std::sync::LazyLock;

use agent_governor::*;
use serde::Serialize;
use serde_json::json;

static GOV: LazyLock<Governor> = LazyLock::new(|| Governor::builder().build().unwrap());

#[derive(Serialize)]
struct Agent {
    name: String,
}

#[govern(governor = &*GOV, methods = ["process", "execute"], policies = [AuditPolicy::new()])]
impl Agent {
    async fn process(&self, data: String) -> String {
        format!("{}:{data}", self.name)
    }

    pub async fn execute(&self, cmd: String) -> Result<String, GovernError> {
        Ok(cmd)
    }

    pub async fn not_governed(&self) -> u8 {
        7
    }
}

struct Opaque {
    secret: u32,
}

#[govern(governor = &*GOV, name = "opaque")]
impl Opaque {
    pub async fn reveal(&self) -> u32 {
        self.secret
    }
}

#[tokio::test]
async fn selected_methods_are_governed_with_type_dot_method_names() {
    let agent = Agent { name: "a1".into() };
    assert_eq!(agent.process("x".into()).await.unwrap(), "a1:x");
    assert_eq!(agent.execute("ls".into()).await.unwrap(), "ls");
    assert_eq!(agent.not_governed().await, 7);
    let o = Opaque { secret: 9 };
    assert_eq!(o.reveal().await.unwrap(), 9);

    let all = GOV.store().executions(&Default::default()).await.unwrap();
    let names: Vec<_> = all.iter().rev().map(|e| e.action.to_string()).collect();
    assert_eq!(
        names,
        vec!["Agent.process", "Agent.execute", "opaque.reveal"]
    );
    let process = all.iter().find(|e| &*e.action == "Agent.process").unwrap();
    assert_eq!(
        process.inputs.value(),
        json!({"data": "x", "self": {"name": "a1"}}),
        "Serialize self is captured"
    );
    let reveal = all.iter().find(|e| &*e.action == "opaque.reveal").unwrap();
    assert_eq!(
        reveal.inputs.value(),
        json!({}),
        "non-Serialize self is not captured"
    );
}
