//! Talking to Slurm: the [`SlurmClient`] trait and its command-line implementation, which runs
//! `sbatch`, `squeue`, `sinfo`, `scontrol` and `scancel` with a timeout. Errors carry Slurm's
//! own message. The `slurmrestd` implementation is [`crate::rest::RestClient`].

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::parse::{self, JobInfo, Node, ParseError, QueueJob};

/// Why a Slurm call failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} did not answer within {seconds} s (is slurmctld reachable?)")]
    Timeout { command: String, seconds: u64 },
    /// Slurm refused: `message` is what it said on stderr.
    #[error("{command} failed{}: {message}", status_unless_said(.status, .message))]
    Failed {
        command: String,
        status: String,
        message: String,
    },
    /// An HTTP request to slurmrestd got no answer.
    #[error("{command}: {message}")]
    Unreachable { command: String, message: String },
    #[error("cannot read what {command} printed: {source}")]
    Parse { command: String, source: ParseError },
}

/// ` (STATUS)`, unless the message says it already (slurmrestd's messages name their HTTP
/// status).
fn status_unless_said(status: &str, message: &str) -> String {
    if message.contains(status) {
        String::new()
    } else {
        format!(" ({status})")
    }
}

impl SlurmError {
    /// Slurm's message, or what went wrong talking to it.
    pub fn message(&self) -> String {
        match self {
            SlurmError::Failed { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// One `sbatch` submission: a gang as one Slurm job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Submission {
    pub job_name: String,
    /// Switchyard's tag (`--comment`), how it finds its own jobs again.
    pub comment: String,
    pub partition: String,
    pub account: Option<String>,
    pub nodes: u32,
    pub ntasks_per_node: u32,
    /// `--gpus-per-node`, only where the nodes have GPUs.
    pub gpus_per_node: Option<u32>,
    /// `--cpus-per-task`: a service replica's one task per node stands for this many
    /// accelerators on nodes without GPUs (a gang's ranks do, one task each).
    pub cpus_per_task: Option<u32>,
    /// `--time`, minutes.
    pub time_limit_min: Option<u64>,
    /// `--switches`: at most this many leaf switches (a block topology's unit).
    pub switches: Option<u32>,
    /// `--segment` (Slurm 24.11 block topology): nodes per segment.
    pub segment: Option<u32>,
    pub stdout: String,
    pub stderr: String,
    /// Exported in the batch script (SWITCHYARD_JOB_ID, …).
    pub env: Vec<(String, String)>,
    /// What the batch script runs (a shell command).
    pub command: String,
}

impl Submission {
    /// `sbatch`'s arguments; the script comes on stdin ([`Submission::script`]).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--parsable".to_owned(),
            format!("--job-name={}", self.job_name),
            format!("--comment={}", self.comment),
            format!("--partition={}", self.partition),
            format!("--nodes={}", self.nodes),
            format!("--ntasks-per-node={}", self.ntasks_per_node),
            format!("--output={}", self.stdout),
            format!("--error={}", self.stderr),
            // A job Slurm requeues all the same (an administrator's `scontrol requeue`) writes
            // on after its first run's lines instead of over them, which were not all read.
            "--open-mode=append".to_owned(),
            // Switchyard decides restarts: Slurm must not requeue on its own.
            "--no-requeue".to_owned(),
            // Nothing of the server's environment (its database URL, Slurm token …) reaches
            // tenants' jobs: the script sets what the job gets.
            "--export=NONE".to_owned(),
        ];
        if let Some(acc) = &self.account {
            a.push(format!("--account={acc}"));
        }
        if let Some(g) = self.gpus_per_node {
            a.push(format!("--gpus-per-node={g}"));
        }
        if let Some(c) = self.cpus_per_task {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(t) = self.time_limit_min {
            a.push(format!("--time={t}"));
        }
        if let Some(s) = self.switches {
            a.push(format!("--switches={s}"));
        }
        if let Some(s) = self.segment {
            a.push(format!("--segment={s}"));
        }
        a
    }

    /// The batch script: the standard system directories after the `PATH` the job starts
    /// with, the job's and Switchyard's variables, then the command. It runs without the
    /// submitter's environment (`--export=NONE`: Slurm gives it the user's login environment
    /// and the submitter's `SLURM_*` variables, of which the token `SLURM_JWT` is dropped;
    /// slurmrestd passes none), so `srun` in it is told to pass the script's own environment on
    /// to the tasks (`SLURM_EXPORT_ENV=ALL`; `--export=NONE` would otherwise reach them too and
    /// start them without even a `PATH`).
    pub fn script(&self) -> String {
        let mut s = String::from("#!/bin/sh\nunset SLURM_JWT\n");
        s.push_str(&format!(
            "export PATH=\"${{PATH:+$PATH:}}\"{}\n",
            shell_quote(crate::rest::JOB_PATH)
        ));
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        s.push_str("export SLURM_EXPORT_ENV=ALL\n");
        s.push_str(&self.command);
        s.push('\n');
        s
    }
}

/// Single-quotes a value for sh. A carriage return is written as `$(printf '\r')` outside the
/// quotes: `sbatch` refuses a script with one in it (DOS line breaks), and would refuse the
/// job's every resubmission.
pub fn shell_quote(v: &str) -> String {
    let quoted: Vec<String> = v
        .split('\r')
        .map(|part| format!("'{}'", part.replace('\'', r"'\''")))
        .collect();
    quoted.join(r#""$(printf '\r')""#)
}

/// What Switchyard needs from Slurm.
pub trait SlurmClient: Send + std::fmt::Debug {
    /// Nodes of a partition (all partitions when `None`).
    fn nodes(&self, partition: Option<&str>) -> Result<Vec<Node>, SlurmError>;
    /// Every job of this user the controller still knows (all states).
    fn jobs(&self) -> Result<Vec<QueueJob>, SlurmError>;
    /// One job in detail; `None` when the controller no longer knows it.
    fn job(&self, id: &str) -> Result<Option<JobInfo>, SlurmError>;
    /// Submits; returns Slurm's job id.
    fn submit(&self, s: &Submission) -> Result<String, SlurmError>;
    /// Cancels (already-ended jobs are not an error).
    fn cancel(&self, id: &str) -> Result<(), SlurmError>;
}

/// Runs Slurm's command-line tools on this host.
#[derive(Debug, Clone)]
pub struct CliClient {
    /// Directory of the tools; `None` = found on `PATH`.
    pub bin_dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl Default for CliClient {
    fn default() -> Self {
        CliClient {
            bin_dir: None,
            timeout: Duration::from_secs(30),
        }
    }
}

struct Output {
    stdout: String,
}

impl CliClient {
    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// The command for tool `name`, in the environment every call runs it in.
    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.program(name));
        // Times (squeue's `%S`, scontrol's `StartTime=`) as epoch seconds, whatever the
        // locale or the site's own format.
        command.env("SLURM_TIME_FORMAT", "%s");
        // The tools authenticate as the server's Unix user (MUNGE). With SLURM_JWT set they
        // would use that token instead: a slurmrestd cluster's token (docs/slurm.md suggests
        // `token_env = "SLURM_JWT"`) would submit as its user, or fail once it expires.
        command.env_remove("SLURM_JWT");
        command
    }

    /// Runs a tool with a timeout (killing it when it runs over); non-zero exit is an error
    /// carrying its stderr.
    fn run(&self, name: &str, args: &[String], stdin: Option<&str>) -> Result<Output, SlurmError> {
        let command = format!("{name} {}", args.join(" "));
        let mut child = self
            .tool(name)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SlurmError::Spawn {
                command: command.clone(),
                source,
            })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A tool that exits early closes the pipe; its exit status tells why.
            let _ = pipe.write_all(text.as_bytes());
        }
        // Read both pipes on threads so a chatty tool cannot fill one and block.
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_string(&mut s);
            }
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_string(&mut s);
            }
            s
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SlurmError::Timeout {
                        command,
                        seconds: self.timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(source) => {
                    return Err(SlurmError::Spawn { command, source });
                }
            }
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        if !status.success() {
            return Err(SlurmError::Failed {
                command,
                status: status.to_string(),
                message: parse::slurm_message(&stderr),
            });
        }
        Ok(Output { stdout })
    }
}

