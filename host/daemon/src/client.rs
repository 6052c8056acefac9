//! A small HTTP client of the daemon's API, used by the CLI subcommands.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the daemon at `server` (e.g. `http://127.0.0.1:7070`;
    /// `127.0.0.1:7070`, the form `weft serve --listen` takes, means
    /// `http://` there).
    pub fn new(server: &str, token: Option<String>) -> Self {
        let server = server.trim_end_matches('/');
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        Self {
            http: reqwest::Client::new(),
            base,
            token,
        }
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req`; a non-2xx answer becomes an error carrying the daemon's
    /// message and hint.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let response = req
            .send()
            .await
            .with_context(|| format!("cannot reach the weft daemon at {} (is `weft serve` running? set --server or WEFT_SERVER)", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&body) {
            Ok(v) if v.get("error").is_some() => {
                let e = &v["error"];
                let mut msg = format!("{status}: {}", e["message"].as_str().unwrap_or("error"));
                if let Some(hint) = e["hint"].as_str() {
                    msg.push_str(&format!("\nhint: {hint}"));
                }
                bail!(msg)
            }
            _ => bail!("{status}: {body}"),
        }
    }

    /// Sends `req` and parses a JSON answer.
    pub async fn json(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.send(req).await?.json().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    #[test]
    fn a_server_without_a_scheme_is_reached_over_http() {
        for (given, base) in [
            ("127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("localhost:7070/", "http://localhost:7070"),
            ("http://127.0.0.1:7070/", "http://127.0.0.1:7070"),
            ("https://weft.example", "https://weft.example"),
        ] {
            assert_eq!(Client::new(given, None).base(), base, "{given}");
        }
    }
}
