//! Job logs end to end: lines stored as the agent endpoints store them (straight into the
//! server's database), read back over `GET /v1/jobs/{id}/logs` and with `switchyard logs`,
//! against SQLite and PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`). Also agent tokens.

mod server_common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_common::*;
use switchyard_store::{LogLine, StoreWrite as _};

/// Stores lines in the server's database, as the agent endpoints do; returns how many were new.
fn append(db: &str, lines: &[LogLine]) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = switchyard_store::connect(db).await.expect("open the store");
        store.append_logs(lines).await.expect("append logs")
    })
}

fn line(job: &str, attempt: i64, rank: i64, stream: &str, seq: i64, text: &str) -> LogLine {
    LogLine {
        job_id: job.into(),
        attempt,
        rank,
        assignment_id: format!("{job}/attempt-{attempt}/rank-{rank}"),
        stream: stream.into(),
        seq,
        at_ms: 1_764_477_000_000 + seq,
        line: text.into(),
    }
}

fn agent_token(db: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--db", db, "--agent"])
        .output()
        .expect("run token create --agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A gang of two ranks, restarted once: what `gang` lines a two-rank job writes.
fn two_rank_lines(job: &str) -> Vec<LogLine> {
    vec![
        line(job, 1, 0, "stdout", 0, "rank 0 up"),
        line(job, 1, 1, "stdout", 0, "rank 1 up"),
        line(job, 1, 0, "stderr", 0, "warning: slow link"),
        line(job, 1, 0, "stdout", 1, "step 10"),
        line(job, 2, 0, "stdout", 0, "resuming from checkpoint step 10"),
        line(job, 2, 1, "stdout", 0, "rank 1 up again"),
    ]
}

fn logs_api(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "research", false);
    let other = token(&db, "serving", false);
    let admin = token(&db, "ops", true);
    let agent = agent_token(&db);
    let long = json!({"kind": "batch", "accelerators": 2, "duration_s": 3600.0});
    let id = submit_job(&s.url, &t, &long);
    let quiet = submit_job(&s.url, &t, &long);
    let theirs = submit_job(&s.url, &other, &long);
    let lines = two_rank_lines(&id);
    assert_eq!(append(&db, &lines), 6);
    assert_eq!(
        append(&db, &lines),
        0,
        "a retried batch stores nothing twice"
    );
    append(&db, &[line(&theirs, 1, 0, "stdout", 0, "not yours")]);

    let get = |path: &str, token: &str| call("GET", &format!("{}{path}", s.url), Some(token), None);
    let texts = |body: &Value| -> Vec<String> {
        body["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["line"].as_str().expect("text").to_owned())
            .collect()
    };
    let (status, all) = get(&format!("/v1/jobs/{id}/logs"), &t);
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["job"], id.as_str());
    assert_eq!(
        texts(&all),
        lines.iter().map(|l| l.line.clone()).collect::<Vec<_>>()
    );
    assert!(all.get("next").is_none(), "no next page: {all}");
    let first = &all["lines"][2];
    assert_eq!(
        (
            &first["attempt"],
            &first["rank"],
            &first["stream"],
            &first["at_ms"]
        ),
        (
            &json!(1),
            &json!(0),
            &json!("stderr"),
            &json!(1_764_477_000_000_i64)
        )
    );
    let cursors: Vec<i64> = all["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["cursor"].as_i64().expect("cursor"))
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let fields: Vec<&String> = all["lines"][0]
        .as_object()
        .expect("object")
        .keys()
        .collect();
    assert_eq!(
        fields,
        ["at_ms", "attempt", "cursor", "line", "rank", "stream"],
        "exactly the documented fields"
    );

    // Filters and pages.
    let (_, r1) = get(&format!("/v1/jobs/{id}/logs?rank=1"), &t);
    assert_eq!(texts(&r1), ["rank 1 up", "rank 1 up again"]);
    let (_, a2) = get(&format!("/v1/jobs/{id}/logs?attempt=2&rank=0"), &t);
    assert_eq!(texts(&a2), ["resuming from checkpoint step 10"]);
    let (_, p1) = get(&format!("/v1/jobs/{id}/logs?limit=4"), &t);
    assert_eq!(texts(&p1).len(), 4);
    let next = p1["next"].as_i64().expect("a full page has next");
    assert_eq!(next, cursors[3]);
    let (_, p2) = get(&format!("/v1/jobs/{id}/logs?limit=4&after={next}"), &t);
    assert_eq!(
        texts(&p2),
        ["resuming from checkpoint step 10", "rank 1 up again"]
    );
    assert!(p2.get("next").is_none(), "{p2}");
    let (status, none) = get(&format!("/v1/jobs/{quiet}/logs"), &t);
    assert_eq!((status, texts(&none).len()), (200, 0), "{none}");

    // Tenants, admins, agents.
    let (status, body) = get(&format!("/v1/jobs/{id}/logs"), &other);
    assert_eq!(status, 404, "another tenant's job: {body}");
    assert!(!body.to_string().contains("rank 0 up"), "{body}");
    let (status, body) = get(&format!("/v1/jobs/{theirs}/logs"), &t);
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&format!("/v1/jobs/{id}/logs"), &admin);
    assert_eq!((status, texts(&body).len()), (200, 6), "{body}");
    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}/logs")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", "/v1/jobs".to_owned()),
        ("POST", "/v1/jobs".to_owned()),
        ("POST", format!("/v1/jobs/{id}/cancel")),
        ("GET", "/v1/tenants".to_owned()),
    ] {
        let (status, body) = call(
            method,
            &format!("{}{path}", s.url),
            Some(&agent),
            Some(&long.to_string()),
        );
        assert_eq!(status, 403, "{method} {path} with an agent token: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("agent")),
            "{body}"
        );
    }
    assert_eq!(
        job_state(&s.url, &t, &id),
        "running",
        "the agent token cancelled nothing"
    );

    // Bad requests.
    for q in [
        "rank=-1",
        "rank=x",
        "attempt=0",
        "after=-5",
        "after=soon",
        "limit=0",
        "limit=1001",
        "colour=red",
    ] {
        let (status, body) = get(&format!("/v1/jobs/{id}/logs?{q}"), &t);
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{q}: {body}");
    }
    let (status, _) = get("/v1/jobs/j-0000000000000000/logs", &t);
    assert_eq!(status, 404);
}

