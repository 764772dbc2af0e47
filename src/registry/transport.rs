//! HTTP requests to one repository. oci-client negotiates the registry's
//! token; the requests themselves are ours, so that every answer's status
//! and headers (`Retry-After`, `Content-Range`) reach the retry logic,
//! bodies are capped while they arrive, and blob bytes are hashed once.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use oci_client::RegistryOperation;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Mutex;

use super::retry::{MAX_RETRY_AFTER, Verdict};

/// How much of an error answer's body is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// HTTPS, certificates verified.
    Https,
    /// Plain HTTP.
    Http,
    /// registries.conf's `insecure`: HTTPS without certificate
    /// verification, or plain HTTP if the registry does not speak TLS.
    Insecure,
}

/// One way of reaching the repository (a scheme and what it takes).
struct Scheme {
    http: reqwest::Client,
    /// `{scheme}://{registry}/v2/{repository}`.
    base: String,
    /// `base`, parsed: what `Location` headers are resolved against.
    base_url: Url,
    /// Only for the token dance.
    oci: oci_client::Client,
}

/// Where one repository is and how to talk to it.
pub struct Transport {
    /// Tried in order until one connects (more than one only for
    /// [`Security::Insecure`]).
    schemes: Vec<Scheme>,
    /// The scheme in use.
    active: AtomicUsize,
    /// A registry answered: the scheme in use stays.
    settled: AtomicBool,
    oci_ref: oci_client::Reference,
    auth: RegistryAuth,
    /// What to authorise pulls with: `None` until first needed.
    pull_credential: Mutex<Option<Credential>>,
    /// What to authorise pushes with: a token with push scope, kept apart
    /// so that pulls never carry more rights than they need.
    push_credential: Mutex<Option<Credential>>,
}

/// Makes a request body: called again when a request must be sent again
/// (a renewed credential), since a streamed body can be sent only once.
pub type MakeBody<'a> = dyn Fn() -> reqwest::Body + Send + Sync + 'a;

