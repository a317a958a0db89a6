//! Durability and failover on real processes: SIGKILL while 1,000 submissions are in flight,
//! and a leader change between two servers on one PostgreSQL database.

mod server_common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use server_common::*;

const SUBMISSIONS: usize = 1000;
const CLIENTS: usize = 100;

/// The tests here take turns: a crash test's 100 clients would starve a failover test's
/// replicas on a 2-core machine, and its timings would measure the load, not the failover.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn crash_while_submitting(db: String) {
    let _turn = take_turn();
    let mut server = Server::start(&db);
    let t = token(&db, "research", false);
    let admin = token(&db, "ops", true);
    let url = server.url.clone();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, t, acked) = (url.clone(), t.clone(), acked.clone());
        clients.push(std::thread::spawn(move || {
            for i in 0..SUBMISSIONS / CLIENTS {
                let name = format!("crash-{c}-{i}");
                let body =
                    json!({"name": name, "kind": "batch", "accelerators": 1, "duration_s": 2.0});
                // No answer (or no server): the outcome is unknown, the job may or may not exist.
                let res = try_call(
                    "POST",
                    &format!("{url}/v1/jobs"),
                    Some(&t),
                    Some(&body.to_string()),
                );
                if let Ok((201, job)) = res {
                    let id = job["id"].as_str().expect("id").to_owned();
                    acked.lock().expect("lock").insert(name, id);
                }
            }
        }));
    }
    wait_for(120, "a first share of acknowledgements", || {
        (acked.lock().expect("lock").len() >= SUBMISSIONS / 5).then_some(())
    });
    server.kill();
    for c in clients {
        c.join().expect("client thread");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() < SUBMISSIONS,
        "the kill should land while submissions are in flight ({} acknowledged)",
        acked.len()
    );

    let server = Server::start(&db);
    let jobs = all_jobs(&server.url, &admin);
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    let mut by_name = HashMap::new();
    for j in &jobs {
        let name = j["name"].as_str().expect("name").to_owned();
        assert!(names.insert(name.clone()), "job {name} stored twice");
        assert!(
            ids.insert(j["id"].as_str().expect("id").to_owned()),
            "id stored twice"
        );
        by_name.insert(name, j["id"].as_str().expect("id").to_owned());
        let state = j["state"].as_str().expect("state");
        assert!(["pending", "running", "done"].contains(&state), "{j}");
    }
    assert!(jobs.len() <= SUBMISSIONS);
    for (name, id) in &acked {
        assert_eq!(
            by_name.get(name),
            Some(id),
            "acknowledged job {name} ({id}) lost after the crash"
        );
    }
    eprintln!(
        "crash test: {} acknowledged before SIGKILL, {} stored after restart",
        acked.len(),
        jobs.len()
    );
    // Scheduling resumes: everything stored runs to completion.
    wait_for(120, "every stored job to finish after the restart", || {
        let jobs = all_jobs(&server.url, &admin);
        jobs.iter().all(|j| j["state"] == "done").then_some(())
    });
}

#[test]
fn sqlite_crash_while_submitting() {
    crash_while_submitting(fresh_db("sqlite").expect("sqlite"));
}

#[test]
fn postgres_crash_while_submitting() {
    if let Some(db) = fresh_db("postgres") {
        crash_while_submitting(db);
    }
}

/// Submits an 8-accelerator batch job of `secs` through `url`; its id.
fn submit_batch(url: &str, token: &str, name: &str, secs: f64) -> String {
    submit_job(
        url,
        token,
        &json!({"name": name, "kind": "batch", "accelerators": 8, "duration_s": secs}),
    )
}

#[test]
fn postgres_leader_failover() {
    let Some(db) = fresh_db("postgres") else {
        return;
    };
    let _turn = take_turn();
    let mut servers = [Server::start(&db), Server::start(&db)];
    let t = token(&db, "research", false);
    let leader = wait_for(30, "one leader", || {
        let roles: Vec<String> = servers.iter().map(Server::role).collect();
        let leaders = roles.iter().filter(|r| *r == "leader").count();
        assert!(leaders <= 1, "two leaders at once: {roles:?}");
        roles.iter().position(|r| r == "leader")
    });
    let follower = 1 - leader;
    let submit = |url: &str, name: &str, secs: f64| submit_batch(url, &t, name, secs);
    // A submission to the follower is scheduled by the leader.
    let quick = submit(&servers[follower].url, "quick", 1.0);
    let long = submit(&servers[follower].url, "long", 86_400.0);
    let furl = servers[follower].url.clone();
    wait_for(30, "the leader to run the follower's submissions", || {
        (job_state(&furl, &t, &quick) == "done" && job_state(&furl, &t, &long) == "running")
            .then_some(())
    });

    servers[leader].kill();
    let killed = Instant::now();
    wait_for(30, "the follower to take over", || {
        (servers[follower].role() == "leader").then_some(())
    });
    let took = killed.elapsed();
    eprintln!(
        "failover: the follower led {:.1} s after the leader's SIGKILL",
        took.as_secs_f64()
    );
    // The lease is 3 s; the bound leaves room for a loaded machine.
    assert!(took < Duration::from_secs(15), "failover took {took:?}");
    // The new leader recovered the running job and schedules new work.
    let after = submit(&furl, "after", 1.0);
    wait_for(30, "the new leader to schedule", || {
        (job_state(&furl, &t, &after) == "done").then_some(())
    });
    assert_eq!(job_state(&furl, &t, &long), "running");
    let (_, ev) = call(
        "GET",
        &format!("{furl}/v1/jobs/{long}/events"),
        Some(&t),
        None,
    );
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"recovered"), "{ev}");
    // The old leader comes back as a follower.
    servers[leader] = Server::start(&db);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(servers[leader].role(), "follower");
    assert_eq!(servers[follower].role(), "leader");
}

