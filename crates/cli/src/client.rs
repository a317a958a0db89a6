//! The blocking HTTP client the client verbs share: server address and token from flags or
//! `SWITCHYARD_URL` / `SWITCHYARD_TOKEN`, JSON in and out, error answers turned into
//! [`CliError`]s a person can act on.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
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
        let base = args.url.trim_end_matches('/').to_owned();
        switchyard_agent::http::check_server_url(&base)
            .map_err(|why| CliError::Input(format!("--url `{base}` {why}")))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Client { base, token, agent })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let res = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(res)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token));
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.send_empty(),
        };
        self.answer(res)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, CliError> {
        let mut res = res.map_err(|e| {
            CliError::Unreachable(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().map_err(|e| {
            CliError::Unreachable(format!("reading the answer of {}: {e}", self.base))
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                CliError::Other(format!("the server's answer is not what this client expects ({e}); are client and server the same version?"))
            });
        }
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| text.trim().chars().take(500).collect());
        // An answer that is not a Switchyard error (an empty body, a proxy's page): say where
        // it came from, which is most often the wrong SWITCHYARD_URL.
        if message.is_empty() && !(500..).contains(&status) {
            return Err(CliError::Other(format!(
                "HTTP {status} with no error message from {}: is SWITCHYARD_URL (--url) a \
                 Switchyard server?",
                self.base
            )));
        }
        Err(match status {
            400 | 413 | 422 => CliError::Input(format!(
                "the server refused the request ({status}): {message}"
            )),
            500.. => CliError::Unreachable(format!("the server failed ({status}): {message}")),
            _ => CliError::Other(format!("{message} ({status})")),
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
