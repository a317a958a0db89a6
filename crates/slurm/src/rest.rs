//! Talking to Slurm through `slurmrestd` (Slurm 22.05, OpenAPI plugin v0.0.38) instead of the
//! command-line tools: the same [`SlurmClient`] over HTTP, authenticated with a JSON Web Token
//! (`scontrol token`, `AuthAltTypes=auth/jwt`) in `X-SLURM-USER-TOKEN` and the user it was made
//! for in `X-SLURM-USER-NAME`.
//!
//! | client call | slurmrestd |
//! |---|---|
//! | `nodes` | `GET /slurm/v0.0.38/nodes` (filtered by partition here) |
//! | `jobs` | `GET /slurm/v0.0.38/jobs` |
//! | `job` | `GET /slurm/v0.0.38/job/{id}` |
//! | `submit` | `POST /slurm/v0.0.38/job/submit` |
//! | `cancel` | `DELETE /slurm/v0.0.38/job/{id}` |
//!
//! The shapes were checked against a running slurmrestd 22.05.8 (fixtures in
//! `tests/fixtures/rest-v0.0.38/`, and its own `/openapi/v3`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{SlurmClient, SlurmError, Submission};
use crate::parse::{self, JobInfo, Node, QueueJob};

const API: &str = "/slurm/v0.0.38";

/// Largest answer read from slurmrestd (a job listing of a busy controller).
const MAX_ANSWER_BYTES: u64 = 512 << 20;

/// `PATH` of the batch script (slurmrestd passes no environment of its own).
pub const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A slurmrestd client.
pub struct RestClient {
    base: String,
    user: String,
    token: String,
    /// When the token stops being accepted (its `exp` claim, seconds since the Unix epoch).
    expires_s: Option<u64>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client of the slurmrestd at `url` (`http://host:port`; TLS is for a proxy in front),
    /// acting as the user `token` was made for (its `sun` claim), or `user` when given.
    pub fn new(
        url: &str,
        token: &str,
        user: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(format!(
                "slurmrestd URL `{url}` must start with http:// (this client speaks no TLS; put slurmrestd behind a local proxy or tunnel)"
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err("the slurmrestd token is empty".into());
        }
        let expires_s = jwt_expiry(token);
        if let Some(exp) = expires_s
            && exp <= unix_now_s()
        {
            return Err(format!(
                "the slurmrestd token expired {} ago: make a new one (`scontrol token \
                 username=USER lifespan=SECONDS`) and start the server with it",
                ago(exp)
            ));
        }
        let user = match user {
            Some(u) => u.to_owned(),
            None => jwt_user(token).ok_or_else(|| {
                "cannot read the user name (`sun`) from the slurmrestd token; is it a token from `scontrol token`?".to_owned()
            })?,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(RestClient {
            base,
            user,
            token: token.to_owned(),
            expires_s,
            agent,
        })
    }

    /// One request; the answer's text when slurmrestd says it worked, else its errors.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String, SlurmError> {
        let url = format!("{}{API}{path}", self.base);
        let command = format!("{method} {API}{path}");
        let res = match (method, body) {
            // Exactly `application/json`: slurmrestd 22.05 answers "Unable to parse query"
            // (HTTP 400) to `application/json; charset=utf-8`, what `send_json` says.
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("X-SLURM-USER-NAME", &self.user)
                .header("X-SLURM-USER-TOKEN", &self.token)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("X-SLURM-USER-NAME", &self.user)
                .header("X-SLURM-USER-TOKEN", &self.token)
                .call(),
            _ => self
                .agent
                .get(&url)
                .header("X-SLURM-USER-NAME", &self.user)
                .header("X-SLURM-USER-TOKEN", &self.token)
                .call(),
        };
        let mut res = res.map_err(|e| SlurmError::Unreachable {
            command: command.clone(),
            message: format!("cannot reach slurmrestd at {}: {e}", self.base),
        })?;
        let status = res.status().as_u16();
        // A listing of a busy controller's jobs passes ureq's default cap of 10 MB.
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| SlurmError::Unreachable {
                command: command.clone(),
                message: format!("reading slurmrestd's answer: {e}"),
            })?;
        let errors = parse::parse_rest_errors(&text);
        if (200..300).contains(&status) && errors.is_empty() {
            return Ok(text);
        }
        // Where it was asked and what came back, for every failure: a message alone ("Unspecified
        // error") does not say which slurmrestd, which call, or that the token ran out.
        let answered = format!("HTTP {status} from {method} {url}");
        let expired = self.expires_s.filter(|&exp| exp <= unix_now_s());
        let message = if let Some(exp) = expired {
            let said = if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            };
            // Its expiry, not its age: a message that changed every round would be reported
            // as a new trouble every round.
            format!(
                "the slurmrestd token has expired (its `exp` is {exp}, Unix time) \
                 ({answered}{said}); restart the server with a new one"
            )
        } else if status == 500
            && !errors.is_empty()
            // (The jobs listing adds a description: "Unspecified error (Failed while looking
            // for jobs)".)
            && errors.iter().all(|e| e.starts_with("Unspecified error"))
        {
            // What slurmrestd 22.05 answers, among other things, to a token whose signature
            // it cannot verify (an expired one is caught above).
            format!(
                "{} ({answered}); slurmrestd also answers so to a token it cannot verify: check \
                 that the token was made by this cluster's `scontrol token`",
                errors.join("; ")
            )
        } else if !errors.is_empty() {
            format!("{} ({answered})", errors.join("; "))
        } else if status == 401 {
            format!("authentication failure ({answered}): is the token valid, and the user right?")
        } else if text.trim_start().starts_with('<') {
            format!(
                "{answered}, and the answer is a web page, not slurmrestd's JSON: is rest_url \
                 slurmrestd's address?"
            )
        } else {
            let text: String = text.trim().chars().take(200).collect();
            format!("{answered}: {text}")
        };
        Err(SlurmError::Failed {
            command,
            status: format!("HTTP {status}"),
            message,
        })
    }
}

