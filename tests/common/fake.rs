//! A scripted HTTP server on loopback, optionally in front of a real
//! [`Registry`]: for what the real registry will not do (serve an unknown
//! manifest media type, fail and recover, cut a body short, redirect,
//! demand a bearer token) and to see what a client sent.
//!
//! One request per connection (`Connection: close`); request bodies are read
//! by `Content-Length` only (no chunked uploads: it is for pulling).
//!
//! Faults: any answer, canned or forwarded, can have its body damaged
//! ([`Canned::reset_after`], [`Canned::stall_after`], [`Canned::cut_after`],
//! [`Canned::corrupt`], [`Canned::extra`]); a forwarded request can lose its
//! `Range` header ([`Canned::forward_whole`]); the server can demand a bearer
//! token that it issues itself ([`FakeServer::require_bearer`]) and can fail
//! a seeded random share of requests ([`FakeServer::chaos`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http::{Http, Reply, Request};
use super::registry::Registry;

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: Option<usize>,
    /// Send no `Content-Length`: the body ends when the connection closes.
    unannounced: bool,
    forward: bool,
    /// Forward without the client's `Range` header.
    whole: bool,
    fault: Option<Fault>,
}

/// Damage done to a body on its way out.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Send this many body bytes, then reset the connection (TCP RST).
    ResetAfter(usize),
    /// Send this many body bytes, then go silent for the duration.
    StallAfter(usize, Duration),
    /// Send this many body bytes, then close normally (the announced
    /// length stays the full one).
    CutAfter(usize),
    /// Flip the bits of the byte at this offset (clamped to the body).
    Corrupt(usize),
    /// Append these bytes to the body (and to its announced length).
    Extra(Vec<u8>),
}

impl Canned {
    /// `status` with `body` (and a matching `Content-Length`).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: body.into(),
            content_length: None,
            unannounced: false,
            forward: false,
            whole: false,
            fault: None,
        }
    }

    /// Pass the request on to the upstream registry instead.
    pub fn forward() -> Canned {
        Canned {
            forward: true,
            ..Canned::new(502, "")
        }
    }

    /// Forward to the upstream registry without the client's `Range`
    /// header, like a registry that cannot serve parts of a blob.
    pub fn forward_whole() -> Canned {
        Canned {
            whole: true,
            ..Canned::forward()
        }
    }

    /// Resets the connection after `n` body bytes.
    pub fn reset_after(self, n: usize) -> Canned {
        self.fault(Fault::ResetAfter(n))
    }

    /// Goes silent for `pause` after `n` body bytes, then closes.
    pub fn stall_after(self, n: usize, pause: Duration) -> Canned {
        self.fault(Fault::StallAfter(n, pause))
    }

    /// Closes the connection after `n` body bytes (announcing them all).
    pub fn cut_after(self, n: usize) -> Canned {
        self.fault(Fault::CutAfter(n))
    }

    /// Serves the body with the byte at `offset` altered (same length).
    pub fn corrupt(self, offset: usize) -> Canned {
        self.fault(Fault::Corrupt(offset))
    }

    /// Serves `bytes` more after the body.
    pub fn extra(self, bytes: impl Into<Vec<u8>>) -> Canned {
        self.fault(Fault::Extra(bytes.into()))
    }

    /// Damages the body with `fault`.
    pub fn fault(mut self, fault: Fault) -> Canned {
        self.fault = Some(fault);
        self
    }

    /// Adds a response header (`Content-Type`, `Location`, `WWW-Authenticate`...).
    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Announces no length: the body runs until the connection closes.
    pub fn unannounced(mut self) -> Canned {
        self.unannounced = true;
        self
    }

    /// Announces `Content-Length: n` whatever the body's size, and sends at
    /// most `n` body bytes before closing: `body.len() + 100` makes a body
    /// cut short.
    pub fn content_length(mut self, n: usize) -> Canned {
        self.content_length = Some(n);
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `HEAD`...
    pub method: String,
    /// Path and query, e.g. `/v2/repo/blobs/sha256:...`.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// When it arrived.
    pub at: std::time::Instant,
    /// `sha256:` of its body (of nothing, without one).
    pub body: String,
}