impl Transport {
    /// A client for `oci_ref`'s repository, reached as `security` says;
    /// `roots` are PEM CA certificates to trust besides the system's.
    /// Nothing is sent yet.
    ///
    /// Proxies: reqwest (and oci-client's own client) honour
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (also in
    /// lower case) from the environment.
    pub fn new(
        oci_ref: oci_client::Reference,
        auth: RegistryAuth,
        security: Security,
        timeout: Duration,
        roots: Vec<Vec<u8>>,
    ) -> Result<Transport, Failure> {
        let plans: &[(bool, bool)] = match security {
            Security::Https => &[(false, false)],
            Security::Http => &[(true, false)],
            Security::Insecure => &[(false, true), (true, false)],
        };
        let schemes = plans
            .iter()
            .map(|&(plain, unverified)| Scheme::new(&oci_ref, plain, unverified, timeout, &roots))
            .collect::<Result<_, _>>()?;
        Ok(Transport {
            schemes,
            active: AtomicUsize::new(0),
            settled: AtomicBool::new(false),
            oci_ref,
            auth,
            pull_credential: Mutex::new(None),
            push_credential: Mutex::new(None),
        })
    }

    /// GET `{base}/{path}`, authorised for pulling; the response is a
    /// success (2xx). `range_from` > 0 asks for the bytes from there on.
    pub async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<reqwest::Response, Failure> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, header_value(accept)?);
        }
        if range_from > 0 {
            headers.insert(
                header::RANGE,
                header_value(&format!("bytes={range_from}-"))?,
            );
        }
        self.request(RegistryOperation::Pull, Method::GET, path, &headers, None)
            .await
    }

    /// `method` on `target` (a path under `{base}/`, or a URL or absolute
    /// path such as a `Location` header), authorised for `operation`; the
    /// response is a success (2xx). An insecure registry that cannot be
    /// reached over HTTPS is tried over HTTP (until one of them answers,
    /// after which the scheme stays).
    pub async fn request(
        &self,
        operation: RegistryOperation,
        method: Method,
        target: &str,
        headers: &HeaderMap,
        body: Option<&MakeBody<'_>>,
    ) -> Result<reqwest::Response, Failure> {
        loop {
            let index = self.active.load(Ordering::Relaxed);
            let scheme = &self.schemes[index];
            let result = self
                .request_with(scheme, operation, &method, target, headers, body)
                .await;
            match result {
                Err(Failure::Connection(message))
                    if index + 1 < self.schemes.len() && !self.settled.load(Ordering::Relaxed) =>
                {
                    tracing::debug!(
                        "{}: {message}; trying {}",
                        scheme.base,
                        self.schemes[index + 1].base
                    );
                    // Credentials were negotiated over the scheme that failed.
                    *self.pull_credential.lock().await = None;
                    *self.push_credential.lock().await = None;
                    self.active.store(index + 1, Ordering::Relaxed);
                }
                Err(Failure::Connection(m)) => return Err(Failure::Connection(m)),
                other => {
                    self.settled.store(true, Ordering::Relaxed);
                    return other;
                }
            }
        }
    }

    async fn request_with(
        &self,
        scheme: &Scheme,
        operation: RegistryOperation,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: Option<&MakeBody<'_>>,
    ) -> Result<reqwest::Response, Failure> {
        let url = scheme.url(target)?;
        // A Location on another host gets no credentials: they are the
        // registry's, not whoever it points us at.
        let ours = url.origin() == scheme.base_url.origin();
        let http = &scheme.http;
        let mut renewed = false;
        loop {
            let mut request = http.request(method.clone(), url.clone());
            if ours {
                request = match self.credential(scheme, operation, renewed).await? {
                    Credential::Anonymous => request,
                    Credential::Bearer(token) => request.bearer_auth(token),
                    Credential::Basic(user, password) => request.basic_auth(user, Some(password)),
                };
            }
            request = request.headers(headers.clone());
            if let Some(body) = body {
                request = request.body(body());
            }
            let response = request
                .send()
                .await
                .map_err(|e| Failure::from_reqwest(&e))?;
            match response.status() {
                s if s.is_success() => return Ok(response),
                // Tokens expire during long pulls: ask for a new one, once.
                StatusCode::UNAUTHORIZED if !renewed && ours => renewed = true,
                _ => return Err(Failure::from_response(response).await),
            }
        }
    }

    /// What to authorise `operation`'s requests with, negotiated on first
    /// use or again when `renew` says the last one was refused.
    async fn credential(
        &self,
        scheme: &Scheme,
        operation: RegistryOperation,
        renew: bool,
    ) -> Result<Credential, Failure> {
        let slot = match operation {
            RegistryOperation::Pull => &self.pull_credential,
            RegistryOperation::Push => &self.push_credential,
        };
        let mut known = slot.lock().await;
        if let (Some(credential), false) = (known.as_ref(), renew) {
            return Ok(credential.clone());
        }
        let token = scheme
            .oci
            .auth(&self.oci_ref, &self.auth, operation)
            .await
            .map_err(Failure::from_auth)?;
        let credential = match (token, &self.auth) {
            (Some(token), _) => Credential::Bearer(token),
            (None, RegistryAuth::Basic(user, password)) => {
                Credential::Basic(user.clone(), password.clone())
            }
            (None, _) => Credential::Anonymous,
        };
        *known = Some(credential.clone());
        Ok(credential)
    }
}

impl Scheme {
    fn new(
        oci_ref: &oci_client::Reference,
        plain_http: bool,
        unverified: bool,
        timeout: Duration,
        roots: &[Vec<u8>],
    ) -> Result<Scheme, Failure> {
        let user_agent = concat!("occystrap/", env!("CARGO_PKG_VERSION"));
        let registry = oci_ref.resolve_registry().to_string();
        let protocol = if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let scheme = if plain_http { "http" } else { "https" };
        let base = format!("{scheme}://{registry}/v2/{}", oci_ref.repository());
        let mut extra_roots = Vec::new();
        for pem in roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Failure::Request(chain(&e)))?;
            extra_roots.extend(certs);
        }
        // reqwest drops the Authorization header when a redirect leaves
        // the registry's host, so storage hosts never see credentials.
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .tls_certs_merge(extra_roots)
            .tls_danger_accept_invalid_certs(unverified)
            .build()
            .map_err(|e| Failure::Connection(chain(&e)))?;
        let oci = oci_client::Client::new(ClientConfig {
            protocol,
            user_agent,
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            accept_invalid_certificates: unverified,
            extra_root_certificates: roots
                .iter()
                .flat_map(|pem| pem_blocks(pem))
                .map(|data| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data,
                })
                .collect(),
            ..ClientConfig::default()
        });
        let base_url = Url::parse(&format!("{base}/")).map_err(|e| Failure::Request(chain(&e)))?;
        Ok(Scheme {
            http,
            base,
            base_url,
            oci,
        })
    }

    /// Where `target` is: a path under the repository's base, or a
    /// `Location` (absolute path or URL) resolved as a browser would.
    fn url(&self, target: &str) -> Result<Url, Failure> {
        let url = if target.starts_with('/') || target.contains("://") {
            self.base_url.join(target)
        } else {
            Url::parse(&format!("{}/{target}", self.base))
        };
        url.map_err(|e| Failure::Protocol(format!("bad URL {target:?}: {e}")))
    }
}