/// The body of `POST /job/submit` for a submission: the same job as [`Submission::args`]
/// asks `sbatch` for, except `--switches` and `--segment`, which v0.0.38 has no field for.
pub fn submit_body(s: &Submission) -> Value {
    let workdir = std::path::Path::new(&s.stdout)
        .parent()
        .map_or_else(|| "/tmp".to_owned(), |p| p.display().to_string());
    let mut job = json!({
        "name": s.job_name,
        "comment": s.comment,
        "partition": s.partition,
        "nodes": [s.nodes, s.nodes],
        "tasks_per_node": s.ntasks_per_node,
        // sbatch derives the task count from nodes × tasks per node; slurmrestd does not
        // (without it the job has one task).
        "tasks": s.nodes.saturating_mul(s.ntasks_per_node),
        "standard_output": s.stdout,
        "standard_error": s.stderr,
        "open_mode": "append",
        "requeue": false,
        "current_working_directory": workdir,
        "environment": { "PATH": JOB_PATH },
    });
    if let Some(a) = &s.account {
        job["account"] = json!(a);
    }
    if let Some(g) = s.gpus_per_node {
        job["gpus_per_node"] = json!(g.to_string());
    }
    if let Some(c) = s.cpus_per_task {
        job["cpus_per_task"] = json!(c);
    }
    if let Some(t) = s.time_limit_min {
        job["time_limit"] = json!(t);
    }
    json!({ "script": s.script(), "job": job })
}

impl SlurmClient for RestClient {
    fn nodes(&self, partition: Option<&str>) -> Result<Vec<Node>, SlurmError> {
        let text = self.call("GET", "/nodes", None)?;
        parse::parse_rest_nodes(&text, partition).map_err(|source| SlurmError::Parse {
            command: "GET /nodes".into(),
            source,
        })
    }

