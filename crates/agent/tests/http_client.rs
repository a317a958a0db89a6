//! The HTTP control-plane client against a small stub server (std::net, one request per
//! connection): paths, methods, auth header, bodies, and how error answers map.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_agent::control::MIN_REQUEST_TIME;
use switchyard_agent::hardware::declared;
use switchyard_agent::http::HttpControlPlane;
use switchyard_agent::protocol::{LogLine, NodeInfo, ProcessState, ProcessStatus, Stream};
use switchyard_agent::{ControlPlane, ControlPlaneError};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    auth: String,
    boot: String,
    body: String,
}

/// Answers each request with the next canned (status, body); records what it saw.
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    fn start(answers: Vec<(u16, &'static str)>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut answers: VecDeque<_> = answers.into();
        let thread = std::thread::spawn(move || {
            while let Some((status, body)) = answers.pop_front() {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let (mut auth, mut boot, mut len) = (String::new(), String::new(), 0usize);
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).expect("header");
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((h, ""));
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_string(),
                        "switchyard-boot-id" => boot = v.trim().to_string(),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
                let mut buf = vec![0u8; len];
                reader.read_exact(&mut buf).expect("body");
                log.lock().expect("lock").push(Seen {
                    method,
                    path,
                    auth,
                    boot,
                    body: String::from_utf8_lossy(&buf).into_owned(),
                });
                let reason = if status < 300 { "OK" } else { "Error" };
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Stub {
            url,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&mut self) -> Vec<Seen> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().expect("lock").clone()
    }
}

fn node() -> NodeInfo {
    NodeInfo {
        hostname: "h1".into(),
        cluster: Some("local".into()),
        cpus: 4,
        memory_bytes: 1 << 30,
        accelerators: declared(2),
        address: None,
        orphan_stop_ms: None,
        protocol_version: 1,
        agent_version: "0.1.0".into(),
    }
}

fn client(stub: &Stub) -> HttpControlPlane {
    HttpControlPlane::new(&stub.url, "secret", Duration::from_secs(30))
        .expect("client")
        .with_boot_id(Some("boot-7".into()))
}

#[test]
fn every_call_goes_where_the_protocol_says() {
    let assignment = r#"{"assignments":[{"id":"j/attempt-1/rank-0","job_id":"j","attempt":1,
        "rank":0,"world_size":1,"local_rank":0,"master_addr":"127.0.0.1","master_port":29500,
        "command":["true"]}]}"#;
    let mut stub = Stub::start(vec![
        (200, r#"{"node_id":"n/1","heartbeat_interval_ms":1000}"#),
        (204, ""),
        (200, assignment),
        (204, ""),
        (204, ""),
    ]);
    let cp = client(&stub);
    let reg = cp.register(&node()).expect("register");
    assert_eq!(reg.node_id, "n/1");
    cp.heartbeat(&reg.node_id).expect("heartbeat");
    let desired = cp
        .fetch_assignments(&reg.node_id)
        .expect("assignments")
        .assignments;
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].master_port, 29500);
    let status = ProcessStatus {
        assignment_id: "j/attempt-1/rank-0".into(),
        state: ProcessState::Running { pid: 42 },
        restarts: 0,
        last_exit: None,
    };
    cp.report_status(&reg.node_id, &[status]).expect("status");
    let line = LogLine {
        assignment_id: "j/attempt-1/rank-0".into(),
        stream: Stream::Stdout,
        seq: 0,
        at_ms: 1,
        line: "hello".into(),
    };
    cp.push_logs(&reg.node_id, &[line]).expect("logs");

    let seen = stub.seen();
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("POST", "/v1/agent/register"),
            ("POST", "/v1/agent/nodes/n%2F1/heartbeat"),
            ("GET", "/v1/agent/nodes/n%2F1/assignments"),
            ("PUT", "/v1/agent/nodes/n%2F1/status"),
            ("POST", "/v1/agent/nodes/n%2F1/logs"),
        ]
    );
    assert!(seen.iter().all(|s| s.auth == "Bearer secret"));
    assert!(seen.iter().all(|s| s.boot == "boot-7"), "{seen:?}");
    let registered: NodeInfo = serde_json::from_str(&seen[0].body).expect("node body");
    assert_eq!(registered, node());
    let status: serde_json::Value = serde_json::from_str(&seen[3].body).expect("status body");
    assert_eq!(status["processes"][0]["state"]["phase"], "running");
    let logs: serde_json::Value = serde_json::from_str(&seen[4].body).expect("logs body");
    assert_eq!(logs["lines"][0]["line"], "hello");
}

