//! [`ControlPlane`] over the server's HTTP API (blocking, JSON, bearer token).
//!
//! Endpoints (all under `/v1/agent`, see `docs/agent.md`):
//!
//! | call | method and path | body | answer |
//! |---|---|---|---|
//! | register | `POST /v1/agent/register` | [`NodeInfo`] | [`Registration`] |
//! | heartbeat | `POST /v1/agent/nodes/{node}/heartbeat` | — | 204 |
//! | fetch assignments | `GET /v1/agent/nodes/{node}/assignments` | — | [`AssignmentList`] |
//! | report status | `PUT /v1/agent/nodes/{node}/status` | [`StatusReport`] | 204 |
//! | push logs | `POST /v1/agent/nodes/{node}/logs` | [`LogBatch`] | 204 |
//!
//! Errors use the API's error body `{"error": {"code", "message"}}`. A 404 whose code is
//! `unknown_node` makes the agent register again; other 4xx are refusals; 5xx, timeouts and
//! connection failures count as "unreachable" (the agent retries and keeps its processes).
//! Every request carries the machine's boot id in [`BOOT_ID_HEADER`] where it has one.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{ControlPlane, ControlPlaneError, MIN_REQUEST_TIME};
use crate::protocol::{
    AssignmentList, BOOT_ID_HEADER, LogBatch, LogLine, NodeInfo, ProcessStatus, Registration,
    StatusReport,
};

/// The error code of a 404 for a node the server does not know.
pub const UNKNOWN_NODE: &str = "unknown_node";

