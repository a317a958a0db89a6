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
            admin: false,
            agent: false,
        })
    );
    let a = s
        .principal(&hash_token("admin-token"))
        .await
        .expect("lookup");
    assert_eq!(a.as_ref().map(|p| p.admin), Some(true));
    // The store never keeps the token itself.
    assert_eq!(s.principal(&token).await.expect("lookup"), None);
    // Agent tokens: fleet-wide (no tenant), not admin, may act as agents only.
    s.insert_agent_token(&hash_token("agent-token"), 2)
        .await
        .expect("insert agent token");
    let g = s
        .principal(&hash_token("agent-token"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        g,
        Principal {
            tenant: String::new(),
            admin: false,
            agent: true,
        }
    );
    assert!(g.may_act_as_agent() && !g.may_use_tenant_api());
    let admin = a.expect("admin");
    assert!(!admin.agent && admin.may_act_as_agent() && admin.may_use_tenant_api());
    let user = p.expect("user");
    assert!(!user.may_act_as_agent() && user.may_use_tenant_api());
    // The same hash twice is refused, whatever its kind.
    assert!(
        s.insert_agent_token(&hash_token("agent-token"), 3)
            .await
            .is_err()
    );
    // Listed oldest first, hashes only; a deleted token no longer names anyone.
    let listed = s.tokens().await.expect("tokens");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].hash, hash_token("agent-token"));
    assert!(listed[2].principal.agent && listed[2].created_ms == 2);
    assert!(listed.iter().all(|t| t.hash != token));
    assert!(s.delete_token(&hash_token(&token)).await.expect("delete"));
    assert!(!s.delete_token(&hash_token(&token)).await.expect("again"));
    assert_eq!(
        s.principal(&hash_token(&token)).await.expect("lookup"),
        None
    );
    assert_eq!(s.tokens().await.expect("tokens").len(), 2);
}

/// Where a two-node gang's ranks were handed out.
fn placed() -> RanOn {
    RanOn {
        nodes: vec!["n-0a1b2c3d4e5f".into(), "n-ffffffffffff".into()],
        placement: Some(RankPlacement {
            attempt: 1,
            nodes: vec![
                ("n-ffffffffffff".into(), vec![0, 1, 2, 3]),
                ("n-0a1b2c3d4e5f".into(), vec![4, 5, 6, 7]),
            ],
            digest: "d1".into(),
        }),
        replicas: Vec::new(),
    }
}

fn registration(cluster: &str, host: &str, now_ms: i64, slots: i64) -> NodeRegistration {
    NodeRegistration {
        cluster: cluster.into(),
        hostname: host.into(),
        address: format!("10.0.0.{}", host.len()),
        cpus: 64,
        memory_bytes: 512 << 30,
        accelerators: 8,
        info: format!("{{\"hostname\":\"{host}\"}}"),
        boot_id: Some(format!("boot-of-{host}")),
        now_ms,
        slots,
    }
}

