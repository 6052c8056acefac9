//! A small HTTP client of the daemon's API, used by the CLI subcommands.

use anyhow::bail;
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
        let request = req.build()?;
        let has_body = request.body().is_some();
        let response = (self.http.execute(request).await).map_err(|e| self.unsent(e, has_body))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| error_text(&v))
        {
            Some(text) => bail!("{status}: {text}"),
            None => bail!("{status}: {body}"),
        }
    }

    /// Sends `req` and parses a JSON answer.
    pub async fn json(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.send(req).await?.json().await?)
    }

    /// Why a request got no answer, said as what to do: no daemon there
    /// (or not over plain HTTP), or a connection the daemon closed while
    /// the body was still going (what it does with a body over its limits).
    fn unsent(&self, e: reqwest::Error, has_body: bool) -> anyhow::Error {
        let base = &self.base;
        let why = if base.starts_with("https://") {
            format!(
                "cannot reach the weft daemon at {base}: the CLI speaks plain HTTP (give \
                 --server http://HOST:PORT, or the plain side of a TLS proxy)"
            )
        } else if e.is_connect() {
            format!(
                "cannot reach the weft daemon at {base} (is `weft serve` running? set --server \
                 or WEFT_SERVER)"
            )
        } else if has_body {
            format!(
                "the weft daemon at {base} closed the connection before answering: a body \
                 over its `--max-body-mib` (models: `--max-model-mib`) is refused before it \
                 is read; its log says more"
            )
        } else {
            format!("the weft daemon at {base} closed the connection before answering")
        };
        anyhow::Error::new(e).context(why)
    }
}

/// `name` (a stage's, a job's id, …) as one segment of a request's path,
/// percent-encoded: a name with `/`, `?`, `#` or spaces reaches the
/// daemon as that name (which says what is wrong with it), never as
/// another route. `.` and `..`, which a URL resolves, are refused here.
pub fn seg(name: &str) -> anyhow::Result<String> {
    if matches!(name, "" | "." | "..") {
        anyhow::bail!("`{name}` is not a name: give the name of one");
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(out)
}

/// The daemon's JSON error `{"error": {"code", "message", "hint"}}` as
/// text: the message, then the hint on a line of its own.
pub fn error_text(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    let mut text = e["message"].as_str().unwrap_or("error").to_string();
    if let Some(hint) = e["hint"].as_str() {
        text.push_str(&format!("\nhint: {hint}"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::{Client, error_text, seg};

    #[test]
    fn names_are_one_segment_of_the_path() {
        assert_eq!(seg("normalize").unwrap(), "normalize");
        assert_eq!(seg("../pipelines/text").unwrap(), "..%2Fpipelines%2Ftext");
        assert_eq!(seg("a?x=1#y z").unwrap(), "a%3Fx%3D1%23y%20z");
        assert_eq!(seg("wörld").unwrap(), "w%C3%B6rld");
        for bad in ["", ".", ".."] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_read_as_their_message_and_hint() {
        let v =
            serde_json::json!({"error": {"code": "bad_input", "message": "no", "hint": "fix it"}});
        assert_eq!(error_text(&v).as_deref(), Some("no\nhint: fix it"));
        let v = serde_json::json!({"error": {"code": "bad_input", "message": "no", "hint": null}});
        assert_eq!(error_text(&v).as_deref(), Some("no"));
        assert_eq!(error_text(&serde_json::json!({"text": "a"})), None);
    }

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
