//! How a process ended, kept where a later agent can read it.
//!
//! Only a parent learns its child's exit status, and an agent restarted in place adopts
//! processes whose parent died with the old agent. So a supervisor with a state directory and
//! an [`ExitRecorder`] runs each process under a small parent of its own (`switchyard
//! record-exit`, which calls [`run_and_record`]): it starts the process, tells the agent
//! whether that worked, waits for it and writes its exit code or signal to a file under the
//! state directory. Whichever agent is there when the process ends — or the next one, if it
//! ended while none was — reads the file.
//!
//! The recorder is the process group's leader and the process runs in that group, so the
//! agent's signals to the group reach both. The recorder survives SIGTERM, SIGINT and the
//! other signals a stop sends (the caller installs handlers, which the process does not
//! inherit), so it outlives the process it waits for; only SIGKILL ends it early, and then the
//! agent that sent it knows why.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The first line the recorder writes to its handshake (its standard input, a pipe from the
/// agent) once the process has started.
pub const STARTED: &str = "started";

/// Prefix of the handshake line when the process could not be started; the reason follows.
pub const NOT_STARTED: &str = "not-started ";

/// Exit code of the recorder when the process could not be started (the shell's "command not
/// found").
pub const NOT_STARTED_CODE: i32 = 127;

/// How to run the recorder: `program args… --status FILE -- COMMAND…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecorder {
    /// The recorder's executable.
    pub program: PathBuf,
    /// What `ps` shows as its name.
    pub arg0: Option<OsString>,
    /// Arguments before `--status` (e.g. the subcommand).
    pub args: Vec<OsString>,
}

impl ExitRecorder {
    /// The running binary's own `record-exit` subcommand. The binary is named through
    /// `/proc/self/exe`, which the kernel resolves in the starting process to the file it runs
    /// even after an upgrade replaced that file, so agent and recorder are always one release.
    pub fn this_binary() -> Self {
        let arg0 = std::env::current_exe()
            .ok()
            .map(|p| p.into_os_string())
            .unwrap_or_else(|| "switchyard".into());
        ExitRecorder {
            program: PathBuf::from("/proc/self/exe"),
            arg0: Some(arg0),
            args: vec!["record-exit".into()],
        }
    }

    /// The command that runs `argv` under the recorder, writing its end to `status`; with
    /// `user`, the recorder starts `argv` as that user (uid, gid, and the working directory
    /// it enters as that user) while it stays the agent's.
    pub fn command(&self, status: &Path, argv: &[String], user: Option<RunAsIds<'_>>) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(arg0) = &self.arg0 {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        }
        cmd.args(&self.args).arg("--status").arg(status);
        if let Some(user) = user {
            cmd.arg("--uid")
                .arg(user.uid.to_string())
                .arg("--gid")
                .arg(user.gid.to_string());
            if let Some(dir) = user.cwd {
                cmd.arg("--cwd").arg(dir);
            }
        }
        cmd.arg("--").args(argv);
        cmd
    }
}

/// Whom the recorder starts a program as, and where ([`ExitRecorder::command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAsIds<'a> {
    pub uid: u32,
    pub gid: u32,
    /// The working directory, entered as that user (so one it may not enter fails the start).
    pub cwd: Option<&'a Path>,
}

/// Why `program` could not start as `user` in `cwd`: a permission refused is the working
/// directory's as often as the program's, so both are named.
pub fn start_error(program: &str, user: Option<RunAsIds<'_>>, e: &std::io::Error) -> String {
    match user {
        Some(RunAsIds {
            uid,
            cwd: Some(cwd),
            ..
        }) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "{program}: {e} (as uid {uid}, which must be able to enter the working directory {} \
             and run the program)",
            cwd.display()
        ),
        _ => format!("{program}: {e}"),
    }
}

/// How a process ended, as its recorder saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedExit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
}

impl RecordedExit {
    /// The recorder's own exit code for this end: the same code, or 128 + the signal as
    /// shells report it.
    pub fn as_exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }
}

/// The recorded end in `path`, if the recorder wrote one (a file it did not finish, or one
/// that is not ours, counts as none).
pub fn read(path: &Path) -> Option<RecordedExit> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(exit) => Some(exit),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable exit record");
            None
        }
    }
}

