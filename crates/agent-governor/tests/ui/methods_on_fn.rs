use agent_governor::govern;

#[govern(methods = ["run"])]
async fn run() {}

fn main() {}
