//! Issue 6's end-to-end test: a server and three agents as real processes; a 4-rank gang run of
//! the example workload; one agent is SIGKILLed mid-run. The run must finish, from its last
//! checkpoint, with a final model identical to an uninterrupted run's, and its events must show
//! the lost node, the restart and (in its output) the step it resumed from.

mod agents_common;

use agents_common::*;
use serde_json::{Value, json};

fn ureq_text(url: &str, token: &str) -> String {
    let mut res = ureq::get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET");
    res.body_mut().read_to_string().expect("body")
}

#[test]
fn a_gang_run_survives_a_killed_agent_with_the_same_final_model() {
    let dir = scratch("agents-e2e");
    let fleet = fleet_file(&dir, 3, 2);
    let s = AgentServer::start(&dir, &fleet, "127.0.0.1:0");
    let mut agents: Vec<AgentProcess> = s.start_local_agents(&dir, 3);

    let job = s.submit_training(4, 60, 3);
    // Let it checkpoint a few times, then kill an agent holding ranks.
    wait_for(120, "the run to pass step 50", || {
        (s.step(&job) >= 5 * CHECKPOINT_EVERY).then_some(())
    });
    let victim = wait_for(30, "a node running the job", || {
        s.nodes().into_iter().find(|n| {
            n["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|x| x == &job))
        })
    });
    let host = victim["hostname"].as_str().expect("hostname").to_owned();
    let killed_at_step = s.step(&job);
    let a = agents
        .iter_mut()
        .find(|a| a.name == host)
        .expect("the victim's agent process");
    a.child.kill().expect("SIGKILL the agent");
    let _ = a.child.wait();

    let end = wait_final(&s, &job, 240);
    let events = s.events(&job);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(end["state"], "done", "{end}\nevents: {events:#?}");
    assert!(
        kinds.contains(&"node_lost"),
        "the loss is recorded: {kinds:?}"
    );
    let lost = events
        .iter()
        .find(|e| e["kind"] == "node_lost")
        .expect("node_lost");
    assert!(
        lost["message"].as_str().is_some_and(|m| m.contains(&host)),
        "{lost}"
    );
    let restarted_after_loss = events
        .iter()
        .skip_while(|e| e["kind"] != "node_lost")
        .any(|e| e["kind"] == "restarted");
    assert!(
        restarted_after_loss,
        "a restart follows the loss: {kinds:?}"
    );
    assert!(end["restarts"].as_i64().is_some_and(|r| r >= 1), "{end}");

    // The next attempt resumed from a checkpoint, not from scratch.
    let logs = s.logs(&job);
    let resumed: Vec<u64> = logs
        .iter()
        .filter(|l| l["attempt"].as_i64().is_some_and(|a| a >= 2))
        .filter_map(|l| {
            let line = l["line"].as_str()?;
            let rest = line.split("resuming from checkpoint step ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert!(
        resumed
            .iter()
            .any(|&step| step >= CHECKPOINT_EVERY && step <= killed_at_step + CHECKPOINT_EVERY),
        "a later attempt resumed from a checkpoint near step {killed_at_step}: {resumed:?}"
    );

    let metrics = ureq_text(&format!("{}/metrics", s.url()), &s.agent_token);
    assert!(
        metrics.contains("switchyard_agent_nodes{cluster=\"local\",state=\"lost\"} 1")
            && metrics.contains("switchyard_agent_nodes{cluster=\"local\",state=\"ready\"} 2"),
        "{metrics}"
    );

    let out = std::process::Command::new(BIN)
        .args(["nodes", "--url", s.url(), "--token", &s.agent_token])
        .output()
        .expect("switchyard nodes");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let victim_row = table
        .lines()
        .find(|l| l.contains(&host))
        .expect("the victim's row");
    assert!(victim_row.contains("lost"), "{table}");
    assert!(table.contains("3 nodes, 2 ready, 1 lost"), "{table}");
    let out = std::process::Command::new(BIN)
        .args(["nodes", "--url", s.url(), "--token", &s.tenant_token])
        .output()
        .expect("switchyard nodes");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a tenant token may not list nodes"
    );

    // Bit-identical to an uninterrupted run.
    assert_eq!(s.final_model(&job), reference_model(&dir, 4));
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_that_keeps_failing_ends_failed_after_its_retries_with_the_reason() {
    let dir = scratch("agents-fail");
    let fleet = fleet_file(&dir, 2, 2);
    let s = AgentServer::start(&dir, &fleet, "127.0.0.1:0");
    let _agents: Vec<AgentProcess> = s.start_local_agents(&dir, 2);
    // Rank 2 fails once ranks 0 and 1 of its attempt have started (each leaves a marker), not
    // at once: a gang fails as soon as a rank does, and a node that had not started its ranks
    // of the attempt by then never runs them.
    let marks = dir.join("started");
    std::fs::create_dir_all(&marks).expect("marker dir");
    let script = format!(
        "echo rank $RANK of $WORLD_SIZE attempt $SWITCHYARD_ATTEMPT; \
         touch '{m}'/$SWITCHYARD_ATTEMPT-$RANK; \
         if [ \"$RANK\" = 2 ]; then \
           i=0; while [ $i -lt 600 ] && ! {{ [ -e '{m}'/$SWITCHYARD_ATTEMPT-0 ] && [ -e '{m}'/$SWITCHYARD_ATTEMPT-1 ]; }}; do sleep 0.1; i=$((i+1)); done; \
           exit 3; \
         fi; sleep 30",
        m = marks.display()
    );
    let body = serde_json::json!({
        "kind": "batch",
        "accelerators": 3,
        "duration_s": 5.0,
        "max_retries": 1,
        "command": {"argv": ["sh", "-c", script]},
    });
    let id = s.submit(&body);
    let end = wait_final(&s, &id, 120);
    assert_eq!(end["state"], "failed", "{end}");
    let events = s.events(&id);
    let starts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "started")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(starts.len(), 2, "{events:#?}");
    assert!(
        starts[0].starts_with("attempt 1:") && starts[1].starts_with("attempt 2:"),
        "{starts:?}"
    );
    let failed = events
        .iter()
        .find(|e| e["kind"] == "failed")
        .and_then(|e| e["message"].as_str())
        .expect("a failed event");
    assert!(
        failed.contains("rank 2 exited with code 3") && failed.contains("max_retries = 1"),
        "{failed}"
    );
    // Every rank of both attempts ran with the launcher's environment, and their output is kept
    // (agents push what they read on their next sync, so the last lines may come just after
    // the job ended).
    let wanted: Vec<String> = (1..=2)
        .flat_map(|attempt| (0..3).map(move |rank| format!("rank {rank} of 3 attempt {attempt}")))
        .collect();
    // A deadline rather than a count of polls: under a loaded machine the agents' syncs slow
    // down, and a fixed number of polls once ran out before the last lines arrived.
    wait_for(60, &format!("the log lines {wanted:?}"), || {
        let lines: Vec<String> = s
            .logs(&id)
            .iter()
            .filter_map(|l| l["line"].as_str().map(str::to_owned))
            .collect();
        wanted.iter().all(|w| lines.contains(w)).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_the_scheduling_leader_serves_the_agents() {
    let dir = scratch("agents-follower");
    let fleet = fleet_file(&dir, 2, 2);
    let s = AgentServer::start(&dir, &fleet, "127.0.0.1:0");
    // A second replica on the same database follows; an agent sent to it must not be handed an
    // empty desired set (it would stop everything): it is told to come back.
    let follower = start_server(&s.server.db, &fleet, "127.0.0.1:0", &s.checkpoints);
    assert_eq!(follower.role(), "follower");
    let node = serde_json::json!({
        "hostname": "node-1", "cluster": "local", "cpus": 2, "memory_bytes": 1_000_000_000u64,
        "accelerators": [{"index": 0, "name": "declared"}, {"index": 1, "name": "declared"}],
        "protocol_version": 1, "agent_version": "test",
    });
    let (status, body) = call(
        "POST",
        &format!("{}/v1/agent/register", follower.url),
        Some(&s.agent_token),
        Some(&node.to_string()),
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not the scheduling leader")),
        "{body}"
    );
    let (status, body) = call(
        "POST",
        &format!("{}/v1/agent/register", s.url()),
        Some(&s.agent_token),
        Some(&node.to_string()),
    );
    assert_eq!(status, 200, "the leader registers it: {body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `switchyard nodes drain` takes a node out of service for new work while what runs on it
/// runs to its end, says so in `switchyard nodes`, and `resume` puts it back: a job waiting
/// for it then starts. Only admin tokens may drain.
#[test]
fn a_drained_node_runs_its_work_to_the_end_and_takes_nothing_new_until_resumed() {
    let dir = scratch("agents-drain");
    let fleet = fleet_file(&dir, 2, 2);
    let s = AgentServer::start(&dir, &fleet, "127.0.0.1:0");
    let _agents: Vec<AgentProcess> = s.start_local_agents(&dir, 2);
    let db = s.server.db.clone();
    let admin = server_common::token(&db, "ops", true);
    let nodes_cli = |args: &[&str], token: &str| {
        let out = std::process::Command::new(BIN)
            .arg("nodes")
            .args(args)
            .args(["--url", s.url(), "--token", token])
            .output()
            .expect("switchyard nodes");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let batch = |seconds: f64| {
        json!({
            "kind": "batch",
            "accelerators": 2,
            "duration_s": seconds,
            "command": {"argv": ["sleep", seconds.to_string()]},
        })
    };

    let first = s.submit(&batch(6.0));
    let busy = wait_for(30, "a node running the first job", || {
        s.nodes().into_iter().find(|n| {
            n["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|x| x == &first))
        })
    });
    let busy_host = busy["hostname"].as_str().expect("hostname").to_owned();
    let idle = s
        .nodes()
        .into_iter()
        .find(|n| n["hostname"] != busy_host.as_str())
        .expect("the other node");
    let idle_id = idle["id"].as_str().expect("id").to_owned();

    // A tenant may not drain; an unknown node is named.
    let (code, _, err) = nodes_cli(&["drain", &busy_host], &s.tenant_token);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("admin"), "{err}");
    let (code, _, err) = nodes_cli(&["drain", "no-such-host"], &admin);
    assert_ne!(code, Some(0));
    assert!(err.contains("no-such-host"), "{err}");
    // An empty name is refused before any request.
    let (code, _, err) = nodes_cli(&["drain", ""], &admin);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("<NODE>"), "{err}");

    // Drain both: the busy one by host name, the idle one by id.
    let (code, out, err) = nodes_cli(&["drain", &busy_host, "--reason", "DIMM swap"], &admin);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is drained: DIMM swap"), "{out}");
    let (code, out, err) = nodes_cli(&["drain", &idle_id], &admin);
    assert_eq!(code, Some(0), "{err}");
    // Without a reason none is made up.
    assert!(out.contains("is drained; what runs on it goes on"), "{out}");
    let (_, table, _) = nodes_cli(&[], &admin);
    assert!(table.contains("ready, drained: DIMM swap"), "{table}");
    assert!(
        table.contains("ready, drained\n") || table.contains("ready, drained "),
        "{table}"
    );
    let (_, listed, _) = nodes_cli(&["--json"], &admin);
    let listed: Value = serde_json::from_str(&listed).expect("nodes --json");
    let idle_drain = listed
        .as_array()
        .or_else(|| listed["nodes"].as_array())
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == idle_id.as_str()))
        .map(|n| n["drained"].clone())
        .expect("the idle node is listed");
    assert!(
        idle_drain["since_ms"].is_i64() && idle_drain.get("reason").is_none(),
        "{idle_drain}"
    );
    assert!(
        table.contains("2 nodes, 2 ready (2 drained: no new work), 0 lost"),
        "{table}"
    );
    // A reason that would move the cursor or hide text is refused; so is a body that is not
    // an object.
    let (code, _, err) = nodes_cli(&["drain", &busy_host, "--reason", "a\u{1b}[31mb"], &admin);
    assert_ne!(code, Some(0));
    assert!(err.contains("control or invisible character"), "{err}");
    let (status, body) = call(
        "POST",
        &format!("{}/v1/agent/nodes/{busy_host}/drain", s.url()),
        Some(&admin),
        Some("[\"in an array\"]"),
    );
    assert_eq!(status, 400, "{body}");
    // The agent routes take no query parameters: one given is refused, not ignored.
    for route in [
        format!("nodes/{idle_id}/resume?force=1"),
        "nodes?x=1".to_owned(),
    ] {
        let method = if route.starts_with("nodes?") {
            "GET"
        } else {
            "POST"
        };
        let (status, body) = call(
            method,
            &format!("{}/v1/agent/{route}", s.url()),
            Some(&admin),
            None,
        );
        assert_eq!(status, 400, "{route}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("this route takes none")),
            "{route}: {body}"
        );
    }

    // The first job runs to its end where it is; the second waits for a node in service.
    let second = s.submit(&batch(1.0));
    let end = wait_final(&s, &first, 60);
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(end["restarts"], 0, "{end}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(s.job(&second)["state"], "pending", "{}", s.job(&second));

    let (code, out, err) = nodes_cli(&["resume", &idle_id, "--json"], &admin);
    assert_eq!(code, Some(0), "{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["drained"], Value::Null, "{answer}");
    assert_eq!(answer["was_drained"], true, "{answer}");
    assert_eq!(answer["state"], "ready", "{answer}");
    let (code, out, _) = nodes_cli(&["resume", &idle_id], &admin);
    assert_eq!(code, Some(0));
    assert!(out.contains("was not drained; nothing changed"), "{out}");
    let end = wait_final(&s, &second, 60);
    assert_eq!(end["state"], "done", "{end}");
    let ran_on = s
        .events(&second)
        .into_iter()
        .find(|e| e["kind"] == "started")
        .and_then(|e| e["message"].as_str().map(str::to_owned))
        .expect("a started event");
    assert!(!ran_on.contains(&busy_host), "{ran_on}");
}