fn logs_verb(db: String) {
    let s = Server::start(&db);
    let t = token(&db, "research", false);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("logs")
            .args(args)
            .env("SWITCHYARD_URL", &s.url)
            .env("SWITCHYARD_TOKEN", &t)
            .output()
            .expect("run the cli");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let gang = submit_job(
        &s.url,
        &t,
        &json!({"kind": "batch", "accelerators": 2, "duration_s": 3600.0}),
    );
    append(&db, &two_rank_lines(&gang));
    let (code, out, err) = run(&[&gang]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "[rank 0] rank 0 up\n\
         [rank 1] rank 1 up\n\
         [rank 0 stderr] warning: slow link\n\
         [rank 0] step 10\n\
         --- attempt 2 ---\n\
         [rank 0] resuming from checkpoint step 10\n\
         [rank 1] rank 1 up again\n"
    );
    let (code, out, _) = run(&[&gang, "--rank", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "rank 0 up\n[stderr] warning: slow link\nstep 10\n--- attempt 2 ---\n\
         resuming from checkpoint step 10\n"
    );
    let (code, out, _) = run(&[&gang, "--attempt", "2"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "[rank 0] resuming from checkpoint step 10\n[rank 1] rank 1 up again\n"
    );
    let (code, out, _) = run(&[&gang, "--json", "--rank", "1"]);
    assert_eq!(code, Some(0));
    let parsed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object a line"))
        .collect();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["line"], "rank 1 up again");
    assert_eq!(parsed[1]["attempt"], 2);

    // One rank: the lines as they are.
    let single = submit_job(
        &s.url,
        &t,
        &json!({"kind": "batch", "accelerators": 1, "duration_s": 3600.0}),
    );
    append(
        &db,
        &[
            line(&single, 1, 0, "stdout", 0, "hello"),
            line(&single, 1, 0, "stderr", 0, "oops"),
            line(&single, 1, 0, "stdout", 1, "  indented [kept]  "),
        ],
    );
    let (code, out, _) = run(&[&single]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "hello\n[stderr] oops\n  indented [kept]  \n");

    // More lines than one page.
    let many: Vec<LogLine> = (0..2500)
        .map(|i| line(&single, 1, 0, "stdout", 10 + i, &format!("line {i}")))
        .collect();
    append(&db, &many);
    let (code, out, _) = run(&[&single]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 2503);
    assert_eq!(out.lines().last(), Some("line 2499"));

    // --follow prints lines as they come and ends once the job has.
    let mut child = Command::new(BIN)
        .args(["logs", &gang, "--follow", "--rank", "1"])
        .env("SWITCHYARD_URL", &s.url)
        .env("SWITCHYARD_TOKEN", &t)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logs --follow");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "--follow keeps running while the job runs"
    );
    append(
        &db,
        &[
            line(&gang, 2, 1, "stdout", 1, "step 20"),
            line(&gang, 2, 0, "stdout", 1, "rank 0 is not shown"),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = call(
        "POST",
        &format!("{}/v1/jobs/{gang}/cancel", s.url),
        Some(&t),
        None,
    );
    assert_eq!(status, 202, "{body}");
    // A line written before the end may reach the server after it (a node's next sync, a
    // Slurm file read a slice at a time): --follow still prints it.
    let ended = Instant::now() + Duration::from_secs(30);
    while !matches!(
        call("GET", &format!("{}/v1/jobs/{gang}", s.url), Some(&t), None).1["state"].as_str(),
        Some("cancelled")
    ) {
        assert!(Instant::now() < ended, "the job was not cancelled");
        std::thread::sleep(Duration::from_millis(50));
    }
    // About one of --follow's polls later, so that it has likely seen the end too, and well
    // inside the 5 s it keeps polling after the end (opening the store to append takes time
    // on a loaded machine).
    std::thread::sleep(Duration::from_millis(1200));
    append(
        &db,
        &[line(&gang, 2, 1, "stdout", 2, "written before the end")],
    );
    let end = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status.code();
        }
        assert!(
            Instant::now() < end,
            "--follow did not end after the job was cancelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "rank 1 up\n--- attempt 2 ---\nrank 1 up again\nstep 20\nwritten before the end\n"
    );
    assert_eq!(job_state(&s.url, &t, &gang), "cancelled");

    // Errors: unknown job, no token.
    let (code, _, err) = run(&["j-0000000000000000"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no job"), "{err}");
    let (code, _, err) = run(&[&gang, "--attempt", "0"]);
    assert_eq!(code, Some(2), "{err}");
    let out = Command::new(BIN)
        .args(["logs", &gang, "--url", &s.url])
        .env_remove("SWITCHYARD_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $( #[test] fn $name() { super::$name(super::fresh_db("sqlite").expect("sqlite")); } )* }
        mod postgres { $( #[test] fn $name() { if let Some(db) = super::fresh_db("postgres") { super::$name(db); } } )* }
    };
}

both!(logs_api, logs_verb);

#[test]
fn token_create_kinds() {
    let db = fresh_db("sqlite").expect("sqlite");
    let tok = agent_token(&db);
    assert!(tok.starts_with("sy_") && tok.len() == 67, "{tok}");
    for bad in [
        &["--agent", "--tenant", "research"][..],
        &["--agent", "--admin"],
        &[],
    ] {
        let out = Command::new(BIN)
            .args(["token", "create", "--db", &db])
            .args(bad)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--tenant") || err.contains("--agent"),
            "{bad:?}: {err}"
        );
    }
    for verb in [&["logs"][..], &["token", "create"]] {
        let out = Command::new(BIN)
            .args(verb)
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success(), "{verb:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "{verb:?} --help has no example");
    }
    let out = Command::new(BIN)
        .args(["token", "create", "--help"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--agent"));
}
