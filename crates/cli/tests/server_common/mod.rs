//! Test harness shared by the server tests: real `switchyard server` processes on loopback
//! ports, against a fresh SQLite file or a fresh PostgreSQL database.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A fresh database URL of the given kind; `None` (after a SKIPPED line) when PostgreSQL is
/// not configured.
pub fn fresh_db(kind: &str) -> Option<String> {
    match kind {
        "sqlite" => Some(switchyard_store::testing::fresh_sqlite_url().expect("temp dir")),
        _ => {
            let base = switchyard_store::testing::postgres_url()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            Some(
                rt.block_on(switchyard_store::testing::fresh_postgres_database(&base))
                    .expect("create a PostgreSQL database"),
            )
        }
    }
}

/// A running server process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub url: String,
    pub db: String,
}

impl Server {
    pub fn start(db: &str) -> Server {
        Server::start_with(db, &[])
    }

    pub fn start_with(db: &str, extra: &[&str]) -> Server {
        Server::start_on(db, "127.0.0.1:0", extra)
    }

    /// A server listening on `listen` (e.g. `0.0.0.0:0`).
    pub fn start_on(db: &str, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["server", "--db", db, "--listen", listen])
            .args(extra)
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints `listening on URL` within a minute");
        let url = line
            .strip_prefix("listening on ")
            .expect("`listening on URL`")
            .to_owned();
        Server {
            child,
            url,
            db: db.to_owned(),
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The role from /readyz: "leader" or "follower".
    pub fn role(&self) -> String {
        let (status, body) = call("GET", &format!("{}/readyz", self.url), None, None);
        assert_eq!(status, 200, "{body}");
        body["role"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a token with the CLI.
pub fn token(db: &str, tenant: &str, admin: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["token", "create", "--db", db, "--tenant", tenant]);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("run token create");
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One HTTP call: (status, JSON body or the text as a JSON string).
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    try_call(method, url, token, body).expect("the server answers")
}

/// Like [`call`], but a transport error is an `Err`.
pub fn try_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, Value), ureq::Error> {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let res = match method {
        "GET" => {
            let mut r = a.get(url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = a.post(url).header("Content-Type", "application/json");
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            match body {
                Some(b) => r.send(b),
                None => r.send_empty(),
            }
        }
    };
    let mut res = res?;
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string()?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// Submits `body` (a JSON submission) through `url`, which must accept it; the job's id.
pub fn submit_job(url: &str, token: &str, body: &Value) -> String {
    let (status, job) = call(
        "POST",
        &format!("{url}/v1/jobs"),
        Some(token),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().expect("id").to_owned()
}

/// Polls `f` until it returns `Some`, at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every job the token sees, all pages.
pub fn all_jobs(url: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut u = format!("{url}/v1/jobs?limit=1000");
        if let Some(a) = &after {
            u.push_str(&format!("&after={a}"));
        }
        let (status, body) = call("GET", &u, Some(token), None);
        assert_eq!(status, 200, "{body}");
        out.extend(body["jobs"].as_array().expect("jobs").iter().cloned());
        match body["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return out,
        }
    }
}

pub fn job_state(url: &str, token: &str, id: &str) -> String {
    let (status, body) = call("GET", &format!("{url}/v1/jobs/{id}"), Some(token), None);
    assert_eq!(status, 200, "{body}");
    body["state"].as_str().unwrap_or_default().to_owned()
}