async fn node_registry(s: AnyStore) {
    assert!(s.nodes().await.expect("nodes").is_empty());
    let a = s
        .register_node(&registration("lab", "a", 100, 3))
        .await
        .expect("register a");
    assert!(
        a.id.starts_with("n-")
            && a.id.len() == 14
            && a.id[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "{}",
        a.id
    );
    assert_eq!(
        (a.slot, a.state, a.registered_ms, a.heartbeat_ms, a.lost_ms),
        (0, NodeState::Ready, 100, 100, None)
    );
    assert_eq!(a.boot_id.as_deref(), Some("boot-of-a"));
    let b = s
        .register_node(&registration("lab", "b", 110, 3))
        .await
        .expect("register b");
    assert_eq!(b.slot, 1);
    assert_ne!(a.id, b.id);
    // Slots are per cluster.
    let other = s
        .register_node(&registration("other", "a", 115, 1))
        .await
        .expect("same host name, other cluster");
    assert_eq!(other.slot, 0);
    assert_ne!(other.id, a.id);

    // Registering again: same id and slot, fields updated, heartbeat now.
    let mut again = registration("lab", "a", 200, 3);
    again.address = "192.168.1.7".into();
    again.accelerators = 4;
    again.info = "{\"v\":2}".into();
    again.boot_id = None;
    let a2 = s.register_node(&again).await.expect("register a again");
    assert_eq!(a2.boot_id, None, "the boot of its last registration");
    assert_eq!((a2.id.as_str(), a2.slot), (a.id.as_str(), 0));
    assert_eq!(
        (a2.address.as_str(), a2.accelerators, a2.info.as_str()),
        ("192.168.1.7", 4, "{\"v\":2}")
    );
    assert_eq!((a2.registered_ms, a2.heartbeat_ms), (100, 200));

    // The third slot, then the cluster is full for new hosts but not for known ones.
    let c = s
        .register_node(&registration("lab", "c", 210, 3))
        .await
        .expect("register c");
    assert_eq!(c.slot, 2);
    let full = s.register_node(&registration("lab", "d", 220, 3)).await;
    match &full {
        Err(e @ StoreError::ClusterFull { cluster, slots }) => {
            assert_eq!((cluster.as_str(), *slots), ("lab", 3));
            let m = e.to_string();
            assert!(m.contains("`lab`") && m.contains('3'), "{m}");
        }
        other => panic!("expected ClusterFull, got {other:?}"),
    }
    assert!(
        s.register_node(&registration("lab", "b", 230, 3))
            .await
            .is_ok(),
        "a known host registers again in a full cluster"
    );
    assert!(matches!(
        s.register_node(&registration("empty", "x", 1, 0)).await,
        Err(StoreError::ClusterFull { .. })
    ));

    // Heartbeats: unknown nodes, and a lost node comes back.
    assert!(
        s.node_heartbeat("n-000000000000", 300)
            .await
            .expect("heartbeat")
            .is_none()
    );
    s.mark_node_lost("n-000000000000", 300)
        .await
        .expect("losing an unknown node changes nothing");
    s.mark_node_lost(&b.id, 300).await.expect("lost");
    s.mark_node_lost(&b.id, 350).await.expect("lost twice");
    let nodes = s.nodes().await.expect("nodes");
    let lost = nodes.iter().find(|n| n.id == b.id).expect("b listed");
    assert_eq!((lost.state, lost.lost_ms), (NodeState::Lost, Some(300)));
    // A heartbeat from before the loss, written late, changes nothing.
    assert_eq!(
        s.node_heartbeat(&b.id, 290).await.expect("heartbeat"),
        None,
        "a late copy of an older heartbeat is not taken"
    );
    let back = s
        .node_heartbeat(&b.id, 400)
        .await
        .expect("heartbeat")
        .expect("known");
    assert_eq!(
        (back.state, back.heartbeat_ms, back.lost_ms, back.slot),
        (NodeState::Ready, 400, None, 1)
    );
    // Drains: kept through heartbeats, losses and registrations, until resumed.
    let drain = NodeDrain {
        reason: "DIMM swap".into(),
        since_ms: 450,
    };
    assert_eq!(
        s.set_node_drain("n-000000000000", Some(&drain))
            .await
            .expect("drain"),
        None,
        "an unknown node"
    );
    let drained = s
        .set_node_drain(&c.id, Some(&drain))
        .await
        .expect("drain")
        .expect("known");
    assert_eq!(drained.drained.as_ref(), Some(&drain));
    assert_eq!(
        s.drained_nodes().await.expect("drained nodes"),
        [(c.id.clone(), drain.clone())]
    );
    s.node_heartbeat(&c.id, 460).await.expect("heartbeat");
    // A lost node that registers again is ready too, in its own slot.
    s.mark_node_lost(&c.id, 500).await.expect("lost");
    let c2 = s
        .register_node(&registration("lab", "c", 510, 3))
        .await
        .expect("re-register");
    assert_eq!(
        (c2.id.clone(), c2.slot, c2.state),
        (c.id.clone(), 2, NodeState::Ready)
    );
    assert_eq!(c2.drained.as_ref(), Some(&drain), "still drained");
    let resumed = s
        .set_node_drain(&c.id, None)
        .await
        .expect("resume")
        .expect("known");
    assert_eq!(resumed.drained, None);
    assert_eq!(s.drained_nodes().await.expect("drained nodes"), []);
    s.set_node_drain(&c.id, Some(&drain)).await.expect("drain");

    // Listed by cluster, then slot.
    let order: Vec<(String, i64)> = s
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| (n.cluster, n.slot))
        .collect();
    assert_eq!(
        order,
        [
            ("lab".to_owned(), 0),
            ("lab".to_owned(), 1),
            ("lab".to_owned(), 2),
            ("other".to_owned(), 0)
        ]
    );

    // A full cluster gives a newcomer the slot of its longest-lost node, whose record goes.
    s.mark_node_lost(&a.id, 600).await.expect("lost");
    s.mark_node_lost(&c.id, 610).await.expect("lost");
    let d = s
        .register_node(&registration("lab", "d", 620, 3))
        .await
        .expect("takes a lost node's slot");
    assert_eq!((d.slot, d.state), (0, NodeState::Ready), "a was lost first");
    let nodes = s.nodes().await.expect("nodes");
    assert!(nodes.iter().all(|n| n.id != a.id), "a's record is gone");
    let e = s
        .register_node(&registration("lab", "e", 630, 3))
        .await
        .expect("takes c's slot");
    assert_eq!(e.slot, 2);
    assert_eq!(
        e.drained, None,
        "a newcomer in a drained lost node's slot is not drained"
    );
    // a comes back as a new host: no slot is free and none is lost.
    assert!(matches!(
        s.register_node(&registration("lab", "a", 640, 3)).await,
        Err(StoreError::ClusterFull { .. })
    ));

    assert_eq!(NodeState::parse("lost"), Some(NodeState::Lost));
    assert_eq!(NodeState::parse("gone"), None);
}

async fn concurrent_registrations(s: AnyStore) {
    // 96 hosts, each registering twice at once, race for 80 slots.
    let mut tasks = Vec::new();
    for i in 0..192 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.register_node(&registration("lab", &format!("host-{}", i % 96), i, 80))
                .await
        }));
    }
    let mut full = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => {}
            Err(StoreError::ClusterFull { .. }) => full += 1,
            Err(e) => panic!("registration failed: {e}"),
        }
    }
    let nodes = s.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 80, "every slot taken once");
    let slots: Vec<i64> = nodes.iter().map(|n| n.slot).collect();
    assert_eq!(slots, (0..80).collect::<Vec<_>>());
    let mut hosts: Vec<&str> = nodes.iter().map(|n| n.hostname.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), 80, "one row per host");
    assert!(
        full >= 16,
        "16 hosts found no slot (each at least once): {full}"
    );
}

fn log_line(job: &str, attempt: i64, rank: i64, stream: &str, seq: i64, text: &str) -> LogLine {
    LogLine {
        job_id: job.into(),
        attempt,
        rank,
        assignment_id: format!("{job}/attempt-{attempt}/rank-{rank}"),
        stream: stream.into(),
        seq,
        at_ms: 1_000 + seq,
        line: text.into(),
    }
}

