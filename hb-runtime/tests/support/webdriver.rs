//! The W3C WebDriver commands the browser tests send to chromedriver: HTTP requests with JSON
//! bodies, answered with `{"value": ...}`. A client crate (fantoccini) would bring a Unicode
//! segmenter, a date library and a second HTTP stack with it, which took the CI run more than
//! a minute to build; the ten commands below are plain requests on the HTTP client the tests
//! have already.

use axum::http::{Method, Request};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// What WebDriver calls an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session of a chromedriver.
pub struct WebDriver {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
}

/// One request: the answer's `value`, or the driver's error and message.
async fn call(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = Request::builder()
        .method(method.clone())
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let answer = http
        .request(req)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let ok = answer.status().is_success();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?
        .to_bytes();
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{method} {url}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    let value = json.get("value").cloned().unwrap_or(Value::Null);
    if ok {
        Ok(value)
    } else {
        Err(format!(
            "{method} {url}: {}: {}",
            value["error"].as_str().unwrap_or("error"),
            value["message"].as_str().unwrap_or("")
        ))
    }
}

impl WebDriver {
    /// A new session of the chromedriver at `driver` (`http://127.0.0.1:<port>`) with
    /// `capabilities` (as `alwaysMatch`).
    pub async fn new_session(driver: &str, capabilities: Value) -> Result<WebDriver, String> {
        let http = Client::builder(TokioExecutor::new()).build_http();
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let value = call(
            &http,
            Method::POST,
            &format!("{driver}/session"),
            Some(body),
        )
        .await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {value}"))?;
        Ok(WebDriver {
            http,
            session: format!("{driver}/session/{id}"),
        })
    }

    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    /// Opens `url`, once its page has loaded.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page: what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, "/execute/sync", Some(body))
            .await
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) -> Result<(), String> {
        let body = json!({ "using": "css selector", "value": css });
        let found = self.command(Method::POST, "/element", Some(body)).await?;
        let id = found[ELEMENT]
            .as_str()
            .ok_or_else(|| format!("no element for {css}: {found}"))?;
        self.command(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// The text of the open `alert`/`confirm` dialog.
    pub async fn alert_text(&self) -> Result<String, String> {
        let v = self.command(Method::GET, "/alert/text", None).await?;
        v.as_str().map(str::to_owned).ok_or_else(|| v.to_string())
    }

    /// Answers the open dialog yes.
    pub async fn accept_alert(&self) -> Result<(), String> {
        self.command(Method::POST, "/alert/accept", Some(json!({})))
            .await
            .map(drop)
    }

    /// Loads the page again.
    pub async fn refresh(&self) -> Result<(), String> {
        self.command(Method::POST, "/refresh", Some(json!({})))
            .await
            .map(drop)
    }

    /// The window as a PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.command(Method::GET, "/screenshot", None).await?;
        let text = v.as_str().ok_or_else(|| v.to_string())?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| e.to_string())
    }

    /// Ends the session (chromedriver closes the browser).
    pub async fn close(&self) -> Result<(), String> {
        self.command(Method::DELETE, "", None).await.map(drop)
    }
}
