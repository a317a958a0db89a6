//! The slurmrestd client against the local Slurm's slurmrestd (started by
//! `crates/slurm/scripts/start-local-slurm.sh` when Debian's `slurmrestd` is installed), with a
//! token from `scontrol token`. Skips, saying why, where slurmrestd does not answer, unless
//! SWITCHYARD_REQUIRE_SLURMRESTD=1. `SWITCHYARD_SLURMRESTD_URL` overrides the address
//! (default `http://127.0.0.1:6820`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_core::fleet::SlurmSettings;
use switchyard_server::api::JobCommand;
use switchyard_server::backend::{Backend, Command, Observed};
use switchyard_slurm::parse::JobState;
use switchyard_slurm::{ClusterConfig, Options, RestClient, SlurmBackend, SlurmClient, Submission};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn client() -> Result<RestClient, String> {
    let url = std::env::var("SWITCHYARD_SLURMRESTD_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:6820".into());
    let out = std::process::Command::new("scontrol")
        .args(["token", "lifespan=900"])
        .output()
        .map_err(|e| format!("cannot run scontrol token: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("SLURM_JWT="))
        .ok_or_else(|| {
            format!(
                "scontrol token gave no token (AuthAltTypes=auth/jwt?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    RestClient::new(&url, token, None, Duration::from_secs(10))
}

/// A client of a usable slurmrestd, or `None` after saying why not.
fn rest_here() -> Option<RestClient> {
    let required = std::env::var("SWITCHYARD_REQUIRE_SLURMRESTD").is_ok_and(|v| v == "1");
    let why = match client() {
        Ok(c) => match c.nodes(None) {
            Ok(n) if n.iter().any(|n| n.state.usable()) => return Some(c),
            Ok(_) => "slurmrestd lists no usable node".to_owned(),
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    assert!(
        !required,
        "SWITCHYARD_REQUIRE_SLURMRESTD=1 but slurmrestd is not usable: {why}"
    );
    eprintln!(
        "SKIPPED: no usable slurmrestd here ({why}); install Debian's slurmrestd and run crates/slurm/scripts/start-local-slurm.sh"
    );
    None
}

fn log_dir() -> String {
    format!(
        "{}/switchyard-slurm-test/rest-logs",
        std::env::temp_dir().display()
    )
}

fn submission(tag: &str, partition: &str, command: &str) -> Submission {
    let dir = log_dir();
    let _ = std::fs::create_dir_all(&dir);
    Submission {
        job_name: "sy-rest-test".into(),
        comment: tag.into(),
        partition: partition.into(),
        nodes: 1,
        ntasks_per_node: 1,
        stdout: format!("{dir}/{tag}.out"),
        stderr: format!("{dir}/{tag}.err"),
        env: vec![("SWITCHYARD_JOB_ID".into(), "rest".into())],
        command: command.into(),
        ..Submission::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn submit_list_look_up_and_cancel_through_slurmrestd() {
    let _g = serial();
    let Some(c) = rest_here() else { return };
    let tag = format!("sytest-rest-{}:j:1:1", std::process::id());
    // (Two CPUs for its one task, as a service replica of two accelerators asks.)
    let id = c
        .submit(&Submission {
            cpus_per_task: Some(2),
            ..submission(
                &tag,
                "debug",
                "echo \"via rest $SWITCHYARD_JOB_ID\"; exec sleep 60",
            )
        })
        .expect("slurmrestd takes the job");
    let listed = c.jobs().expect("jobs");
    let j = listed.iter().find(|j| j.id == id).expect("listed");
    assert_eq!(j.comment.as_deref(), Some(tag.as_str()));
    let info = c.job(&id).expect("job").expect("known");
    assert_eq!(info.id, id);
    let shown = std::process::Command::new("scontrol")
        .args(["show", "job", &id])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(shown.contains("CPUs/Task=2"), "{shown}");
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(format!("{}/{tag}.out", log_dir()))
        .is_ok_and(|s| s.contains("via rest rest"))
    {
        assert!(Instant::now() < end, "the job's output never appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.cancel(&id).expect("cancel");
    c.cancel(&id).expect("cancelling twice is fine");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.job(&id).expect("job").map(|j| j.state);
        if s == Some(JobState::Cancelled) {
            break;
        }
        assert!(Instant::now() < end, "{s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.job("99999999").expect("answers"), None);
    c.cancel("99999999")
        .expect("an unknown job is not an error");
    let refused = c
        .submit(&submission(&tag, "no-such-partition", "true"))
        .expect_err("refused");
    assert!(
        refused
            .message()
            .contains("Invalid partition name specified"),
        "{refused}"
    );
}

#[test]
fn the_backend_runs_a_gang_over_slurmrestd() {
    let _g = serial();
    let Some(c) = rest_here() else { return };
    let tag = format!("sytest-rest-b-{}", std::process::id());
    let mut b = SlurmBackend::new(
        vec![ClusterConfig {
            name: "local".into(),
            index: 0,
            nodes: 1,
            accelerators_per_node: 2,
            block_nodes: None,
            settings: SlurmSettings {
                partition: "debug".into(),
                rest_url: Some("http://127.0.0.1:6820".into()),
                token_env: None,
                account: None,
                log_dir: Some(log_dir()),
                checkpoint_dir: None,
                command: None,
            },
            client: Box::new(c),
        }],
        Options {
            tag,
            poll_interval: Duration::from_millis(200),
            capacity_interval: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .expect("the worker starts");
    let launch = |attempt: u32, script: &str| Command::Launch {
        job: "j-rest".into(),
        generation: attempt,
        attempt,
        cluster: "local".into(),
        accelerators: 2,
        nodes: Vec::new(),
        recovered: false,
        ran_before: None,
        expected_end_ms: now_ms() + 5_000,
        command: Some(Arc::new(JobCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::new(),
            working_dir: None,
        })),
    };
    b.act(vec![launch(1, "echo \"rank $RANK of $WORLD_SIZE\"")]);
    let mut seen: Vec<Observed> = Vec::new();
    let wait = |b: &mut SlurmBackend,
                seen: &mut Vec<Observed>,
                what: &str,
                pred: &dyn Fn(&Observed) -> bool| {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            seen.extend(b.poll(now_ms()));
            if seen.iter().any(pred) {
                return;
            }
            assert!(Instant::now() < end, "{what} not seen: {seen:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(
        &mut b,
        &mut seen,
        "finished",
        &|o| matches!(o, Observed::Finished { job, generation: 1 } if job == "j-rest"),
    );
    for rank in 0..2u32 {
        let want = format!("rank {rank} of 2");
        wait(
            &mut b,
            &mut seen,
            &want,
            &|o| matches!(o, Observed::Output(lines) if lines.iter().any(|l| l.line == want && l.rank == rank)),
        );
    }
    b.act(vec![
        Command::Stop {
            job: "j-rest".into(),
        },
        launch(2, "exit 5"),
    ]);
    wait(
        &mut b,
        &mut seen,
        "failed",
        &|o| matches!(o, Observed::Failed { job, generation: 2, reason } if job == "j-rest" && reason.contains("exit code 5")),
    );
}