async fn logs(s: AnyStore) {
    assert_eq!(s.append_logs(&[]).await.expect("nothing"), 0);
    let first = vec![
        log_line("j-1", 1, 0, "stdout", 0, "rank 0 starts"),
        log_line("j-1", 1, 1, "stdout", 0, "rank 1 starts"),
        log_line("j-1", 1, 0, "stderr", 0, "a warning"),
        log_line("j-1", 1, 0, "stdout", 1, "step 1"),
        log_line("j-2", 1, 0, "stdout", 0, "another job"),
    ];
    assert_eq!(s.append_logs(&first).await.expect("append"), 5);
    // An agent retrying its batch, with one new line: only that one is stored.
    let mut retry = first.clone();
    retry.push(log_line("j-1", 1, 0, "stdout", 2, "step 2"));
    assert_eq!(s.append_logs(&retry).await.expect("retry"), 1);
    // Repeats inside one batch are stored once.
    let twice = vec![
        log_line("j-1", 2, 0, "stdout", 0, "resuming from checkpoint step 2"),
        log_line("j-1", 2, 0, "stdout", 0, "resuming from checkpoint step 2"),
    ];
    assert_eq!(s.append_logs(&twice).await.expect("twice"), 1);
    // Output is arbitrary bytes: a NUL is kept visibly, not refused by the database.
    let nul = vec![log_line("j-3", 1, 0, "stdout", 0, "before\0after")];
    assert_eq!(s.append_logs(&nul).await.expect("NUL"), 1);
    let kept = s.logs(&LogQuery::new("j-3")).await.expect("logs");
    assert_eq!(kept[0].line, "before\u{2400}after");

    let all = s.logs(&LogQuery::new("j-1")).await.expect("logs");
    let text: Vec<&str> = all.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        text,
        [
            "rank 0 starts",
            "rank 1 starts",
            "a warning",
            "step 1",
            "step 2",
            "resuming from checkpoint step 2"
        ]
    );
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    // Numbered within the job: j-2's line, stored in the middle of j-1's, is its first; j-1's
    // first batch is 1 to 4 (the retry's and the repeat's spare numbers leave gaps after).
    assert_eq!(
        all[..4].iter().map(|l| l.cursor).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        s.logs(&LogQuery::new("j-2")).await.expect("logs")[0].cursor,
        1
    );
    assert_eq!(
        (
            all[2].stream.as_str(),
            all[2].assignment_id.as_str(),
            all[2].seq,
            all[2].at_ms
        ),
        ("stderr", "j-1/attempt-1/rank-0", 0, 1_000)
    );
    // A service's replicas: lines of one replica by its name; a malformed name matches none.
    let replica_line = |n: u32, seq: i64| LogLine {
        assignment_id: format!("j-4/replica-18f.{n}/rank-0"),
        ..log_line(
            "j-4",
            1,
            0,
            "stdout",
            seq,
            &format!("replica {n} line {seq}"),
        )
    };
    s.append_logs(&[replica_line(1, 0), replica_line(12, 0), replica_line(1, 1)])
        .await
        .expect("append");
    let of = |r: &str| LogQuery {
        replica: Some(r.into()),
        ..LogQuery::new("j-4")
    };
    let one: Vec<String> = s
        .logs(&of("18f.1"))
        .await
        .expect("replica")
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(one, ["replica 1 line 0", "replica 1 line 1"]);
    assert_eq!(s.logs(&of("18f.12")).await.expect("replica").len(), 1);
    for bad in ["18f.%", "%", "18f._", "18F.1", ""] {
        assert!(s.logs(&of(bad)).await.expect("replica").is_empty(), "{bad}");
    }
    assert_eq!(
        replica_of_assignment("j-4/replica-18f.12/rank-0"),
        Some("18f.12")
    );
    assert_eq!(replica_of_assignment("j-4/attempt-1/rank-0"), None);
    assert_eq!(replica_of_assignment("slurm-77"), None);

    let rank1 = s
        .logs(&LogQuery {
            rank: Some(1),
            ..LogQuery::new("j-1")
        })
        .await
        .expect("rank 1");
    assert_eq!(rank1.len(), 1);
    assert_eq!(rank1[0].line, "rank 1 starts");
    let attempt2 = s
        .logs(&LogQuery {
            attempt: Some(2),
            ..LogQuery::new("j-1")
        })
        .await
        .expect("attempt 2");
    assert_eq!(attempt2.len(), 1);
    assert_eq!(attempt2[0].attempt, 2);
    let both = s
        .logs(&LogQuery {
            rank: Some(0),
            attempt: Some(1),
            ..LogQuery::new("j-1")
        })
        .await
        .expect("rank 0 attempt 1");
    assert_eq!(both.len(), 4);
    // Paging by cursor.
    let page1 = s
        .logs(&LogQuery {
            limit: 4,
            ..LogQuery::new("j-1")
        })
        .await
        .expect("page 1");
    assert_eq!(page1.len(), 4);
    let page2 = s
        .logs(&LogQuery {
            after: page1[3].cursor,
            limit: 4,
            ..LogQuery::new("j-1")
        })
        .await
        .expect("page 2");
    assert_eq!(page2, all[4..]);
    let past = s
        .logs(&LogQuery {
            after: all[5].cursor,
            ..LogQuery::new("j-1")
        })
        .await
        .expect("past the end");
    assert!(past.is_empty());
    // Lines appended later come after the cursor a reader holds.
    s.append_logs(&[log_line("j-1", 2, 0, "stdout", 1, "step 3")])
        .await
        .expect("append");
    let later = s
        .logs(&LogQuery {
            after: all[5].cursor,
            ..LogQuery::new("j-1")
        })
        .await
        .expect("later");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].line, "step 3");
    assert!(
        s.logs(&LogQuery::new("j-none"))
            .await
            .expect("unknown job")
            .is_empty()
    );
}