    fn jobs(&self) -> Result<Vec<QueueJob>, SlurmError> {
        let text = self.call("GET", "/jobs", None)?;
        let mut jobs = parse::parse_rest_jobs(&text).map_err(|source| SlurmError::Parse {
            command: "GET /jobs".into(),
            source,
        })?;
        // Only this user's: another user's job is never Switchyard's, whatever its comment.
        jobs.retain(|j| j.user == self.user);
        Ok(jobs)
    }

    fn job(&self, id: &str) -> Result<Option<JobInfo>, SlurmError> {
        if !id.chars().all(|c| c.is_ascii_digit() || c == '_') || id.is_empty() {
            return Ok(None);
        }
        match self.call("GET", &format!("/job/{id}"), None) {
            Ok(text) => parse::parse_rest_job_infos(&text)
                .map(|v| v.into_iter().next())
                .map_err(|source| SlurmError::Parse {
                    command: "GET /job".into(),
                    source,
                }),
            Err(SlurmError::Failed { message, .. }) if message.contains("Invalid job id") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn submit(&self, s: &Submission) -> Result<String, SlurmError> {
        let text = self.call("POST", "/job/submit", Some(&submit_body(s)))?;
        parse::parse_rest_submit(&text).map_err(|source| SlurmError::Parse {
            command: "POST /job/submit".into(),
            source,
        })
    }

    fn cancel(&self, id: &str) -> Result<(), SlurmError> {
        if !id.chars().all(|c| c.is_ascii_digit() || c == '_') || id.is_empty() {
            return Ok(());
        }
        crate::client::cancelled(self.call("DELETE", &format!("/job/{id}"), None))
    }
}

/// The `sun` (Slurm user name) claim of a JWT from `scontrol token`.
pub fn jwt_user(token: &str) -> Option<String> {
    jwt_claims(token)?
        .get("sun")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A JWT's `exp` claim: when it stops being accepted, in seconds since the Unix epoch.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    jwt_claims(token)?.get("exp")?.as_u64()
}

/// The claims (payload) of a JWT, unverified: slurmctld verifies it.
fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long ago `exp` (seconds since the epoch) was, in words.
fn ago(exp: u64) -> String {
    let s = unix_now_s().saturating_sub(exp);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Decodes unpadded (or padded) base64url; `None` on anything else.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token shaped as `scontrol token` makes them, with these claims (unsigned: slurmctld
    /// checks the signature, the client never does).
    fn token(claims: &Value) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let encode = |bytes: &[u8]| {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                    << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        };
        format!(
            "{}.{}.sig",
            encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn the_user_comes_from_the_token() {
        // {"exp":1796025469,"iat":1796021869,"sun":"root"} from a real `scontrol token`.
        let real = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTYwMjU0NjksImlhdCI6MTc5NjAyMTg2OSwic3VuIjoicm9vdCJ9.sig";
        assert_eq!(jwt_user(real).as_deref(), Some("root"));
        assert_eq!(jwt_expiry(real), Some(1_796_025_469));
        let t = &token(&json!({"exp": unix_now_s() + 3600, "sun": "root"}));
        assert_eq!(jwt_user(t).as_deref(), Some("root"));
        assert_eq!(jwt_user("not a token"), None);
        assert_eq!(jwt_user("a.!!!.c"), None);
        assert_eq!(base64url_decode("aGk").as_deref(), Some(&b"hi"[..]));
        let c = RestClient::new("http://h:6820/", t, None, Duration::from_secs(1));
        let c = c.expect("a client");
        assert_eq!(
            (c.base.as_str(), c.user.as_str()),
            ("http://h:6820", "root")
        );
        assert!(
            !format!("{c:?}").contains("sig"),
            "the token is never printed"
        );
        assert!(RestClient::new("https://h", t, None, Duration::from_secs(1)).is_err());
        assert!(RestClient::new("http://h", " ", None, Duration::from_secs(1)).is_err());
    }

    /// An expired token is refused at start, and slurmrestd's refusals say where they came
    /// from: which call, which URL, which HTTP status.
    #[test]
    fn expired_tokens_and_failed_calls_say_what_and_where() {
        let old = token(&json!({"exp": unix_now_s() - 600, "sun": "root"}));
        let e = RestClient::new("http://h:6820", &old, None, Duration::from_secs(1))
            .expect_err("expired");
        assert!(e.contains("the slurmrestd token expired 10 min ago"), "{e}");

        let answer = |reply: &'static str| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                if let Ok((mut conn, _)) = listener.accept() {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(reply.as_bytes());
                }
            });
            let t = token(&json!({"exp": unix_now_s() + 3600, "sun": "root"}));
            let c = RestClient::new(
                &format!("http://127.0.0.1:{port}"),
                &t,
                None,
                Duration::from_secs(5),
            )
            .expect("client");
            let e = c.jobs().expect_err("refused");
            (e.message(), e.to_string(), port)
        };
        let (m, shown, port) = answer(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 29\r\n\
             Connection: close\r\n\r\n<html><h1>Not Found</h1></html>",
        );
        assert_eq!(
            m,
            format!(
                "HTTP 404 from GET http://127.0.0.1:{port}/slurm/v0.0.38/jobs, and the answer \
                 is a web page, not slurmrestd's JSON: is rest_url slurmrestd's address?"
            )
        );
        assert_eq!(
            shown.matches("HTTP 404").count(),
            1,
            "the status is said once: {shown}"
        );

        let body = r#"{"errors":[{"error":"Unspecified error"}]}"#;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (m, _, port) = answer(reply);
        assert_eq!(
            m,
            format!(
                "Unspecified error (HTTP 500 from GET \
                 http://127.0.0.1:{port}/slurm/v0.0.38/jobs); slurmrestd also answers so to a \
                 token it cannot verify: check that the token was made by this cluster's \
                 `scontrol token`"
            )
        );
        // The jobs listing says a little more, and gets the same hint.
        let body = r#"{"errors":[{"error":"Unspecified error","description":"Failed while looking for jobs"}]}"#;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (m, _, _) = answer(reply);
        assert!(
            m.contains("slurmrestd also answers so to a token it cannot verify"),
            "{m}"
        );
    }

