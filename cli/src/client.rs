//! The CLI's HTTP client of the native API; error bodies become readable messages.

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct ApiClient {
    base: String,
    server: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(config: &crate::config::ClientConfig) -> Self {
        let http = pacer_apiserver::tls::client(
            config.ca.as_deref(),
            config.token.as_deref(),
            std::time::Duration::from_secs(60),
        )
        .unwrap_or_else(|e| {
            eprintln!("error: the client configuration: {e}");
            std::process::exit(1)
        });
        let server = config.server.trim_end_matches('/').to_string();
        ApiClient {
            base: format!("{server}/apis/pacer.io/v1"),
            server,
            http,
        }
    }

    /// Sends a request and returns the JSON body of a success; an error names what was wrong.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let text = self.call_text(method, path, body).await?;
        serde_json::from_str(&text)
            .with_context(|| format!("the server answered {path} with something that is not JSON"))
    }

    pub async fn call_text(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<String> {
        self.request(method, format!("{}{path}", self.base), body)
            .await
    }

    /// A call to the Marathon API of the same server (`/v2/...`).
    pub async fn marathon(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let text = self
            .request(method, format!("{}{path}", self.server), body)
            .await?;
        serde_json::from_str(&text)
            .with_context(|| format!("the server answered {path} with something that is not JSON"))
    }

    /// A Marathon API call whose success has no body (204).
    pub async fn request_empty(&self, method: Method, path: &str) -> anyhow::Result<()> {
        self.request(method, format!("{}{path}", self.server), None)
            .await
            .map(|_| ())
    }

    async fn request(
        &self,
        method: Method,
        url: String,
        body: Option<&Value>,
    ) -> anyhow::Result<String> {
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let resp = request.send().await.with_context(|| {
            format!(
                "cannot reach the Pacer server at {url} (is `pacer up` running? set PACER_SERVER)"
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.context("reading the server's answer")?;
        if status.is_success() {
            return Ok(text);
        }
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the server refused the credentials (401): a token is looked for in PACER_TOKEN, then the config file (PACER_CONFIG, .pacer/config, ~/.config/pacer/config)"
            );
        }
        if status == StatusCode::FORBIDDEN {
            bail!(
                "the token's role or scope does not allow this (403): {}",
                describe_error(status, &text)
            );
        }
        bail!("{}", describe_error(status, &text))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }
}

/// "spec.instances: must be >= 0 (got -1)" lines from an error body, or its message.
pub fn describe_error(status: StatusCode, text: &str) -> String {
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        return format!("{status}: {}", text.trim());
    };
    let message = body["message"]
        .as_str()
        .unwrap_or("request failed")
        .to_string();
    let details: Vec<String> = body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| {
                    format!(
                        "  {}: {}",
                        e["path"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if details.is_empty() {
        message
    } else {
        format!("{message}:\n{}", details.join("\n"))
    }
}
