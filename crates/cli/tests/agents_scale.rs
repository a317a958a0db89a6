//! Issue 6's inference services on real agents: a server and three agents as processes; a
//! service scaled from 1 to 3 replicas runs 3 replica processes on 3 nodes, scaled back to 1
//! runs 1 (the others are stopped, their children too); a replica whose process dies is
//! restarted by its agent and the restart is recorded.

mod agents_common;

use agents_common::*;
use serde_json::{Value, json};

/// Starts a server and `n` agents of 2 accelerators each.
fn cluster(name: &str, n: u32) -> (std::path::PathBuf, AgentServer, Vec<AgentProcess>) {
    let dir = scratch(name);
    let fleet = fleet_file(&dir, n, 2);
    let s = AgentServer::start(&dir, &fleet, "127.0.0.1:0");
    let agents = s.start_local_agents(&dir, n);
    (dir, s, agents)
}

/// Submits a service of one node (2 accelerators) per replica running `sh -c SCRIPT`.
fn submit_service(s: &AgentServer, script: &str, min: u32, max: u32) -> String {
    s.submit(&json!({
        "kind": "inference",
        "accelerators": 2,
        "replicas": {"min": min, "max": max},
        "command": {"argv": ["sh", "-c", script]},
    }))
}

fn scale(s: &AgentServer, id: &str, replicas: u32) -> Value {
    let (status, job) = call(
        "POST",
        &format!("{}/v1/jobs/{id}/scale", s.url()),
        Some(&s.tenant_token),
        Some(&json!({ "replicas": replicas }).to_string()),
    );
    assert_eq!(status, 200, "{job}");
    job
}

/// Hostnames of the nodes the server has the job placed on.
fn hosts_of(s: &AgentServer, id: &str) -> Vec<String> {
    let mut hosts: Vec<String> = s
        .nodes()
        .into_iter()
        .filter(|n| {
            n["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|x| x == id))
        })
        .filter_map(|n| n["hostname"].as_str().map(str::to_owned))
        .collect();
    hosts.sort();
    hosts
}

/// Live processes on this machine whose command line is exactly `argv` (Linux: /proc).
fn processes_running(argv: &[&str]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|raw| {
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            args.len() == argv.len() && args.iter().zip(argv).all(|(a, b)| *a == b.as_bytes())
        })
        .count()
}

fn up_lines(s: &AgentServer, id: &str) -> usize {
    s.logs(id).iter().filter(|l| l["line"] == "up").count()
}