    #[test]
    fn a_submission_becomes_v0_0_38_job_properties() {
        let s = Submission {
            job_name: "sy-j".into(),
            comment: "switchyard:j:1:2".into(),
            partition: "gpu".into(),
            account: Some("lab".into()),
            nodes: 4,
            ntasks_per_node: 8,
            gpus_per_node: Some(8),
            cpus_per_task: None,
            time_limit_min: Some(30),
            switches: Some(1),
            segment: None,
            stdout: "/shared/logs/j/g1-a2.out".into(),
            stderr: "/shared/logs/j/g1-a2.err".into(),
            env: vec![("SWITCHYARD_ATTEMPT".into(), "2".into())],
            command: "exec sleep 1".into(),
        };
        let b = submit_body(&s);
        let j = &b["job"];
        assert_eq!(j["nodes"], json!([4, 4]));
        assert_eq!(j["tasks_per_node"], json!(8));
        assert_eq!(j["tasks"], json!(32));
        assert_eq!(j["gpus_per_node"], json!("8"));
        assert!(j.get("cpus_per_task").is_none());
        let b = submit_body(&Submission {
            cpus_per_task: Some(4),
            ..s.clone()
        });
        assert_eq!(b["job"]["cpus_per_task"], json!(4));
        assert_eq!(j["time_limit"], json!(30));
        assert_eq!(j["requeue"], json!(false));
        assert_eq!(j["open_mode"], json!("append"));
        assert_eq!(j["account"], json!("lab"));
        assert_eq!(j["comment"], json!("switchyard:j:1:2"));
        assert_eq!(j["current_working_directory"], json!("/shared/logs/j"));
        assert_eq!(j["environment"]["PATH"], json!(JOB_PATH));
        assert_eq!(b["script"], json!(s.script()));
    }
}
