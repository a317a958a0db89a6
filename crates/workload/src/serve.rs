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

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
                    "{{\"source\":{:?},\"step\":{},\"hash\":{},\"weights\":[{}]}}",
                    describe(source),
                    m.step.map_or("null".into(), |s| s.to_string()),
                    m.hash.map_or("null".into(), |h| format!("{h:?}")),
                    m.weights
                        .iter()
                        .map(|w| format!("{w:e}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
            Err(e) => (503, format!("{{\"error\":{e:?}}}")),
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
                Some(Ok(x)) => x,
                _ => return (400, "{\"error\":\"pass x=comma-separated numbers\"}".into()),
            };
            match load(source) {
                Ok(m) if m.weights.len() == x.len() => (
                    200,
                    format!(
                        "{{\"y\":{:e},\"step\":{}}}",
                        dot(&m.weights, &x),
                        m.step.map_or("null".into(), |s| s.to_string())
                    ),
                ),
                Ok(m) => (
                    400,
                    format!(
                        "{{\"error\":\"x has {} values, the model {}\"}}",
                        x.len(),
                        m.weights.len()
                    ),
                ),
                Err(e) => (503, format!("{{\"error\":{e:?}}}")),
            }
        }
        _ => (404, "{\"error\":\"not found\"}".into()),
    }
}

fn handle(source: &ModelSource, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
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
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let Err(e) = handle(source, s) {
                    eprintln!("request failed: {e}");
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
        let (status, body) = answer(&ModelSource::Checkpoints(dir.join("none")), "/model");
        assert_eq!(status, 503, "{body}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
