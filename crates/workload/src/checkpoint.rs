//! Checkpoints: a small text format holding the exact bits of the model and optimizer state,
//! written atomically (temporary file, fsync, rename, fsync of the directory) so a crash at any
//! moment leaves either the old set of checkpoints or the old set plus one complete new one.
//!
//! ```text
//! switchyard-workload checkpoint v1
//! step 40
//! seed 42
//! dim 3
//! world_size 4
//! weights 3ff0000000000000 4000000000000000 c008000000000000
//! velocity 0000000000000000 0000000000000000 0000000000000000
//! checksum 5c1e3a09b8d0f0a2
//! ```
//! Numbers are `f64::to_bits` in hex, so nothing is lost to decimal printing. The checksum is an
//! FNV-1a of every line above it; a torn or edited file fails it and is skipped on resume.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &str = "switchyard-workload checkpoint v1";
const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".sywl";

/// The state a run resumes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Steps completed.
    pub step: u64,
    /// The run's seed (a checkpoint of another seed is refused).
    pub seed: u64,
    /// The number of weights.
    pub dim: usize,
    /// Ranks the state was trained with (informational).
    pub world_size: usize,
    /// Model weights.
    pub weights: Vec<f64>,
    /// Momentum buffer.
    pub velocity: Vec<f64>,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a complete, well-formed checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

fn checksum(text: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn hex_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{:016x}", v.to_bits()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Checkpoint {
    /// The file's text.
    pub fn encode(&self) -> String {
        let body = format!(
            "{MAGIC}\nstep {}\nseed {}\ndim {}\nworld_size {}\nweights {}\nvelocity {}\n",
            self.step,
            self.seed,
            self.dim,
            self.world_size,
            hex_list(&self.weights),
            hex_list(&self.velocity),
        );
        let sum = checksum(&body);
        format!("{body}checksum {sum:016x}\n")
    }

    /// Parses and verifies a checkpoint's text.
    pub fn decode(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let cut = text
            .rfind("checksum ")
            .ok_or_else(|| bad("no checksum line (torn write?)"))?;
        let (body, tail) = text.split_at(cut);
        let stated = tail
            .trim_end()
            .strip_prefix("checksum ")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad("unreadable checksum"))?;
        if stated != checksum(body) {
            return Err(bad("checksum mismatch"));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not a switchyard-workload v1 checkpoint"));
        }
        let mut field = |name: &str| -> Result<String, CheckpointError> {
            let line = lines
                .next()
                .ok_or_else(|| bad(&format!("missing {name}")))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("expected {name}, found {line:?}")))
        };
        let int = |s: String, name: &str| -> Result<u64, CheckpointError> {
            s.parse().map_err(|_| bad(&format!("bad {name}: {s:?}")))
        };
        let step = int(field("step")?, "step")?;
        let seed = int(field("seed")?, "seed")?;
        let dim = int(field("dim")?, "dim")? as usize;
        let world_size = int(field("world_size")?, "world_size")? as usize;
        let floats = |s: String, name: &str| -> Result<Vec<f64>, CheckpointError> {
            let v = s
                .split_whitespace()
                .map(|h| u64::from_str_radix(h, 16).map(f64::from_bits))
                .collect::<Result<Vec<f64>, _>>()
                .map_err(|_| bad(&format!("bad number in {name}")))?;
            if v.len() != dim {
                return Err(bad(&format!("{name} has {} values, dim is {dim}", v.len())));
            }
            Ok(v)
        };
        let weights = floats(field("weights")?, "weights")?;
        let velocity = floats(field("velocity")?, "velocity")?;
        Ok(Self {
            step,
            seed,
            dim,
            world_size,
            weights,
            velocity,
        })
    }
}

