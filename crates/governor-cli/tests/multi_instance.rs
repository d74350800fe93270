//! Several instances on one PostgreSQL: 3 `governor serve` processes and 2
//! worker processes (this test binary, started again as a worker), with
//! decisions made through randomly chosen servers and one worker killed
//! with SIGKILL mid-run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_governor::postgres::{PostgresOptions, PostgresStore};
use agent_governor::*;

const CALLS: usize = 1_000;
const WORKER_ENV: &str = "GOVERNOR_TEST_WORKER";
const SCHEMA_ENV: &str = "GOVERNOR_TEST_WORKER_SCHEMA";

fn pg_url() -> String {
    std::env::var("GOVERNOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("GOVERNOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn store(schema: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::connect_with(&pg_url(), PostgresOptions::new().schema(schema))
            .await
            .unwrap(),
    )
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[derive(serde::Deserialize)]
struct Transfer {
    n: i32,
}

/// The governed action, as every process defines it: parked for the CFO;
/// its effect is a row in `effects` (keyed by `n`, so a run repeated after
/// a crash is visible).
fn transfer(g: &Governor, effects: Option<(Arc<tokio_postgres::Client>, String)>) -> Action {
    g.action("transfer")
        .policy(ApprovalPolicy::new(["cfo"]).wait(Duration::ZERO))
        .policy(AuditPolicy::new())
        .resumable(move |t: Transfer| {
            let effects = effects.clone();
            async move {
                let (db, worker) = effects.ok_or("only workers run transfers")?;
                db.execute(
                    "INSERT INTO effects (n, worker) VALUES ($1, $2)",
                    &[&t.n, &worker],
                )
                .await
                .map_err(|e| e.to_string())?;
                // Long enough that a kill lands while runs are in flight.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, String>(t.n)
            }
        })
        .build()
        .unwrap()
}

/// Not a test on its own: the multi-instance test starts this binary again
/// with `GOVERNOR_TEST_WORKER` set, and this runs a resume worker until
/// killed.
#[test]
fn worker_process() {
    let Ok(name) = std::env::var(WORKER_ENV) else {
        return;
    };
    let schema = std::env::var(SCHEMA_ENV).unwrap();
    runtime().block_on(async move {
        let db = admin().await;
        db.batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        let g = Governor::builder()
            .shared_store(store(&schema).await)
            .resume_lease(Duration::from_secs(2))
            .build()
            .unwrap();
        let _action = transfer(&g, Some((Arc::new(db), name.clone())));
        g.spawn_resume_worker(name, Duration::from_millis(50))
            .await
            .unwrap();
    });
}

fn start_worker(name: &str, schema: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "multi_instance::worker_process", "--nocapture"])
        .env(WORKER_ENV, name)
        .env(SCHEMA_ENV, schema)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn start_servers(schema: &str) -> Vec<super::Served> {
    let keys = [
        ("principal = \"agent\"", "agent-token"),
        ("principal = \"cfo\"", "cfo-token"),
    ];
    let extra = format!(
        "postgres_url = \"{}\"\npostgres_schema = \"{schema}\"\nredis_url = \"{}\"\n\
         resume_seconds = 1\n[[actions]]\nname = \"limited\"\npolicies = \"limited.yaml\"\n",
        pg_url(),
        redis_url()
    );
    // A limit per schema, so reruns of the test start from a full budget.
    let limited = format!(
        "policies:\n  - type: rate_limit\n    name: limited_{schema}\n    max_calls: 100\n    window_seconds: 60\n    shared: true\n"
    );
    (0..3)
        .map(|_| super::serve(&keys, &extra, &[("limited.yaml", &limited)]))
        .collect()
}

/// Makes the governed calls (each parks at once with a ticket).
async fn submit(g: &Governor) -> Vec<ExecutionId> {
    let action = Arc::new(transfer(g, None));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..CALLS as i32 {
        let action = Arc::clone(&action);
        tasks.spawn(async move {
            match action
                .run_as(
                    Principal::new("agent"),
                    Args::new().arg("n", &n),
                    || async { Ok::<_, GovernError>(0) },
                )
                .await
            {
                Err(GovernError::Pending { execution_id }) => execution_id,
                other => panic!("expected a ticket, got {other:?}"),
            }
        });
    }
    let mut ids = Vec::with_capacity(CALLS);
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

/// Approves every id through a server picked per request; calls
/// `halfway` once a third are approved.
fn approve_all(ids: &[ExecutionId], servers: &[super::Served], halfway: impl FnOnce()) {
    let next = AtomicUsize::new(0);
    let addrs: Vec<&str> = servers.iter().map(|s| s.addr.as_str()).collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (next, addrs) = (&next, &addrs);
            scope.spawn(move || {
                let mut pick = 0x9E37_79B9_u32.wrapping_mul(t + 1);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = ids.get(i) else { return };
                    pick ^= pick << 13;
                    pick ^= pick >> 17;
                    pick ^= pick << 5;
                    let addr = addrs[pick as usize % addrs.len()];
                    let (status, body) = super::http_body(
                        addr,
                        "POST",
                        &format!("/govern/approvals/{id}/approve"),
                        Some("cfo-token"),
                        "{\"reason\":\"ok\"}",
                    );
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
        while next.load(Ordering::SeqCst) < ids.len() / 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        halfway();
    });
}

async fn completed(store: &PostgresStore) -> usize {
    store
        .executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Completed],
            action: Some("transfer".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

/// How many runs worker w1 has done (its effect is written) and how many of
/// those are still running (cut off if w1 dies now).
async fn w1_runs(db: &tokio_postgres::Client, schema: &str) -> (i64, i64) {
    let row = db
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {schema}.effects WHERE worker = 'w1'), \
                 (SELECT count(*) FROM {schema}.executions x \
                  JOIN {schema}.effects f ON (x.inputs::jsonb ->> 'n')::int = f.n \
                  WHERE f.worker = 'w1' AND x.status = 'running')"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Sends a signal (`STOP`, `CONT`) to a child process.
fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("the kill command runs");
    assert!(status.success(), "kill -{name} failed");
}

#[test]
fn three_servers_and_two_workers_share_one_postgres() {
    let schema = format!("mi_{}", uuid_suffix());
    let rt = runtime();
    let (store, db) = rt.block_on(async {
        PostgresStore::migrate(&pg_url(), &schema).await.unwrap();
        let db = admin().await;
        db.batch_execute(&format!(
            "CREATE TABLE {schema}.effects (id bigserial PRIMARY KEY, n int NOT NULL, worker text NOT NULL)"
        ))
        .await
        .unwrap();
        (store(&schema).await, db)
    });
    let servers = start_servers(&schema);
    // w2 starts only once w1 is killed in the middle of runs, so that
    // nothing but a takeover can finish the runs w1 left cut off.
    let mut w1 = start_worker("w1", &schema);
    let mut w2 = None;
    let g = Governor::builder()
        .shared_store(store.clone())
        .build()
        .unwrap();
    let ids = rt.block_on(submit(&g));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), CALLS);

    let started = Instant::now();
    approve_all(&ids, &servers, || {
        // w1 is frozen (SIGSTOP) once it has done some runs and is in the
        // middle of others (each takes 100 ms after its effect). Frozen,
        // its state cannot move, so the test sees for certain whether runs
        // are cut off; if none are, w1 goes on and is caught again later.
        // Only then is it killed with SIGKILL.
        let cut_off = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let (done, running) = w1_runs(&db, &schema).await;
                if done >= 20 && running >= 5 {
                    signal(&w1, "STOP");
                    // Let the database finish what w1 had already sent.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let (_, running) = w1_runs(&db, &schema).await;
                    if running >= 1 {
                        return running;
                    }
                    signal(&w1, "CONT");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            0
        });
        assert!(cut_off >= 1, "w1 never had 20 runs done and some in flight");
        w1.kill().unwrap();
        w1.wait().unwrap();
        w2 = Some(start_worker("w2", &schema));
    });
    let approved_in = started.elapsed();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while completed(&store).await < CALLS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let all_done = started.elapsed();
    if let Some(mut w2) = w2 {
        let _ = w2.kill();
        let _ = w2.wait();
    }

    rt.block_on(async {
        assert_eq!(completed(&store).await, CALLS, "every call completes");
        // Exactly one completion each: one completion event per execution.
        let events = store
            .events(&EventQuery {
                kinds: vec![EventKind::ExecutionCompleted],
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut per_execution: HashMap<ExecutionId, usize> = HashMap::new();
        for e in &events {
            *per_execution.entry(e.execution_id).or_default() += 1;
        }
        assert_eq!(per_execution.len(), CALLS);
        assert!(per_execution.values().all(|&n| n == 1), "a completion was recorded twice");
        // Every effect happened; runs cut off by the kill ran again on w2.
        let rows = db
            // In the order they were written: two connections' inserts can
            // land in the table's pages out of that order.
            .query(
                &format!("SELECT n, worker FROM {schema}.effects ORDER BY id"),
                &[],
            )
            .await
            .unwrap();
        let mut runs: HashMap<i32, Vec<String>> = HashMap::new();
        for r in &rows {
            runs.entry(r.get(0)).or_default().push(r.get(1));
        }
        assert_eq!(runs.len(), CALLS, "every transfer ran");
        let rerun = runs.values().filter(|w| w.len() > 1).count();
        let taken_over = runs
            .values()
            .filter(|w| w.len() > 1 && w[0] == "w1" && w.iter().any(|x| x == "w2"))
            .count();
        assert!(taken_over >= 1, "the killed worker's runs were taken over");
        let odd: Vec<&Vec<String>> = runs
            .values()
            .filter(|w| w.len() > 1 && !(w[0] == "w1" && w.iter().any(|x| x == "w2")))
            .collect();
        assert_eq!(rerun, taken_over, "only cut-off runs ran twice: {odd:?}");
        let audit = store.audit_entries(0, 100_000).await.unwrap();
        assert!(verify_chain(&audit).is_ok());
        eprintln!(
            "multi-instance: {CALLS} approved through 3 servers in {approved_in:?}, all completed after {all_done:?}; \
             w1 ran {} before SIGKILL, {taken_over} cut-off runs taken over by w2",
            rows.iter().filter(|r| r.get::<_, String>(1) == "w1").count()
        );
    });

    // One limit of 100 per minute across the three servers.
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..300 {
        let (status, body) = super::http_body(
            &servers[i % 3].addr,
            "POST",
            "/govern/executions",
            Some("agent-token"),
            &format!("{{\"action\":\"limited\",\"arguments\":{{\"i\":{i}}}}}"),
        );
        match status {
            200..=202 => accepted += 1,
            429 => limited += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((accepted, limited), (100, 200));
    rt.block_on(async {
        let _ = db
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await;
    });
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}_{}", std::process::id())
}