async fn failed_jobs(s: AnyStore) {
    assert!(JobState::Failed.is_final());
    assert_eq!(JobState::parse("failed"), Some(JobState::Failed));
    let j = s.insert_job(&new_job("a", None, 10)).await.expect("insert");
    let lease = s
        .acquire_lease("me", "", 1, 10_000)
        .await
        .expect("lease")
        .expect("free");
    let batch = Batch {
        seen: vec![j.id.clone()],
        updates: vec![JobUpdate {
            id: j.id.clone(),
            state: JobState::Failed,
            reason: "rank 3 exited with code 1 three times".into(),
            cluster: Some("c".into()),
            allocated: 0,
            allocated_by_cluster: Vec::new(),
            restarts: 2,
            failures: 3,
            started_ms: Some(20),
            finished_ms: Some(30),
            updated_ms: 30,
            work_done: 0.0,
            ran_on: None,
        }],
        events: vec![],
    };
    // The leader's first start replaces the stored one (a run its cluster held starts when its
    // work began); none keeps it.
    let mut started = batch.clone();
    started.updates[0].state = JobState::Running;
    started.updates[0].started_ms = Some(12);
    started.updates[0].finished_ms = None;
    s.apply(&lease, &started).await.expect("apply");
    started.updates[0].started_ms = None;
    s.apply(&lease, &started).await.expect("apply");
    let got = s.get_job(&j.id, None).await.expect("get").expect("found");
    assert_eq!(got.started_ms, Some(12));
    s.apply(&lease, &batch).await.expect("apply");
    let got = s.get_job(&j.id, None).await.expect("get").expect("found");
    assert_eq!((got.state, got.finished_ms), (JobState::Failed, Some(30)));
    assert_eq!(got.started_ms, Some(20));
    assert_eq!(
        (got.restarts, got.failures),
        (2, 3),
        "kept for the next leader"
    );
    assert!(s.active_jobs().await.expect("active").is_empty());
    let failed = s
        .list_jobs(&JobFilter {
            states: vec![JobState::Failed],
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(failed.len(), 1);
    // Cancelling a failed job changes nothing.
    let c = s
        .request_cancel(&j.id, None, 40)
        .await
        .expect("cancel")
        .expect("found");
    assert!(!c.cancel_requested);
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
    assert!(
        s.events(&a.id, Some("b"), 0, 100)
            .await
            .expect("events")
            .is_none()
    );
    let ev = s
        .events(&a.id, Some("a"), 0, 100)
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
    // A tenant's cursors count its own jobs only: b's submission between a's first and second
    // leaves no gap.
    assert_eq!(
        mine.iter().map(|j| j.tenant_number).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(b.tenant_number, 1);
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
            after: page1.last().map(|j| j.tenant_number),
            ..JobFilter::default()
        })
        .await
        .expect("page 2");
    assert_eq!(page1.len() + page2.len(), 6);
    // Newest first: the same jobs the other way round, `after` going back in time.
    let newest = |after: Option<i64>| JobFilter {
        tenant: Some("a".into()),
        limit: 4,
        after,
        newest_first: true,
        spec_bytes: Some(1 << 20),
        ..JobFilter::default()
    };
    let latest = s.list_jobs(&newest(None)).await.expect("newest first");
    let numbers = |jobs: &[JobRecord]| jobs.iter().map(|j| j.tenant_number).collect::<Vec<_>>();
    assert_eq!(numbers(&latest), [6, 5, 4, 3]);
    let filter = newest(None);
    let earlier = s
        .list_jobs(&newest(latest.last().map(|j| filter.cursor_of(j))))
        .await
        .expect("older page");
    assert_eq!(numbers(&earlier), [2, 1]);
    // A byte budget ends the page before the job that would start past it; the first job is
    // always listed, however big.
    let spec_len = mine[0].spec.len() as i64;
    assert!(mine.iter().all(|j| j.spec.len() as i64 == spec_len));
    let by_bytes = |budget: i64, after: Option<i64>| JobFilter {
        tenant: Some("a".into()),
        states: vec![JobState::Pending],
        after,
        spec_bytes: Some(budget),
        ..JobFilter::default()
    };
    let three = s
        .list_jobs(&by_bytes(spec_len * 5 / 2, None))
        .await
        .expect("by bytes");
    assert_eq!(
        three.iter().map(|j| &j.id).collect::<Vec<_>>(),
        mine[..3].iter().map(|j| &j.id).collect::<Vec<_>>()
    );
    let rest = s
        .list_jobs(&by_bytes(spec_len * 5 / 2, Some(three[2].tenant_number)))
        .await
        .expect("by bytes");
    assert_eq!(rest.len(), 3);
    assert_eq!(s.list_jobs(&by_bytes(1, None)).await.expect("one").len(), 1);
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
        .acquire_lease("one", "fleet-a:0123", 1_000, 3_000)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        s.acquire_lease("two", "fleet-b:4567", 2_000, 3_000)
            .await
            .expect("try")
            .is_none()
    );
    // The lease says who holds it and the fleet it schedules, not the refused replica's.
    let leader = s.current_leader().await.expect("read the lease");
    assert_eq!(
        (leader.holder.as_str(), leader.term, leader.expires_ms),
        ("one", l1.term, 4_000)
    );
    assert_eq!(leader.fleet, "fleet-a:0123");
    let renewed = s
        .acquire_lease("one", "", 2_500, 3_000)
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
            allocated_by_cluster: vec![("c".into(), 8)],
            restarts: 0,
            failures: 0,
            started_ms: Some(2_600),
            finished_ms: None,
            updated_ms: 2_600,
            work_done: 0.25,
            ran_on: Some(placed()),
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
        (got.state, got.allocated, got.started_ms, got.work_done),
        (JobState::Running, 8, Some(2_600), 0.25)
    );
    assert_eq!(
        got.ran_on,
        Some(placed()),
        "where its ranks were handed out, for a new leader"
    );
    // Each attempt writes where its ranks run.
    let mut later = batch.updates[0].clone();
    later.updated_ms = 2_700;
    if let Some(p) = later.ran_on.as_mut().and_then(|r| r.placement.as_mut()) {
        p.attempt = 2;
    }
    s.apply(
        &renewed,
        &Batch {
            updates: vec![later],
            ..Batch::default()
        },
    )
    .await
    .expect("apply");
    assert_eq!(
        s.get_job(&j.id, None)
            .await
            .expect("get")
            .expect("found")
            .ran_on
            .and_then(|r| r.placement)
            .map(|p| p.attempt),
        Some(2),
        "a later attempt's placement replaces the earlier one"
    );
    // What a process or a node said (a start error quoted in a reason and an event) may hold
    // a NUL: kept visibly, not refused by the database (PostgreSQL text cannot hold one).
    let mut said = batch.updates[0].clone();
    said.reason = "rank 0 could not start: bad\0name".into();
    said.updated_ms = 2_750;
    s.apply(
        &renewed,
        &Batch {
            updates: vec![said],
            events: vec![NewEvent {
                kind: "note".into(),
                message: "could not start: bad\0name".into(),
                ..batch.events[0].clone()
            }],
            ..Batch::default()
        },
    )
    .await
    .expect("a NUL is stored");
    let got = s.get_job(&j.id, None).await.expect("get").expect("found");
    assert_eq!(got.reason, "rank 0 could not start: bad\u{2400}name");
    let cu = s.cluster_usage().await.expect("cluster usage");
    assert_eq!(
        cu,
        vec![ClusterUsage {
            cluster: "c".into(),
            running: 1,
            allocated: 8
        }]
    );
    // A service whose replicas span two clusters is busy on each for what it holds there,
    // and no longer on one it left.
    let spread = |by_cluster: Vec<(String, i64)>| Batch {
        seen: Vec::new(),
        updates: vec![JobUpdate {
            cluster: Some("c".into()),
            allocated: by_cluster.iter().map(|(_, n)| n).sum(),
            allocated_by_cluster: by_cluster,
            ..batch.updates[0].clone()
        }],
        events: Vec::new(),
    };
    s.apply(&renewed, &spread(vec![("c".into(), 8), ("d".into(), 4)]))
        .await
        .expect("apply");
    let usage = |cluster: &str, running: i64, allocated: i64| ClusterUsage {
        cluster: cluster.into(),
        running,
        allocated,
    };
    assert_eq!(
        s.cluster_usage().await.expect("cluster usage"),
        vec![usage("c", 1, 8), usage("d", 1, 4)]
    );
    s.apply(&renewed, &spread(vec![("d".into(), 4)]))
        .await
        .expect("apply");
    assert_eq!(
        s.cluster_usage().await.expect("cluster usage"),
        vec![usage("d", 1, 4)]
    );
    // Expired: another holder takes over in a new term; the old leader is fenced off.
    let l2 = s
        .acquire_lease("two", "", 10_000, 3_000)
        .await
        .expect("take")
        .expect("expired");
    assert!(l2.term > l1.term);
    let stale = s.apply(&renewed, &batch).await;
    assert!(matches!(stale, Err(StoreError::LostLease)), "{stale:?}");
    // Release hands it over at once.
    s.release_lease(&l2).await.expect("release");
    let l3 = s
        .acquire_lease("one", "", 10_001, 3_000)
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
    let ev = s
        .events(&j.id, None, 0, 100)
        .await
        .expect("events")
        .expect("found");
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["submitted", "started", "note", "cancel_requested"]);
    assert_eq!(ev[2].message, "could not start: bad\u{2400}name");
    // Looking for an event: kind, cluster, time and the start of its message must all match.
    let started = |cluster: &'static str, prefix: &'static str, before_ms: i64| EventQuery {
        job_id: &j.id,
        kind: "started",
        cluster,
        prefix,
        before_ms,
    };
    assert!(
        s.has_event(&started("c", "plac", 2_601))
            .await
            .expect("query")
    );
    assert!(s.has_event(&started("c", "", 2_601)).await.expect("query"));
    for (cluster, prefix, before) in [
        ("c", "plac", 2_600),
        ("d", "plac", 9_999),
        ("c", "placed!", 9_999),
    ] {
        assert!(
            !s.has_event(&started(cluster, prefix, before))
                .await
                .expect("query"),
            "{cluster} {prefix} {before}"
        );
    }
    // Pages: two, then the rest after the second's seq, then nothing.
    let first = s
        .events(&j.id, None, 0, 2)
        .await
        .expect("events")
        .expect("found");
    // A job's events are numbered from 1, whatever other jobs logged in between.
    assert_eq!(first.iter().map(|e| e.cursor).collect::<Vec<_>>(), [1, 2]);
    let rest = s
        .events(&j.id, None, first[1].cursor, 2)
        .await
        .expect("events")
        .expect("found");
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].kind, "cancel_requested");
    assert_eq!(rest[1].cursor, 4);
    let after_all = s
        .events(&j.id, None, rest[1].cursor, 2)
        .await
        .expect("events");
    assert_eq!(after_all, Some(vec![]));
    assert_eq!(s.active_jobs().await.expect("active").len(), 1);
}

