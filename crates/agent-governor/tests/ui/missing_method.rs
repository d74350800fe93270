use agent_governor::govern;

struct Agent;

#[govern(methods = ["procss"])]
impl Agent {
    async fn process(&self) {}
}

fn main() {}
