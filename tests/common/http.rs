//! Minimal blocking HTTP for the harness.
//!
//! reqwest's blocking client panics when used from inside a tokio runtime,
//! so the client is built, and each request sent, on a short-lived thread
//! of its own: callers may be plain `#[test]`s or `#[tokio::test]`s alike.
//! The client is reused because building one takes ~50 ms in debug builds.

use std::time::Duration;

/// A fully read HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first of `headers` (names in lower case) called `name`
/// (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// One request to send; built by the harness, not by tests.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: String,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
    pub basic_auth: Option<(&'a str, &'a str)>,
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    /// A request with no body, no extra headers and a generous timeout.
    pub fn new(method: &'a str, url: String) -> Request<'a> {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
            basic_auth: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A reusable HTTP client (no redirects followed).
pub(crate) struct Http {
    client: reqwest::blocking::Client,
}

impl Http {
    /// Builds the client off any async runtime.
    pub fn new() -> Http {
        let client = off_runtime(|| {
            reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("build HTTP client")
        });
        Http { client }
    }

    /// Sends `req`; `Err` only for transport failures (no answer).
    pub fn send(&self, req: Request<'_>) -> Result<Reply, String> {
        off_runtime(|| self.send_here(&req))
    }

    fn send_here(&self, req: &Request<'_>) -> Result<Reply, String> {
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut builder = self.client.request(method, &req.url).timeout(req.timeout);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some((user, password)) = req.basic_auth {
            builder = builder.basic_auth(user, Some(password));
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let resp = builder
            .send()
            .map_err(|e| format!("{} {}: {e}", req.method, req.url))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), value)
            })
            .collect();
        let body = resp.bytes().map_err(|e| e.to_string())?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// Runs `f` on a thread of its own, outside any tokio runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// `GET url` with extra headers, on a fresh client; panics if there is no
/// answer. For servers other than a [`Registry`](super::registry::Registry)
/// (which has `get`), e.g. a [`FakeServer`](super::fake::FakeServer).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    try_get(url, headers).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`get`], but a transport failure (refused, cut short...) is an `Err`.
pub fn try_get(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut req = Request::new("GET", url.to_string());
    for (name, value) in headers {
        req.headers.push((name, value.to_string()));
    }
    Http::new().send(req)
}
