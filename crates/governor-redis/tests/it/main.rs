//! Integration tests against the Redis named by `GOVERNOR_TEST_REDIS_URL`
//! (`.ci/run` starts one and sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use governor_core::*;
use governor_redis::{RedisOptions, RedisRateLimiter};

fn url() -> String {
    std::env::var("GOVERNOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A limiter whose keys no other test run shares.
fn limiter() -> RedisRateLimiter {
    limiter_at(&format!("governor-test:{}:", uuid_like()))
}

fn limiter_at(prefix: &str) -> RedisRateLimiter {
    RedisRateLimiter::open_with(&url(), RedisOptions::new().prefix(prefix)).unwrap()
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limit_holds_across_three_instances() {
    let prefix = format!("governor-test:{}:", uuid_like());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        // Each instance has its own governor and its own connection.
        let limit = RateLimitPolicy::new(100, Duration::from_secs(60))
            .named("api")
            .shared(Arc::new(limiter_at(&prefix)));
        let g = Governor::builder()
            .store(MemoryStore::new())
            .build()
            .unwrap();
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
            Err(GovernError::RateLimited { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
                limited += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((admitted, limited), (100, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_free_up_with_time_and_can_be_given_back() {
    let redis = limiter();
    for (key, limit) in [
        (
            "window",
            Limit::Window {
                max_calls: 1,
                window: Duration::from_millis(300),
            },
        ),
        (
            "gcra",
            Limit::Gcra {
                interval: Duration::from_millis(300),
                tolerance: Duration::ZERO,
            },
        ),
    ] {
        assert_eq!(
            redis.acquire(key, limit).await.unwrap(),
            Admission::Admitted
        );
        let Admission::Limited { retry_after } = redis.acquire(key, limit).await.unwrap() else {
            panic!("{key}: admitted within the window");
        };
        assert!(
            retry_after <= Duration::from_millis(300),
            "{key}: {retry_after:?}"
        );
        tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
        assert_eq!(
            redis.acquire(key, limit).await.unwrap(),
            Admission::Admitted,
            "{key}"
        );
        redis.release(key, limit).await.unwrap();
        assert_eq!(
            redis.acquire(key, limit).await.unwrap(),
            Admission::Admitted,
            "{key}"
        );
    }
}

/// A limit above `Limit::EXACT_WINDOW_CALLS` keeps slot counters, not a
/// member per call, and still admits exactly `max_calls` in a window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_limit_counts_in_a_bounded_number_of_slots() {
    let prefix = format!("governor-test:{}:", uuid_like());
    let redis = limiter_at(&prefix);
    let max_calls = Limit::EXACT_WINDOW_CALLS + 76;
    // Long enough that all the calls fit in one window on a loaded
    // machine (the count is exact only within a window); the test sleeps
    // out the retry-after at the end.
    let window = Duration::from_secs(10);
    let limit = Limit::Window { max_calls, window };
    assert!(limit.counts_in_slots());
    let mut admitted = 0;
    let retry_after = loop {
        match redis.acquire("high", limit).await.unwrap() {
            Admission::Admitted => admitted += 1,
            Admission::Limited { retry_after } => break retry_after,
        }
    };
    assert_eq!(admitted, max_calls);
    // The oldest slot leaves at most a window and a slot after it began.
    let slot = window / Limit::WINDOW_SLOTS;
    assert!(retry_after <= window + slot, "{retry_after:?}");
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let slots: u32 = redis::cmd("HLEN")
        .arg(format!("{prefix}high:slots"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=Limit::WINDOW_SLOTS + 1).contains(&slots),
        "{slots} slots"
    );
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(
        redis.acquire("high", limit).await.unwrap(),
        Admission::Admitted
    );
    redis.release("high", limit).await.unwrap();
    assert_eq!(
        redis.acquire("high", limit).await.unwrap(),
        Admission::Admitted
    );
}

async fn call_with_redis_down(on_error: OnBackendError) -> Result<(), GovernError> {
    // Nothing listens on port 1.
    let down = RedisRateLimiter::open_with(
        "redis://127.0.0.1:1",
        RedisOptions::new().timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let limit = RateLimitPolicy::new(10, Duration::from_secs(60))
        .shared(Arc::new(down))
        .on_backend_error(on_error);
    let g = Governor::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let action = g.action("call").policy(limit).build().unwrap();
    action
        .run(Args::new(), || async { Ok::<_, GovernError>(()) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_denies_by_default_with_the_reason() {
    match call_with_redis_down(OnBackendError::Deny).await {
        Err(GovernError::Denied { rule, reason, .. }) => {
            assert_eq!(rule.as_deref(), Some("backend_unavailable"));
            assert!(reason.contains("redis"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    call_with_redis_down(OnBackendError::Allow).await.unwrap();
}

#[test]
fn an_invalid_url_is_refused() {
    let err = RedisRateLimiter::open("http://nope").unwrap_err();
    assert_eq!(err.backend, "redis");
}
