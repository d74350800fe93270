use agent_governor::govern;

#[govern(policy = [])]
async fn transfer(amount: f64) -> f64 {
    amount
}

fn main() {}