/// The control plane at `base` (e.g. `http://10.0.0.1:7070`), authenticated with `token`.
#[derive(Debug)]
pub struct HttpControlPlane {
    base: String,
    token: String,
    /// Sent as [`BOOT_ID_HEADER`] on every call.
    boot_id: Option<String>,
    http: ureq::Agent,
    /// Each call's time limit.
    timeout: Duration,
    /// See [`ControlPlane::give_up_by`].
    give_up_by: std::sync::Mutex<Option<Instant>>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

enum Body<'a, B: Serialize> {
    None,
    Json(&'a B),
}

/// `text` cut to `max` characters, with control characters other than line breaks and tabs
/// (escape sequences a terminal would act on) shown as U+FFFD.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Whether HTTP `status` sends the client elsewhere (301, 302, 303, 307, 308).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `url` as a client of the control plane uses it: trailing slashes trimmed and the scheme in
/// lower case (`HTTP://` names the same server), once [`check_server_url`] takes it.
pub fn server_base(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let base = match trimmed.get(..SCHEME.len()) {
        Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => {
            format!("{SCHEME}{}", &trimmed[SCHEME.len()..])
        }
        _ => trimmed.to_owned(),
    };
    check_server_url(&base)?;
    Ok(base)
}

const SCHEME: &str = "http://";

/// Why `base` is not a control-plane URL this client can use (`Ok` when it is):
/// plain `http://` with a host. The reason reads after the URL ("`…` must start with …").
pub fn check_server_url(base: &str) -> Result<(), String> {
    // Callers trim trailing slashes: `http://` arrives as `http:`.
    if base.eq_ignore_ascii_case("http:") || base.eq_ignore_ascii_case(SCHEME) {
        return Err("names no host (e.g. http://127.0.0.1:7070)".into());
    }
    if !base
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
    {
        return Err(
            "must start with http:// (put a TLS-terminating proxy in front for remote servers)"
                .into(),
        );
    }
    // The path, not the whole string: `http://v1` is a host of that name.
    let path = base[SCHEME.len()..]
        .find('/')
        .map_or("", |at| &base[SCHEME.len() + at..]);
    // (Bytes: the path may hold characters of several bytes.)
    if path.len() >= 3 && path.as_bytes()[path.len() - 3..].eq_ignore_ascii_case(b"/v1") {
        return Err(
            "ends in /v1: give the server's address (e.g. http://127.0.0.1:7070); the \
             API's paths are added to it"
                .into(),
        );
    }
    if path
        .split('/')
        .any(|segment| segment.eq_ignore_ascii_case("v1"))
    {
        return Err(
            "has an API path (/v1/…) in it: give the server's address alone (e.g. \
             http://127.0.0.1:7070); the API's paths are added to it"
                .into(),
        );
    }
    match base.parse::<ureq::http::Uri>() {
        // API paths are appended to it: a query or fragment would swallow them.
        _ if base.contains(['?', '#']) => Err(
            "has a query or fragment (`?`, `#`): give the server's address alone, e.g. \
             http://127.0.0.1:7070"
                .into(),
        ),
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => {
            let port = uri
                .authority()
                .and_then(|a| a.as_str().rsplit_once(':'))
                .filter(|(_, p)| !p.ends_with(']'))
                .map(|(_, p)| p);
            match port {
                Some(p) if !matches!(p.parse::<u16>(), Ok(1..)) => Err(format!(
                    "has port `{p}`, which is not a TCP port (1 to 65535)"
                )),
                _ => Ok(()),
            }
        }
        Ok(_) => Err("names no host (e.g. http://127.0.0.1:7070)".into()),
        Err(e) => Err(format!("is not a valid URL: {e}")),
    }
}

/// What names one control plane, however its URL is spelled: `http://localhost:7070/` and
/// `http://127.0.0.1:7070` are the same server, and one agent per node and server may run on a
/// machine. The host in lower case, every spelling of this machine's loopback as `127.0.0.1`,
/// with the port (80 if none) and any path. Names are not resolved: an answer that changed
/// with DNS would give one node two locks.
pub fn server_identity(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let Ok(uri) = base.parse::<ureq::http::Uri>() else {
        return base.to_owned();
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return base.to_owned();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path().trim_end_matches('/');
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let ip = host
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| numeric_ipv4(host));
    let host = match ip {
        _ if host == "localhost" => "127.0.0.1".to_owned(),
        Some(ip) if ip.is_loopback() => "127.0.0.1".to_owned(),
        Some(ip) => ip.to_string(),
        None => host.to_owned(),
    };
    format!("{host}:{port}{path}")
}

/// An IPv4 address in the other spellings the C library takes (`127.1`, `0x7f000001`,
/// `0177.0.0.1`: parts in decimal, octal or hexadecimal, the last one filling the remaining
/// bytes), which `--server` reaches as it would the dotted quad.
fn numeric_ipv4(host: &str) -> Option<std::net::IpAddr> {
    let parts: Vec<u32> = host
        .split('.')
        .map(|p| {
            if let Some(hex) = p.strip_prefix("0x") {
                u32::from_str_radix(hex, 16).ok()
            } else if p.len() > 1 && p.starts_with('0') {
                u32::from_str_radix(&p[1..], 8).ok()
            } else {
                p.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&b| b > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 32 && *last >= 1 << room {
        return None;
    }
    let value = head
        .iter()
        .enumerate()
        .fold(*last, |acc, (i, &b)| acc | (b << (24 - 8 * i as u32)));
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(value)))
}

impl HttpControlPlane {
    /// A client; `base` must be an `http://` URL.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, ControlPlaneError> {
        let base = server_base(base)
            .map_err(|why| ControlPlaneError::BadAddress(format!("server URL `{base}` {why}")))?;
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Reported, not followed: a redirect drops the token, and the 401 that follows
            // would blame it.
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            base,
            token: token.to_string(),
            boot_id: crate::hardware::boot_id(),
            http,
            timeout,
            give_up_by: std::sync::Mutex::new(None),
        })
    }

    /// The time limit of a call starting now: the client's timeout, cut to what is left until
    /// [`ControlPlane::give_up_by`]'s deadline but not below [`MIN_REQUEST_TIME`].
    fn time_limit(&self) -> Duration {
        let deadline = *self
            .give_up_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_REQUEST_TIME)
                .min(self.timeout),
            None => self.timeout,
        }
    }

    /// The same client, calling as the machine of boot `boot_id` (`None`: sends none).
    pub fn with_boot_id(mut self, boot_id: Option<String>) -> Self {
        self.boot_id = boot_id;
        self
    }

    fn node_path(node_id: &str, what: &str) -> String {
        let enc: String = node_id
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("/v1/agent/nodes/{enc}/{what}")
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Body<'_, B>,
        node_id: Option<&str>,
    ) -> Result<Option<T>, ControlPlaneError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let boot = self.boot_id.as_deref().unwrap_or_default();
        let time_limit = self.time_limit();
        // Requests with and without a body are different types; each gets the same headers
        // and time limit (for the whole call: connecting, sending, and reading the answer).
        macro_rules! headers {
            ($request:expr) => {{
                let r = $request
                    .config()
                    .timeout_global(Some(time_limit))
                    .build()
                    .header("Authorization", &auth);
                if boot.is_empty() {
                    r
                } else {
                    r.header(BOOT_ID_HEADER, boot)
                }
            }};
        }
        let res = match (method, body) {
            ("GET", _) => headers!(self.http.get(&url)).call(),
            ("PUT", Body::Json(b)) => headers!(self.http.put(&url)).send_json(b),
            ("PUT", Body::None) => headers!(self.http.put(&url)).send_empty(),
            (_, Body::Json(b)) => headers!(self.http.post(&url)).send_json(b),
            (_, Body::None) => headers!(self.http.post(&url)).send_empty(),
        };
        let mut res = res.map_err(|e| ControlPlaneError::Unreachable(format!("{url}: {e}")))?;
        let status = res.status().as_u16();
        if is_redirect(status) {
            let to = res
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map_or_else(String::new, |l| {
                    format!(" to {}", l.chars().take(200).collect::<String>())
                });
            return Err(ControlPlaneError::Rejected {
                status,
                message: format!(
                    "{method} {path} was redirected{to}: the agent does not follow redirects (the \
                     token would not go with it); give --server the address it points to"
                ),
            });
        }
        let text = res.body_mut().read_to_string().map_err(|e| {
            ControlPlaneError::Unreachable(format!("reading the answer of {url}: {e}"))
        })?;
        if (200..300).contains(&status) {
            if status == 204 || text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text).map(Some).map_err(|e| {
                ControlPlaneError::Rejected {
                    status,
                    message: format!(
                        "the server's answer to {method} {path} is not what this agent expects ({e}); are agent and server the same version?"
                    ),
                }
            });
        }
        let (code, message) = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| (b.error.code, b.error.message))
            .unwrap_or_else(|_| (String::new(), text.chars().take(500).collect()));
        Err(match status {
            404 if code == UNKNOWN_NODE => {
                ControlPlaneError::UnknownNode(node_id.unwrap_or_default().to_string())
            }
            408 | 429 | 500.. => ControlPlaneError::Unreachable(format!(
                "{method} {path} failed ({status}): {message}"
            )),
            _ => ControlPlaneError::Rejected { status, message },
        })
    }

    fn expect<T>(answer: Option<T>, what: &str) -> Result<T, ControlPlaneError> {
        answer.ok_or_else(|| ControlPlaneError::Rejected {
            status: 204,
            message: format!("the server sent no body for {what}"),
        })
    }
}