/// A clean stop (SIGTERM) gives the lease up: the other replica leads at once, not after the
/// lease runs out. A 60 s lease tells the two apart on however loaded a machine.
#[test]
fn postgres_a_clean_stop_hands_the_lease_over_at_once() {
    let Some(db) = fresh_db("postgres") else {
        return;
    };
    let _turn = take_turn();
    let mut servers = [
        Server::start_with(&db, &["--lease", "60s"]),
        Server::start_with(&db, &["--lease", "60s"]),
    ];
    let t = token(&db, "research", false);
    let leader = wait_for(30, "one leader", || {
        servers.iter().position(|s| s.role() == "leader")
    });
    let other = 1 - leader;
    wait_for(30, "the other replica to follow", || {
        (servers[other].role() == "follower").then_some(())
    });
    let pid = servers[leader].child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let stopped = Instant::now();
    let exit = servers[leader].child.wait().expect("wait");
    assert!(exit.success(), "a clean stop exits 0: {exit:?}");
    wait_for(30, "the handover after SIGTERM", || {
        (servers[other].role() == "leader").then_some(())
    });
    let took = stopped.elapsed();
    eprintln!("handover after SIGTERM: {:.2} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(20), "handover took {took:?}");
    let url = servers[other].url.clone();
    let id = submit_batch(&url, &t, "last", 1.0);
    wait_for(30, "the new leader to schedule", || {
        (job_state(&url, &t, &id) == "done").then_some(())
    });
}

/// A client that stops halfway through a request does not keep a stopping server alive: the
/// leader stops at once and open requests get a bounded grace.
#[test]
fn sqlite_a_stalled_client_does_not_hold_a_stopping_server() {
    use std::io::Write as _;
    let Some(db) = fresh_db("sqlite") else {
        return;
    };
    let mut server = Server::start(&db);
    let t = token(&db, "research", false);
    wait_for(30, "leadership", || {
        (server.role() == "leader").then_some(())
    });
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stalled,
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\""
    )
    .expect("half a request");
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let stopped = Instant::now();
    let exit = wait_for(30, "the server to exit", || {
        server.child.try_wait().expect("wait")
    });
    let took = stopped.elapsed();
    assert!(exit.success(), "a clean stop exits 0: {exit:?}");
    assert!(took < Duration::from_secs(20), "it took {took:?} to stop");
    drop(stalled);
}

/// `/metrics` answers while the store stalls, from what the process holds, saying so with
/// `switchyard_store_up 0`: a scrape that waited on the store (10 s) would time out for the
/// whole stall. The stall is a relay in front of PostgreSQL that stops passing bytes.
#[test]
fn postgres_metrics_answer_while_the_store_stalls() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(db) = fresh_db("postgres") else {
        return;
    };
    let _turn = take_turn();
    // postgres://USER:PASS@HOST:PORT/DB → the same through the relay.
    let (head, rest) = db.split_once('@').expect("a URL with credentials");
    let (host_port, path) = rest.split_once('/').expect("a database");
    let upstream: std::net::SocketAddr = host_port
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("HOST:PORT");
    let paused = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let relay_port = listener.local_addr().expect("addr").port();
    let gate = paused.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(upstream)) else {
                continue;
            };
            let pairs = [
                (client.try_clone(), server.try_clone()),
                (Ok(server), Ok(client)),
            ];
            for pair in pairs {
                let (Ok(mut from), Ok(mut to)) = pair else {
                    continue;
                };
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        while gate.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    let relayed = format!("{head}@127.0.0.1:{relay_port}/{path}");
    let admin = token(&db, "ops", true);
    let server = Server::start(&relayed);
    wait_for(30, "the server to lead", || {
        (server.role() == "leader").then_some(())
    });
    let metrics = format!("{}/metrics", server.url);
    let (status, text) = call("GET", &metrics, Some(&admin), None);
    assert_eq!(status, 200, "{text}");
    assert!(text.to_string().contains("switchyard_store_up 1"), "{text}");
    paused.store(true, Ordering::Relaxed);
    let (status, text) = call("GET", &metrics, Some(&admin), None);
    paused.store(false, Ordering::Relaxed);
    let text = text.as_str().unwrap_or_default().to_owned();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("switchyard_store_up 0"), "{text}");
    assert!(text.contains("switchyard_leader "), "{text}");
    assert!(!text.contains("switchyard_queue_length{"), "{text}");
}
