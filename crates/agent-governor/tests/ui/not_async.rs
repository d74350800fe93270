use agent_governor::govern;

#[govern]
fn transfer(amount: f64) -> f64 {
    amount
}

fn main() {}