impl ControlPlane for HttpControlPlane {
    fn register(&self, node: &NodeInfo) -> Result<Registration, ControlPlaneError> {
        let answer = self.call("POST", "/v1/agent/register", Body::Json(node), None)?;
        Self::expect(answer, "register")
    }

    fn heartbeat(&self, node_id: &str) -> Result<(), ControlPlaneError> {
        self.call::<(), serde_json::Value>(
            "POST",
            &Self::node_path(node_id, "heartbeat"),
            Body::None,
            Some(node_id),
        )?;
        Ok(())
    }

    fn fetch_assignments(&self, node_id: &str) -> Result<AssignmentList, ControlPlaneError> {
        let answer: Option<AssignmentList> = self.call::<(), _>(
            "GET",
            &Self::node_path(node_id, "assignments"),
            Body::None,
            Some(node_id),
        )?;
        Self::expect(answer, "assignments")
    }

    fn report_status(
        &self,
        node_id: &str,
        statuses: &[ProcessStatus],
    ) -> Result<(), ControlPlaneError> {
        let body = StatusReport {
            processes: statuses.to_vec(),
        };
        self.call::<_, serde_json::Value>(
            "PUT",
            &Self::node_path(node_id, "status"),
            Body::Json(&body),
            Some(node_id),
        )?;
        Ok(())
    }

    fn push_logs(&self, node_id: &str, lines: &[LogLine]) -> Result<(), ControlPlaneError> {
        if lines.is_empty() {
            return Ok(());
        }
        let body = LogBatch {
            lines: lines.to_vec(),
        };
        self.call::<_, serde_json::Value>(
            "POST",
            &Self::node_path(node_id, "logs"),
            Body::Json(&body),
            Some(node_id),
        )?;
        Ok(())
    }

    fn give_up_by(&self, deadline: Option<Instant>) {
        *self
            .give_up_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = deadline;
    }
}

#[cfg(test)]
mod tests {
    use super::server_identity;

    #[test]
    fn one_server_however_its_url_is_spelled() {
        let canonical = server_identity("http://127.0.0.1:7171");
        assert_eq!(canonical, "127.0.0.1:7171");
        for spelling in [
            "http://localhost:7171",
            "http://LOCALHOST:7171/",
            "http://127.0.0.1:7171/",
            "http://[::1]:7171",
            "http://127.0.0.2:7171",
            "http://127.1:7171",
            "http://0x7f000001:7171",
            "http://0177.0.0.1:7171",
            "http://localhost.:7171",
        ] {
            assert_eq!(server_identity(spelling), canonical, "{spelling}");
        }
        assert_eq!(server_identity("http://127.0.0.1"), "127.0.0.1:80");
        // Names are not resolved: the key must not change with DNS.
        assert_eq!(server_identity("http://Head-Node:7171"), "head-node:7171");
        assert_eq!(server_identity("http://10.1:7171"), "10.0.0.1:7171");
        assert_eq!(server_identity("http://10.0.0.1.:7171"), "10.0.0.1:7171");
        assert_eq!(server_identity("http://1.2.3.4.5:7171"), "1.2.3.4.5:7171");
        assert_ne!(server_identity("http://127.0.0.1:7172"), canonical);
        assert_eq!(
            server_identity("http://127.0.0.1:7171/switchyard/"),
            "127.0.0.1:7171/switchyard"
        );
    }
}
