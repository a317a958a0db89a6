//! Following a Slurm job's output files (`--output`/`--error` under the cluster's `log_dir`, on
//! a file system the server shares with the compute nodes): new complete lines since the last
//! read, each with its byte offset, longer ones cut at [`MAX_LINE_BYTES`].

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Longest line reported (the node agents' limit); longer output comes as several lines.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Most bytes read from one file in one call (the rest comes next time).
pub const MAX_READ_BYTES: u64 = 1024 * 1024;

/// One line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte offset of the line's start in its file.
    pub seq: u64,
    /// The task that wrote it (from `srun --label`'s `N: ` prefix), 0 when unlabelled.
    pub rank: u32,
    pub text: String,
}

/// What one read of a file gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NewLines {
    pub lines: Vec<Line>,
    /// The file was read to its end (a read takes at most [`MAX_READ_BYTES`]).
    pub at_end: bool,
}

/// Reads what `path` gained after `*offset`, at most [`MAX_READ_BYTES`]: complete lines only (a
/// line still being written waits for its newline, unless `last` says the writer is gone), then
/// moves `*offset` past them. A file that does not exist yet has nothing to read.
pub fn read_new_lines(
    path: &Path,
    offset: &mut u64,
    labelled: bool,
    last: bool,
) -> std::io::Result<NewLines> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(NewLines {
                lines: Vec::new(),
                at_end: true,
            });
        }
        Err(e) => return Err(e),
    };
    // A file shorter than what was read (replaced or truncated by someone): start over.
    if f.metadata()?.len() < *offset {
        *offset = 0;
    }
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.take(MAX_READ_BYTES).read_to_end(&mut buf)?;
    let at_end = (buf.len() as u64) < MAX_READ_BYTES;
    let (lines, used) = split_lines(&buf, *offset, labelled, last && at_end);
    *offset += used as u64;
    Ok(NewLines { lines, at_end })
}

/// Splits `buf` (read from `base`) into lines; returns them and how many bytes they used.
/// With `flush`, a final line without its newline is a line too.
pub fn split_lines(buf: &[u8], base: u64, labelled: bool, flush: bool) -> (Vec<Line>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let newline = rest.iter().position(|&b| b == b'\n');
        let (len, skip) = match newline {
            Some(n) if n <= MAX_LINE_BYTES => (n, n + 1),
            _ if rest.len() > MAX_LINE_BYTES => {
                let cut = char_boundary(rest, MAX_LINE_BYTES);
                (cut, cut)
            }
            None if flush => (rest.len(), rest.len()),
            _ => break,
        };
        let raw = &rest[..len];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        let (rank, text) = if labelled {
            split_label(&text)
        } else {
            (0, text.as_ref())
        };
        out.push(Line {
            seq: base + pos as u64,
            rank,
            text: text.to_owned(),
        });
        pos += skip;
    }
    (out, pos)
}

/// The longest prefix of `b` up to `max` bytes that does not cut a UTF-8 character (at least
/// one byte, so that invalid input still advances).
fn char_boundary(b: &[u8], max: usize) -> usize {
    let mut cut = max.min(b.len());
    while cut > 1 && cut < b.len() && (b[cut] & 0b1100_0000) == 0b1000_0000 && max - cut < 4 {
        cut -= 1;
    }
    cut.max(1)
}

/// `srun --label`'s prefix: `3: text` (padded with spaces to the widest rank) → (3, `text`).
/// A line without one (the batch script's own output) is rank 0, unchanged.
pub fn split_label(line: &str) -> (u32, &str) {
    let t = line.trim_start_matches(' ');
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return (0, line);
    }
    let Some(rest) = t[digits..].strip_prefix(':') else {
        return (0, line);
    };
    let Ok(rank) = t[..digits].parse() else {
        return (0, line);
    };
    (rank, rest.strip_prefix(' ').unwrap_or(rest))
}

