//! Through the whole control plane: a server (store, scheduling leader, HTTP API) whose fleet
//! has one cluster with `backend = "slurm"` on this machine's Slurm. Jobs submitted to the API
//! run as Slurm jobs, finish, and are cancelled through the API. Skips (saying why) where Slurm
//! is not usable, unless SWITCHYARD_REQUIRE_SLURM=1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_core::fleet::Fleet;
use switchyard_server::{http, leader, metrics};
use switchyard_slurm::parse::{JobState, Tag};
use switchyard_slurm::{CliClient, Options, SlurmBackend, SlurmClient};
use switchyard_store::StoreWrite;
use tokio::sync::{Notify, watch};

fn slurm_usable() -> bool {
    let required = std::env::var("SWITCHYARD_REQUIRE_SLURM").is_ok_and(|v| v == "1");
    match CliClient::default().nodes(None) {
        Ok(n) if n.iter().any(|n| n.state.usable()) => true,
        other => {
            let why = match other {
                Ok(_) => "no usable node".to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                !required,
                "SWITCHYARD_REQUIRE_SLURM=1 but Slurm is not usable: {why}"
            );
            eprintln!(
                "SKIPPED: no usable Slurm on this machine ({why}); run crates/slurm/scripts/start-local-slurm.sh"
            );
            false
        }
    }
}

/// A fleet of one Slurm cluster: this machine's node, 2 "accelerators" (CPUs) on it.
pub fn local_fleet() -> Fleet {
    let text = r#"
name = "local-slurm"
[[providers]]
name = "here"
kind = "on_premises"
[[providers.contracts]]
accelerator = "H100"
reserved = { accelerators = 2, price = 1.0, term_months = 1 }

[[clusters]]
name = "local"
provider = "here"
region = "lab"
accelerator = "H100"
nodes = 1
accelerators_per_node = 2
node_mtbf_hours = 100000.0
repair_hours = 1.0
backend = "slurm"
slurm = { partition = "debug", log_dir = "/tmp/switchyard-slurm-test/server-logs" }
topology = { scale_up = { nodes = 1 } }

[[tenants]]
name = "lab"
[[tenants.teams]]
name = "research"
"#;
    Fleet::from_toml(text, "local-slurm.toml").expect("the test fleet is valid")
}

/// A running in-process server over the Slurm backend.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub token: String,
    pub tag: String,
    pub handle: switchyard_slurm::SlurmHandle,
    stop: watch::Sender<bool>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    pub fn start(tag: &str) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let fleet = Arc::new(local_fleet());
        let options = Options {
            tag: tag.to_owned(),
            poll_interval: Duration::from_millis(250),
            capacity_interval: Duration::from_secs(2),
            ..Options::default()
        };
        let backend = SlurmBackend::from_fleet(&fleet, options)
            .expect("the backend starts")
            .expect("the fleet has a Slurm cluster");
        let handle = backend.handle();
        let token = "sy_slurm_test_token".to_owned();
        let (stop, stop_rx) = watch::channel(false);
        let url = rt.block_on(async {
            let db = switchyard_store::testing::fresh_sqlite_url().expect("a temp dir");
            let store = switchyard_store::connect(&db).await.expect("store opens");
            store
                .insert_token(&switchyard_store::hash_token(&token), "research", true, 0)
                .await
                .expect("token");
            let metrics = Arc::new(metrics::Metrics::default());
            let wake = Arc::new(Notify::new());
            tokio::spawn(leader::run(
                store.clone(),
                fleet.clone(),
                Box::new(backend),
                metrics.clone(),
                wake.clone(),
                stop_rx,
                leader::LoopConfig {
                    tick: Duration::from_millis(100),
                    lease_ttl: Duration::from_secs(3),
                    holder: format!("slurm-test-{}", std::process::id()),
                },
            ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let app = http::router(http::AppState::new(store, fleet, metrics, wake));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            format!("http://{addr}")
        });
        Server {
            url,
            token,
            tag: tag.to_owned(),
            handle,
            stop,
            rt,
        }
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let mut r = ureq::post(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        r.body_mut().read_json().expect("JSON answer")
    }

    pub fn get(&self, path: &str) -> Value {
        let mut r = ureq::get(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.body_mut().read_json().expect("JSON answer")
    }

    pub fn submit(&self, name: &str, duration_s: f64) -> String {
        let v = self.post(
            "/v1/jobs",
            json!({ "name": name, "kind": "batch", "accelerators": 1, "duration_s": duration_s }),
        );
        v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {v}"))
            .to_owned()
    }

    pub fn state(&self, id: &str) -> String {
        self.get(&format!("/v1/jobs/{id}"))["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn wait_state(&self, id: &str, want: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.state(id);
            if s == want {
                return;
            }
            assert!(
                Instant::now() < end,
                "job {id} is {s}, not {want}, after {secs} s; events: {}",
                self.get(&format!("/v1/jobs/{id}/events"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Slurm jobs carrying this server's tag, by Switchyard job id.
    pub fn slurm_jobs(&self, job: &str) -> Vec<(String, JobState)> {
        CliClient::default()
            .jobs()
            .expect("squeue answers")
            .into_iter()
            .filter(|j| {
                j.comment
                    .as_deref()
                    .and_then(|c| Tag::parse(c, &self.tag))
                    .is_some_and(|t| t.job == job)
            })
            .map(|j| (j.id, j.state))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(jobs) = CliClient::default().jobs() {
            for j in jobs {
                if j.comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with(&self.tag))
                    && !j.state.is_terminal()
                {
                    let _ = CliClient::default().cancel(&j.id);
                }
            }
        }
        let _ = &self.rt;
    }
}

#[test]
fn jobs_submitted_to_the_api_run_and_are_cancelled_on_slurm() {
    if !slurm_usable() {
        return;
    }
    let server = Server::start(&format!("sytest-server-{}", std::process::id()));

    let short = server.submit("short", 1.0);
    server.wait_state(&short, "done", 90);
    let runs = server.slurm_jobs(&short);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let detail = CliClient::default()
        .job(&runs[0].0)
        .expect("scontrol answers")
        .expect("known");
    assert_eq!(
        detail.state,
        JobState::Completed,
        "scontrol show job says COMPLETED"
    );
    let logs = server.handle.logs(&short).expect("log paths");
    assert_eq!(logs.slurm_job.as_deref(), Some(runs[0].0.as_str()));

    let long = server.submit("long", 600.0);
    server.wait_state(&long, "running", 30);
    let end = Instant::now() + Duration::from_secs(30);
    while !server
        .slurm_jobs(&long)
        .iter()
        .any(|(_, s)| *s == JobState::Running)
    {
        assert!(Instant::now() < end, "{:?}", server.slurm_jobs(&long));
        std::thread::sleep(Duration::from_millis(200));
    }
    server.post(&format!("/v1/jobs/{long}/cancel"), json!({}));
    server.wait_state(&long, "cancelled", 30);
    let end = Instant::now() + Duration::from_secs(30);
    while !server
        .slurm_jobs(&long)
        .iter()
        .all(|(_, s)| *s == JobState::Cancelled)
    {
        assert!(Instant::now() < end, "{:?}", server.slurm_jobs(&long));
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = server.get(&format!("/v1/jobs/{short}/events"));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        kinds.contains(&"started") && kinds.contains(&"finished"),
        "{events}"
    );
}