/// A submission that repeats a job's name while the leader updates that job (and writes its
/// events) is always a name clash, never a deadlock: both take the job lock before the rows.
async fn name_clash_while_the_leader_writes(s: AnyStore) {
    let named = s
        .insert_job(&new_job("a", Some("once"), 10))
        .await
        .expect("insert");
    let lease = s
        .acquire_lease("leader", "", 1_000, 3_600_000)
        .await
        .expect("acquire")
        .expect("free");
    let writer = {
        let s = s.clone();
        let id = named.id.clone();
        tokio::spawn(async move {
            for i in 0..300_i64 {
                let batch = Batch {
                    seen: vec![id.clone()],
                    updates: vec![JobUpdate {
                        id: id.clone(),
                        state: JobState::Running,
                        reason: format!("pass {i}"),
                        cluster: Some("c".into()),
                        allocated: 8,
                        allocated_by_cluster: vec![("c".into(), 8)],
                        restarts: 0,
                        failures: 0,
                        started_ms: Some(2_000),
                        finished_ms: None,
                        updated_ms: 2_000 + i,
                        work_done: 0.0,
                        ran_on: None,
                    }],
                    events: vec![NewEvent {
                        job_id: id.clone(),
                        at_ms: 2_000 + i,
                        kind: "waiting".into(),
                        cluster: None,
                        message: format!("pass {i}"),
                    }],
                };
                s.apply(&lease, &batch).await.expect("the leader's write");
            }
        })
    };
    for i in 0..300 {
        match s.insert_job(&new_job("a", Some("once"), 20 + i)).await {
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("submission {i}: expected a name clash, got {other:?}"),
        }
    }
    writer.await.expect("the writer");
}

