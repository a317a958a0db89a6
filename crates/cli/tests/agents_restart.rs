//! Agent and server survive each other's restarts: the server is SIGKILLed mid-run and started
//! again on the same database and address; the agents re-register (same node ids and slots),
//! reconcile with the new desired state, and the run finishes from its checkpoint with the
//! same final model. (An agent restarted on its --state-dir adopting what it left running is
//! tested in crates/agent/tests/agent_loop.rs.)

mod agents_common;

use agents_common::server_common::Server;
use agents_common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_run_survives_a_restart_of_the_server() {
    let dir = scratch("agents-restart");
    let fleet = fleet_file(&dir, 2, 2);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut s = AgentServer::start(&dir, &fleet, &listen);
    let agents: Vec<AgentProcess> = s.start_local_agents(&dir, 2);
    let before: Vec<(String, i64)> = s
        .nodes()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["slot"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let job = s.submit_training(4, 60, 3);
    wait_for(120, "the run to pass step 40", || {
        (s.step(&job) >= 4 * CHECKPOINT_EVERY).then_some(())
    });

    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    s.server.kill();
    let db = s.server.db.clone();
    let args = [
        "--fleet",
        &fleet.to_string_lossy(),
        "--agents",
        "--heartbeat-interval",
        "300ms",
        "--lost-after",
        "3",
        "--checkpoint-dir",
        &s.checkpoints.to_string_lossy(),
    ]
    .map(|a| a.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.server = Server::start_on(&db, &listen, &args);
    wait_for(30, "the restarted server to lead", || {
        (s.server.role() == "leader").then_some(())
    });

    let end = wait_final(&s, &job, 240);
    assert_eq!(end["state"], "done", "{end}\n{:#?}", s.events(&job));
    let kinds: Vec<String> = s
        .events(&job)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(kinds.iter().any(|k| k == "recovered"), "{kinds:?}");
    let mut after: Vec<(String, i64)> = s
        .nodes()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["slot"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(
        before, after,
        "the agents came back as the same nodes in the same slots"
    );
    let resumed = s.logs(&job).iter().any(|l| {
        l["attempt"].as_i64().is_some_and(|a| a >= 2)
            && l["line"]
                .as_str()
                .is_some_and(|t| t.contains("resuming from checkpoint step"))
    });
    assert!(resumed, "the next attempt resumed from a checkpoint");
    // What the first attempt wrote while no server answered was held by the agents and kept
    // by the restarted server, which never handed that attempt out.
    let during_outage = s
        .logs(&job)
        .iter()
        .filter(|l| l["attempt"] == 1 && l["at_ms"].as_i64().is_some_and(|t| t > killed_ms + 100))
        .count();
    assert!(
        during_outage > 0,
        "no line of attempt 1 written after the server was killed was kept"
    );
    assert_eq!(s.final_model(&job), reference_model(&dir, 4));
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A liveness deadline shorter than the leader's tick (50 ms × 3) still declares a dead node
/// lost: the agents' backend has the leader poll it in time, instead of every late poll being
/// taken for a stalled leader that must not declare anyone lost.
#[test]
fn a_dead_agent_is_declared_lost_under_a_short_deadline() {
    let dir = scratch("agents-short-deadline");
    let fleet = fleet_file(&dir, 2, 2);
    let db = format!("sqlite://{}", dir.join("switchyard.db").display());
    let checkpoints = dir.join("checkpoints");
    let tenant_token = agents_common::server_common::token(&db, "research", false);
    let agent_token = agent_token(&db);
    let args = [
        "--fleet",
        &fleet.to_string_lossy(),
        "--agents",
        "--heartbeat-interval",
        "50ms",
        "--lost-after",
        "3",
        "--checkpoint-dir",
        &checkpoints.to_string_lossy(),
    ]
    .map(|a| a.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_on(&db, "127.0.0.1:0", &args);
    let s = AgentServer {
        server,
        tenant_token,
        agent_token,
        checkpoints,
    };
    wait_for(30, "the server to lead", || {
        (s.server.role() == "leader").then_some(())
    });
    let agent = start_agent(
        &[],
        s.url(),
        &s.agent_token,
        "short-1",
        "127.0.0.1",
        2,
        &dir.join("short-1.log"),
    );
    let state = |s: &AgentServer| {
        s.nodes()
            .iter()
            .find(|n| n["hostname"] == "short-1")
            .and_then(|n| n["state"].as_str().map(str::to_owned))
    };
    wait_for(30, "the node to be ready", || {
        (state(&s).as_deref() == Some("ready")).then_some(())
    });
    drop(agent);
    wait_for(10, "the dead node to be declared lost", || {
        (state(&s).as_deref() == Some("lost")).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}
