//! One test suite, run against SQLite and against PostgreSQL (when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set; .ci/run sets it).

use switchyard_store::testing::{fresh_postgres_database, fresh_sqlite_url, postgres_url};
use switchyard_store::*;

fn new_job(tenant: &str, name: Option<&str>, ms: i64) -> NewJob {
    NewJob {
        id: new_job_id().expect("random id"),
        tenant: tenant.into(),
        name: name.map(Into::into),
        kind: "training".into(),
        priority: 0,
        accelerators: 8,
        spec: "{}".into(),
        reason: "queued".into(),
        submitted_ms: ms,
    }
}

async fn tokens(s: AnyStore) {
    let token = new_token().expect("token");
    assert!(token.starts_with("sy_") && token.len() == 67);
    s.insert_token(&hash_token(&token), "research", false, 1)
        .await
        .expect("insert token");
    s.insert_token(&hash_token("admin-token"), "ops", true, 1)
        .await
        .expect("insert admin");
    let p = s.principal(&hash_token(&token)).await.expect("lookup");
    assert_eq!(
        p,
        Some(Principal {
            tenant: "research".into(),
            admin: false
        })
    );
    let a = s
        .principal(&hash_token("admin-token"))
        .await
        .expect("lookup");
    assert_eq!(a.map(|p| p.admin), Some(true));
    // The store never keeps the token itself.
    assert_eq!(s.principal(&token).await.expect("lookup"), None);
}

async fn jobs_and_tenants(s: AnyStore) {
    let a = s
        .insert_job(&new_job("a", Some("one"), 10))
        .await
        .expect("insert");
    assert_eq!(a.state, JobState::Pending);
    assert!(!a.cancel_requested);
    let b = s
        .insert_job(&new_job("b", Some("one"), 11))
        .await
        .expect("same name, other tenant");
    let by_name = s
        .job_by_name("a", "one")
        .await
        .expect("by name")
        .expect("found");
    assert_eq!(by_name.id, a.id);
    assert!(s.job_by_name("c", "one").await.expect("by name").is_none());
    let dup = s.insert_job(&new_job("a", Some("one"), 12)).await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
    for _ in 0..5 {
        s.insert_job(&new_job("a", None, 13))
            .await
            .expect("unnamed jobs never conflict");
    }
    // Another tenant's job is not found.
    assert!(s.get_job(&a.id, Some("b")).await.expect("get").is_none());
    assert_eq!(
        s.get_job(&a.id, Some("a"))
            .await
            .expect("get")
            .map(|j| j.id),
        Some(a.id.clone())
    );
    assert!(s.get_job(&a.id, None).await.expect("get").is_some());
    assert!(s.events(&a.id, Some("b")).await.expect("events").is_none());
    let ev = s
        .events(&a.id, Some("a"))
        .await
        .expect("events")
        .expect("found");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "submitted");

    // Lists: tenant-scoped, ordered, paginated.
    let mine = s
        .list_jobs(&JobFilter {
            tenant: Some("a".into()),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(mine.len(), 6);
    assert!(mine.iter().all(|j| j.tenant == "a"));
    assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
    let page1 = s
        .list_jobs(&JobFilter {
            tenant: Some("a".into()),
            limit: 4,
            ..JobFilter::default()
        })
        .await
        .expect("page 1");
    let page2 = s
        .list_jobs(&JobFilter {
            tenant: Some("a".into()),
            limit: 4,
            after_seq: page1.last().map(|j| j.seq),
            ..JobFilter::default()
        })
        .await
        .expect("page 2");
    assert_eq!(page1.len() + page2.len(), 6);
    let all = s.list_jobs(&JobFilter::default()).await.expect("all");
    assert_eq!(all.len(), 7);
    assert!(all.iter().any(|j| j.id == b.id));
    let none = s
        .list_jobs(&JobFilter {
            states: vec![JobState::Running, JobState::Done],
            kind: Some("training".into()),
            ..JobFilter::default()
        })
        .await
        .expect("filtered");
    assert!(none.is_empty());
    let usage = s.tenant_usage().await.expect("usage");
    assert_eq!(usage.len(), 2);
    assert_eq!(
        usage[0],
        TenantUsage {
            tenant: "a".into(),
            pending: 6,
            running: 0,
            allocated: 0
        }
    );
}

async fn lease_and_apply(s: AnyStore) {
    let j = s.insert_job(&new_job("a", None, 10)).await.expect("insert");
    assert_eq!(s.unseen_jobs(10).await.expect("unseen").len(), 1);
    let l1 = s
        .acquire_lease("one", 1_000, 3_000)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        s.acquire_lease("two", 2_000, 3_000)
            .await
            .expect("try")
            .is_none()
    );
    let renewed = s
        .acquire_lease("one", 2_500, 3_000)
        .await
        .expect("renew")
        .expect("mine");
    assert_eq!(renewed.term, l1.term);
    let batch = Batch {
        seen: vec![j.id.clone()],
        updates: vec![JobUpdate {
            id: j.id.clone(),
            state: JobState::Running,
            reason: "running on 8 accelerators of c".into(),
            cluster: Some("c".into()),
            allocated: 8,
            restarts: 0,
            started_ms: Some(2_600),
            finished_ms: None,
            updated_ms: 2_600,
        }],
        events: vec![NewEvent {
            job_id: j.id.clone(),
            at_ms: 2_600,
            kind: "started".into(),
            cluster: Some("c".into()),
            message: "placed".into(),
        }],
    };
    s.apply(&renewed, &batch).await.expect("apply");
    assert!(s.unseen_jobs(10).await.expect("unseen").is_empty());
    let got = s.get_job(&j.id, None).await.expect("get").expect("found");
    assert_eq!(
        (got.state, got.allocated, got.started_ms),
        (JobState::Running, 8, Some(2_600))
    );
    let cu = s.cluster_usage().await.expect("cluster usage");
    assert_eq!(
        cu,
        vec![ClusterUsage {
            cluster: "c".into(),
            running: 1,
            allocated: 8
        }]
    );
    // Expired: another holder takes over in a new term; the old leader is fenced off.
    let l2 = s
        .acquire_lease("two", 10_000, 3_000)
        .await
        .expect("take")
        .expect("expired");
    assert!(l2.term > l1.term);
    let stale = s.apply(&renewed, &batch).await;
    assert!(matches!(stale, Err(StoreError::LostLease)), "{stale:?}");
    // Release hands it over at once.
    s.release_lease(&l2).await.expect("release");
    let l3 = s
        .acquire_lease("one", 10_001, 3_000)
        .await
        .expect("take")
        .expect("released");
    assert!(l3.term > l2.term);

    // Cancellation requests.
    let c = s
        .request_cancel(&j.id, Some("other"), 11_000)
        .await
        .expect("cancel");
    assert!(c.is_none(), "another tenant cannot cancel");
    let c = s
        .request_cancel(&j.id, Some("a"), 11_000)
        .await
        .expect("cancel")
        .expect("found");
    assert!(c.cancel_requested);
    assert_eq!(
        s.cancel_requests().await.expect("requests"),
        vec![j.id.clone()]
    );
    let ev = s.events(&j.id, None).await.expect("events").expect("found");
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["submitted", "started", "cancel_requested"]);
    assert_eq!(s.active_jobs().await.expect("active").len(), 1);
}

