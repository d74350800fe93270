use agent_governor::govern;

// A resume worker may run the body on any thread, so a body that is not
// `Send` must opt out with `resumable = false`.
#[govern]
async fn local_only(n: u32) -> u32 {
    let shared = std::rc::Rc::new(n);
    tokio::task::yield_now().await;
    *shared
}

fn main() {}