/// Where the record for `path` is written before it is renamed into place.
pub fn unfinished_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `exit` to `path` so that a reader sees all of it or nothing (a temporary file,
/// flushed to disk, renamed over).
fn write(path: &Path, exit: &RecordedExit) -> std::io::Result<()> {
    let tmp = unfinished_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(exit).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Runs `argv` as a child (same environment, directory, process group and output; no input),
/// says on `handshake` whether it started ([`STARTED`], or [`NOT_STARTED`] and why), waits
/// for it and records how it ended in `status`. Returns the exit code the recorder should end
/// with: the child's, 128 + its signal, or [`NOT_STARTED_CODE`].
pub fn run_and_record(
    status: &Path,
    argv: &[OsString],
    user: Option<RunAsIds<'_>>,
    handshake: &mut dyn Write,
) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        let _ = writeln!(handshake, "{NOT_STARTED}empty command");
        return NOT_STARTED_CODE;
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(user) = user {
        // (Started by root, the child also drops root's supplementary groups; it enters its
        // working directory after, as the user.)
        std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        if let Some(dir) = user.cwd {
            cmd.current_dir(dir);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let reason = start_error(&program.to_string_lossy(), user, &e).replace('\n', " ");
            let _ = writeln!(handshake, "{NOT_STARTED}{reason}");
            return NOT_STARTED_CODE;
        }
    };
    // The agent may be gone already; the child runs on regardless.
    let _ = writeln!(handshake, "{STARTED}").and_then(|()| handshake.flush());
    let ended = match child.wait() {
        Ok(s) => RecordedExit {
            code: s.code(),
            signal: s.signal(),
        },
        Err(e) => {
            // Not expected for our own child; the agent then reports the end as unknown.
            let _ = writeln!(
                std::io::stderr(),
                "record-exit: cannot wait for {program:?}: {e}"
            );
            return 1;
        }
    };
    if let Err(e) = write(status, &ended) {
        let _ = writeln!(
            std::io::stderr(),
            "record-exit: cannot record the exit in {}: {e}",
            status.display()
        );
    }
    ended.as_exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-exit-record-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn sh(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].map(OsString::from).to_vec()
    }

    #[test]
    fn an_exit_code_is_recorded_and_returned() {
        let dir = scratch("code");
        let status = dir.join("a.json");
        let mut handshake = Vec::new();
        assert_eq!(
            run_and_record(&status, &sh("exit 3"), None, &mut handshake),
            3
        );
        assert_eq!(String::from_utf8_lossy(&handshake), "started\n");
        assert_eq!(
            read(&status),
            Some(RecordedExit {
                code: Some(3),
                signal: None
            })
        );
        assert_eq!(
            run_and_record(&status, &sh("true"), None, &mut Vec::new()),
            0
        );
        assert_eq!(read(&status).and_then(|e| e.code), Some(0));
    }

    #[test]
    fn a_signal_is_recorded_and_returned_as_shells_do() {
        let dir = scratch("signal");
        let status = dir.join("a.json");
        assert_eq!(
            run_and_record(&status, &sh("kill -9 $$"), None, &mut Vec::new()),
            137
        );
        assert_eq!(
            read(&status),
            Some(RecordedExit {
                code: None,
                signal: Some(9)
            })
        );
    }

    #[test]
    fn a_program_that_cannot_start_is_named_on_the_handshake() {
        let dir = scratch("missing");
        let status = dir.join("a.json");
        let mut handshake = Vec::new();
        let argv = [OsString::from("/no/such/program")];
        assert_eq!(
            run_and_record(&status, &argv, None, &mut handshake),
            NOT_STARTED_CODE
        );
        let line = String::from_utf8_lossy(&handshake).into_owned();
        assert!(
            line.starts_with("not-started /no/such/program: ") && line.ends_with('\n'),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(read(&status), None, "nothing ran, nothing is recorded");
        assert_eq!(
            run_and_record(&status, &[], None, &mut Vec::new()),
            NOT_STARTED_CODE
        );
    }

    #[test]
    fn a_torn_or_foreign_record_reads_as_none() {
        let dir = scratch("torn");
        let status = dir.join("a.json");
        std::fs::write(&status, "{\"code\": 0").expect("write");
        assert_eq!(read(&status), None);
        std::fs::write(&status, "{\"code\": 0, \"signal\": null, \"x\": 1}").expect("write");
        assert_eq!(read(&status), None);
        assert_eq!(read(&dir.join("absent.json")), None);
    }

    #[test]
    fn the_recorders_command_line() {
        let rec = ExitRecorder {
            program: "/bin/rec".into(),
            arg0: None,
            args: vec!["record-exit".into()],
        };
        let cmd = rec.command(
            Path::new("/s/x.json"),
            &["train".into(), "--lr".into()],
            None,
        );
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "record-exit",
                "--status",
                "/s/x.json",
                "--",
                "train",
                "--lr"
            ]
        );
        assert_eq!(cmd.get_program(), "/bin/rec");
        let cmd = rec.command(
            Path::new("/s/x.json"),
            &["train".into()],
            Some(RunAsIds {
                uid: 65534,
                gid: 65533,
                cwd: Some(Path::new("/w")),
            }),
        );
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "record-exit",
                "--status",
                "/s/x.json",
                "--uid",
                "65534",
                "--gid",
                "65533",
                "--cwd",
                "/w",
                "--",
                "train"
            ]
        );
    }
}
