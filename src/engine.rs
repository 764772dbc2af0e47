//! The local Docker (or Podman) engine's API, for images in and out.
//!
//! Out of the engine (`GET /images/NAME/get`, the `docker-daemon:` source):
//! the engine streams a `docker save` archive, read then as a
//! docker-archive, with the same checks. The stream is spooled to an
//! anonymous temporary file first, because the format forces it: a
//! classic `docker save` stream names its layers' order in
//! `manifest.json`, which comes last, after the layers. The file is
//! unlinked as soon as it is created, so nothing is left whatever happens.
//!
//! Into the engine (`POST /images/load`, the `docker-daemon:` destination):
//! a `docker save` archive is streamed as the request body, with nothing
//! written locally; the engine tags the image only once the whole archive
//! arrived, so a copy that fails half way loads nothing.
//!
//! The engine is found as the docker CLI finds it: `DOCKER_HOST`
//! (`unix://PATH` or `tcp://HOST:PORT`, plain), else `/var/run/docker.sock`,
//! else Podman's `/run/podman/podman.sock`, else rootless Podman's
//! `$XDG_RUNTIME_DIR/podman/podman.sock`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::escape;
use crate::{Error, Result};

/// Where engines listen by default: Docker's, then Podman's.
const DEFAULT_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// Response headers larger than this are refused.
const HEADER_LIMIT: usize = 64 * 1024;

/// An error answer's body is read up to this.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", escape::path(path)),
            Endpoint::Tcp(addr) => write!(f, "tcp://{}", escape::bytes(addr.as_bytes())),
        }
    }
}

fn endpoint() -> Result<Endpoint> {
    if let Some(host) = std::env::var_os("DOCKER_HOST").filter(|h| !h.is_empty()) {
        let host = host.to_string_lossy();
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            return Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_string()));
        }
        return Err(Error::Usage(format!(
            "DOCKER_HOST={}: only unix:// and tcp:// (without TLS) engines are supported",
            escape::bytes(host.as_bytes())
        )));
    }
    // Rootless Podman listens in the user's runtime directory.
    let rootless = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| PathBuf::from(dir).join("podman/podman.sock"));
    let candidates = DEFAULT_SOCKETS.iter().map(PathBuf::from).chain(rootless);
    let found = candidates.into_iter().find(|s| s.exists());
    Ok(Endpoint::Unix(
        found.unwrap_or_else(|| DEFAULT_SOCKETS[0].into()),
    ))
}

/// A connection to the engine, and how to name it in messages.
struct Connection {
    stream: BufReader<Box<dyn ReadWrite>>,
    endpoint: Endpoint,
}

impl Connection {
    fn open() -> Result<Connection> {
        let endpoint = endpoint()?;
        let unreachable = |e: io::Error| Error::Registry {
            reference: format!("the engine at {endpoint}"),
            message: format!(
                "cannot connect ({e}); is dockerd (or podman system service) running? DOCKER_HOST chooses another"
            ),
        };
        let stream: Box<dyn ReadWrite> = match &endpoint {
            Endpoint::Unix(path) => Box::new(UnixStream::connect(path).map_err(unreachable)?),
            Endpoint::Tcp(addr) => Box::new(TcpStream::connect(addr).map_err(unreachable)?),
        };
        Ok(Connection {
            stream: BufReader::new(stream),
            endpoint,
        })
    }

    fn failed(&self, e: io::Error) -> Error {
        Error::Registry {
            reference: format!("the engine at {}", self.endpoint),
            message: e.to_string(),
        }
    }