#[test]
fn a_service_scales_up_and_down_across_agents() {
    let (dir, s, agents) = cluster("agents-scale", 3);
    // A sleep unique to this test, to count its replicas' processes on this machine.
    let sleep = format!("300.{}", std::process::id());
    let id = submit_service(&s, &format!("echo up; sleep {sleep}"), 1, 4);
    let argv = ["sleep", sleep.as_str()];

    wait_for(60, "one replica process", || {
        (hosts_of(&s, &id).len() == 1 && processes_running(&argv) == 1 && up_lines(&s, &id) == 1)
            .then_some(())
    });

    // Up to 3: one replica per node (a node has 2 accelerators, a replica needs them both).
    let job = scale(&s, &id, 3);
    assert_eq!(job["replicas_wanted"], 3, "{job}");
    wait_for(60, "three replica processes on three nodes", || {
        let hosts = hosts_of(&s, &id);
        (hosts == ["node-1", "node-2", "node-3"]
            && processes_running(&argv) == 3
            && up_lines(&s, &id) == 3)
            .then_some(())
    });
    // Each replica's lines name it; `replica=` and `--replica` pick one replica's lines.
    let mut replicas: Vec<String> = s
        .logs(&id)
        .iter()
        .filter_map(|l| l["replica"].as_str().map(str::to_owned))
        .collect();
    replicas.sort();
    replicas.dedup();
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    let (status, page) = call(
        "GET",
        &format!("{}/v1/jobs/{id}/logs?replica={}", s.url(), replicas[1]),
        Some(&s.tenant_token),
        None,
    );
    assert_eq!(status, 200, "{page}");
    let lines = page["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1, "{page}");
    assert_eq!(lines[0]["replica"].as_str(), Some(replicas[1].as_str()));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--url", s.url(), "--token", &s.tenant_token])
            .output()
            .expect("run the cli");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = cli(&["logs", &id]);
    assert_eq!(code, Some(0));
    for r in &replicas {
        assert!(text.contains(&format!("[replica {r}] up")), "{text}");
    }
    // The dashboard's job page names each line's replica too.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let html = agent
        .get(format!("{}/dashboard/jobs/{id}", s.url()))
        .header("Authorization", format!("Bearer {}", s.tenant_token))
        .call()
        .expect("the dashboard answers")
        .body_mut()
        .read_to_string()
        .expect("a page");
    for r in &replicas {
        assert!(
            html.contains(&format!("[replica {r} rank 0 stdout]</span> up")),
            "{html}"
        );
    }
    let (code, text) = cli(&["logs", &id, "--replica", &replicas[2]]);
    assert_eq!((code, text.trim()), (Some(0), "up"));
    let (code, _) = cli(&["logs", &id, "--replica", "nope"]);
    assert_eq!(code, Some(2));
    let job = s.job(&id);
    assert_eq!(
        (job["allocated"].as_i64(), job["state"].as_str()),
        (Some(6), Some("running")),
        "{job}"
    );
    assert!(
        job["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("serving with 3 replicas")),
        "{job}"
    );

    // Back to 1: two replicas stopped, their `sleep` children with them.
    scale(&s, &id, 1);
    wait_for(60, "one replica process again", || {
        (hosts_of(&s, &id).len() == 1 && processes_running(&argv) == 1).then_some(())
    });
    let job = s.job(&id);
    assert_eq!(job["allocated"], 2, "{job}");
    let kinds: Vec<String> = s
        .events(&id)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(
        (
            count("scale_requested"),
            count("replica_added"),
            count("replica_removed")
        ),
        (2, 3, 2),
        "{kinds:?}"
    );
    // Each replica event names its node by the host its agent registered.
    let kept = hosts_of(&s, &id);
    for e in s.events(&id) {
        let message = e["message"].as_str().unwrap_or_default();
        match e["kind"].as_str() {
            Some("replica_added") => assert!(message.contains("(node node-"), "{e}"),
            Some("replica_removed") => {
                assert!(
                    message.contains("the replica on node node-")
                        && !kept.iter().any(|h| message.contains(&format!("node {h} ")))
                        && message.ends_with(" goes"),
                    "{e}"
                );
            }
            _ => {}
        }
    }

    // Cancelled: nothing of it runs any more.
    let (status, _) = call(
        "POST",
        &format!("{}/v1/jobs/{id}/cancel", s.url()),
        Some(&s.tenant_token),
        None,
    );
    assert_eq!(status, 202);
    wait_final(&s, &id, 60);
    wait_for(60, "no replica process", || {
        (processes_running(&argv) == 0).then_some(())
    });
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replica_whose_process_dies_is_restarted() {
    let (dir, s, agents) = cluster("agents-replica-restart", 1);
    let id = submit_service(&s, "echo start; sleep 1; exit 3", 1, 1);
    let restarted = wait_for(90, "a replica_restarted event", || {
        s.events(&id)
            .into_iter()
            .find(|e| e["kind"] == "replica_restarted")
    });
    let message = restarted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(" on node node-1 exited with code 3; its agent restarted it"),
        "{restarted}"
    );
    assert_eq!(restarted["cluster"], "local", "the replica's own cluster");
    // It keeps serving (the agent starts it again each time) and says so in its output.
    wait_for(60, "a second start in the output", || {
        (s.logs(&id).iter().filter(|l| l["line"] == "start").count() >= 2).then_some(())
    });
    let job = s.job(&id);
    assert_eq!(job["state"], "running", "{job}");
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}