/// The file name of the checkpoint after `step` steps (zero-padded so names sort by step).
pub fn file_name(step: u64) -> String {
    format!("{PREFIX}{step:020}{SUFFIX}")
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CheckpointError> {
    // A bare file name's parent is the empty path, which names no directory to fsync.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(contents).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))?;
    Ok(())
}

/// Creates `dir` if missing and checks that a file can be written there: a run finds out
/// before it trains, not when its first checkpoint or its model is due.
pub fn check_writable(dir: &Path) -> Result<(), CheckpointError> {
    if dir.exists() && !dir.is_dir() {
        return Err(io("use as a directory", dir)(std::io::Error::other(
            "it is a file, not a directory",
        )));
    }
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    // (Unique to this process and moment: ranks on other hosts may share the directory.)
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".write-probe-{}-{nanos}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(io("create a file in", dir))?;
    match fs::remove_file(&probe) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &probe)(e)),
        _ => Ok(()),
    }
}

/// Saves `ckpt` into `dir` (created if missing) and keeps only the newest `keep` checkpoints.
pub fn save(dir: &Path, ckpt: &Checkpoint, keep: usize) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let path = dir.join(file_name(ckpt.step));
    write_atomic(&path, ckpt.encode().as_bytes())?;
    let mut all = list(dir)?;
    if all.len() > keep {
        all.truncate(all.len() - keep);
        for (_, old) in all {
            // A checkpoint that cannot be pruned costs only disk space.
            let _ = fs::remove_file(old);
        }
    }
    Ok(path)
}

/// Checkpoint files in `dir` with their step, oldest first.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("read directory", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("read directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What [`latest`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest complete checkpoint and its path, if any.
    pub checkpoint: Option<(Checkpoint, PathBuf)>,
    /// Newer files that were skipped, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The newest complete checkpoint in `dir`; newer files that fail to parse or verify are skipped
/// (and listed), not fatal.
pub fn latest(dir: &Path) -> Result<Found, CheckpointError> {
    let mut found = Found::default();
    for (_, path) in list(dir)?.into_iter().rev() {
        let parsed = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| Checkpoint::decode(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(c) => {
                found.checkpoint = Some((c, path));
                break;
            }
            Err(why) => found.skipped.push((path, why)),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: u64) -> Checkpoint {
        Checkpoint {
            step,
            seed: 42,
            dim: 3,
            world_size: 4,
            weights: vec![1.0, -0.1, f64::MIN_POSITIVE],
            velocity: vec![0.0, -0.0, 1e-300],
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sywl-ckpt-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&d).expect("create temp dir");
        d
    }

    #[test]
    fn round_trip_keeps_every_bit() {
        let c = sample(40);
        let back = Checkpoint::decode(&c.encode()).expect("decodes");
        assert_eq!(back.step, 40);
        for (a, b) in back.weights.iter().zip(&c.weights) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        for (a, b) in back.velocity.iter().zip(&c.velocity) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn torn_or_edited_files_are_rejected() {
        let text = sample(5).encode();
        for cut in [0, 10, text.len() / 2, text.len() - 3] {
            assert!(Checkpoint::decode(&text[..cut]).is_err(), "cut at {cut}");
        }
        let edited = text.replace("step 5", "step 6");
        assert!(Checkpoint::decode(&edited).is_err());
    }

    #[test]
    fn latest_skips_corrupt_newer_files_and_prunes_old_ones() {
        let dir = tempdir("latest");
        for step in [10, 20, 30, 40] {
            save(&dir, &sample(step), 3).expect("save");
        }
        let names: Vec<u64> = list(&dir).expect("list").iter().map(|(s, _)| *s).collect();
        assert_eq!(names, vec![20, 30, 40]);
        fs::write(
            dir.join(file_name(50)),
            "switchyard-workload checkpoint v1\nstep 5",
        )
        .expect("write torn file");
        let found = latest(&dir).expect("latest");
        let (c, _) = found.checkpoint.expect("one is complete");
        assert_eq!(c.step, 40);
        assert_eq!(found.skipped.len(), 1);
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn latest_of_a_missing_directory_is_none() {
        let found = latest(Path::new("/nonexistent/sywl")).expect("missing dir is fine");
        assert!(found.checkpoint.is_none());
    }
}