/// The first task failure `srun` reports on its stderr: `srun: error: node7: task 3: Exited
/// with exit code 2` → (`rank 3`, `Exited with exit code 2`), and for tasks that ended alike,
/// `…: tasks 0-1: Exited with exit code 1` → (`ranks 0-1`, …). The job's own exit code is `srun`'s,
/// the highest of its tasks' (often 143 for the ranks it terminated), so this says which rank
/// failed first and how.
pub fn srun_task_failure(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix("srun: error: ")?;
    // One task (`task 3: …`), or several that ended alike (`tasks 0-1,4: …`).
    let (ranks, rest) = if let Some(at) = rest.find(": task ") {
        ("rank", &rest[at + ": task ".len()..])
    } else {
        let at = rest.find(": tasks ")?;
        ("ranks", &rest[at + ": tasks ".len()..])
    };
    let (tasks, what) = rest.split_once(": ")?;
    let valid = !tasks.is_empty()
        && tasks
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
        && tasks.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let what = what.trim();
    (valid && !what.is_empty()).then(|| (format!("{ranks} {tasks}"), what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_until_the_writer_is_gone() {
        let (l, used) = split_lines(b"one\ntwo\r\nthr", 100, false, false);
        assert_eq!(used, 9);
        assert_eq!(
            l,
            vec![
                Line {
                    seq: 100,
                    rank: 0,
                    text: "one".into()
                },
                Line {
                    seq: 104,
                    rank: 0,
                    text: "two".into()
                },
            ]
        );
        let (l, used) = split_lines(b"thr", 109, false, true);
        assert_eq!((l[0].seq, l[0].text.as_str(), used), (109, "thr", 3));
        assert_eq!(split_lines(b"", 0, false, true), (Vec::new(), 0));
    }

    #[test]
    fn long_lines_are_cut_at_16_kib_on_character_boundaries() {
        let mut buf = "€".repeat(MAX_LINE_BYTES).into_bytes(); // 3 bytes each: 16 KiB cuts one
        buf.push(b'\n');
        let (l, used) = split_lines(&buf, 0, false, false);
        assert_eq!(used, buf.len());
        assert!(
            l.iter().all(|x| x.text.len() <= MAX_LINE_BYTES),
            "{}",
            l.len()
        );
        assert!(l.iter().all(|x| !x.text.contains('\u{fffd}')));
        assert_eq!(l.iter().map(|x| x.text.len()).sum::<usize>(), buf.len() - 1);
        assert_eq!(l[1].seq, l[0].text.len() as u64);
        // A long line still being written: the full chunks come now, the rest waits.
        let buf = vec![b'x'; MAX_LINE_BYTES + 10];
        let (l, used) = split_lines(&buf, 0, false, false);
        assert_eq!((l.len(), used), (1, MAX_LINE_BYTES));
    }

    #[test]
    fn srun_failures() {
        assert_eq!(
            srun_task_failure("srun: error: vm: task 1: Exited with exit code 7"),
            Some(("rank 1".to_owned(), "Exited with exit code 7"))
        );
        assert_eq!(
            srun_task_failure("srun: error: gpu-a: task 12: Segmentation fault (core dumped)"),
            Some(("rank 12".to_owned(), "Segmentation fault (core dumped)"))
        );
        // srun groups the tasks of one node that ended alike.
        assert_eq!(
            srun_task_failure("srun: error: vm: tasks 0-1: Exited with exit code 1"),
            Some(("ranks 0-1".to_owned(), "Exited with exit code 1"))
        );
        assert_eq!(
            srun_task_failure("srun: error: vm: tasks 0,2-3: Killed"),
            Some(("ranks 0,2-3".to_owned(), "Killed"))
        );
        assert_eq!(srun_task_failure("srun: error: vm: tasks : Killed"), None);
        assert_eq!(srun_task_failure("srun: Force Terminated StepId=3.0"), None);
        assert_eq!(srun_task_failure("1: srun: error: x: task 1: y"), None);
        assert_eq!(srun_task_failure("srun: error: x: task one: y"), None);
    }

    #[test]
    fn labels_become_ranks() {
        assert_eq!(split_label("0: hello"), (0, "hello"));
        assert_eq!(split_label(" 7: a: b"), (7, "a: b"));
        assert_eq!(split_label("12:"), (12, ""));
        assert_eq!(split_label("no label"), (0, "no label"));
        assert_eq!(split_label("3 apples"), (0, "3 apples"));
        assert_eq!(split_label("99999999999: x"), (0, "99999999999: x"));
        let (l, _) = split_lines(b"1: up\nslurmstepd: error\n", 0, true, false);
        assert_eq!((l[0].rank, l[0].text.as_str()), (1, "up"));
        assert_eq!((l[1].rank, l[1].text.as_str()), (0, "slurmstepd: error"));
    }

    #[test]
    fn files_are_followed_from_the_offset() {
        let dir = std::env::temp_dir().join(format!("sy-logs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("a.out");
        let _ = std::fs::remove_file(&p);
        let mut off = 0;
        assert_eq!(
            read_new_lines(&p, &mut off, false, false).ok(),
            Some(NewLines {
                lines: vec![],
                at_end: true
            })
        );
        std::fs::write(&p, "a\nb").ok();
        let got = read_new_lines(&p, &mut off, false, false)
            .unwrap_or_default()
            .lines;
        assert_eq!((got.len(), off), (1, 2));
        std::fs::write(&p, "a\nbc\n").ok();
        let got = read_new_lines(&p, &mut off, false, false)
            .unwrap_or_default()
            .lines;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, got[0].text.as_str(), off), (2, "bc", 5));
        // More than one read holds: the rest comes on later reads, and only the last one says
        // the file was read to its end.
        let big = "x".repeat(1000) + "\n";
        std::fs::write(&p, big.repeat(3000)).ok();
        let mut off = 0;
        let mut reads = Vec::new();
        loop {
            let r = read_new_lines(&p, &mut off, false, true).unwrap_or_default();
            reads.push(r.lines.len());
            if r.at_end {
                break;
            }
        }
        assert!(reads.len() >= 3, "{reads:?}");
        assert_eq!(reads.iter().sum::<usize>(), 3000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
