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
        let message = if !errors.is_empty() {
            errors.join("; ")
        } else if status == 401 {
            "authentication failure (is the token valid and unexpired, and the user right?)".into()
        } else {
            text.trim().chars().take(500).collect()
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
    let payload = token.split('.').nth(1)?;
    let bytes = base64url_decode(payload)?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sun")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
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

    #[test]
    fn the_user_comes_from_the_token() {
        // {"exp":1796025469,"iat":1796021869,"sun":"root"} from a real `scontrol token`.
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTYwMjU0NjksImlhdCI6MTc5NjAyMTg2OSwic3VuIjoicm9vdCJ9.sig";
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
        assert_eq!(j["time_limit"], json!(30));
        assert_eq!(j["requeue"], json!(false));
        assert_eq!(j["account"], json!("lab"));
        assert_eq!(j["comment"], json!("switchyard:j:1:2"));
        assert_eq!(j["current_working_directory"], json!("/shared/logs/j"));
        assert_eq!(j["environment"]["PATH"], json!(JOB_PATH));
        assert_eq!(b["script"], json!(s.script()));
    }
}
