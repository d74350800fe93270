use agent_governor::govern;

#[govern]
async fn transfer((amount, fee): (f64, f64)) -> f64 {
    amount + fee
}

fn main() {}
