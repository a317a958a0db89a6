//! `--serve ADDR`: a tiny inference service over the trained model, for the demo's service and
//! for replica tests. Plain HTTP/1.1 on `std::net`, one request per connection.
//!
//! - `GET /healthz` → `ok`
//! - `GET /model` → `{"source": …, "step": …, "hash": …, "weights": […]}`
//! - `GET /predict?x=1.0,2.0,…` → `{"y": …, "step": …}`: `w . x` with the newest model
//!
//! The model is read on every request from `--model FILE` (a final model file) or else from the
//! newest complete checkpoint in the checkpoint directory, so a service started beside a training
//! run serves whatever the run has reached.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::math::dot;

/// Where the served model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A final model file (`train::model_file` format).
    File(PathBuf),
    /// The newest checkpoint in a directory.
    Checkpoints(PathBuf),
}

/// A model as served.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// Weights.
    pub weights: Vec<f64>,
    /// Training step it is from, if known.
    pub step: Option<u64>,
    /// Hash from the model file, if any.
    pub hash: Option<String>,
}

/// Parses a final model file (`train::model_file`).
pub fn parse_model_file(text: &str) -> Result<Served, String> {
    let mut weights = Vec::new();
    let mut hash = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("hash") => hash = parts.next().map(str::to_string),
            Some(name) if name.starts_with('w') => {
                let bits = parts
                    .next()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad weight line {line:?}"))?;
                weights.push(f64::from_bits(bits));
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    if weights.is_empty() {
        return Err("no weights".into());
    }
    Ok(Served {
        weights,
        step: None,
        hash,
    })
}

fn load(source: &ModelSource) -> Result<Served, String> {
    let served = load_any(source)?;
    // JSON has no NaN or infinity, and such a model predicts nothing (its training diverged).
    if let Some((i, w)) = served
        .weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite())
    {
        return Err(format!(
            "the model's weight {i} is {w}, not a finite number (did its training diverge?): \
             nothing to serve from {}",
            describe(source)
        ));
    }
    Ok(served)
}

fn load_any(source: &ModelSource) -> Result<Served, String> {
    match source {
        ModelSource::File(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|t| parse_model_file(&t)),
        ModelSource::Checkpoints(dir) => {
            let found = checkpoint::latest(dir).map_err(|e| e.to_string())?;
            let (c, _) = found
                .checkpoint
                .ok_or_else(|| format!("no checkpoint in {} yet", dir.display()))?;
            Ok(Served {
                weights: c.weights,
                step: Some(c.step),
                hash: None,
            })
        }
    }
}

fn describe(source: &ModelSource) -> String {
    match source {
        ModelSource::File(p) => format!("file {}", p.display()),
        ModelSource::Checkpoints(d) => format!("checkpoints in {}", d.display()),
    }
}

/// Answers one request: (status, JSON or text body).
pub fn answer(source: &ModelSource, target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/healthz" => (200, "ok".into()),
        "/model" => match load(source) {
            Ok(m) => (
                200,
                format!(
                    "{{\"source\":{},\"step\":{},\"hash\":{},\"weights\":[{}]}}",
                    json_string(&describe(source)),
                    m.step.map_or("null".into(), |s| s.to_string()),
                    m.hash.map_or("null".into(), |h| json_string(&h)),
                    m.weights
                        .iter()
                        .map(|w| format!("{w:e}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
            Err(e) => (503, format!("{{\"error\":{}}}", json_string(&e))),
        },
        "/predict" => {
            let x = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("x="))
                .map(|v| {
                    v.split(',')
                        .map(|n| n.trim().parse::<f64>())
                        .collect::<Result<Vec<f64>, _>>()
                });
            let x = match x {
                Some(Ok(x)) if x.iter().all(|v| v.is_finite()) => x,
                _ => {
                    return (
                        400,
                        "{\"error\":\"pass x=comma-separated finite numbers\"}".into(),
                    );
                }
            };
            match load(source) {
                Ok(m) if m.weights.len() == x.len() => {
                    let y = dot(&m.weights, &x);
                    if !y.is_finite() {
                        return (
                            400,
                            "{\"error\":\"the prediction overflows: x is too large\"}".into(),
                        );
                    }
                    (
                        200,
                        format!(
                            "{{\"y\":{y:e},\"step\":{}}}",
                            m.step.map_or("null".into(), |s| s.to_string())
                        ),
                    )
                }
                Ok(m) => (
                    400,
                    format!(
                        "{{\"error\":\"x has {} values, the model {}\"}}",
                        x.len(),
                        m.weights.len()
                    ),
                ),
                Err(e) => (503, format!("{{\"error\":{}}}", json_string(&e))),
            }
        }
        _ => (404, "{\"error\":\"not found\"}".into()),
    }
}

/// Most bytes of a request line or header line; most header lines.
const MAX_REQUEST_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// Requests served at once; connections beyond it are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A string as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Reads one line of at most [`MAX_REQUEST_LINE`] bytes within the request's deadline.
fn read_request_line(
    reader: &mut BufReader<TcpStream>,
    deadline: Instant,
) -> std::io::Result<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request took too long",
        ));
    }
    reader.get_ref().set_read_timeout(Some(left))?;
    let mut line = String::new();
    reader
        .by_ref()
        .take(MAX_REQUEST_LINE)
        .read_line(&mut line)?;
    if line.len() as u64 >= MAX_REQUEST_LINE && !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request line or header too long",
        ));
    }
    Ok(line)
}