fn service(tenant: &str, ms: i64) -> NewJob {
    NewJob {
        kind: "inference".into(),
        ..new_job(tenant, None, ms)
    }
}

async fn scaling(s: AnyStore) {
    let svc = s.insert_job(&service("a", 1)).await.expect("insert");
    let train = s.insert_job(&new_job("a", None, 2)).await.expect("insert");
    assert_eq!(svc.replicas_wanted, None);
    assert!(s.scale_requests().await.expect("requests").is_empty());

    // Another tenant's job is not found, and nothing changes.
    let other = s
        .request_scale(&svc.id, Some("other"), 3, 10)
        .await
        .expect("scale");
    assert!(other.is_none(), "another tenant cannot scale");
    assert!(
        s.request_scale("j-nosuchjob", None, 3, 10)
            .await
            .expect("scale")
            .is_none()
    );
    assert!(s.scale_requests().await.expect("requests").is_empty());

    // The owner (and an admin) set it; each change is an event, a repeat is not.
    let j = s
        .request_scale(&svc.id, Some("a"), 3, 11)
        .await
        .expect("scale")
        .expect("found");
    assert_eq!((j.replicas_wanted, j.updated_ms), (Some(3), 11));
    s.request_scale(&svc.id, Some("a"), 3, 12)
        .await
        .expect("scale again")
        .expect("found");
    let j = s
        .request_scale(&svc.id, None, 1, 13)
        .await
        .expect("admin scale")
        .expect("found");
    assert_eq!(j.replicas_wanted, Some(1));
    assert_eq!(
        s.scale_requests().await.expect("requests"),
        vec![(svc.id.clone(), 1)]
    );
    let ev = s
        .events(&svc.id, None, 0, 100)
        .await
        .expect("events")
        .expect("found");
    let scale: Vec<(&str, &str)> = ev
        .iter()
        .filter(|e| e.kind == "scale_requested")
        .map(|e| (e.kind.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        scale,
        [
            (
                "scale_requested",
                "replicas wanted: 3 (was the submitted minimum)"
            ),
            ("scale_requested", "replicas wanted: 1 (was 3)"),
        ]
    );

    // Not a service: found, left alone.
    let t = s
        .request_scale(&train.id, Some("a"), 2, 14)
        .await
        .expect("scale")
        .expect("found");
    assert_eq!(t.replicas_wanted, None);

    // A finished service is left alone and no longer asks.
    let lease = s
        .acquire_lease("me", "", 20, 10_000)
        .await
        .expect("lease")
        .expect("free");
    s.apply(
        &lease,
        &Batch {
            seen: vec![svc.id.clone()],
            updates: vec![JobUpdate {
                id: svc.id.clone(),
                state: JobState::Cancelled,
                reason: "cancelled".into(),
                cluster: None,
                allocated: 0,
                allocated_by_cluster: Vec::new(),
                restarts: 0,
                failures: 0,
                started_ms: None,
                finished_ms: Some(21),
                updated_ms: 21,
                work_done: 0.0,
                ran_on: None,
            }],
            events: vec![],
        },
    )
    .await
    .expect("apply");
    assert!(s.scale_requests().await.expect("requests").is_empty());
    let j = s
        .request_scale(&svc.id, Some("a"), 4, 22)
        .await
        .expect("scale")
        .expect("found");
    assert_eq!(
        (j.state, j.replicas_wanted, j.updated_ms),
        (JobState::Cancelled, Some(1), 21)
    );
    // The count survives a reopen with the rest of the job (it is a column, read back).
    let again = s.get_job(&svc.id, None).await.expect("get").expect("found");
    assert_eq!(again.replicas_wanted, Some(1));
}

async fn reopen(url: String) {
    let s = connect(&url).await.expect("open");
    let j = s
        .insert_job(&new_job("a", Some("kept"), 1))
        .await
        .expect("insert");
    let deployment = s.deployment_id().await.expect("deployment id");
    assert!(
        deployment.len() == 12 && deployment.bytes().all(|b| b.is_ascii_hexdigit()),
        "{deployment}"
    );
    drop(s);
    // Migrations run again at start and change nothing; data is kept.
    let s = connect(&url).await.expect("reopen");
    assert!(s.get_job(&j.id, Some("a")).await.expect("get").is_some());
    s.ping().await.expect("ping");
    assert_eq!(
        s.deployment_id().await.expect("deployment id"),
        deployment,
        "one id per database, for good"
    );
    // A database that answers but has lost its schema is not ready.
    run_raw(&url, &["DROP TABLE leader"]).await;
    assert!(s.ping().await.is_err(), "ping reads the schema");
}

/// A database written by a version-1 binary is upgraded in place: its tokens keep working (as
/// tenant tokens, not agents) and the new tables are there.
/// Runs `statements` on the database at `url` directly, as an older binary would have.
async fn run_raw(url: &str, statements: &[&str]) {
    use sqlx::Connection as _;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("connect");
        for sql in statements {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("setup");
        }
        conn.close().await.expect("close");
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        for sql in statements {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("setup");
        }
        conn.close().await.expect("close");
    }
}

/// The migration scripts up to `version` of the database at `url`.
fn scripts_up_to(url: &str, version: usize) -> Vec<&'static str> {
    let all: [&str; 4] = if url.starts_with("sqlite:") {
        [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_nodes_logs_agents.sql"),
            include_str!("../migrations/sqlite/0003_replicas_wanted.sql"),
            include_str!("../migrations/sqlite/0004_failures.sql"),
        ]
    } else {
        [
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_nodes_logs_agents.sql"),
            include_str!("../migrations/postgres/0003_replicas_wanted.sql"),
            include_str!("../migrations/postgres/0004_failures.sql"),
        ]
    };
    all[..version].to_vec()
}

