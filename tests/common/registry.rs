//! A real registry (Debian's `docker-registry`, the CNCF distribution
//! server) on a free loopback port, with storage in a temporary directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::{Http, Reply, Request};

const BINARY: &str = "docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 5;

/// A running registry; dropping it kills the process and deletes its storage.
pub struct Registry {
    /// `127.0.0.1:PORT`, plain HTTP.
    pub addr: String,
    child: Child,
    /// Kept for its Drop, which deletes storage, config and log.
    dir: tempfile::TempDir,
    storage: PathBuf,
    http: Http,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts an anonymous registry (anyone may pull and push).
    pub fn start() -> Registry {
        Self::launch(None, None, None)
    }

    /// Starts a pull-through cache (`proxy: remoteurl:`) in front of
    /// `remote` (e.g. another registry's or a fake server's URL): it fetches
    /// what it does not hold from there and keeps it.
    pub fn start_proxy(remote: &str) -> Registry {
        Self::launch(None, Some(remote.to_string()), None)
    }

    /// Like [`Registry::start_proxy`], serving HTTPS with the PEM
    /// certificate and key given (the harness's own requests to it, which
    /// are plain HTTP, will not work: read through `remote`).
    pub fn start_tls_proxy(remote: &str, cert: &Path, key: &Path) -> Registry {
        Self::launch(
            None,
            Some(remote.to_string()),
            Some((cert.to_path_buf(), key.to_path_buf())),
        )
    }

    /// Starts a registry that demands HTTP basic auth for every request.
    ///
    /// The harness's own pushes and [`Registry::get`] send these
    /// credentials. Needs `htpasswd` (Debian package `apache2-utils`) to
    /// write the bcrypt password file.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::launch(Some((user.to_string(), password.to_string())), None, None)
    }

    /// The filesystem storage root, for tests that tamper with stored data.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// Where the registry keeps the blob `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The credentials given to [`Registry::start_with_basic_auth`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// An image reference into this registry: `127.0.0.1:PORT/repo:tag`, or
    /// `127.0.0.1:PORT/repo@sha256:...` when `reference` is a digest.
    pub fn image_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.addr)
    }

    /// `GET {url}{path}` with this registry's credentials (if any) and an
    /// optional `Accept` header; e.g. `get("/v2/repo/manifests/tag", Some(mt))`.
    pub fn get(&self, path: &str, accept: Option<&str>) -> Reply {
        self.get_as(path, accept, self.credentials())
    }

    /// Like [`Registry::get`] but with explicit credentials (`None`: anonymous).
    pub fn get_as(&self, path: &str, accept: Option<&str>, auth: Option<(&str, &str)>) -> Reply {
        let mut req = Request::new("GET", format!("{}{path}", self.url()));
        if let Some(accept) = accept {
            req.headers.push(("Accept", accept.to_string()));
        }
        req.basic_auth = auth;
        self.http.send(req).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends a harness request with this registry's credentials.
    pub(crate) fn send<'a>(&'a self, mut req: Request<'a>) -> Reply {
        req.basic_auth = self.credentials();
        self.http.send(req).unwrap_or_else(|e| panic!("{e}"))
    }

    fn launch(
        credentials: Option<(String, String)>,
        remote: Option<String>,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        if let Some((user, password)) = &credentials {
            write_htpasswd(dir.path(), user, password);
        }
        let http = Http::new();
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let addr = format!("127.0.0.1:{}", free_port());
            write_config(
                dir.path(),
                &addr,
                credentials.is_some(),
                remote.as_deref(),
                tls.as_ref(),
            );
            let mut child = spawn(dir.path());
            match wait_ready(&http, &mut child, dir.path(), &addr, tls.is_some()) {
                Ok(()) => {
                    return Registry {
                        addr,
                        child,
                        storage: dir.path().join("storage"),
                        dir,
                        http,
                        credentials,
                    };
                }
                Err(e) => {
                    stop(&mut child);
                    if !e.contains("address already in use") {
                        panic!("{BINARY} did not come up on {addr}:\n{e}");
                    }
                    last_error = e;
                }
            }
        }
        panic!("{BINARY} found no free port in {PORT_ATTEMPTS} tries:\n{last_error}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls `GET /v2/` until the registry answers as a registry does.
/// With `tls`, until it accepts connections (the harness speaks no TLS).
fn wait_ready(
    http: &Http,
    child: &mut Child,
    dir: &Path,
    addr: &str,
    tls: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}; output:\n{}", log(dir)));
        }
        if tls {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let mut req = Request::new("GET", format!("http://{addr}/v2/"));
        req.timeout = Duration::from_secs(2);
        if let Ok(reply) = http.send(req) {
            let is_registry = reply.header("docker-distribution-api-version").is_some();
            if is_registry && (reply.status == 200 || reply.status == 401) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "no answer within {START_TIMEOUT:?}; output:\n{}",
        log(dir)
    ))
}

/// What the registry printed (stdout and stderr share one file).
fn log(dir: &Path) -> String {
    fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A port that was free a moment ago (the registry may still lose a race
/// for it; `launch` retries).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn write_config(
    dir: &Path,
    addr: &str,
    with_auth: bool,
    remote: Option<&str>,
    tls: Option<&(PathBuf, PathBuf)>,
) {
    let storage = dir.join("storage");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n",
        storage.display()
    );
    if let Some((cert, key)) = tls {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    if with_auth {
        let htpasswd = dir.join("htpasswd");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: occystrap-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    if let Some(remote) = remote {
        config.push_str(&format!("proxy:\n  remoteurl: {remote}\n"));
    }
    fs::write(dir.join("config.yml"), config).expect("write registry config");
}

fn spawn(dir: &Path) -> Child {
    let log = fs::File::create(dir.join("registry.log")).expect("registry log file");
    let log2 = log.try_clone().expect("clone log handle");
    Command::new(BINARY)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {BINARY} ({e}): install the Debian package docker-registry")
        })
}

/// Writes a bcrypt htpasswd file (the registry accepts only bcrypt).
fn write_htpasswd(dir: &Path, user: &str, password: &str) {
    // Cost 4, the minimum: the registry checks the hash on every request.
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", user, password])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run htpasswd ({e}): install the Debian package apache2-utils")
        });
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(dir.join("htpasswd"), out.stdout).expect("write htpasswd");
}