impl Seen {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::http::header(&self.headers, name)
    }
}

#[derive(Default)]
struct Script {
    /// (method, path without query) -> answers in order; the last repeats.
    routes: HashMap<(String, String), Vec<Canned>>,
    seen: Vec<Seen>,
}

struct Shared {
    script: Mutex<Script>,
    upstream: Option<Upstream>,
    stop: AtomicBool,
    addr: String,
    bearer: Mutex<Option<Bearer>>,
    chaos: Mutex<Option<Chaos>>,
}

/// The token this server demands and issues at `/token`.
#[derive(Clone)]
struct Bearer {
    token: String,
    /// Basic credentials the token endpoint demands, if any.
    credentials: Option<(String, String)>,
}

/// Seeded random failures.
struct Chaos {
    state: u64,
    percent: u64,
    log: Vec<String>,
}

impl Chaos {
    /// xorshift64*: small, seedable, good enough to pick faults.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Upstream {
    url: String,
    http: Http,
}

/// The running server; dropping it stops it.
pub struct FakeServer {
    /// `127.0.0.1:PORT`, plain HTTP.
    pub addr: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// A server that answers 404 to anything not scripted, except
    /// `GET /v2/` (200).
    pub fn start() -> FakeServer {
        Self::launch(None)
    }

    /// A server that forwards anything not scripted to `registry` (request
    /// headers, `Authorization` included, pass through; redirects are not
    /// followed).
    pub fn in_front_of(registry: &Registry) -> FakeServer {
        Self::launch(Some(Upstream {
            url: registry.url(),
            http: Http::new(),
        }))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An image reference through this server: `127.0.0.1:PORT/repo:tag`
    /// (or `@sha256:...`).
    pub fn image_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.addr)
    }

    /// Scripts `method path` (path without query): the answers are given in
    /// order, the last one repeatedly. Replaces an earlier script.
    pub fn on(&self, method: &str, path: &str, answers: Vec<Canned>) {
        assert!(!answers.is_empty(), "script at least one answer");
        let key = (method.to_string(), path.to_string());
        self.lock().routes.insert(key, answers);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// From now on, every `/v2/...` request without `Authorization: Bearer
    /// TOKEN` gets 401 with a `WWW-Authenticate: Bearer realm=".../token",
    /// service="fake-registry"` challenge; `GET /token` issues TOKEN (only
    /// to a client sending `credentials` as basic auth, when given).
    /// Bearer headers are not forwarded upstream.
    pub fn require_bearer(&self, token: &str, credentials: Option<(&str, &str)>) {
        let bearer = Bearer {
            token: token.to_string(),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        *lock_any(&self.shared.bearer) = Some(bearer);
    }

    /// From now on, `percent`% of requests under `/v2/` (not `/v2/`
    /// itself), chosen by a generator seeded with `seed`, fail: 500, 502,
    /// 503, 429, or a forwarded body reset or cut at a random byte.
    pub fn chaos(&self, seed: u64, percent: u64) {
        *lock_any(&self.shared.chaos) = Some(Chaos {
            state: seed.max(1),
            percent,
            log: Vec::new(),
        });
    }

    /// The faults chaos injected so far: `"<fault> <path>"`.
    pub fn chaos_log(&self) -> Vec<String> {
        lock_any(&self.shared.chaos)
            .as_ref()
            .map(|c| c.log.clone())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        lock(&self.shared)
    }

    fn launch(upstream: Option<Upstream>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            upstream,
            stop: AtomicBool::new(false),
            addr: addr.clone(),
            bearer: Mutex::new(None),
            chaos: Mutex::new(None),
        });
        let for_thread = shared.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, for_thread));
        FakeServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr); // wake the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Script> {
    lock_any(&shared.script)
}