async fn reopen(url: String) {
    let s = connect(&url).await.expect("open");
    let j = s
        .insert_job(&new_job("a", Some("kept"), 1))
        .await
        .expect("insert");
    drop(s);
    // Migrations run again at start and change nothing; data is kept.
    let s = connect(&url).await.expect("reopen");
    assert!(s.get_job(&j.id, Some("a")).await.expect("get").is_some());
    s.ping().await.expect("ping");
}

async fn concurrent_submissions(s: AnyStore) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_job(&new_job("a", Some(&format!("job-{i}")), i))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("insert");
    }
    let all = s
        .list_jobs(&JobFilter {
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 64);
}

async fn big_batch(s: AnyStore) {
    let mut ids = Vec::new();
    for i in 0..1203 {
        ids.push(
            s.insert_job(&new_job("a", None, i))
                .await
                .expect("insert")
                .id,
        );
    }
    let lease = s
        .acquire_lease("me", 1, 10_000)
        .await
        .expect("lease")
        .expect("free");
    let batch = Batch {
        seen: ids.clone(),
        updates: ids
            .iter()
            .enumerate()
            .map(|(i, id)| JobUpdate {
                id: id.clone(),
                state: if i % 2 == 0 {
                    JobState::Running
                } else {
                    JobState::Pending
                },
                reason: format!("reason {i}"),
                cluster: (i % 2 == 0).then(|| "c".to_owned()),
                allocated: if i % 2 == 0 { 8 } else { 0 },
                restarts: 0,
                started_ms: (i % 2 == 0).then_some(5),
                finished_ms: None,
                updated_ms: 5,
            })
            .collect(),
        events: ids
            .iter()
            .map(|id| NewEvent {
                job_id: id.clone(),
                at_ms: 5,
                kind: "waiting".into(),
                cluster: None,
                message: "why".into(),
            })
            .collect(),
    };
    s.apply(&lease, &batch).await.expect("apply");
    assert!(s.unseen_jobs(10).await.expect("unseen").is_empty());
    let running = s
        .list_jobs(&JobFilter {
            states: vec![JobState::Running],
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(running.len(), 602);
    let j = s.get_job(&ids[7], None).await.expect("get").expect("found");
    assert_eq!(
        (j.reason.as_str(), j.cluster, j.started_ms),
        ("reason 7", None, None)
    );
    let ev = s
        .events(&ids[1202], None)
        .await
        .expect("events")
        .expect("found");
    assert_eq!(ev.len(), 2);
    assert_eq!(
        s.cluster_usage().await.expect("usage")[0].allocated,
        602 * 8
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let url = super::fresh_sqlite_url().expect("temp dir");
                    super::$name(super::connect(&url).await.expect("open sqlite")).await;
                }
            )*
            #[tokio::test]
            async fn reopen() {
                super::reopen(super::fresh_sqlite_url().expect("temp dir")).await;
            }
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(base) = super::postgres_url() else { return };
                    let url = super::fresh_postgres_database(&base).await.expect("create database");
                    super::$name(super::connect(&url).await.expect("open postgres")).await;
                }
            )*
            #[tokio::test]
            async fn reopen() {
                let Some(base) = super::postgres_url() else { return };
                super::reopen(super::fresh_postgres_database(&base).await.expect("create database")).await;
            }
        }
    };
}

suite!(
    tokens,
    jobs_and_tenants,
    lease_and_apply,
    concurrent_submissions,
    big_batch
);

#[tokio::test]
async fn bad_urls_are_refused() {
    let err = connect("mysql://x").await.expect_err("unsupported");
    assert!(err.to_string().contains("sqlite://"), "{err}");
}
