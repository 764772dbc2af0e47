//! Minimal blocking HTTP for the harness.
//!
//! reqwest's blocking client panics when used from inside a tokio runtime,
//! so each request runs on a short-lived thread of its own: callers may be
//! plain `#[test]`s or `#[tokio::test]`s alike.

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
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
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

    /// Sends the request; `Err` only for transport failures (no answer).
    pub fn send(self) -> Result<Reply, String> {
        std::thread::scope(|s| {
            s.spawn(|| self.send_here())
                .join()
                .unwrap_or_else(|_| Err("HTTP thread panicked".to_string()))
        })
    }

    fn send_here(&self) -> Result<Reply, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = client.request(method, &self.url);
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        if let Some((user, password)) = self.basic_auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = &self.body {
            req = req.body(body.clone());
        }
        let resp = req
            .send()
            .map_err(|e| format!("{} {}: {e}", self.method, self.url))?;
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
