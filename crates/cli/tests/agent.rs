//! `switchyard agent` without a server: discovery output and input errors; the exit recorder
//! (`switchyard record-exit`) it runs processes under.

use std::process::Command;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn discover_prints_the_node_it_would_register() {
    let out = switchyard()
        .args([
            "agent",
            "--discover",
            "--json",
            "--accelerators",
            "3",
            "--cluster",
            "lab",
        ])
        .output()
        .expect("run switchyard agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON node");
    assert_eq!(node["cluster"], "lab");
    assert_eq!(node["accelerators"].as_array().map(Vec::len), Some(3));
    assert!(node["cpus"].as_u64().is_some_and(|c| c >= 1));
    assert!(
        node["orphan_stop_ms"].as_u64().is_some_and(|ms| ms > 0),
        "what it registers, as docs/agent.md lists it: {node}"
    );

    let out = switchyard()
        .args(["agent", "--discover", "--accelerators", "2"])
        .output()
        .expect("run switchyard agent");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 × declared"), "{text}");
}

#[test]
fn bad_input_is_exit_code_2() {
    let out = switchyard()
        .args(["agent", "--server", "http://127.0.0.1:1"])
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .expect("run switchyard agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));

    let out = switchyard()
        .args(["agent", "--server", "https://x", "--token", "t"])
        .output()
        .expect("run switchyard agent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--server: server URL `https://x`"), "{err}");
    // From the environment, named by its variable.
    let out = switchyard()
        .args(["agent", "--token", "t"])
        .env("SWITCHYARD_URL", "https://x")
        .output()
        .expect("run switchyard agent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SWITCHYARD_URL: server URL `https://x`"),
        "{err}"
    );

    // A token file that is missing (exit 3) or whose first line is empty (exit 2).
    let empty = std::env::temp_dir().join(format!("sy-empty-token-{}", std::process::id()));
    std::fs::write(&empty, "\nsy_second_line\n").expect("write token file");
    for (file, code, needle) in [
        (
            "/nonexistent/token".as_ref(),
            3,
            "cannot read /nonexistent/token",
        ),
        (empty.as_path(), 2, "its first line is empty"),
    ] {
        let out = switchyard()
            .args(["agent", "--server", "http://127.0.0.1:1", "--token-file"])
            .arg(file)
            .output()
            .expect("run switchyard agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let _ = std::fs::remove_file(&empty);

    for (flags, needle) in [
        (
            &["--address", "http://x:1"][..],
            "must be a host name or IP address",
        ),
        (
            &["--accelerators", "4294967295"],
            "not a whole number from 0 to 1024",
        ),
    ] {
        let out = switchyard()
            .args(["agent", "--discover"])
            .args(flags)
            .output()
            .expect("run switchyard agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

/// A made-up --hostname is only a name: other nodes still reach the node at the machine's
/// host name, unless --address says otherwise.
#[test]
fn a_given_host_name_keeps_the_machines_address() {
    let discover = |extra: &[&str]| -> serde_json::Value {
        let out = switchyard()
            .args(["agent", "--discover", "--json", "--accelerators", "1"])
            .args(extra)
            .output()
            .expect("run switchyard agent --discover");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let machine = discover(&[]);
    let named = discover(&["--hostname", "made-up-name"]);
    assert_eq!(named["hostname"], "made-up-name");
    assert_eq!(named["address"], machine["hostname"]);
    let given = discover(&["--hostname", "made-up-name", "--address", "10.0.0.7"]);
    assert_eq!(given["address"], "10.0.0.7");
}

/// One agent at a time runs as a node on a machine: a second one under the same host name
/// (another state directory or none, another temporary directory, with --cluster or without)
/// is refused at once, naming the flag to change.
#[test]
fn a_second_agent_under_one_host_name_is_refused() {
    let dir = std::env::temp_dir().join(format!("sy-agent-twice-{}", std::process::id()));
    let host = format!("twice-{}", std::process::id());
    // Nothing listens there: the first agent keeps retrying, holding the node.
    let base = [
        "agent",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "t",
        "--accelerators",
        "1",
        "--cluster",
        "local",
        "--hostname",
        &host,
    ];
    let mut first = switchyard()
        .args(base)
        .arg("--state-dir")
        .arg(dir.join("a"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first agent");
    // Its banner comes once it holds the node.
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(first.stdout.take().expect("stdout")),
        &mut banner,
    )
    .expect("the first agent's banner");
    assert!(banner.starts_with("agent on"), "{banner}");
    let _first = Reap(first);
    // Also under another temporary directory (another TMPDIR, systemd's PrivateTmp=), where
    // a lock file of the first is not seen.
    let other_tmp = dir.join("other-tmp");
    std::fs::create_dir_all(&other_tmp).expect("another temporary directory");
    // Without --cluster too: the server would give it the node of that host name, the first's.
    let without_cluster: Vec<&str> = base
        .iter()
        .copied()
        .filter(|&a| a != "--cluster" && a != "local")
        .collect();
    for (tmp, args) in [
        (None, &base[..]),
        (Some(&other_tmp), &base[..]),
        (None, &without_cluster[..]),
    ] {
        let mut command = switchyard();
        if let Some(tmp) = tmp {
            command.env("TMPDIR", tmp);
        }
        let second = command
            .args(args)
            .arg("--state-dir")
            .arg(dir.join("b"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the second agent");
        let mut second = Reap(second);
        wait_until("the second agent exits", || {
            second.0.try_wait().ok().flatten().is_some()
        });
        let status = second.0.wait().expect("exited");
        let mut err = String::new();
        std::io::Read::read_to_string(second.0.stderr.as_mut().expect("stderr"), &mut err)
            .expect("stderr");
        assert_eq!(status.code(), Some(2), "TMPDIR {tmp:?}, {args:?}: {err}");
        assert!(
            err.contains("another agent on this machine already runs as host")
                && err.contains("--hostname"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stand-in for the server's agent endpoints (docs/agent.md), enough to drive one agent:
/// one assignment until `cancel` is set, then none; records statuses and log lines.
mod standin {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Seen {
        pub statuses: Vec<serde_json::Value>,
        pub lines: Vec<String>,
        pub registered: Option<serde_json::Value>,
        /// The Authorization header of the registration.
        pub authorization: Option<String>,
    }

    pub struct Server {
        pub url: String,
        pub cancel: Arc<AtomicBool>,
        pub seen: Arc<Mutex<Seen>>,
    }

    const ASSIGNMENT: &str = r#"{"assignments":[{"id":"job-1/attempt-1/rank-0","job_id":"job-1",
        "attempt":1,"rank":0,"world_size":1,"local_rank":0,"master_addr":"127.0.0.1",
        "master_port":29500,"command":["sh","-c","echo hello-from-$RANK-$SWITCHYARD_JOB_ID-token-${SWITCHYARD_TOKEN:-none}-uid-$(id -u)-reads-agent-$(cat /proc/$PPID/environ >/dev/null 2>&1 && echo yes || echo no); exec sleep 300"],
        "stop_grace_ms":2000}]}"#;

    pub fn start() -> Server {
        start_with(ASSIGNMENT.to_owned())
    }

    /// A stand-in that hands out `assignments` (an `{"assignments":[…]}` answer).
    pub fn start_with(assignments: String) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let cancel = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (c, s) = (cancel.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut len = 0usize;
                let mut authorization = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        } else if k.eq_ignore_ascii_case("authorization") {
                            authorization = Some(v.trim().to_owned());
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let json: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let (status, answer) = match (method.as_str(), path.as_str()) {
                    ("POST", "/v1/agent/register") => {
                        let mut seen = s.lock().expect("lock");
                        seen.registered = Some(json);
                        seen.authorization = authorization;
                        (
                            200,
                            r#"{"node_id":"n1","heartbeat_interval_ms":100}"#.to_string(),
                        )
                    }
                    ("POST", "/v1/agent/nodes/n1/heartbeat") => (204, String::new()),
                    ("GET", "/v1/agent/nodes/n1/assignments") => {
                        if c.load(Ordering::Relaxed) {
                            (200, r#"{"assignments":[]}"#.to_string())
                        } else {
                            (200, assignments.clone())
                        }
                    }
                    ("PUT", "/v1/agent/nodes/n1/status") => {
                        let mut seen = s.lock().expect("lock");
                        if let Some(list) = json["processes"].as_array() {
                            seen.statuses.extend(list.iter().cloned());
                        }
                        (204, String::new())
                    }
                    ("POST", "/v1/agent/nodes/n1/logs") => {
                        let mut seen = s.lock().expect("lock");
                        if let Some(list) = json["lines"].as_array() {
                            for l in list {
                                seen.lines
                                    .push(l["line"].as_str().unwrap_or_default().to_string());
                            }
                        }
                        (204, String::new())
                    }
                    _ => (
                        404,
                        r#"{"error":{"code":"not_found","message":"no such route"}}"#.to_string(),
                    ),
                };
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Server { url, cancel, seen }
    }
}

/// Kills the agent process if a test fails half-way.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_agent_binary_runs_and_stops_what_the_server_says_over_http() {
    use std::sync::atomic::Ordering;
    let server = standin::start();
    // The token comes from a file, as docs/agent.md advises (an argument is readable by every
    // user of the machine), and wins over the environment's; the ranks the agent starts
    // inherit neither.
    let token_file = std::env::temp_dir().join(format!("sy-agent-token-{}", std::process::id()));
    std::fs::write(&token_file, "sy_from_file\n").expect("write token file");
    let agent = switchyard()
        .args(["agent", "--server", &server.url, "--accelerators", "1"])
        .arg("--token-file")
        .arg(&token_file)
        .env("SWITCHYARD_TOKEN", "sy_from_env")
        .args(["--cluster", "local"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start switchyard agent");
    let mut agent = Reap(agent);
    let phase = |id: &str| {
        let seen = server.seen.lock().expect("lock");
        seen.statuses
            .iter()
            .rev()
            .find(|s| s["assignment_id"] == id)
            .map(|s| s["state"].clone())
    };
    // The rank runs as the agent's user, which may read the agent's environment.
    let hello = format!(
        "hello-from-0-job-1-token-none-uid-{}-reads-agent-yes",
        id_u(None)
    );
    wait_until("the rank's hello line", || {
        let seen = server.seen.lock().expect("lock");
        seen.lines.contains(&hello)
    });
    assert_eq!(
        phase("job-1/attempt-1/rank-0").map(|s| s["phase"].clone()),
        Some(serde_json::json!("running"))
    );
    {
        let seen = server.seen.lock().expect("lock");
        let node = seen.registered.as_ref().expect("registered");
        assert_eq!(node["cluster"], "local");
        assert_eq!(seen.authorization.as_deref(), Some("Bearer sy_from_file"));
        assert_eq!(node["accelerators"].as_array().map(Vec::len), Some(1));
    }
    // Cancelled on the server: the agent stops the process and reports it.
    server.cancel.store(true, Ordering::Relaxed);
    wait_until("the stop to be reported", || {
        phase("job-1/attempt-1/rank-0")
            .is_some_and(|s| s["phase"] == "exited" && s["stopped_by_agent"] == true)
    });
    // SIGTERM: the agent exits cleanly.
    assert_eq!(terminate(&mut agent), Some(0));
}

/// Sends the agent SIGTERM and waits for it to exit: its exit code.
fn terminate(agent: &mut Reap) -> Option<i32> {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let mut status = None;
    wait_until("the agent to exit", || {
        status = agent.0.try_wait().expect("try_wait");
        status.is_some()
    });
    status.and_then(|s| s.code())
}

/// `id -u [user]`.
fn id_u(user: Option<&str>) -> String {
    let out = std::process::Command::new("id")
        .arg("-u")
        .args(user)
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// With `--run-as`, an agent running as root starts ranks as that user — with or without a
/// state directory (under the exit recorder, which stays root to write the end) — and they
/// cannot read the agent's environment, where its token may be.
#[test]
fn a_root_agent_starts_ranks_as_the_run_as_user() {
    use std::sync::atomic::Ordering;
    if id_u(None) != "0" {
        eprintln!("SKIPPED: --run-as needs the agent to run as root");
        return;
    }
    let nobody = id_u(Some("nobody"));
    if nobody.is_empty() {
        eprintln!("SKIPPED: no user `nobody` on this machine");
        return;
    }
    let state = std::env::temp_dir().join(format!("sy-run-as-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    for state_dir in [None, Some(&state)] {
        let server = standin::start();
        let mut agent = switchyard();
        agent
            .args(["agent", "--server", &server.url, "--accelerators", "1"])
            .args(["--cluster", "local", "--run-as", "nobody"])
            .env("SWITCHYARD_TOKEN", "sy_secret")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(dir) = state_dir {
            agent.arg("--state-dir").arg(dir);
        }
        let mut agent = Reap(agent.spawn().expect("start switchyard agent"));
        let hello = format!("hello-from-0-job-1-token-none-uid-{nobody}-reads-agent-no");
        wait_until("the rank's hello line as nobody", || {
            let seen = server.seen.lock().expect("lock");
            seen.lines.contains(&hello)
        });
        // Stopped as any other: cancelled, reported, the agent ends cleanly.
        server.cancel.store(true, Ordering::Relaxed);
        wait_until("the stop to be reported", || {
            let seen = server.seen.lock().expect("lock");
            seen.statuses.iter().any(|s| {
                s["assignment_id"] == "job-1/attempt-1/rank-0"
                    && s["state"]["phase"] == "exited"
                    && s["state"]["stopped_by_agent"] == true
            })
        });
        assert_eq!(terminate(&mut agent), Some(0), "{state_dir:?}");
    }
    // A working directory the user may not enter fails the start, naming the directory,
    // with or without the recorder (which, as root, could enter it).
    let private = std::env::temp_dir().join(format!("sy-run-as-private-{}", std::process::id()));
    std::fs::create_dir_all(&private).expect("private dir");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let fresh_state = state.with_extension("fresh");
    for state_dir in [None, Some(&fresh_state)] {
        let server = standin::start_with(format!(
            r#"{{"assignments":[{{"id":"job-1/attempt-1/rank-0","job_id":"job-1",
            "attempt":1,"rank":0,"world_size":1,"local_rank":0,"master_addr":"127.0.0.1",
            "master_port":29500,"command":["sh","-c","pwd; ls ."],"working_dir":"{}",
            "stop_grace_ms":2000}}]}}"#,
            private.display()
        ));
        let mut agent = switchyard();
        agent
            .args(["agent", "--server", &server.url, "--accelerators", "1"])
            .args(["--cluster", "local", "--run-as", "nobody", "--token", "t"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(dir) = state_dir {
            agent.arg("--state-dir").arg(dir);
        }
        let _agent = Reap(agent.spawn().expect("start switchyard agent"));
        wait_until("the start to fail, naming the directory", || {
            let seen = server.seen.lock().expect("lock");
            seen.statuses.iter().any(|s| {
                s["state"]["phase"] == "failed_to_start"
                    && s["state"]["error"].as_str().is_some_and(|e| {
                        e.contains(&format!(
                            "which must be able to enter the working directory {}",
                            private.display()
                        ))
                    })
            })
        });
        assert!(
            server.seen.lock().expect("lock").lines.is_empty(),
            "{state_dir:?}: nothing ran in the directory: {:?}",
            server.seen.lock().expect("lock").lines
        );
    }
    let _ = std::fs::remove_dir_all(&private);
    let _ = std::fs::remove_dir_all(&fresh_state);
    // What the agent keeps in its state directory is its own: jobs under --run-as cannot
    // read the records (assignments' env) or the logs.
    for sub in ["", "logs", "exits"] {
        let mode = std::fs::metadata(state.join(sub))
            .expect("state dir")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "{sub}"
        );
    }
    let records = std::fs::metadata(state.join("processes.json")).expect("records");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&records.permissions()) & 0o077,
        0
    );
    let _ = std::fs::remove_dir_all(&state);
    // Refused: root itself, and a user that does not exist.
    for (user, says) in [
        ("root", "that is root"),
        ("no-such-user-here", "no such user on this machine"),
    ] {
        let out = switchyard()
            .args(["agent", "--server", "http://127.0.0.1:1", "--token", "t"])
            .args(["--run-as", user])
            .output()
            .expect("run switchyard agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{user}: {err}");
        assert!(err.contains(says), "{user}: {err}");
    }
}

/// The recorder tells its caller on standard input that the program started, survives the
/// signals sent to its process group — a stop's SIGTERM as much as SIGUSR1 or SIGPWR, which the
/// program may handle — and records and returns the program's own end.
#[test]
fn the_exit_recorder_outlives_group_signals_and_records_the_programs_end() {
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;
    let dir = std::env::temp_dir().join(format!("switchyard-record-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let status = dir.join("end.json");
    let started = dir.join("started");
    let script = format!(
        "trap 'echo got TERM; exit 3' TERM; trap '' USR1 PWR HUP; touch '{}'; \
         for i in $(seq 600); do sleep 0.05; done; exit 9",
        started.display()
    );
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut recorder = switchyard()
        .args(["record-exit", "--status"])
        .arg(&status)
        .args(["--", "sh", "-c", &script])
        .stdin(writer)
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start the recorder");
    let mut line = String::new();
    std::io::BufReader::new(reader)
        .read_line(&mut line)
        .expect("the handshake");
    assert_eq!(line, "started\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the program never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let group = nix::unistd::Pid::from_raw(recorder.id() as i32);
    for sig in [
        nix::sys::signal::Signal::SIGUSR1,
        nix::sys::signal::Signal::SIGPWR,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        nix::sys::signal::killpg(group, sig).expect("signal the group");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ended = recorder.wait().expect("the recorder ends");
    assert_eq!(ended.code(), Some(3), "{ended:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(recorder.stdout.as_mut().expect("stdout"), &mut out)
        .expect("stdout");
    assert_eq!(out, "got TERM\n", "the program got the group's SIGTERM");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status).expect("the record")).expect("JSON");
    assert_eq!(record, serde_json::json!({"code": 3, "signal": null}));

    // A program that cannot start: said on the handshake, exit 127, no record.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let missing = dir.join("missing.json");
    let out = switchyard()
        .args(["record-exit", "--status"])
        .arg(&missing)
        .args(["--", "/no/such/program"])
        .stdin(writer)
        .output()
        .expect("run the recorder");
    assert_eq!(out.status.code(), Some(127));
    let mut line = String::new();
    std::io::BufReader::new(reader)
        .read_line(&mut line)
        .expect("the handshake");
    assert!(
        line.starts_with("not-started /no/such/program: No such file"),
        "{line}"
    );
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