fn lock_any<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            // A client that hangs up early is not the server's problem.
            let _ = serve(stream, &shared);
        });
    }
}

struct Incoming {
    seen: Seen,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(incoming) = read_request(&mut reader)? else {
        return Ok(());
    };
    let answer = respond(shared, &incoming);
    write_response(stream, &incoming.seen.method, &answer)
}

/// The answer to one request (recorded first).
fn respond(shared: &Shared, incoming: &Incoming) -> Canned {
    let seen = &incoming.seen;
    lock(shared).seen.push(seen.clone());
    let bearer = lock_any(&shared.bearer).clone();
    if let Some(bearer) = &bearer
        && let Some(answer) = bearer_gate(shared, bearer, seen)
    {
        return answer;
    }
    let (chaos_status, chaos_cut) = roll_chaos(shared, seen);
    if let Some(answer) = chaos_status {
        return answer;
    }
    let answer = choose(shared, seen);
    let mut answer = match (answer.forward, &shared.upstream) {
        (true, Some(upstream)) => {
            let mut forwarded = forward(upstream, incoming, answer.whole, bearer.is_some());
            forwarded.fault = answer.fault;
            forwarded
        }
        (true, None) => Canned::new(502, "no upstream to forward to"),
        (false, _) => answer,
    };
    if let Some(cut) = chaos_cut {
        let at = (cut.1 % answer.body.len().max(1) as u64) as usize;
        answer.fault = Some(if cut.0 {
            Fault::ResetAfter(at)
        } else {
            Fault::CutAfter(at)
        });
    }
    answer
}

/// Token issuing and checking, when the server demands a bearer token.
fn bearer_gate(shared: &Shared, bearer: &Bearer, seen: &Seen) -> Option<Canned> {
    let path = seen.path.split('?').next().unwrap_or("");
    if path == "/token" {
        if let Some((user, password)) = &bearer.credentials {
            let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
            if seen.header("authorization") != Some(expected.as_str()) {
                return Some(Canned::new(401, r#"{"details":"bad credentials"}"#));
            }
        }
        let body = format!(
            r#"{{"token":"{0}","access_token":"{0}","expires_in":300}}"#,
            bearer.token
        );
        return Some(Canned::new(200, body).header("Content-Type", "application/json"));
    }
    let wanted = format!("Bearer {}", bearer.token);
    if path.starts_with("/v2") && seen.header("authorization") != Some(wanted.as_str()) {
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="fake-registry""#,
            shared.addr
        );
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#;
        return Some(
            Canned::new(401, body)
                .header("Content-Type", "application/json")
                .header("WWW-Authenticate", &challenge)
                .header("Docker-Distribution-Api-Version", "registry/2.0"),
        );
    }
    None
}

/// A chaos decision for this request: a failing status to answer with, or
/// a body fault (reset when true, else cut; at a random byte) to apply.
type ChaosCut = Option<(bool, u64)>;

fn roll_chaos(shared: &Shared, seen: &Seen) -> (Option<Canned>, ChaosCut) {
    let mut guard = lock_any(&shared.chaos);
    let Some(chaos) = guard.as_mut() else {
        return (None, None);
    };
    let path = seen.path.split('?').next().unwrap_or("").to_string();
    if !path.starts_with("/v2/") || path == "/v2/" || chaos.next() % 100 >= chaos.percent {
        return (None, None);
    }
    let kind = chaos.next() % 6;
    let at = chaos.next();
    let (status, cut) = match kind {
        0 => (Some(Canned::new(500, "chaos")), None),
        1 => (Some(Canned::new(502, "chaos")), None),
        2 => (Some(Canned::new(503, "chaos")), None),
        3 => (
            Some(Canned::new(429, "chaos").header("Retry-After", "0")),
            None,
        ),
        4 => (None, Some((true, at))),
        _ => (None, Some((false, at))),
    };
    let name = match (&status, cut) {
        (Some(c), _) => c.status.to_string(),
        (None, Some((true, _))) => "reset".to_string(),
        (None, _) => "cut".to_string(),
    };
    chaos.log.push(format!("{name} {path}"));
    (status, cut)
}

/// The scripted answer for this request, or the default.
fn choose(shared: &Shared, seen: &Seen) -> Canned {
    let mut script = lock(shared);
    let path = seen.path.split('?').next().unwrap_or("");
    let key = (seen.method.clone(), path.to_string());
    if let Some(answers) = script.routes.get_mut(&key) {
        return if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        };
    }
    match (shared.upstream.is_some(), seen.method.as_str(), path) {
        (true, _, _) => Canned::forward(),
        (false, "GET" | "HEAD", "/v2/" | "/v2") => Canned::new(200, "{}")
            .header("Content-Type", "application/json")
            .header("Docker-Distribution-Api-Version", "registry/2.0"),
        (false, _, _) => Canned::new(404, "not scripted"),
    }
}