impl SlurmClient for CliClient {
    fn nodes(&self, partition: Option<&str>) -> Result<Vec<Node>, SlurmError> {
        let sinfo = |format_flag: &str, format: String| {
            let mut args = vec![
                "-h".to_owned(),
                "-N".to_owned(),
                format_flag.to_owned(),
                format,
            ];
            if let Some(p) = partition {
                args.push(format!("--partition={p}"));
            }
            let out = self.run("sinfo", &args, None)?;
            parse::parse_sinfo_nodes(&out.stdout).map_err(|source| SlurmError::Parse {
                command: "sinfo".into(),
                source,
            })
        };
        let nodes = sinfo("-O", parse::sinfo_node_format())?;
        if !nodes.is_empty()
            && nodes
                .iter()
                .all(|n| n.state.base == parse::NodeBase::Other(String::new()))
        {
            // A sinfo without `StateComplete` prints it empty (and succeeds): read `%T`, which
            // says `drained` for a node that is down and drained.
            tracing::debug!("sinfo printed no StateComplete; reading %T instead");
            return sinfo("-o", parse::sinfo_node_format_short_states());
        }
        Ok(nodes)
    }

    fn jobs(&self) -> Result<Vec<QueueJob>, SlurmError> {
        // `--me`: only this user's jobs — another user's is never Switchyard's, whatever its
        // comment says.
        let args = ["-h", "-a", "--me", "-t", "all", "-o"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([parse::squeue_format()])
            .collect::<Vec<_>>();
        let out = self.run("squeue", &args, None)?;
        parse::parse_squeue(&out.stdout).map_err(|source| SlurmError::Parse {
            command: "squeue".into(),
            source,
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobInfo>, SlurmError> {
        let args = ["show", "job", "-o", id].map(str::to_owned);
        match self.run("scontrol", &args, None) {
            Ok(out) => Ok(parse::parse_scontrol_jobs(&out.stdout).into_iter().next()),
            Err(SlurmError::Failed { message, .. }) if message.contains("Invalid job id") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn submit(&self, s: &Submission) -> Result<String, SlurmError> {
        let out = self.run("sbatch", &s.args(), Some(&s.script()))?;
        parse::parse_sbatch_parsable(&out.stdout).map_err(|source| SlurmError::Parse {
            command: "sbatch".into(),
            source,
        })
    }

    fn cancel(&self, id: &str) -> Result<(), SlurmError> {
        cancelled(self.run("scancel", &[id.to_owned()], None))
    }
}

/// The outcome of a cancel request: a job Slurm has already finished or forgotten counts as
/// cancelled (`scancel` and slurmrestd word it the same way).
pub(crate) fn cancelled<T>(result: Result<T, SlurmError>) -> Result<(), SlurmError> {
    match result {
        Ok(_) => Ok(()),
        Err(SlurmError::Failed { message, .. })
            if message.contains("already completing or completed")
                || message.contains("Invalid job id") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script keeps the `PATH` the job starts with (a site's Slurm and tools live where
    /// its login environment says), adds the standard directories after it, and drops the
    /// submitter's Slurm token.
    #[test]
    fn the_script_keeps_the_sites_path_and_drops_the_token() {
        let sub = Submission {
            env: vec![("MINE".into(), "x".into())],
            command: "printf '%s|%s|%s|%s' \"$PATH\" \"${SLURM_JWT:-none}\" \"$MINE\" \"$SLURM_EXPORT_ENV\""
                .into(),
            ..Submission::default()
        };
        let run = |path: Option<&str>| {
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(sub.script())
                .env_clear()
                .env("SLURM_JWT", "secret");
            if let Some(p) = path {
                cmd.env("PATH", p);
            }
            let out = cmd.output().expect("sh runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(
            run(Some("/opt/site/bin:/usr/bin")),
            format!(
                "/opt/site/bin:/usr/bin:{}|none|x|ALL",
                crate::rest::JOB_PATH
            )
        );
        // Without one (sh may set its own default), the standard directories still come.
        assert!(
            run(None).ends_with(&format!("{}|none|x|ALL", crate::rest::JOB_PATH)),
            "{}",
            run(None)
        );
    }

    /// The tools run as the server's Unix user, whatever Slurm token is in its environment.
    #[test]
    fn the_tools_do_not_get_the_servers_slurm_token() {
        let command = CliClient::default().tool("squeue");
        let envs: Vec<_> = command.get_envs().collect();
        assert!(
            envs.contains(&(std::ffi::OsStr::new("SLURM_JWT"), None)),
            "{envs:?}"
        );
    }

    /// A sinfo that does not know StateComplete prints the field empty and succeeds: the
    /// client reads `%T` instead rather than take every node for one in an unknown state.
    #[test]
    fn a_sinfo_without_state_complete_is_read_with_short_states() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sy-old-sinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let calls = dir.join("calls");
        let script = format!(
            "#!/bin/sh\necho \"$3\" >> '{}'\ncase \"$3\" in\n\
             -O) printf 'vm\\037debug*\\037\\0372\\037(null)\\037none\\n' ;;\n\
             -o) printf 'vm\\037debug*\\037drained\\0372\\037(null)\\037disk\\n' ;;\n\
             esac\n",
            calls.display()
        );
        let sinfo = dir.join("sinfo");
        std::fs::write(&sinfo, script).expect("write fake sinfo");
        std::fs::set_permissions(&sinfo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let client = CliClient {
            bin_dir: Some(dir.clone()),
            ..CliClient::default()
        };
        let nodes = client.nodes(Some("debug")).expect("nodes");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].state.base, parse::NodeBase::Drained);
        assert!(nodes[0].state.closed());
        assert_eq!(nodes[0].reason, "disk");
        let asked = std::fs::read_to_string(&calls).expect("calls");
        assert_eq!(asked, "-O\n-o\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What sh makes of a quoted value: the value itself, byte for byte, and never a carriage
    /// return in the script text.
    #[test]
    fn quoted_values_come_back_unchanged_from_sh() {
        for v in [
            "plain",
            "",
            "it's $HOME; rm -rf / `x` \"q\"",
            "line one\r\nline two",
            "\r",
            "trailing\r",
            "tab\tand\nnewline",
        ] {
            let q = shell_quote(v);
            assert!(!q.contains('\r'), "{q:?}");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {q}"))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), v, "{q:?}");
        }
    }
}
