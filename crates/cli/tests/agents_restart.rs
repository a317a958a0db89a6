//! Agent and server survive each other's restarts: the server is SIGKILLed mid-run and started
//! again on the same database and address; the agents re-register (same node ids and slots),
//! the restarted server takes the running ranks over, and the run finishes as the same attempt
//! with the same final model; likewise when the leader of two PostgreSQL replicas is SIGKILLed and
//! the other takes over. An agent restarted on its --state-dir learns how the ranks it adopted
//! ended (their exit recorders). (Adoption itself is tested in crates/agent/tests/agent_loop.rs.)

mod agents_common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agents_common::server_common::Server;
use agents_common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server on a fresh database with two local agents (2 accelerators each): the scratch
/// directory, the fleet file, the address, the server and its agents.
fn two_agents(name: &str) -> (PathBuf, PathBuf, String, AgentServer, Vec<AgentProcess>) {
    let dir = scratch(name);
    let fleet = fleet_file(&dir, 2, 2);
    let listen = format!("127.0.0.1:{}", free_port());
    let s = AgentServer::start(&dir, &fleet, &listen);
    let agents = s.start_local_agents(&dir, 2);
    (dir, fleet, listen, s, agents)
}

/// SIGKILLs the server and starts it again on the same database and address.
fn kill_and_restart(s: &mut AgentServer, fleet: &Path, listen: &str) {
    s.server.kill();
    let db = s.server.db.clone();
    let args = server_args(fleet, &s.checkpoints, "300ms", 10);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.server = Server::start_on(&db, listen, &args);
    wait_for(30, "the restarted server to lead", || {
        (s.server.role() == "leader").then_some(())
    });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The 4-rank run `job` ends done as it ran before the scheduling leader changed at `killed_ms`:
/// recovered and taken over (`continued`), only attempt 1 ran, no rank started again, what it
/// wrote meanwhile kept, and the final model that of an uninterrupted run.
fn assert_ran_on_as_attempt_1(s: &AgentServer, job: &str, killed_ms: i64, dir: &Path) {
    let end = wait_final(s, job, 240);
    assert_eq!(end["state"], "done", "{end}\n{:#?}", s.events(job));
    let kinds: Vec<String> = s
        .events(job)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(kinds.iter().any(|k| k == "recovered"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "continued"),
        "the ranks were taken over: {:#?}",
        s.events(job)
    );
    // The ranks ran on through the outage: one attempt, started once, never resumed.
    let logs = s.logs(job);
    assert!(
        logs.iter().all(|l| l["attempt"] == 1),
        "only attempt 1 ran: {:?}",
        logs.iter()
            .filter(|l| l["attempt"] != 1)
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(
        !logs.iter().any(|l| l["line"]
            .as_str()
            .is_some_and(|t| t.contains("resuming from checkpoint step"))),
        "no rank started again"
    );
    let job_view = s.job(job);
    assert_eq!(job_view["restarts"], 0, "{job_view}");
    // What the first attempt wrote while no leader answered was held by the agents and kept
    // by the new leader (pushed before or after it took the attempt over).
    let during_outage = logs
        .iter()
        .filter(|l| l["attempt"] == 1 && l["at_ms"].as_i64().is_some_and(|t| t > killed_ms + 100))
        .count();
    assert!(
        during_outage > 0,
        "no line of attempt 1 written after the leader was killed was kept"
    );
    assert_eq!(s.final_model(job), reference_model(dir, 4));
}

/// What puts several server replicas "behind one address that routes to the leader"
/// (docs/agent.md): a TCP relay on loopback to the address the test names, each connection
/// relayed to wherever it pointed when the connection came in.
struct LeaderAddress {
    url: String,
    target: Arc<Mutex<String>>,
}

impl LeaderAddress {
    fn to(url: &str) -> LeaderAddress {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let url_here = format!("http://{}", listener.local_addr().expect("relay address"));
        let target = Arc::new(Mutex::new(url.to_owned()));
        let to = Arc::clone(&target);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let addr = to.lock().expect("relay target").clone();
                let addr = addr.trim_start_matches("http://").to_owned();
                let Ok(server) = TcpStream::connect(&addr) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        LeaderAddress {
            url: url_here,
            target,
        }
    }

    fn point_to(&self, url: &str) {
        *self.target.lock().expect("relay target") = url.to_owned();
    }
}

#[test]
fn a_run_survives_a_restart_of_the_server() {
    let (dir, fleet, listen, mut s, agents) = two_agents("agents-restart");
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

    let killed_ms = now_ms();
    kill_and_restart(&mut s, &fleet, &listen);
    assert_ran_on_as_attempt_1(&s, &job, killed_ms, &dir);
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
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two server replicas on one PostgreSQL database behind one address that routes to the
/// leader: the leader is SIGKILLed mid-run, the other replica takes the lease, and the agents'
/// running ranks are taken over as they are (same attempt, no rank restarted).
#[test]
fn a_run_survives_a_failover_between_postgres_replicas() {
    let Some(db) = agents_common::server_common::fresh_db("postgres") else {
        return;
    };
    let dir = scratch("agents-failover");
    let fleet = fleet_file(&dir, 2, 2);
    let checkpoints = dir.join("checkpoints");
    let args = server_args(&fleet, &checkpoints, "300ms", 10);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tenant_token = agents_common::server_common::token(&db, "research", false);
    let agent_token = agent_token(&db);
    let mut replicas = vec![
        Server::start_on(&db, "127.0.0.1:0", &args),
        Server::start_on(&db, "127.0.0.1:0", &args),
    ];
    let leader = wait_for(30, "one replica to lead", || {
        replicas.iter().position(|r| r.role() == "leader")
    });
    let address = LeaderAddress::to(&replicas[leader].url);
    let mut leading = replicas.remove(leader);
    let standby = replicas.remove(0);
    leading.url = address.url.clone();
    let s = AgentServer {
        server: leading,
        tenant_token,
        agent_token,
        checkpoints,
    };
    let agents = s.start_local_agents(&dir, 2);
    let job = s.submit_training(4, 60, 3);
    wait_for(120, "the run to pass step 40", || {
        (s.step(&job) >= 4 * CHECKPOINT_EVERY).then_some(())
    });

    let killed_ms = now_ms();
    let mut s = s;
    s.server.kill();
    wait_for(30, "the standby replica to lead", || {
        (standby.role() == "leader").then_some(())
    });
    address.point_to(&standby.url);
    assert_ran_on_as_attempt_1(&s, &job, killed_ms, &dir);
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service's replicas serve on through a restart of the server: the restarted server takes
/// them over where they run (no replica process is started again, none is stopped), and
/// `switchyard` events say so.
#[test]
fn a_service_serves_on_through_a_restart_of_the_server() {
    let (dir, fleet, listen, mut s, agents) = two_agents("agents-restart-service");
    let job = s.submit(&serde_json::json!({
        "kind": "inference",
        "accelerators": 2,
        "replicas": {"min": 2, "max": 2},
        "command": {"argv": ["sh", "-c", "echo serving as $$; exec sleep 600"]},
    }));
    let serving = |s: &AgentServer| -> Vec<String> {
        let mut lines: Vec<String> = s
            .logs(&job)
            .iter()
            .filter_map(|l| l["line"].as_str().filter(|t| t.starts_with("serving as")))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let before = wait_for(60, "both replicas to serve", || {
        let lines = serving(&s);
        (lines.len() == 2).then_some(lines)
    });

    kill_and_restart(&mut s, &fleet, &listen);
    wait_for(60, "both replicas to be taken over", || {
        let taken = s
            .events(&job)
            .iter()
            .filter(|e| {
                e["kind"] == "replica_added"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("where it served"))
            })
            .count();
        (taken == 2).then_some(())
    });
    // A replica started again would print its line within moments: give it a few.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(serving(&s), before, "the same two processes serve");
    let kinds: Vec<String> = s
        .events(&job)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !kinds.iter().any(|k| matches!(
            k.as_str(),
            "replica_lost" | "replica_removed" | "replica_restarted"
        )),
        "{kinds:?}"
    );
    assert_eq!(s.job(&job)["state"], "running");
    for a in &agents {
        let log = std::fs::read_to_string(dir.join(format!("{}.log", a.name))).unwrap_or_default();
        assert!(
            !log.lines().any(|l| l.contains("stopping id=")),
            "{} stopped a replica:\n{log}",
            a.name
        );
    }
    let (status, answer) = agents_common::server_common::call(
        "POST",
        &format!("{}/v1/jobs/{job}/cancel", s.url()),
        Some(&s.tenant_token),
        None,
    );
    assert!((200..300).contains(&status), "{status} {answer}");
    let end = wait_final(&s, &job, 60);
    assert_eq!(end["state"], "cancelled", "{end}");
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restarted server that has not heard from the node a gang last ran on (its agent is cut
/// off: stopped here, its rank running on) places the gang again but holds it until that node's
/// agent is back and reports the old rank stopped; the two attempts never run at once, and the
/// run finishes with the same final model.
#[test]
fn a_restarted_server_holds_a_gang_until_it_hears_from_its_last_node() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = scratch("agents-restart-unheard");
    let fleet = fleet_file(&dir, 3, 2);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut s = AgentServer::start(&dir, &fleet, &listen);
    let agents: Vec<AgentProcess> = s.start_local_agents(&dir, 3);
    // Slow enough that the first attempt is still running when its agent comes back.
    let job = s.submit_training(2, 200, 3);
    wait_for(120, "the run to pass step 20", || {
        (s.step(&job) >= 2 * CHECKPOINT_EVERY).then_some(())
    });
    let host = s
        .nodes()
        .iter()
        .find(|n| {
            n["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|j| j == &job))
        })
        .and_then(|n| n["hostname"].as_str().map(str::to_owned))
        .expect("the node the run is on");
    let agent = agents.iter().find(|a| a.name == host).expect("its agent");
    let pid = Pid::from_raw(agent.child.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("stop the agent");

    s.server.kill();
    let db = s.server.db.clone();
    let args = server_args(&fleet, &s.checkpoints, "300ms", 10);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.server = Server::start_on(&db, &listen, &args);
    wait_for(30, "the run placed again and held", || {
        s.job(&job)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("a new scheduling leader took over"))
            .then_some(())
    });
    // Held: nothing of the next attempt starts while the old rank may still run.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        s.job(&job)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not running yet")),
        "{}",
        s.job(&job)
    );
    let heard_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    kill(pid, Signal::SIGCONT).expect("continue the agent");
    // Handed out as soon as the node reports its rank stopped, not at the hold's end (minutes
    // away).
    wait_for(
        20,
        "the run to start once its old node is heard from",
        || {
            s.job(&job)["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("running on"))
                .then_some(())
        },
    );

    let end = wait_final(&s, &job, 240);
    assert_eq!(end["state"], "done", "{end}\n{:#?}", s.events(&job));
    let early: Vec<serde_json::Value> = s
        .logs(&job)
        .into_iter()
        .filter(|l| {
            l["attempt"].as_i64().is_some_and(|a| a >= 2)
                && l["at_ms"].as_i64().is_some_and(|t| t < heard_ms)
        })
        .collect();
    assert!(
        early.is_empty(),
        "the next attempt ran before the old node was heard from: {early:#?}"
    );
    // The first attempt's rank was stopped by its agent before the next attempt began.
    let logs = s.logs(&job);
    let last_of_first = logs
        .iter()
        .filter(|l| l["attempt"] == 1)
        .filter_map(|l| l["at_ms"].as_i64())
        .max()
        .expect("attempt 1's output");
    let first_of_next = logs
        .iter()
        .filter(|l| l["attempt"].as_i64().is_some_and(|a| a >= 2))
        .filter_map(|l| l["at_ms"].as_i64())
        .min()
        .expect("attempt 2's output");
    assert!(
        last_of_first < first_of_next,
        "the two attempts ran at once: attempt 1 wrote at {last_of_first}, attempt 2 from {first_of_next}"
    );
    assert_eq!(s.final_model(&job), reference_model(&dir, 2));
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
    let s = AgentServer::start_with_deadline(&dir, &fleet, "127.0.0.1:0", "50ms", 3);
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
    wait_for(30, "the dead node to be declared lost", || {
        (state(&s).as_deref() == Some("lost")).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node whose agent dies while the server is down is lost a deadline after the restarted
/// server takes the lease, though this process never heard from it: listed as lost, and its
/// slot goes to the next host (it was held for good, new hosts refused `cluster_full`).
#[test]
fn a_node_that_died_with_the_server_is_lost_and_its_slot_taken() {
    let dir = scratch("agents-restart-dead-node");
    let fleet = fleet_file(&dir, 2, 2);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut s = AgentServer::start_with_deadline(&dir, &fleet, &listen, "100ms", 5);
    let url = s.url().to_owned();
    let start = |name: &str| {
        start_agent(
            &[],
            &url,
            &s.agent_token,
            name,
            "127.0.0.1",
            2,
            &dir.join(format!("{name}.log")),
        )
    };
    let (dies, lives) = (start("dies"), start("lives"));
    s.wait_ready(2);
    // The server and one agent die together; the other agent waits for the server.
    s.server.kill();
    drop(dies);
    let args = server_args(&fleet, &s.checkpoints, "100ms", 5);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.server = Server::start_on(&s.server.db.clone(), &listen, &args);
    wait_for(30, "the restarted server to lead", || {
        (s.server.role() == "leader").then_some(())
    });
    let state = |s: &AgentServer, host: &str| {
        s.nodes()
            .iter()
            .find(|n| n["hostname"] == host)
            .and_then(|n| n["state"].as_str().map(str::to_owned))
    };
    wait_for(30, "the dead node to be declared lost", || {
        (state(&s, "dies").as_deref() == Some("lost")).then_some(())
    });
    assert_eq!(state(&s, "lives").as_deref(), Some("ready"));
    // A new host takes the dead node's slot.
    let new = start("new");
    wait_for(30, "the new host to take the slot", || {
        (state(&s, "new").as_deref() == Some("ready")).then_some(())
    });
    // The dead node is gone from the list with its slot, as from the store.
    assert_eq!(state(&s, "dies"), None, "{:?}", s.nodes());
    assert_eq!(s.nodes().len(), 2, "{:?}", s.nodes());
    drop((new, lives));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent restarted in place on its --state-dir learns how the ranks it adopted ended — one
/// that ended while no agent ran, one that ended under the new agent — from the recorder each
/// runs under, so a rank that succeeded is not run again and a rank that failed spends its
/// job's retry; a program that cannot be started is still named.
#[test]
fn an_agent_restarted_in_place_learns_how_its_ranks_ended() {
    let dir = scratch("agents-recorded-exit");
    let fleet = fleet_file(&dir, 1, 3);
    // A deadline (300 ms × 40) that outlasts the agent's restart.
    let s = AgentServer::start_with_deadline(&dir, &fleet, "127.0.0.1:0", "300ms", 40);
    let state_dir = dir.join("agent-state");
    let log = dir.join("agent.log");
    let start_agent = || {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent log");
        let err = out.try_clone().expect("agent log");
        AgentProcess {
            name: "rec-1".into(),
            child: std::process::Command::new(BIN)
                .args(["agent", "--server", s.url(), "--cluster", "local"])
                .args(["--accelerators", "3", "--hostname", "rec-1"])
                .args(["--address", "127.0.0.1", "--state-dir"])
                .arg(&state_dir)
                .env("SWITCHYARD_TOKEN", &s.agent_token)
                .env("SWITCHYARD_LOG", "info")
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start the agent"),
        }
    };
    let submit = |argv: Vec<String>| {
        s.submit(&serde_json::json!({
            "kind": "training",
            "accelerators": 1,
            "duration_s": 30.0,
            "max_retries": 0,
            "command": {"argv": argv},
        }))
    };
    // Each rank says it runs, then waits for its release file and exits with its code.
    let waiting_rank = |name: &str, code: u8| {
        let started = dir.join(format!("{name}.started"));
        let release = dir.join(format!("{name}.release"));
        let done = dir.join(format!("{name}.done"));
        let script = format!(
            "touch '{}'; while [ ! -f '{}' ]; do sleep 0.05; done; touch '{}'; exit {code}",
            started.display(),
            release.display(),
            done.display()
        );
        (
            vec!["sh".to_owned(), "-c".to_owned(), script],
            started,
            release,
            done,
        )
    };
    let mut agent = start_agent();
    let (argv, ok_started, ok_release, ok_done) = waiting_rank("ok", 0);
    let ok = submit(argv);
    let (argv, bad_started, bad_release, _) = waiting_rank("bad", 3);
    let bad = submit(argv);
    wait_for(60, "both ranks to run", || {
        (ok_started.exists() && bad_started.exists()).then_some(())
    });

    // The agent dies; "ok" ends while none runs.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    std::fs::write(&ok_release, "").expect("release ok");
    wait_for(30, "it to end", || ok_done.exists().then_some(()));
    // Gone, not merely finishing, when the new agent looks.
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent = start_agent();
    wait_for(30, "the new agent to adopt the other rank", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("adopted a process left by a previous agent")
            .then_some(())
    });
    // "bad" ends under the new agent.
    std::fs::write(&bad_release, "").expect("release bad");

    let end = wait_final(&s, &ok, 60);
    assert_eq!(end["state"], "done", "{end}\n{:#?}", s.events(&ok));
    assert_eq!(end["restarts"], 0, "a rank that succeeded ran once: {end}");
    let end = wait_final(&s, &bad, 60);
    assert_eq!(end["state"], "failed", "{end}\n{:#?}", s.events(&bad));
    assert_eq!(end["restarts"], 0, "{end}");
    let failure = |id: &str| {
        s.events(id)
            .iter()
            .find(|e| e["kind"] == "failed")
            .and_then(|e| e["message"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    assert!(
        failure(&bad).contains("rank 0 exited with code 3"),
        "{:#?}",
        s.events(&bad)
    );

    // Under the recorder, a program that cannot start is still named.
    let missing = submit(vec!["/no/such/program".to_owned()]);
    let end = wait_final(&s, &missing, 60);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(
        failure(&missing).contains("/no/such/program: No such file"),
        "{:#?}",
        s.events(&missing)
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent killed outright and replaced by one without its state directory (here: neither
/// has one) cannot adopt its ranks: the new agent kills what is left of them and reports them
/// ended, how unknown, so the gang restarts as a new attempt from its checkpoint — without
/// spending a retry — instead of one rank running again in the middle of attempt 1.
#[test]
fn ranks_a_replacement_agent_kills_restart_their_gang() {
    let dir = scratch("agents-replaced");
    let fleet = fleet_file(&dir, 1, 1);
    // A deadline (300 ms × 40) that outlasts the agent's replacement.
    let s = AgentServer::start_with_deadline(&dir, &fleet, "127.0.0.1:0", "300ms", 40);
    let start_agent = || AgentProcess {
        name: "rep-1".into(),
        child: std::process::Command::new(BIN)
            .args(["agent", "--server", s.url(), "--cluster", "local"])
            .args(["--accelerators", "1", "--hostname", "rep-1"])
            .args(["--address", "127.0.0.1"])
            .env("SWITCHYARD_TOKEN", &s.agent_token)
            .env("SWITCHYARD_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the agent"),
    };
    // Each attempt says it runs (with its pid), then waits for the release file.
    let release = dir.join("release");
    let script = format!(
        "echo $$ > '{dir}'/attempt-$SWITCHYARD_ATTEMPT.pid; \
         while [ ! -f '{release}' ]; do sleep 0.05; done",
        dir = dir.display(),
        release = release.display()
    );
    let mut agent = start_agent();
    let job = s.submit(&serde_json::json!({
        "kind": "training",
        "accelerators": 1,
        "duration_s": 30.0,
        "max_retries": 0,
        "command": {"argv": ["sh", "-c", script]},
    }));
    let first = dir.join("attempt-1.pid");
    let pid = wait_for(60, "attempt 1 to run", || {
        std::fs::read_to_string(&first)
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    });
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    agent = start_agent();
    wait_for(60, "attempt 2 to run", || {
        dir.join("attempt-2.pid").exists().then_some(())
    });
    // Gone, or a zombie waiting for whoever inherited it to reap it.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next());
    assert!(
        matches!(state, None | Some('Z')),
        "attempt 1's rank was killed: {state:?}"
    );
    std::fs::write(&release, "").expect("release");
    let end = wait_final(&s, &job, 60);
    assert_eq!(end["state"], "done", "{end}\n{:#?}", s.events(&job));
    assert_eq!(end["restarts"], 1, "{end}\n{:#?}", s.events(&job));
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
