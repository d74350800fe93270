//! The PostgreSQL rate-limit backend holds one limit across instances.

use std::sync::Arc;
use std::time::Duration;

use governor_core::*;
use governor_postgres::{PostgresOptions, PostgresStore};

use crate::support::{fresh_schema, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_limit_holds_across_instances() {
    let schema = fresh_schema();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(
            PostgresStore::connect_with(&url(), PostgresOptions::new().schema(&schema))
                .await
                .unwrap(),
        );
        let limit = RateLimitPolicy::new(100, Duration::from_secs(60))
            .named("api")
            .shared(Arc::new(store.rate_limiter()));
        let g = Governor::builder().shared_store(store).build().unwrap();
        let action = Arc::new(g.action("call").policy(limit).build().unwrap());
        for i in 0..100 {
            let action = Arc::clone(&action);
            tasks.push(tokio::spawn(async move {
                action
                    .run(Args::new().arg("i", &i), || async {
                        Ok::<_, GovernError>(())
                    })
                    .await
            }));
        }
    }
    let (mut admitted, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(GovernError::RateLimited { policy, .. }) => {
                assert_eq!(policy, "api");
                limited += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((admitted, limited), (100, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_gives_its_cell_back_and_retry_after_is_told() {
    let store = crate::support::fresh_store().await;
    let limiter = store.rate_limiter();
    for (key, limit) in [
        (
            "window",
            Limit::Window {
                max_calls: 1,
                window: Duration::from_secs(10),
            },
        ),
        (
            "gcra",
            Limit::Gcra {
                interval: Duration::from_secs(10),
                tolerance: Duration::ZERO,
            },
        ),
    ] {
        assert_eq!(
            limiter.acquire(key, limit).await.unwrap(),
            Admission::Admitted
        );
        let Admission::Limited { retry_after } = limiter.acquire(key, limit).await.unwrap() else {
            panic!("{key}: second call within the window was admitted");
        };
        assert!(
            retry_after > Duration::from_secs(9) && retry_after <= Duration::from_secs(10),
            "{key}: {retry_after:?}"
        );
        limiter.release(key, limit).await.unwrap();
        assert_eq!(
            limiter.acquire(key, limit).await.unwrap(),
            Admission::Admitted,
            "{key}"
        );
        assert_eq!(
            limiter
                .acquire(&format!("{key}-other"), limit)
                .await
                .unwrap(),
            Admission::Admitted
        );
    }
}
