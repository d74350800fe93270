use agent_governor::govern;

struct Secret;

#[govern]
async fn leak(secret: Secret) -> u8 {
    let _ = secret;
    1
}

fn main() {}
