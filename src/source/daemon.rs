//! The local Docker (or Podman) engine, through its API's image export
//! (`GET /images/NAME/get`): the engine streams a `docker save` archive,
//! read then as a docker-archive, with the same checks.
//!
//! The stream is spooled to an anonymous temporary file first, because
//! the format forces it: a classic `docker save` stream names its layers'
//! order in `manifest.json`, which comes last, after the layers. The file
//! is unlinked as soon as it is created, so nothing is left whatever
//! happens.
//!
//! The engine is found as the docker CLI finds it: `DOCKER_HOST`
//! (`unix://PATH` or `tcp://HOST:PORT`, plain), else `/var/run/docker.sock`,
//! else Podman's `/run/podman/podman.sock`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
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
    let found = DEFAULT_SOCKETS.iter().find(|s| Path::new(s).exists());
    Ok(Endpoint::Unix(
        found.copied().unwrap_or(DEFAULT_SOCKETS[0]).into(),
    ))
}

/// The engine's `docker save` of `name` (an image name or ID), in an
/// anonymous temporary file in `spool_dir`, rewound.
pub fn export(name: &str, spool_dir: &Path) -> Result<File> {
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
    let mut stream = BufReader::new(stream);
    // HTTP/1.0: the engine then ends the body by closing the connection,
    // with no chunked encoding to undo.
    let request = format!(
        "GET /images/{}/get HTTP/1.0\r\nHost: docker\r\nUser-Agent: occystrap/{}\r\n\r\n",
        encode_path(name),
        env!("CARGO_PKG_VERSION")
    );
    let failed = |e: io::Error| Error::Registry {
        reference: format!("the engine at {endpoint}"),
        message: e.to_string(),
    };
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(failed)?;
    let status = read_head(&mut stream).map_err(failed)?;
    if status != 200 {
        let mut body = Vec::new();
        stream
            .take(ERROR_BODY_LIMIT)
            .read_to_end(&mut body)
            .map_err(failed)?;
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let reference = format!("docker-daemon:{}", escape::bytes(name.as_bytes()));
        return Err(if status == 404 {
            Error::NotFound { reference, message }
        } else {
            Error::Registry {
                reference,
                message: format!("the engine answered {status}: {message}"),
            }
        });
    }
    let mut spool = anonymous_file(spool_dir)?;
    io::copy(&mut stream, &mut spool).map_err(|e| Error::io(spool_dir, e))?;
    io::Seek::rewind(&mut spool).map_err(|e| Error::io(spool_dir, e))?;
    Ok(spool)
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
fn anonymous_file(dir: &Path) -> Result<File> {
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
    fn names_are_encoded_for_the_path() {
        assert_eq!(encode_path("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(encode_path("a b?#"), "a%20b%3F%23");
    }
}