/// A header value, or why it cannot be one.
fn header_value(value: &str) -> Result<HeaderValue, Failure> {
    HeaderValue::from_str(value).map_err(|e| Failure::Request(format!("{value:?}: {e}")))
}

/// Each `CERTIFICATE` block of a PEM bundle on its own (oci-client reads
/// only the first certificate of what it is given).
fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut blocks = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    blocks
}

#[derive(Clone)]
enum Credential {
    Anonymous,
    Bearer(String),
    Basic(String, String),
}

/// Read a whole body, refusing it as soon as it outgrows `limit`.
pub async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Bytes, Failure> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(Failure::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure::from_reqwest(&e))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(Failure::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Where a partial answer starts (`Content-Range: bytes START-END/TOTAL`).
pub fn range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The registry answered with an error status.
    Status {
        /// The HTTP status.
        code: u16,
        /// The registry's message: its error envelope, else the body.
        message: String,
        /// The error codes of the envelope (`MANIFEST_UNKNOWN`, `DENIED`...).
        codes: Vec<String>,
        /// How long the registry asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No connection, or it broke.
    Connection(String),
    /// A request that cannot work (bad URL, redirect loop).
    Request(String),
    /// No answer within the timeout.
    Timeout(Duration),
    /// The token server refused us.
    Auth(String),
    /// A body larger than its limit.
    TooLarge(u64),
    /// An answer that breaks the protocol.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status {
                code,
                message,
                retry_after,
                ..
            } => {
                write!(f, "HTTP {code}: {message}")?;
                if let Some(wait) = retry_after {
                    write!(f, " (retry after {} s)", wait.as_secs())?;
                }
                Ok(())
            }
            Failure::Connection(m) | Failure::Request(m) | Failure::Protocol(m) => f.write_str(m),
            Failure::Auth(m) => write!(f, "token request refused: {m}"),
            Failure::Timeout(t) => write!(f, "no answer within {} s", t.as_secs_f64()),
            Failure::TooLarge(limit) => write!(f, "larger than the limit of {limit} bytes"),
        }
    }
}

impl Failure {
    /// Whether to try again, and how soon at the earliest.
    pub fn verdict(&self) -> Verdict {
        let retry = Verdict::Retry {
            rate_limited: false,
            after: None,
        };
        match self {
            Failure::Status {
                code,
                codes,
                retry_after,
                ..
            } => {
                let limited = *code == 429 || codes.iter().any(|c| c == "TOOMANYREQUESTS");
                if retry_after.is_some_and(|wait| wait > MAX_RETRY_AFTER) {
                    Verdict::Fail
                } else if limited || *code == 408 || *code >= 500 {
                    Verdict::Retry {
                        rate_limited: limited,
                        after: *retry_after,
                    }
                } else {
                    Verdict::Fail
                }
            }
            Failure::Connection(_) | Failure::Timeout(_) => retry,
            Failure::Request(_)
            | Failure::Auth(_)
            | Failure::TooLarge(_)
            | Failure::Protocol(_) => Verdict::Fail,
        }
    }

    /// Whether the registry says the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Failure::Status { code, codes, .. }
            if *code == 404 || codes.iter().any(|c| c.ends_with("_UNKNOWN") || c == "NOT_FOUND"))
    }

    /// Whether the registry refuses us access.
    pub fn is_denied(&self) -> bool {
        match self {
            Failure::Status { code, codes, .. } => {
                matches!(code, 401 | 403)
                    || codes.iter().any(|c| c == "DENIED" || c == "UNAUTHORIZED")
            }
            Failure::Auth(_) => true,
            _ => false,
        }
    }

    fn from_reqwest(err: &reqwest::Error) -> Failure {
        if err.is_builder() || err.is_redirect() {
            Failure::Request(chain(err))
        } else {
            Failure::Connection(chain(err))
        }
    }

    fn from_auth(err: OciDistributionError) -> Failure {
        match err {
            OciDistributionError::RequestError(e) => Failure::from_reqwest(&e),
            OciDistributionError::IoError(e) => Failure::Connection(e.to_string()),
            other => Failure::Auth(other.to_string()),
        }
    }

    async fn from_response(response: reqwest::Response) -> Failure {
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_capped(response, ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let (message, codes) = error_message(&body);
        Failure::Status {
            code,
            message,
            codes,
            retry_after,
        }
    }
}