#[test]
fn error_answers_map_to_what_the_agent_does_next() {
    let mut stub = Stub::start(vec![
        (
            404,
            r#"{"error":{"code":"unknown_node","message":"no node n1"}}"#,
        ),
        (
            401,
            r#"{"error":{"code":"unauthorized","message":"bad token"}}"#,
        ),
        (
            503,
            r#"{"error":{"code":"unavailable","message":"not ready"}}"#,
        ),
        (200, r#"{"assignments":[],"surprise":1}"#),
        (302, ""),
    ]);
    let cp = client(&stub);
    assert_eq!(
        cp.heartbeat("n1"),
        Err(ControlPlaneError::UnknownNode("n1".into()))
    );
    assert!(matches!(
        cp.heartbeat("n1"),
        Err(ControlPlaneError::Rejected { status: 401, ref message }) if message == "bad token"
    ));
    assert!(matches!(
        cp.heartbeat("n1"),
        Err(ControlPlaneError::Unreachable(_))
    ));
    assert!(matches!(
        cp.fetch_assignments("n1"),
        Err(ControlPlaneError::Rejected { status: 200, .. })
    ));
    // A redirect is reported, not followed (the token would not go with it).
    assert!(matches!(
        cp.heartbeat("n1"),
        Err(ControlPlaneError::Rejected { status: 302, ref message })
            if message.contains("was redirected") && message.contains("--server")
    ));
    stub.seen();
    // Nobody listening: unreachable, not a panic.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let gone = HttpControlPlane::new(
        &format!("http://127.0.0.1:{port}"),
        "t",
        Duration::from_secs(5),
    )
    .expect("client");
    assert!(matches!(
        gone.heartbeat("n1"),
        Err(ControlPlaneError::Unreachable(_))
    ));
    assert!(HttpControlPlane::new("https://x", "t", Duration::from_secs(1)).is_err());
    assert!(
        HttpControlPlane::new("http://127.0.0.1:7070/v1", "t", Duration::from_secs(1)).is_err()
    );
    for (url, why) in [
        ("http://", "names no host"),
        ("http://127.0.0.1:0", "not a TCP port"),
        ("http://127.0.0.1:99999", "not a TCP port"),
        // The agent's paths go under it: /v1/v1/agent/… would be retried for ever.
        ("http://127.0.0.1:7070/v1/", "ends in /v1"),
        ("http://127.0.0.1:7070/V1", "ends in /v1"),
        (
            "http://127.0.0.1:7070/v1/jobs",
            "has an API path (/v1/…) in it",
        ),
        ("https://127.0.0.1:7070", "must start with http://"),
    ] {
        let err =
            switchyard_agent::http::check_server_url(url.trim_end_matches('/')).expect_err(url);
        assert!(err.contains(why), "{url}: {err}");
    }
    switchyard_agent::http::check_server_url("http://127.0.0.1:7070").expect("a good URL");
    switchyard_agent::http::check_server_url("http://v1").expect("a host named v1");
    // A scheme is case-insensitive: the client speaks to `HTTP://…` as to `http://…`.
    assert_eq!(
        switchyard_agent::http::server_base("HTTP://127.0.0.1:7070/").as_deref(),
        Ok("http://127.0.0.1:7070")
    );
    // A proxy's path prefix is kept.
    assert_eq!(
        switchyard_agent::http::server_base("http://proxy/switchyard").as_deref(),
        Ok("http://proxy/switchyard")
    );
    // Three bytes from the end fall inside the `é`: the check reads bytes, not a str slice.
    let _ = switchyard_agent::http::check_server_url("http://127.0.0.1:7070/éab");
}

/// A call to a server that never answers gives up by the deadline the agent set (at least
/// [`MIN_REQUEST_TIME`] after it starts) instead of its own timeout; a later deadline does not
/// lengthen its own timeout.
#[test]
fn a_call_gives_up_by_the_deadline_it_is_given() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // Accepts every connection and never answers.
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(2) {
            open.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let client = HttpControlPlane::new(&url, "secret", Duration::from_secs(60)).expect("client");
    client.give_up_by(Some(Instant::now() + Duration::from_millis(100)));
    let asked = Instant::now();
    assert!(matches!(
        client.heartbeat("n1"),
        Err(ControlPlaneError::Unreachable(_))
    ));
    let took = asked.elapsed();
    assert!(
        took >= MIN_REQUEST_TIME && took < Duration::from_secs(30),
        "a call past its deadline gets {MIN_REQUEST_TIME:?}, not its 60 s timeout; it took {took:?}"
    );
    let short = HttpControlPlane::new(&url, "secret", Duration::from_secs(1)).expect("client");
    short.give_up_by(Some(Instant::now() + Duration::from_secs(60)));
    let asked = Instant::now();
    assert!(short.heartbeat("n1").is_err());
    assert!(
        asked.elapsed() < MIN_REQUEST_TIME,
        "a deadline later than the client's own timeout does not lengthen it"
    );
    drop(held);
}