fn handle(source: &ModelSource, stream: TcpStream) -> std::io::Result<()> {
    // A whole-request deadline, not a per-read one: a client sending a byte every few
    // seconds cannot hold the connection.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut reader = BufReader::new(stream);
    let request = read_request_line(&mut reader, deadline)?;
    // Skip the headers.
    for _ in 0..MAX_HEADERS {
        let h = read_request_line(&mut reader, deadline)?;
        if h.trim().is_empty() {
            break;
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = answer(source, target);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves forever on `addr`, printing one line when listening.
pub fn serve(addr: &str, source: &ModelSource, out: &mut dyn Write) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    writeln!(
        out,
        "serving {} on http://{}",
        describe(source),
        listener.local_addr()?
    )?;
    out.flush()?;
    // One thread per request, so one slow client does not hold the others up.
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    drop(s);
                    continue;
                }
                let source = source.clone();
                let busy_here = busy.clone();
                let spawned = std::thread::Builder::new()
                    .name("serve-request".into())
                    .spawn(move || {
                        if let Err(e) = handle(&source, s) {
                            eprintln!("request failed: {e}");
                        }
                        busy_here.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    eprintln!("cannot start a request thread: {e}");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
    Ok(())
}

/// The checkpoint directory or model file to serve, from the flags.
pub fn source(model: Option<&Path>, checkpoint_dir: Option<&Path>) -> Option<ModelSource> {
    model
        .map(|m| ModelSource::File(m.to_path_buf()))
        .or_else(|| checkpoint_dir.map(|d| ModelSource::Checkpoints(d.to_path_buf())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model_file;

    #[test]
    fn model_file_round_trips_and_predicts() {
        let text = model_file(&[1.5, -2.0], 0xabc);
        let m = parse_model_file(&text).expect("parses");
        assert_eq!(m.weights, vec![1.5, -2.0]);
        assert_eq!(m.hash.as_deref(), Some("0000000000000abc"));
        let dir = std::env::temp_dir().join(format!("sywl-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("m.txt");
        std::fs::write(&path, text).expect("write");
        let src = ModelSource::File(path);
        assert_eq!(answer(&src, "/healthz"), (200, "ok".into()));
        let (status, body) = answer(&src, "/predict?x=2,1");
        assert_eq!(status, 200);
        assert!(body.starts_with("{\"y\":1e0"), "{body}");
        assert_eq!(answer(&src, "/predict?x=1").0, 400);
        assert_eq!(answer(&src, "/predict?x=a,b").0, 400);
        assert_eq!(answer(&src, "/nope").0, 404);
        // Answers are JSON: no NaN or infinity in, none out, errors escaped.
        assert_eq!(answer(&src, "/predict?x=nan,1").0, 400);
        assert_eq!(answer(&src, "/predict?x=inf,1").0, 400);
        let (status, body) = answer(&src, "/predict?x=1e308,-1e308");
        assert_eq!(status, 400, "{body}");
        assert_eq!(json_string("a \"b\"\n\u{1}"), r#""a \"b\"\n\u0001""#);
        let (status, body) = answer(&ModelSource::Checkpoints(dir.join("none")), "/model");
        assert_eq!(status, 503, "{body}");
        // The model's own answer is JSON, its source a plain string.
        let (status, body) = answer(&src, "/model");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert!(
            v["source"].as_str().is_some_and(|s| s.starts_with("file ")),
            "{body}"
        );
        assert_eq!(v["weights"], serde_json::json!([1.5, -2.0]));
        // A model holding NaN is refused as such, not served as JSON it cannot be.
        let nan = dir.join("nan.txt");
        std::fs::write(&nan, model_file(&[f64::NAN, 1.0], 0xabc)).expect("write");
        let nan = ModelSource::File(nan);
        for target in ["/model", "/predict?x=1,1"] {
            let (status, body) = answer(&nan, target);
            assert_eq!(status, 503, "{target}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("not a finite number")),
                "{body}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