/// Standard base64 with padding (for basic-auth headers).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Incoming>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut seen = Seen {
        method,
        path,
        headers,
        at: std::time::Instant::now(),
        body: String::new(),
    };
    let length = seen
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.body = super::sha256_digest(&body);
    Ok(Some(Incoming { seen, body }))
}

/// Headers not to copy between hops (the server sets its own framing).
const HOP_HEADERS: &[&str] = &["connection", "content-length", "transfer-encoding", "host"];

/// Pass a request upstream; `whole` drops its `Range` header and
/// `strip_auth` its `Authorization` (a token only this server knows).
fn forward(upstream: &Upstream, incoming: &Incoming, whole: bool, strip_auth: bool) -> Canned {
    let mut req = Request::new(
        &incoming.seen.method,
        format!("{}{}", upstream.url, incoming.seen.path),
    );
    for (name, value) in &incoming.seen.headers {
        let dropped = (whole && name == "range") || (strip_auth && name == "authorization");
        if !HOP_HEADERS.contains(&name.as_str()) && !dropped {
            req.headers.push((name.as_str(), value.clone()));
        }
    }
    if !incoming.body.is_empty() {
        req.body = Some(incoming.body.clone());
    }
    match upstream.http.send(req) {
        Ok(reply) => from_reply(reply),
        Err(e) => Canned::new(502, e),
    }
}

fn from_reply(reply: Reply) -> Canned {
    // HEAD answers have no body but a meaningful length.
    let length = reply.header("content-length").and_then(|l| l.parse().ok());
    let mut canned = Canned::new(reply.status, reply.body);
    canned.content_length = length;
    for (name, value) in reply.headers {
        if !HOP_HEADERS.contains(&name.as_str()) {
            canned.headers.push((name, value));
        }
    }
    canned
}

fn write_response(mut stream: TcpStream, method: &str, answer: &Canned) -> std::io::Result<()> {
    let mut body = answer.body.clone();
    let mut length = answer.content_length.unwrap_or(body.len());
    match &answer.fault {
        Some(Fault::Corrupt(at)) if !body.is_empty() => {
            let at = (*at).min(body.len() - 1);
            body[at] ^= 0xff;
        }
        Some(Fault::Extra(more)) => {
            body.extend_from_slice(more);
            length += more.len();
        }
        _ => {}
    }
    let mut head = format!("HTTP/1.1 {} Fake\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !answer.unannounced {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = length.min(body.len());
        let sent = match &answer.fault {
            Some(Fault::ResetAfter(n) | Fault::StallAfter(n, _) | Fault::CutAfter(n)) => {
                (*n).min(end)
            }
            _ => end,
        };
        stream.write_all(&body[..sent])?;
        stream.flush()?;
        match &answer.fault {
            Some(Fault::ResetAfter(_)) => return reset(stream),
            Some(Fault::StallAfter(_, pause)) => std::thread::sleep(*pause),
            _ => {}
        }
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

/// Close with a TCP reset (SO_LINGER 0), as a broken network would.
fn reset(stream: TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(stream);
    Ok(())
}
