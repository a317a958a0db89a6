//! The part of a batch script that runs a job's own command ([`JobCommand`]) as a gang: one
//! Slurm task per accelerator, started by `srun`, each with the variables a distributed
//! training launcher provides (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`), like the node agents give their processes.

use switchyard_server::api::JobCommand;

use crate::client::shell_quote;

/// Ports `MASTER_PORT` is chosen from.
pub const MASTER_PORT_LOW: u16 = 29500;
pub const MASTER_PORT_HIGH: u16 = 29999;

/// Variables Switchyard sets itself: the job's own `env` cannot replace them.
const RESERVED: [&str; 5] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// Rank 0's port for `attempt` of `job`: a function of both (the node agents' formula, FNV-1a
/// of the job id plus the attempt), different for consecutive attempts so that a new attempt
/// never waits for the old one's socket.
pub fn master_port(job: &str, attempt: u32) -> u16 {
    let span = u64::from(MASTER_PORT_HIGH - MASTER_PORT_LOW) + 1;
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in job.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    let offset = (h % span + u64::from(attempt)) % span;
    // offset < span <= 500: fits.
    MASTER_PORT_LOW + u16::try_from(offset).unwrap_or(0)
}

/// Whether `name` can be exported by sh (the API checks this too; a script must never be
/// built from one that cannot).
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The job's own variables to export before Switchyard's (which win): valid names only, none
/// of Switchyard's (`SWITCHYARD_*` and the launcher variables), and none of Slurm's
/// (`SLURM_*`, `SRUN_*`, `SBATCH_*`: `srun` in the script reads them, so a job could change
/// its own task count or placement).
pub fn job_env(cmd: &JobCommand) -> Vec<(String, String)> {
    cmd.env
        .iter()
        .filter(|(k, _)| {
            valid_env_name(k)
                && !["SWITCHYARD_", "SLURM_", "SRUN_", "SBATCH_"]
                    .iter()
                    .any(|p| k.starts_with(p))
                && !RESERVED.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What each task runs before the job's program: the launcher variables from Slurm's, and
/// with `gpu_per_rank` one GPU per task (the `LOCAL_RANK`-th of those Slurm gave the step,
/// unless Slurm already gave it just one). With a working directory, a task that cannot enter
/// it fails (`srun --chdir` only warns and runs the program in /tmp instead).
fn rank_wrapper(gpu_per_rank: bool, working_dir: Option<&str>) -> String {
    let mut w = String::new();
    if let Some(dir) = working_dir {
        let dir = shell_quote(dir);
        w.push_str(&format!(
            "cd -- {dir} || {{ echo \"switchyard: cannot enter the working directory \"{dir} >&2; exit 1; }}; "
        ));
    }
    w.push_str(
        "RANK=$SLURM_PROCID; LOCAL_RANK=$SLURM_LOCALID; WORLD_SIZE=$SLURM_NTASKS; \
         export RANK LOCAL_RANK WORLD_SIZE; ",
    );
    if gpu_per_rank {
        w.push_str(
            "if [ -n \"${CUDA_VISIBLE_DEVICES:-}\" ]; then \
             d=$(printf %s \"$CUDA_VISIBLE_DEVICES\" | cut -d, -f$((SLURM_LOCALID + 1))); \
             if [ -n \"$d\" ]; then CUDA_VISIBLE_DEVICES=$d; export CUDA_VISIBLE_DEVICES; fi; \
             fi; ",
        );
    }
    w.push_str("exec \"$@\"");
    w
}

/// The end of the batch script that runs `cmd` once per task: `MASTER_ADDR` (first host of the
/// allocation), `MASTER_PORT`, then `srun` with one task per accelerator of the allocation.
/// `srun --label` prefixes each output line with its task's rank (`3: …`), which the log
/// follower reads back; `--kill-on-bad-exit=1` ends the whole gang when one rank fails, so the
/// Slurm job fails with that rank's exit code.
pub fn gang_command(cmd: &JobCommand, port: u16, gpu_per_rank: bool) -> String {
    let mut s = String::new();
    s.push_str(
        "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" 2>/dev/null | head -n 1)\n",
    );
    s.push_str("[ -n \"$MASTER_ADDR\" ] || MASTER_ADDR=$(hostname)\n");
    s.push_str("export MASTER_ADDR\n");
    s.push_str(&format!("export MASTER_PORT={port}\n"));
    // The working directory is the wrapper's to enter (`srun --chdir` only warns when it
    // cannot, and would take a relative one twice).
    s.push_str("exec srun --label --kill-on-bad-exit=1 sh -c ");
    s.push_str(&shell_quote(&rank_wrapper(
        gpu_per_rank,
        cmd.working_dir.as_deref(),
    )));
    s.push_str(" switchyard-rank");
    for a in &cmd.argv {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    fn cmd(argv: &[&str]) -> JobCommand {
        JobCommand {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
        }
    }

    #[test]
    fn master_ports_are_in_range_and_differ_between_attempts() {
        for attempt in 1..50 {
            let p = master_port("job-7", attempt);
            assert!((MASTER_PORT_LOW..=MASTER_PORT_HIGH).contains(&p));
            assert_ne!(p, master_port("job-7", attempt + 1));
            assert_eq!(p, master_port("job-7", attempt), "deterministic");
        }
    }

    #[test]
    fn the_jobs_env_never_replaces_switchyards() {
        let mut c = cmd(&["x"]);
        for (k, v) in [
            ("FOO", "1"),
            ("RANK", "9"),
            ("SWITCHYARD_ATTEMPT", "99"),
            ("SLURM_NTASKS", "1"),
            ("SRUN_CPUS_PER_TASK", "64"),
            ("SBATCH_EXPORT", "ALL"),
            ("1BAD", "x"),
            ("A-B", "x"),
            ("_ok", "y"),
        ] {
            c.env.insert(k.into(), v.into());
        }
        assert_eq!(
            job_env(&c),
            vec![("FOO".into(), "1".into()), ("_ok".into(), "y".into())]
        );
    }

    #[test]
    fn argv_is_quoted_and_run_once_per_task() {
        let mut c = cmd(&["python3", "train.py", "--name", "it's $HOME; rm -rf /"]);
        c.working_dir = Some("/shared/my dir".into());
        let s = gang_command(&c, 29512, true);
        assert!(s.contains("export MASTER_PORT=29512\n"), "{s}");
        assert!(s.contains("scontrol show hostnames \"$SLURM_JOB_NODELIST\""));
        let last = s.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "exec srun --label --kill-on-bad-exit=1 sh -c 'cd -- '\\''/shared/my dir'\\'' || "
            ),
            "{last}"
        );
        assert!(
            last.ends_with(
                "' switchyard-rank 'python3' 'train.py' '--name' 'it'\\''s $HOME; rm -rf /'"
            ),
            "{last}"
        );
        assert!(last.contains("CUDA_VISIBLE_DEVICES"));
        assert!(!gang_command(&c, 29512, false).contains("CUDA_VISIBLE_DEVICES"));
    }

    /// The wrapper each task runs, executed by sh with a made-up task's variables: the
    /// launcher variables come from Slurm's, the task gets its own GPU, argv arrives intact.
    #[test]
    fn the_rank_wrapper_sets_the_launcher_variables() {
        let out = Command::new("sh")
            .arg("-c")
            .arg(rank_wrapper(true, None))
            .arg("switchyard-rank")
            .arg("sh")
            .arg("-c")
            .arg("printf '%s|' \"$RANK\" \"$LOCAL_RANK\" \"$WORLD_SIZE\" \"$CUDA_VISIBLE_DEVICES\" \"$1\"")
            .arg("x")
            .arg("a b'c")
            .env("SLURM_PROCID", "5")
            .env("SLURM_LOCALID", "1")
            .env("SLURM_NTASKS", "8")
            .env("CUDA_VISIBLE_DEVICES", "4,5,6,7")
            .output();
        let Ok(out) = out else {
            panic!("sh runs");
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "5|1|8|5|a b'c|");
        // Slurm already bound one GPU to the task: it keeps it.
        let out = Command::new("sh")
            .arg("-c")
            .arg(rank_wrapper(true, None))
            .arg("switchyard-rank")
            .arg("sh")
            .arg("-c")
            .arg("printf %s \"$CUDA_VISIBLE_DEVICES\"")
            .env("SLURM_PROCID", "3")
            .env("SLURM_LOCALID", "3")
            .env("SLURM_NTASKS", "4")
            .env("CUDA_VISIBLE_DEVICES", "3")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        assert_eq!(out.ok().as_deref(), Some("3"));
    }

    /// A task enters the job's working directory, and fails with a message naming it when it
    /// cannot (`srun --chdir` would only warn and run the program in /tmp).
    #[test]
    fn the_rank_wrapper_enters_the_working_directory_or_fails() {
        let dir = std::env::temp_dir().join(format!("sy wrapper dir {}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let run = |working_dir: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(rank_wrapper(false, Some(working_dir)))
                .arg("switchyard-rank")
                .arg("pwd")
                .output()
                .expect("sh runs")
        };
        let out = run(&dir.to_string_lossy());
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            dir.to_string_lossy()
        );
        let out = run("/no/such dir");
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty(), "the program did not run");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("switchyard: cannot enter the working directory /no/such dir"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir(&dir);
    }
}
