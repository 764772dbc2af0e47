//! A scripted HTTP server on loopback, optionally in front of a real
//! [`Registry`]: for what the real registry will not do (serve an unknown
//! manifest media type, fail and recover, cut a body short, redirect,
//! demand a bearer token) and to see what a client sent.
//!
//! One request per connection (`Connection: close`); request bodies are read
//! by `Content-Length` only (no chunked uploads: it is for pulling).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::http::{Http, Reply, Request};
use super::registry::Registry;

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: Option<usize>,
    forward: bool,
}

impl Canned {
    /// `status` with `body` (and a matching `Content-Length`).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: body.into(),
            content_length: None,
            forward: false,
        }
    }

    /// Pass the request on to the upstream registry instead.
    pub fn forward() -> Canned {
        Canned {
            forward: true,
            ..Canned::new(502, "")
        }
    }

    /// Adds a response header (`Content-Type`, `Location`, `WWW-Authenticate`...).
    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_string(), value.to_string()));
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
}

impl Seen {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
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
    shared
        .script
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
    let answer = choose(shared, &incoming.seen);
    let answer = match (answer.forward, &shared.upstream) {
        (true, Some(upstream)) => forward(upstream, &incoming),
        (true, None) => Canned::new(502, "no upstream to forward to"),
        (false, _) => answer,
    };
    write_response(stream, &incoming.seen.method, &answer)
}

/// The scripted answer for this request (recording it), or the default.
fn choose(shared: &Shared, seen: &Seen) -> Canned {
    let mut script = lock(shared);
    script.seen.push(seen.clone());
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
    let seen = Seen {
        method,
        path,
        headers,
    };
    let length = seen
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Incoming { seen, body }))
}

/// Headers not to copy between hops (the server sets its own framing).
const HOP_HEADERS: &[&str] = &["connection", "content-length", "transfer-encoding", "host"];

fn forward(upstream: &Upstream, incoming: &Incoming) -> Canned {
    let mut req = Request::new(
        &incoming.seen.method,
        format!("{}{}", upstream.url, incoming.seen.path),
    );
    for (name, value) in &incoming.seen.headers {
        if !HOP_HEADERS.contains(&name.as_str()) {
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
    let mut head = format!("HTTP/1.1 {} Fake\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let length = answer.content_length.unwrap_or(answer.body.len());
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = length.min(answer.body.len());
        stream.write_all(&answer.body[..end])?;
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}