/// The message and codes of a registry's error body (its JSON envelope,
/// or failing that the text itself).
fn error_message(body: &[u8]) -> (String, Vec<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && !envelope.errors.is_empty()
    {
        let codes = envelope
            .errors
            .iter()
            .filter_map(|e| e.code.clone())
            .collect();
        let message = envelope
            .errors
            .iter()
            .map(|e| match (&e.message, &e.code) {
                (Some(m), Some(c)) => format!("{m} ({c})"),
                (Some(m), None) => m.clone(),
                (None, Some(c)) => c.clone(),
                (None, None) => "unspecified error".into(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        return (message, codes);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "(no message)".to_string(),
        None => text.to_string(),
    };
    (message, Vec::new())
}

/// `Retry-After`: whole seconds, or an HTTP date (IMF-fixdate) from `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(parse_http_date(value)?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// Seconds since the epoch of `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<u64> {
    let (_weekday, rest) = value.split_once(", ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), shifted so that
    // years begin in March and the leap day comes last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// An error with its causes, `a: b: c`, as reqwest's own message is terse.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 1994-11-06 08:49:37 UTC is 784111777.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        for bad in [
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        let (message, codes) = error_message(
            br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"TOOMANYREQUESTS"}]}"#,
        );
        assert_eq!(message, "no (DENIED); TOOMANYREQUESTS");
        assert_eq!(codes, ["DENIED", "TOOMANYREQUESTS"]);
        assert_eq!(error_message(b"  busy\n").0, "busy");
        assert_eq!(error_message(b"").0, "(no message)");
        assert!(error_message(&[b'x'; 2000]).0.len() < 600);
    }

    fn status(code: u16, codes: &[&str], retry_after: Option<u64>) -> Failure {
        Failure::Status {
            code,
            message: "m".into(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn verdicts() {
        let retry = Verdict::Retry {
            rate_limited: false,
            after: None,
        };
        for code in [500, 502, 503, 408] {
            assert_eq!(status(code, &[], None).verdict(), retry, "{code}");
        }
        for code in [400, 401, 403, 404, 416] {
            assert_eq!(status(code, &[], None).verdict(), Verdict::Fail, "{code}");
        }
        assert_eq!(
            status(429, &[], Some(3)).verdict(),
            Verdict::Retry {
                rate_limited: true,
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            status(403, &["TOOMANYREQUESTS"], None).verdict(),
            Verdict::Retry {
                rate_limited: true,
                after: None
            }
        );
        assert_eq!(
            status(429, &[], Some(3600)).verdict(),
            Verdict::Fail,
            "longer than we are prepared to wait"
        );
        assert_eq!(Failure::Connection("reset".into()).verdict(), retry);
        assert_eq!(Failure::Timeout(Duration::from_secs(1)).verdict(), retry);
        assert_eq!(Failure::Auth("no".into()).verdict(), Verdict::Fail);
        assert_eq!(Failure::TooLarge(1).verdict(), Verdict::Fail);
        assert!(status(404, &[], None).is_not_found());
        assert!(status(400, &["BLOB_UNKNOWN"], None).is_not_found());
        assert!(status(403, &[], None).is_denied());
        assert!(status(400, &["DENIED"], None).is_denied());
        assert!(!status(500, &[], None).is_denied());
    }

    #[test]
    fn pem_bundles_split_into_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let bundle = format!("# a comment\n{one}\n\n{one}\ntrailing");
        let blocks = pem_blocks(bundle.as_bytes());
        assert_eq!(blocks, vec![format!("{one}\n").into_bytes(); 2]);
        assert!(pem_blocks(b"no certificate").is_empty());
    }

    #[test]
    fn content_ranges() {
        let mut headers = HeaderMap::new();
        assert_eq!(range_start(&headers), None);
        headers.insert(header::CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(range_start(&headers), Some(100));
    }
}