/// A database written by a version-1 binary is upgraded in place: its tokens keep working (as
/// tenant tokens, not agents) and the new tables are there.
async fn upgrade_from_v1(url: String) {
    let mut setup = scripts_up_to(&url, 1);
    setup.extend([
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (1, 0)",
        "INSERT INTO tokens (hash, tenant, admin, created_ms) VALUES ('h1', 'research', FALSE, 0)",
    ]);
    run_raw(&url, &setup).await;
    let s = connect(&url).await.expect("upgrade");
    assert_eq!(
        s.principal("h1").await.expect("lookup"),
        Some(Principal {
            tenant: "research".into(),
            admin: false,
            agent: false
        })
    );
    assert!(s.nodes().await.expect("nodes").is_empty());
    // Version 3: jobs have a wanted replica count.
    assert!(s.scale_requests().await.expect("scale requests").is_empty());
    assert_eq!(
        s.append_logs(&[log_line("j-1", 1, 0, "stdout", 0, "hello")])
            .await
            .expect("logs"),
        1
    );
}

/// Version 5 numbers the rows a version-4 database already holds within their scope (a
/// tenant's jobs, a job's events, a job's lines) in their old order, and numbering goes on
/// from there.
async fn upgrade_from_v4(url: String) {
    let mut setup = scripts_up_to(&url, 4);
    let job = |id: &str, tenant: &str| {
        format!(
            "INSERT INTO jobs (id, tenant, kind, priority, accelerators, spec, state, reason, \
               submitted_ms, updated_ms) \
             VALUES ('{id}', '{tenant}', 'batch', 0, 8, '{{}}', 'pending', '', 0, 0)"
        )
    };
    let event = |id: &str, kind: &str| {
        format!(
            "INSERT INTO events (job_id, at_ms, kind, message) VALUES ('{id}', 0, '{kind}', '')"
        )
    };
    let line = |id: &str, seq: i64| {
        format!(
            "INSERT INTO job_logs (job_id, attempt, rank, assignment_id, stream, seq, at_ms, \
               line) VALUES ('{id}', 1, 0, '{id}/attempt-1/rank-0', 'stdout', {seq}, 0, 'x')"
        )
    };
    let rows = [
        job("j-a1", "a"),
        job("j-b1", "b"),
        job("j-a2", "a"),
        event("j-a1", "submitted"),
        event("j-b1", "submitted"),
        event("j-a1", "started"),
        line("j-a1", 0),
        line("j-b1", 0),
        line("j-a1", 1),
    ];
    setup.extend(rows.iter().map(String::as_str));
    setup.extend([
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (4, 0)",
    ]);
    run_raw(&url, &setup).await;
    let s = connect(&url).await.expect("upgrade");
    let numbers = |jobs: &[JobRecord]| {
        jobs.iter()
            .map(|j| (j.id.clone(), j.tenant_number))
            .collect::<Vec<_>>()
    };
    let a = JobFilter {
        tenant: Some("a".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        numbers(&s.list_jobs(&a).await.expect("list")),
        [("j-a1".to_owned(), 1), ("j-a2".to_owned(), 2)]
    );
    let next = s.insert_job(&new_job("a", None, 1)).await.expect("insert");
    assert_eq!(next.tenant_number, 3);
    let cursors = |events: Vec<EventRecord>| {
        events
            .into_iter()
            .map(|e| (e.kind, e.cursor))
            .collect::<Vec<_>>()
    };
    let events = s
        .events("j-a1", None, 0, 10)
        .await
        .expect("events")
        .expect("job");
    assert_eq!(
        cursors(events),
        [("submitted".to_owned(), 1), ("started".to_owned(), 2)]
    );
    assert_eq!(
        s.append_logs(&[log_line("j-a1", 1, 0, "stdout", 2, "new")])
            .await
            .expect("append"),
        1
    );
    let lines = s.logs(&LogQuery::new("j-a1")).await.expect("logs");
    assert_eq!(
        lines.iter().map(|l| l.cursor).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        s.logs(&LogQuery::new("j-b1")).await.expect("logs")[0].cursor,
        1
    );
    // A database from before deployment ids gets one.
    assert_eq!(s.deployment_id().await.expect("deployment id").len(), 12);
}

async fn concurrent_submissions(s: AnyStore) {
    // A reader paging with `after` while submissions commit must see every job: a lower
    // seq committed after the reader passed it would be skipped for good.
    // The same holds for a tenant's own numbering, which submissions of two tenants share out.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follow = |tenant: Option<&str>| {
        let (s, done) = (s.clone(), done.clone());
        let tenant = tenant.map(str::to_owned);
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut after = None;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let filter = JobFilter {
                    tenant: tenant.clone(),
                    after,
                    limit: 5,
                    ..JobFilter::default()
                };
                let page = s.list_jobs(&filter).await.expect("page");
                if let Some(last) = page.last() {
                    after = Some(filter.cursor_of(last));
                }
                let empty = page.is_empty();
                seen.extend(page.into_iter().map(|j| j.id));
                if finished && empty {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let (everyone, tenant_a) = (follow(None), follow(Some("a")));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        let tenant = if i % 3 == 0 { "b" } else { "a" };
        tasks.push(tokio::spawn(async move {
            s.insert_job(&new_job(tenant, Some(&format!("job-{i}")), i))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("insert");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(everyone.await.expect("follower").len(), 64);
    assert_eq!(tenant_a.await.expect("follower").len(), 42);
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
        .acquire_lease("me", "", 1, 10_000)
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
                allocated_by_cluster: if i % 2 == 0 {
                    vec![("c".into(), 8)]
                } else {
                    Vec::new()
                },
                restarts: 0,
                failures: 0,
                started_ms: (i % 2 == 0).then_some(5),
                finished_ms: None,
                updated_ms: 5,
                work_done: 0.0,
                ran_on: None,
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
        .events(&ids[1202], None, 0, 100)
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
            #[tokio::test]
            async fn upgrade_from_v1() {
                super::upgrade_from_v1(super::fresh_sqlite_url().expect("temp dir")).await;
            }
            #[tokio::test]
            async fn upgrade_from_v4() {
                super::upgrade_from_v4(super::fresh_sqlite_url().expect("temp dir")).await;
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
            #[tokio::test]
            async fn upgrade_from_v1() {
                let Some(base) = super::postgres_url() else { return };
                super::upgrade_from_v1(super::fresh_postgres_database(&base).await.expect("create database")).await;
            }
            #[tokio::test]
            async fn upgrade_from_v4() {
                let Some(base) = super::postgres_url() else { return };
                super::upgrade_from_v4(super::fresh_postgres_database(&base).await.expect("create database")).await;
            }
        }
    };
}

suite!(
    name_clash_while_the_leader_writes,
    tokens,
    jobs_and_tenants,
    lease_and_apply,
    concurrent_submissions,
    big_batch,
    node_registry,
    concurrent_registrations,
    logs,
    failed_jobs,
    scaling,
);

#[tokio::test]
async fn bad_urls_are_refused() {
    let err = connect("mysql://x").await.expect_err("unsupported");
    assert!(err.to_string().contains("sqlite://"), "{err}");
    // No path: an unnamed in-memory database would lose everything written to it.
    for url in ["sqlite://", "sqlite:"] {
        let err = connect(url).await.expect_err("no path");
        assert!(
            matches!(err, switchyard_store::StoreError::Url(_)),
            "{url}: {err}"
        );
    }
    connect("sqlite::memory:")
        .await
        .expect("memory, asked for by name");
}

/// An SQLite file removed or replaced under a running server: readiness says so and nothing
/// more is written (it would go to the old file only), instead of acknowledging writes that a
/// restart would not find.
#[tokio::test]
async fn an_sqlite_file_removed_or_replaced_stops_writes() {
    for replace in [false, true] {
        let url = fresh_sqlite_url().expect("a temporary directory");
        let path = url.trim_start_matches("sqlite://").to_owned();
        let s = connect(&url).await.expect("opens");
        s.insert_job(&new_job("t", Some("before"), 1))
            .await
            .expect("written");
        s.ping().await.expect("ready");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        if replace {
            std::fs::write(&path, b"").expect("another file in its place");
        }
        let why = if replace {
            "was replaced by another file"
        } else {
            "was removed"
        };
        let err = s.ping().await.expect_err("not ready");
        assert!(
            matches!(err, StoreError::FileGone { .. }) && err.to_string().contains(why),
            "{err}"
        );
        let err = s
            .insert_job(&new_job("t", Some("after"), 2))
            .await
            .expect_err("not written");
        assert!(err.to_string().contains(&path), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}

/// Several control-plane replicas on one PostgreSQL database register nodes at once (a fleet's
/// agents start together and spread over the replicas), in two clusters, more hosts than
/// slots: no registration fails for losing a race, and each cluster's slots are handed out
/// once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_registrations_through_several_replicas() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base)
        .await
        .expect("create database");
    // Two pools of 16: with the suite's other PostgreSQL tests, within the server's 100.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(connect(&url).await.expect("open postgres"));
    }
    let mut tasks = Vec::new();
    // Each host of each cluster registers twice, once through each replica.
    for i in 0..192 {
        let (cluster, k) = (["lab-a", "lab-b"][i % 2], i / 2);
        let s = replicas[k / 48].clone();
        tasks.push(tokio::spawn(async move {
            s.register_node(&registration(
                cluster,
                &format!("host-{}", k % 48),
                i as i64,
                40,
            ))
            .await
        }));
    }
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) | Err(StoreError::ClusterFull { .. }) => {}
            Err(e) => panic!("registration failed: {e}"),
        }
    }
    let nodes = replicas[0].nodes().await.expect("nodes");
    for cluster in ["lab-a", "lab-b"] {
        let of: Vec<&NodeRecord> = nodes.iter().filter(|n| n.cluster == cluster).collect();
        let slots: Vec<i64> = of.iter().map(|n| n.slot).collect();
        assert_eq!(
            slots,
            (0..40).collect::<Vec<_>>(),
            "{cluster}: each slot once"
        );
        let mut hosts: Vec<&str> = of.iter().map(|n| n.hostname.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        assert_eq!(hosts.len(), 40, "{cluster}: one row per host");
    }
}

/// A returning host re-registers without the node lock: a newcomer taking the slot of a lost
/// node in a full cluster must not delete the record of one that came back ready meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_newcomer_leaves_a_host_that_came_back_meanwhile() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base)
        .await
        .expect("create database");
    let s = connect(&url).await.expect("open postgres");
    let a = s
        .register_node(&registration("lab", "a", 100, 1))
        .await
        .expect("a registers");
    s.mark_node_lost(&a.id, 200).await.expect("a is lost");
    // Host a's re-registration caught between its update and its commit: its row is held.
    let pool = sqlx::PgPool::connect(&url).await.expect("a second pool");
    let mut back = pool.begin().await.expect("begin");
    sqlx::query(
        "UPDATE nodes SET state = 'ready', lost_ms = NULL, heartbeat_ms = 300 WHERE id = $1",
    )
    .bind(&a.id)
    .execute(&mut *back)
    .await
    .expect("a comes back");
    let newcomer = {
        let s = s.clone();
        tokio::spawn(async move { s.register_node(&registration("lab", "b", 300, 1)).await })
    };
    // Time for the newcomer to find a lost and wait on its row. (Were it slower, it would see
    // a ready after the commit: the same outcome, so the test cannot fail for a slow machine.)
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    back.commit().await.expect("commit");
    let got = newcomer.await.expect("task");
    assert!(
        matches!(got, Err(StoreError::ClusterFull { .. })),
        "the newcomer finds no lost node: {got:?}"
    );
    let nodes = s.nodes().await.expect("nodes");
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.id.as_str(), n.state))
            .collect::<Vec<_>>(),
        [(a.id.as_str(), NodeState::Ready)]
    );
}
