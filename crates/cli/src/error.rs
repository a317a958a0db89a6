//! Errors the binary reports, each with its exit code.

use std::path::PathBuf;

/// What went wrong, as the user sees it. Exit codes: 2 bad input (a file or flag the user gave),
/// 3 I/O (a file that cannot be read or written), 4 the server cannot be reached or failed,
/// 1 anything else.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user's input is wrong; the message says where and what was expected.
    #[error("{0}")]
    Input(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server cannot be reached or failed (exit code 4).
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
    /// The server refused what was asked for a reason other than its form (401, 403, 404,
    /// 409): no token, another tenant's, a quota, a name in use.
    #[error("{message} ({status})")]
    Refused { status: u16, message: String },
    /// Whoever read stdout stopped (`| head`): the command ends quietly, successfully.
    #[error("stdout closed")]
    PipeClosed,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Read { .. } | CliError::Write { .. } => 3,
            CliError::Unreachable(_) => 4,
            CliError::Other(_) | CliError::Refused { .. } => 1,
            CliError::PipeClosed => 0,
        }
    }
}

/// The largest input file the CLI reads whole.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Reads a file the user named, as text. Bytes that are not UTF-8 are bad input (exit 2), named
/// by line, not an I/O failure: the file was read, it just is not text. A file over
/// [`MAX_INPUT_BYTES`] is bad input too.
pub fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let read_error = |source| CliError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Read no more than the limit and one byte: `/dev/zero` or a runaway file must not take
    // all the memory.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(CliError::Input(format!(
            "{}: larger than {} MiB; job, plan, fleet and calibration files are far smaller \
             (is it the right file?)",
            path.display(),
            MAX_INPUT_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        CliError::Input(format!(
            "{}: line {line}: not valid UTF-8 text",
            path.display()
        ))
    })
}

/// Writes a file the user named.
pub fn write_text(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `text` to stdout. A closed pipe is [`CliError::PipeClosed`], not a panic.
pub fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CliError::PipeClosed
            } else {
                CliError::Other(format!("cannot write to stdout: {e}"))
            }
        })
}

/// `print!` through [`emit`]: returns early from the enclosing function on a write error.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::error::emit(&format!($($arg)*))?
    };
}

/// `println!` through [`emit`].
macro_rules! outln {
    () => {
        $crate::error::emit("\n")?
    };
    ($($arg:tt)*) => {
        $crate::error::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};

/// A flag's whole number from `min` to `max` (`u32::MAX`: no upper bound), said in words when
/// it is not one (clap's own range check prints Rust's `1..=1000`, and takes `-1` for a flag).
pub(crate) fn whole_from(min: u32, max: u32) -> impl Fn(&str) -> Result<u32, String> + Clone {
    move |text: &str| {
        text.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                if max == u32::MAX {
                    format!("`{text}` is not a whole number of {min} or more")
                } else {
                    format!("`{text}` is not a whole number from {min} to {max}")
                }
            })
    }
}

/// A seed: any whole number of 0 or more that fits 64 bits, said in words when it is not one.
pub(crate) fn seed(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("`{text}` is not a whole number from 0 to {}", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::whole_from;

    #[test]
    fn a_seed_is_a_whole_number_of_64_bits() {
        assert_eq!(super::seed("42"), Ok(42));
        let e = super::seed("-1").expect_err("negative");
        assert!(e.contains("`-1` is not a whole number from 0 to"), "{e}");
    }

    #[test]
    fn flag_ranges_are_said_in_words() {
        let limit = whole_from(1, 1000);
        assert_eq!(limit("1000"), Ok(1000));
        assert_eq!(
            limit("0").expect_err("below"),
            "`0` is not a whole number from 1 to 1000"
        );
        assert!(limit("1e3").is_err() && limit("").is_err() && limit("1001").is_err());
        let replicas = whole_from(0, u32::MAX);
        assert_eq!(replicas("0"), Ok(0));
        assert_eq!(
            replicas("-1").expect_err("negative"),
            "`-1` is not a whole number of 0 or more"
        );
    }
}
