//! The blocking HTTP client the client verbs share: server address and token from flags or
//! `SWITCHYARD_URL` / `SWITCHYARD_TOKEN`, JSON in and out, error answers turned into
//! [`CliError`]s a person can act on.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_agent::http::printable;
use switchyard_server::api::ErrorBody;

use crate::CliError;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub url: String,
    /// API token (from `switchyard token create`).
    #[arg(
        long,
        env = "SWITCHYARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Where a server URL came from, for a message refusing it: `SWITCHYARD_URL` when `flag` was
/// not typed and the environment holds this value (a user who never typed `flag` looks for the
/// variable).
pub fn url_source(url: &str, flag: &'static str) -> &'static str {
    let typed = std::env::args_os().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
    });
    if !typed && std::env::var_os("SWITCHYARD_URL").is_some_and(|v| v == url) {
        "SWITCHYARD_URL"
    } else {
        flag
    }
}

/// How long a request may take, answer included.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How many times a read is asked while the server answers 503 (waiting 0.2, 0.4, 0.8 s).
pub const READ_TRIES: u32 = 4;

#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Self, CliError> {
        let token = args.token.clone().filter(|t| !t.is_empty()).ok_or_else(|| {
            CliError::Input(
                "no API token: pass --token or set SWITCHYARD_TOKEN (create one with `switchyard token create`)"
                    .into(),
            )
        })?;
        // A token goes into a header: one with a line break or a non-ASCII character (a paste
        // gone wrong) cannot, and would otherwise read as an unreachable server.
        if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(CliError::Input(format!(
                "the API token (--token or SWITCHYARD_TOKEN) contains {}: tokens are printable \
                 ASCII (`sy_` and hex digits)",
                match bad {
                    '\n' | '\r' => "a line break".to_owned(),
                    ' ' | '\t' => "a space".to_owned(),
                    c => format!("the character {c:?}"),
                }
            )));
        }
        // Named as given: trimmed, `http://` would read as `http:`.
        let base = switchyard_agent::http::server_base(&args.url).map_err(|why| {
            CliError::Input(format!(
                "{} `{}` {why}",
                url_source(&args.url, "--url"),
                args.url
            ))
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ANSWER_WITHIN))
            // A redirect is reported, not followed: following one drops the token (it may
            // lead to another host), and the 401 that follows would blame the token.
            .max_redirects(0)
            .build()
            .into();
        Ok(Client { base, token, agent })
    }

    /// A read. A 503 comes from a replica that cannot serve it now (a follower asked what only
    /// the leader knows, a store that does not answer) and closes the connection, so that
    /// through a load balancer asking again reaches another replica: reads are asked up to
    /// [`READ_TRIES`] times. Writes are not, since one asked twice could be done twice.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let mut wait = Duration::from_millis(200);
        for _ in 1..READ_TRIES {
            match self.send_get(path) {
                Ok(res) if res.status() == 503 => {
                    tracing::debug!(path, "503; asking again");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                res => return self.answer(res),
            }
        }
        self.answer(self.send_get(path))
    }

    fn send_get(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        self.answer(self.send_post(path, body))
    }

    /// A write that may be done twice with the same effect (draining a node): asked again on
    /// a 503 like a read ([`Self::get`]), so that through a load balancer it reaches the
    /// replica that serves it.
    pub fn post_idempotent<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let mut wait = Duration::from_millis(200);
        for _ in 1..READ_TRIES {
            match self.send_post(path, body) {
                Ok(res) if res.status() == 503 => {
                    tracing::debug!(path, "503; asking again");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                res => return self.answer(res),
            }
        }
        self.answer(self.send_post(path, body))
    }

    fn send_post<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token));
        match body {
            Some(b) => req.send_json(b),
            None => req.send_empty(),
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, CliError> {
        let timed_out = |e: &ureq::Error| {
            matches!(e, ureq::Error::Timeout(_)).then(|| {
                CliError::Unreachable(format!(
                    "the server at {} gave no answer within {} s",
                    self.base,
                    ANSWER_WITHIN.as_secs()
                ))
            })
        };
        let mut res = res.map_err(|e| {
            timed_out(&e).unwrap_or_else(|| {
                CliError::Unreachable(format!("cannot reach the server at {}: {e}", self.base))
            })
        })?;
        let status = res.status().as_u16();
        if switchyard_agent::http::is_redirect(status) {
            let to = res
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map_or_else(String::new, |l| format!(" to {}", printable(l, 200)));
            return Err(CliError::Other(format!(
                "{} answered HTTP {status}, a redirect{to}: the client does not follow \
                 redirects (the token would not go with it); set SWITCHYARD_URL (--url) to the \
                 server's own address",
                self.base
            )));
        }
        let text = res.body_mut().read_to_string().map_err(|e| {
            timed_out(&e).unwrap_or_else(|| {
                CliError::Unreachable(format!("reading the answer of {}: {e}", self.base))
            })
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                CliError::Other(format!("the server's answer is not what this client expects ({e}); are client and server the same version?"))
            });
        }
        let Ok(body) = serde_json::from_str::<ErrorBody>(&text) else {
            // An answer that is not a Switchyard error (an empty body, a proxy's page): say
            // where it came from, which is most often the wrong SWITCHYARD_URL.
            let first_line = text.trim().lines().next().unwrap_or("");
            let shown = if first_line.is_empty() {
                "with no error message".to_owned()
            } else {
                format!(
                    "that is not a Switchyard answer (\"{}\")",
                    printable(first_line, 120)
                )
            };
            let why = format!("HTTP {status} {shown} from {}", self.base);
            return Err(if (500..).contains(&status) {
                CliError::Unreachable(format!("{why}: the server or a proxy before it failed"))
            } else {
                CliError::Other(format!(
                    "{why}: is SWITCHYARD_URL (--url) a Switchyard server, or did a proxy before \
                     it answer?"
                ))
            });
        };
        // The server's words reach a terminal: no control characters (escape sequences).
        let message = printable(&body.error.message, 2000);
        Err(match status {
            400 | 413 | 415 | 422 => CliError::Input(format!(
                "the server refused the request ({status}): {message}"
            )),
            500.. => CliError::Unreachable(format!("the server failed ({status}): {message}")),
            _ => CliError::Refused { status, message },
        })
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    /// Serves `answers` (status, body) one connection each, closing every connection as a
    /// replica's 503 does; returns the address and how many requests came.
    fn serve(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let mut served = 0;
            for (status, body) in answers {
                let Ok((conn, _)) = listener.accept() else {
                    break;
                };
                let mut reader = BufReader::new(conn);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut content = vec![0; length];
                reader.read_exact(&mut content).expect("body");
                served += 1;
                let location = if (300..400).contains(&status) {
                    "location: http://elsewhere.example/v1/x\r\n"
                } else {
                    ""
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{location}\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                reader
                    .get_mut()
                    .write_all(answer.as_bytes())
                    .expect("answer");
            }
            served
        });
        (addr, server)
    }

    fn client(url: String) -> Client {
        Client::new(&ClientArgs {
            url,
            token: Some("sy_test".into()),
        })
        .expect("client")
    }

    const NOT_LEADER: &str =
        r#"{"error":{"code":"unavailable","message":"this replica is not the scheduling leader"}}"#;

    #[test]
    fn a_read_is_asked_again_while_the_server_answers_503() {
        let (url, server) = serve(vec![(503, NOT_LEADER), (503, NOT_LEADER), (200, "[1,2]")]);
        let got: Vec<u32> = client(url).get("/v1/x").expect("the third answer");
        assert_eq!(got, [1, 2]);
        assert_eq!(server.join().expect("server"), 3);
    }

    #[test]
    fn a_read_gives_up_after_its_tries_and_says_why() {
        let (url, server) = serve(vec![(503, NOT_LEADER); READ_TRIES as usize]);
        let e = client(url)
            .get::<Vec<u32>>("/v1/x")
            .expect_err("503 every time");
        assert!(e.to_string().contains("not the scheduling leader"), "{e}");
        assert_eq!(server.join().expect("server"), READ_TRIES as usize);
    }

    #[test]
    fn a_write_is_asked_once() {
        let (url, server) = serve(vec![(503, NOT_LEADER)]);
        let e = client(url)
            .post::<(), serde_json::Value>("/v1/jobs", None)
            .expect_err("503");
        assert!(e.to_string().contains("not the scheduling leader"), "{e}");
        assert_eq!(server.join().expect("server"), 1);
    }

    /// A redirect is reported with where it leads, not followed (the token would not go with
    /// it, and the 401 that followed blamed the token).
    #[test]
    fn a_redirect_is_named_not_followed() {
        let (url, server) = serve(vec![(301, "")]);
        let e = client(url)
            .get::<Vec<u32>>("/v1/x")
            .expect_err("a redirect");
        let text = e.to_string();
        assert!(
            text.contains("answered HTTP 301, a redirect to http://elsewhere.example/v1/x"),
            "{text}"
        );
        assert_eq!(server.join().expect("server"), 1);
    }

    /// The server's words reach a terminal without escape sequences; its line breaks stay.
    #[test]
    fn control_characters_in_an_error_are_not_printed() {
        let body = "{\"error\":{\"code\":\"unauthorized\",\"message\":\"RED \\u001b]0;pwned\\u0007\\nline 2\"}}";
        let (url, server) = serve(vec![(401, body)]);
        let e = client(url).get::<Vec<u32>>("/v1/x").expect_err("401");
        let text = e.to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("RED \u{fffd}]0;pwned\u{fffd}\nline 2"),
            "{text:?}"
        );
        server.join().expect("server");
    }

    /// An answer that is not a Switchyard error (a web page at another path) says so and
    /// points at the URL, instead of printing the page as the error.
    #[test]
    fn a_page_that_is_not_an_api_answer_points_at_the_url() {
        let (url, server) = serve(vec![(404, "<!doctype html>\n<html><style>body{}</style>")]);
        let e = client(url).get::<Vec<u32>>("/v1/x").expect_err("404");
        let text = e.to_string();
        assert!(
            text.contains("HTTP 404 that is not a Switchyard answer (\"<!doctype html>\")"),
            "{text}"
        );
        assert!(
            text.contains("is SWITCHYARD_URL (--url) a Switchyard server, or did a proxy"),
            "{text}"
        );
        server.join().expect("server");
    }
}