    /// The engine's error answer as our error (`what` names the image).
    fn refused(&mut self, status: u16, what: String) -> Error {
        let mut body = Vec::new();
        if let Err(e) = (&mut self.stream)
            .take(ERROR_BODY_LIMIT)
            .read_to_end(&mut body)
        {
            return self.failed(e);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        if status == 404 {
            Error::NotFound {
                reference: what,
                message,
            }
        } else {
            Error::Registry {
                reference: what,
                message: format!("the engine answered {status}: {message}"),
            }
        }
    }
}

/// The engine's `docker save` of `name` (an image name or ID), in an
/// anonymous temporary file in `spool_dir`, rewound.
pub fn export(name: &str, spool_dir: &Path) -> Result<File> {
    let mut conn = Connection::open()?;
    // HTTP/1.0: the engine then ends the body by closing the connection,
    // with no chunked encoding to undo.
    let request = format!(
        "GET /images/{}/get HTTP/1.0\r\nHost: docker\r\nUser-Agent: {USER_AGENT}\r\n\r\n",
        encode_path(name),
    );
    let sent = conn.stream.get_mut().write_all(request.as_bytes());
    sent.map_err(|e| conn.failed(e))?;
    let status = read_head(&mut conn.stream).map_err(|e| conn.failed(e))?;
    if status != 200 {
        let what = format!("docker-daemon:{}", escape::bytes(name.as_bytes()));
        return Err(conn.refused(status, what));
    }
    let mut spool = anonymous_file(spool_dir)?;
    io::copy(&mut conn.stream, &mut spool).map_err(|e| Error::io(spool_dir, e))?;
    io::Seek::rewind(&mut spool).map_err(|e| Error::io(spool_dir, e))?;
    Ok(spool)
}

/// Load a `docker save` archive into the engine: `write` streams it into
/// the request body; the engine's report is read after, and a failure it
/// reports is an error. Returns what it said it loaded. If `write` fails,
/// the connection is dropped before the archive is complete, and the
/// engine loads nothing.
pub fn load(write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<String> {
    let mut conn = Connection::open()?;
    let request = format!(
        "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let sent = conn.stream.get_mut().write_all(request.as_bytes());
    sent.map_err(|e| conn.failed(e))?;
    {
        let mut body = BufWriter::with_capacity(1 << 20, Chunked(conn.stream.get_mut()));
        write(&mut body)?;
        let ended = body
            .flush()
            .and_then(|()| body.get_mut().0.write_all(b"0\r\n\r\n"));
        if let Err(e) = ended {
            drop(body);
            return Err(conn.failed(e));
        }
    }
    let status = read_head(&mut conn.stream).map_err(|e| conn.failed(e))?;
    if status != 200 {
        return Err(conn.refused(status, "docker-daemon: load".into()));
    }
    // The report is a stream of JSON messages, chunked.
    let mut report = Vec::new();
    Unchunked::new(&mut conn.stream)
        .take(ERROR_BODY_LIMIT)
        .read_to_end(&mut report)
        .map_err(|e| conn.failed(e))?;
    let mut loaded = Vec::new();
    for message in serde_json::Deserializer::from_slice(&report).into_iter::<serde_json::Value>() {
        let message = message.map_err(|e| conn.failed(io::Error::other(e)))?;
        if let Some(error) = message["error"].as_str() {
            return Err(Error::Registry {
                reference: "docker-daemon: load".into(),
                message: format!("the engine refused the image: {error}"),
            });
        }
        if let Some(text) = message["stream"].as_str() {
            loaded.push(text.trim().to_string());
        }
    }
    Ok(loaded.join("; "))
}

const USER_AGENT: &str = concat!("occystrap/", env!("CARGO_PKG_VERSION"));

/// Writes HTTP/1.1 chunks (each write one chunk; buffer in front).
struct Chunked<'a>(&'a mut Box<dyn ReadWrite>);

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Reads an HTTP/1.1 chunked body.
struct Unchunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Unchunked<R> {
    fn new(inner: R) -> Self {
        Unchunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Unchunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.by_ref().take(1024).read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or_default();
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "a malformed chunked answer")
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Read the status line and headers; the status code.
fn read_head(stream: &mut impl BufRead) -> io::Result<u16> {
    let mut seen = 0;
    let mut status = None;
    loop {
        let mut line = String::new();
        let n = stream.read_line(&mut line)?;
        seen += n;
        if n == 0 || seen > HEADER_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the engine's answer ended or grew too large before its body",
            ));
        }
        let line = line.trim_end();
        if status.is_none() {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok());
            if status.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an HTTP answer: {}", escape::bytes(line.as_bytes())),
                ));
            }
        } else if line.is_empty() {
            return status.ok_or_else(|| io::Error::other("no status"));
        }
    }
}

/// Percent-encode what a path segment cannot hold as is (`/` of a
/// repository stays: the engine's router takes the rest of the path).
fn encode_path(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file that has no name from the start (`O_TMPFILE`), or loses it at
/// once where the filesystem cannot make one.
pub fn anonymous_file(dir: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmpfile = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    if let Ok(file) = tmpfile {
        return Ok(file);
    }
    let path = dir.join(format!(
        ".occystrap-engine-{}-{}.tar",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_to_their_body() {
        let mut answer = &b"HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}"[..];
        assert_eq!(read_head(&mut answer).unwrap(), 404);
        assert_eq!(answer, b"{}");
        let mut garbage = &b"SSH-2.0-OpenSSH\r\n\r\n"[..];
        assert!(read_head(&mut garbage).is_err());
        let mut cut = &b"HTTP/1.1 200 OK\r\nX: y\r\n"[..];
        assert!(read_head(&mut cut).is_err());
    }

    #[test]
    fn chunked_bodies_are_undone() {
        let body = &b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n"[..];
        let mut out = String::new();
        Unchunked::new(body).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello!");
        let mut cut = String::new();
        assert!(
            Unchunked::new(&b"5\r\nhel"[..])
                .read_to_string(&mut cut)
                .is_err()
        );
    }

    #[test]
    fn names_are_encoded_for_the_path() {
        assert_eq!(encode_path("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(encode_path("a b?#"), "a%20b%3F%23");
    }
}
