//! An in-process Switchyard server (store, scheduling leader, HTTP API) over the Slurm
//! backend, shared by the end-to-end test and the benchmark (`#[path]`-included).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_core::fleet::Fleet;
use switchyard_server::backend::{Backend, DryRun};
use switchyard_server::{http, leader, metrics};
use switchyard_slurm::parse::{JobState, Tag};
use switchyard_slurm::{CliClient, Options, SlurmBackend, SlurmClient};
use switchyard_store::StoreWrite;
use tokio::sync::{Notify, watch};

/// Whether Slurm is usable here; says why not (and fails under SWITCHYARD_REQUIRE_SLURM=1).
pub fn slurm_usable() -> bool {
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

/// A fleet of one Slurm cluster on this machine's node: `per_node` "accelerators" (CPUs) on
/// it, and the command the batch scripts run (`None`: sleep for the expected duration).
pub fn local_fleet(per_node: u32, command: Option<&str>) -> Fleet {
    let command = command.map_or(String::new(), |c| format!(", command = {c:?}"));
    let text = switchyard_core::fleet::local_fleet_toml(
        "local-slurm",
        1,
        per_node,
        &format!(
            "backend = \"slurm\"\nslurm = {{ partition = \"debug\", log_dir = \"/tmp/switchyard-slurm-test/server-logs\"{command} }}"
        ),
    );
    Fleet::from_toml(&text, "local-slurm.toml").expect("the test fleet is valid")
}

/// A running in-process server over the Slurm backend.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub token: String,
    pub tag: String,
    /// `None` when the server runs the dry-run backend.
    pub handle: Option<switchyard_slurm::SlurmHandle>,
    stop: watch::Sender<bool>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    /// A server over the Slurm backend, tagging its Slurm jobs `tag`.
    pub fn start(tag: &str) -> Server {
        Self::start_with(tag, local_fleet(2, None), true)
    }

    /// A server over `fleet`: with the Slurm backend, or the dry-run one (`slurm = false`).
    pub fn start_with(tag: &str, fleet: Fleet, slurm: bool) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let fleet = Arc::new(fleet);
        let options = Options {
            tag: tag.to_owned(),
            poll_interval: Duration::from_millis(250),
            capacity_interval: Duration::from_secs(2),
            ..Options::default()
        };
        let (backend, handle): (Box<dyn Backend>, _) = if slurm {
            let b = SlurmBackend::from_fleet(&fleet, options)
                .expect("the backend starts")
                .expect("the fleet has a Slurm cluster");
            let h = b.handle();
            (Box::new(b), Some(h))
        } else {
            (Box::new(DryRun::default()), None)
        };
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
                backend,
                metrics.clone(),
                wake.clone(),
                stop_rx,
                leader::LoopConfig {
                    tick: Duration::from_millis(100),
                    lease_ttl: Duration::from_secs(3),
                    holder: format!("slurm-test-{}", std::process::id()),
                    fleet: switchyard_server::fleet_fingerprint(&fleet, None),
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
