//! Running an image once, as `docker run --rm` does but with no daemon: a
//! bundle in a private temporary directory, `runc run` in the foreground,
//! then `runc delete --force` and the directory removed, whatever happened.
//!
//! Two steps, so a caller can tidy its own output between them:
//! [`prepare`] pulls and makes the bundle, [`Prepared::run`] runs it.
//! [`run`] does both. Signals the caller receives are handed over on a
//! channel: before the container starts they cancel the pull, while it
//! lives they are forwarded to it (`runc kill`).

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::bundle::BundleOptions;
use crate::{Error, ImageName, PullOptions, Result, escape};

/// The OCI runtime used unless told otherwise.
pub const DEFAULT_RUNTIME: &str = "runc";

/// How the temporary directories of runs start, so leftovers (of a run
/// killed with SIGKILL) can be recognised in `$TMPDIR`.
pub const TEMP_PREFIX: &str = "occystrap-run-";

/// Exit status for a run stopped by its time limit, as timeout(1) uses.
pub const TIMEOUT_EXIT: u8 = 124;

/// A host path bind-mounted into the container (`--volume HOST:CTR[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host path, absolute.
    pub source: PathBuf,
    /// Where it appears in the container, absolute.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl BindMount {
    /// Parse `HOST:CONTAINER[:ro|rw]`; a relative HOST is taken from `cwd`.
    pub fn parse(spec: &str, cwd: &Path) -> Result<BindMount> {
        let usage = |why: &str| Error::Usage(format!("volume {spec:?}: {why}"));
        let (rest, read_only) = match spec.rsplit_once(':') {
            Some((rest, "ro")) => (rest, true),
            Some((rest, "rw")) => (rest, false),
            _ => (spec, false),
        };
        let (host, destination) = rest
            .split_once(':')
            .ok_or_else(|| usage("expected HOST:CONTAINER[:ro]"))?;
        if host.is_empty() {
            return Err(usage("the host path is empty"));
        }
        if !destination.starts_with('/') {
            return Err(usage("the container path must be absolute"));
        }
        Ok(BindMount {
            source: cwd.join(host),
            destination: destination.to_owned(),
            read_only,
        })
    }
}

/// The container's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own with only `lo` (the profile's).
    #[default]
    None,
    /// The host's network: the network namespace is removed.
    Host,
}

/// How to run an image.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The bundle: profile, command, env, user, working directory, root,
    /// hostname. `convert.tty` asks for a terminal, used only when stdin
    /// is one.
    pub bundle: BundleOptions,
    /// The OCI runtime: a name looked up in `PATH` or a path (`runc`, `crun`).
    pub runtime: String,
    /// The container id; `None` makes a unique `occystrap-<random>`.
    pub name: Option<String>,
    /// Host paths to mount.
    pub mounts: Vec<BindMount>,
    /// The network.
    pub network: Network,
    /// Kill the container (SIGKILL) after this long.
    pub time_limit: Option<Duration>,
    /// Keep stdin open for the container (else it reads /dev/null).
    pub stdin: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            bundle: BundleOptions::default(),
            runtime: DEFAULT_RUNTIME.to_owned(),
            name: None,
            mounts: Vec::new(),
            network: Network::None,
            time_limit: None,
            stdin: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The container's status: its exit code, 128+N when signal N killed
    /// it, 127/126 when its command could not be found/executed.
    Code(u8),
    /// The time limit killed it.
    TimedOut,
}

impl Exit {
    /// The exit status to pass on: the container's, or [`TIMEOUT_EXIT`].
    pub fn code(self) -> u8 {
        match self {
            Exit::Code(code) => code,
            Exit::TimedOut => TIMEOUT_EXIT,
        }
    }
}

/// A bundle ready to run, in a temporary directory that dropping this (or
/// running it) removes, with the container if one was started.
#[derive(Debug)]
pub struct Prepared {
    scratch: Scratch,
    terminal: bool,
    stdin: bool,
    time_limit: Option<Duration>,
    volumes: Vec<String>,
}

/// Pull `name` and make its bundle for `opts` in a new private directory
/// under `$TMPDIR`. Nothing is left behind on error.
pub async fn prepare(name: &ImageName, opts: &RunOptions, pull: &PullOptions) -> Result<Prepared> {
    for mount in &opts.mounts {
        // Checked before any download: a typo should not cost a pull.
        std::fs::metadata(&mount.source)
            .map_err(|e| Error::Usage(format!("volume {}: {e}", escape::path(&mount.source))))?;
    }
    let id = match &opts.name {
        Some(id) => id.clone(),
        None => format!("occystrap-{}", random_hex()),
    };
    // Another container of that name would be killed by our clean-up
    // (only in the shared state root: an unprivileged run has its own).
    if crate::userns::privileged() && runtime_knows(&opts.runtime, &id).await? {
        return Err(Error::Usage(format!(
            "a container named {id:?} already exists"
        )));
    }
    let store = match &opts.bundle.rootfs {
        crate::bundle::Rootfs::Overlay(store) | crate::bundle::Rootfs::Auto(store) => {
            Some(store.clone())
        }
        crate::bundle::Rootfs::Copy | crate::bundle::Rootfs::StoreCopy(_) => None,
    };
    sweep_killed_runs(&opts.runtime);
    let scratch = Scratch::create(&opts.runtime, id, store)?;
    let bundle = scratch.bundle();
    let (source, image) = crate::resolve(name, pull).await?;
    crate::bundle::create(&source, &image, &bundle, &opts.bundle, &pull.progress).await?;
    let volumes: Vec<String> = crate::bundle::convert::volumes(&image.config)
        .into_iter()
        .filter(|v| {
            let v = v.trim_end_matches('/');
            v != "/tmp"
                && !opts
                    .mounts
                    .iter()
                    .any(|m| m.destination.trim_end_matches('/') == v)
        })
        .collect();
    let config_path = bundle.join("config.json");
    let text = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let mut spec: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Usage(format!("{}: {e}", escape::path(&config_path))))?;
    let mut volume_dirs = Vec::new();
    for (n, volume) in volumes.iter().enumerate() {
        let dir = scratch.dir.join("volumes").join(n.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        volume_dirs.push((volume.clone(), dir));
    }
    adapt_config(&mut spec, &opts.mounts, &volume_dirs, opts.network)?;
    let mut bytes = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(&config_path, bytes).map_err(|e| Error::io(&config_path, e))?;
    Ok(Prepared {
        scratch,
        terminal: opts.bundle.convert.tty,
        stdin: opts.stdin,
        time_limit: opts.time_limit,
        volumes,
    })
}

/// [`prepare`] then [`Prepared::run`]: a signal on `signals` before the
/// container starts cancels the pull (through `pull.cancel`), after that
/// it is forwarded to the container.
pub async fn run(
    name: &ImageName,
    opts: &RunOptions,
    pull: &PullOptions,
    signals: &mut UnboundedReceiver<Signal>,
) -> Result<Exit> {
    let prepared = cancel_on_signal(prepare(name, opts, pull), signals, &pull.cancel).await?;
    prepared.run(signals).await
}

/// Run `work`; if a signal arrives first, cancel it through `cancel`, let
/// it unwind (removing what it wrote) and report [`Error::Cancelled`].
pub async fn cancel_on_signal<T>(
    work: impl Future<Output = Result<T>>,
    signals: &mut UnboundedReceiver<Signal>,
    cancel: &crate::Cancel,
) -> Result<T> {
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        Some(_) = signals.recv() => {
            cancel.cancel();
            tracing::warn!("interrupted: stopping and removing partial output");
            // Whatever it made is dropped: its Drop removes it.
            let _ = work.await;
            Err(Error::Cancelled)
        }
    }
}

impl Prepared {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.scratch.id
    }

    /// The temporary directory (the bundle is its `bundle/`).
    pub fn dir(&self) -> &Path {
        &self.scratch.dir
    }

    /// The image's volumes, each an empty directory for this run.
    pub fn volumes(&self) -> &[String] {
        &self.volumes
    }

    /// Run the container in the foreground with our stdio, forwarding the
    /// signals that arrive on `signals`, and remove it and the directory.
    pub async fn run(mut self, signals: &mut UnboundedReceiver<Signal>) -> Result<Exit> {
        // A terminal only for a person at one: runc copies between it and
        // the container's pty itself (raw mode, window size) in the foreground.
        let terminal = self.terminal && std::io::stdin().is_terminal();
        if self.terminal && !terminal {
            tracing::warn!("stdin is not a terminal: running without one");
            self.set_terminal(false)?;
        }
        let log = self.scratch.dir.join("runtime.log");
        let mut command = tokio::process::Command::from(self.scratch.runtime.command());
        command
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(self.scratch.bundle())
            .arg(&self.scratch.id)
            .stdin(if self.stdin || terminal {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        // Our own process group, so a signal to ours (a CI job's group
        // kill) reaches the container once, through us. A terminal needs
        // the runtime in the terminal's foreground group to read it.
        if !std::io::stdin().is_terminal() {
            command.process_group(0);
        }
        self.scratch.started = true;
        let mut child = command.spawn().map_err(|e| {
            Error::Usage(format!(
                "cannot start the runtime {}: {e}",
                self.scratch.runtime.program
            ))
        })?;
        let deadline = self.time_limit.map(|t| tokio::time::Instant::now() + t);
        let mut timed_out = false;
        // A signal sent before the container exists is retried.
        let mut pending: Option<Signal> = None;
        let status = loop {
            let limit = async {
                match deadline {
                    Some(at) if !timed_out => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            let retry = async {
                match pending {
                    Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = child.wait() => break status,
                Some(signal) = signals.recv() => pending = Some(signal),
                () = limit => {
                    timed_out = true;
                    pending = Some(Signal::SIGKILL);
                }
                () = retry => {}
            }
            if let Some(signal) = pending
                && self.scratch.kill(signal).await
            {
                pending = None;
            }
        };
        let status = status.map_err(|e| Error::io(&self.scratch.runtime.program, e))?;
        if timed_out {
            return Ok(Exit::TimedOut);
        }
        use std::os::unix::process::ExitStatusExt;
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(signal)) => (128 + signal) as u8,
            (None, None) => 1,
        };
        if code != 0
            && let Some(code) = start_failure(&log)
        {
            return Ok(Exit::Code(code));
        }
        Ok(Exit::Code(code))
    }

    /// Turn `process.terminal` off in the bundle.
    fn set_terminal(&self, on: bool) -> Result<()> {
        let path = self.scratch.bundle().join("config.json");
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let mut spec: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::Usage(format!("{}: {e}", escape::path(&path))))?;
        if let Some(process) = spec.get_mut("process").and_then(Value::as_object_mut) {
            process.insert("terminal".into(), json!(on));
        }
        let bytes = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    }
}

/// The run's additions to the bundle's config.json: bind mounts, a tmpfs
/// on /tmp (unless mounted over), an empty directory for each image volume,
/// and the network.
fn adapt_config(
    spec: &mut Value,
    mounts: &[BindMount],
    volumes: &[(String, PathBuf)],
    network: Network,
) -> Result<()> {
    let invalid = |what: &str| Error::Usage(format!("the runtime profile has no {what}"));
    let root = spec.as_object_mut().ok_or_else(|| invalid("object"))?;
    let list = root
        .entry("mounts")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| invalid("mounts list"))?;
    let bind = |source: &Path, destination: &str, read_only: bool| {
        json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", if read_only { "ro" } else { "rw" }],
        })
    };
    if !mounts
        .iter()
        .any(|m| m.destination.trim_end_matches('/') == "/tmp")
    {
        list.push(json!({
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"],
        }));
    }
    for (destination, source) in volumes {
        list.push(bind(source, destination, false));
    }
    // Last, so a user's mount wins over what is beneath it.
    for mount in mounts {
        list.push(bind(&mount.source, &mount.destination, mount.read_only));
    }
    if network == Network::Host
        && let Some(linux) = root.get_mut("linux")
    {
        if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            namespaces.retain(|ns| ns.get("type").and_then(Value::as_str) != Some("network"));
        }
        // The host's network settings are not the container's to change
        // (runc refuses them), as Docker drops them with --network host.
        if let Some(sysctl) = linux.get_mut("sysctl").and_then(Value::as_object_mut) {
            sysctl.retain(|key, _| !key.starts_with("net."));
        }
    }
    Ok(())
}

/// When the runtime failed to start the command, the status Docker gives:
/// 127 for a command not found, 126 for one that cannot be executed. Read
/// from the runtime's own log (JSON lines), which the container's output
/// never reaches.
fn start_failure(log: &Path) -> Option<u8> {
    let text = std::fs::read_to_string(log).ok()?;
    let mut found = None;
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry.get("level").and_then(Value::as_str) != Some("error") {
            continue;
        }
        let msg = entry.get("msg").and_then(Value::as_str).unwrap_or_default();
        if msg.contains("executable file not found") || msg.contains("no such file or directory") {
            found = Some(127);
        } else if msg.contains("permission denied") {
            found = found.or(Some(126));
        }
    }
    found
}

/// Whether `runtime` has a container `id` (in its default state root).
async fn runtime_knows(runtime: &str, id: &str) -> Result<bool> {
    let status = tokio::process::Command::new(runtime)
        .args(["state", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| Error::Usage(format!("cannot start the runtime {runtime}: {e}")))?;
    Ok(status.success())
}

/// Random hex for names, from the kernel.
fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    // SAFETY: getrandom writes at most `len` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        // Unique enough for a name when the kernel says no.
        return format!("{}{}", std::process::id(), crate::output::unique_suffix());
    }
    hex::encode(bytes)
}

/// The OCI runtime and the state root it keeps the container in.
#[derive(Debug)]
struct Runtime {
    program: String,
    /// `--root`: none for privileged root (the runtime's default, where
    /// `runc list` shows the container). An unprivileged runtime's default
    /// (`$XDG_RUNTIME_DIR/runc`, else `/run/runc`) may not be writable, and
    /// is not the same inside a user namespace, so there it is `state/` in
    /// the run's own directory.
    root: Option<PathBuf>,
}

/// The state root in a run's directory, when it has one.
const STATE_DIR: &str = "state";

impl Runtime {
    /// The runtime of the run whose directory is `dir`.
    fn of(program: &str, dir: &Path) -> Runtime {
        let root = dir.join(STATE_DIR);
        Runtime {
            program: program.to_owned(),
            root: root.is_dir().then_some(root),
        }
    }

    /// `PROGRAM [--root ROOT]`, with no stdio unless the caller sets it.
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        if let Some(root) = &self.root {
            command.arg("--root").arg(root);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// `delete --force ID`: kills the container if it still runs; fails
    /// harmlessly if it is gone.
    fn delete(&self, id: &str) {
        let _ = self.command().args(["delete", "--force", id]).status();
    }
}

/// The run's temporary directory and container, removed on drop.
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    runtime: Runtime,
    id: String,
    /// The runtime was started: there may be a container to delete.
    started: bool,
    /// The layer store an overlay rootfs comes from: unmounted and its
    /// lease ended before the directory goes.
    store: Option<crate::store::Store>,
    /// Tells a sweeper this directory is in use.
    _held: Option<crate::leftovers::Held>,
}

/// The file in a run's directory naming its container.
const ID_FILE: &str = "container-id";

/// A run's directory younger than this is left alone by sweepers: it may
/// be one that has not taken its lock yet.
const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs killed outright (SIGKILL) leave their directory in `$TMPDIR`,
/// maybe a mounted rootfs, and a container the runtime still runs. A
/// directory no live run holds (its lock is free), of this user, is
/// cleared: the container deleted, the rootfs unmounted, the directory
/// removed.
fn sweep_killed_runs(runtime: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let euid = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < SWEEP_AFTER);
        if !meta.is_dir() || meta.uid() != euid || young {
            continue;
        }
        let Some(_held) = crate::leftovers::try_hold_dir(&path) else {
            continue;
        };
        if let Ok(id) = std::fs::read_to_string(path.join(ID_FILE)) {
            Runtime::of(runtime, &path).delete(id.trim());
        }
        let rootfs = path.join("bundle").join("rootfs");
        if crate::store::is_mountpoint(&rootfs) && crate::store::unmount(&rootfs).is_err() {
            continue;
        }
        tracing::info!(
            "removing {}, left by a run that was killed",
            escape::path(&path)
        );
        let _ = crate::fsroot::remove_all(&path);
    }
}

impl Scratch {
    fn create(runtime: &str, id: String, store: Option<crate::store::Store>) -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = std::env::temp_dir();
        let dir = parent.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            random_hex()
        ));
        // 0700: the rootfs holds the image's setuid binaries and devices.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let held = crate::leftovers::try_hold_dir(&dir);
        // For whoever sweeps this directory if we are killed outright.
        let id_file = dir.join(ID_FILE);
        std::fs::write(&id_file, &id).map_err(|e| Error::io(&id_file, e))?;
        if !crate::userns::privileged() {
            let state = dir.join(STATE_DIR);
            std::fs::create_dir(&state).map_err(|e| Error::io(&state, e))?;
        }
        let runtime = Runtime::of(runtime, &dir);
        Ok(Scratch {
            dir,
            runtime,
            id,
            started: false,
            store,
            _held: held,
        })
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// `runtime kill ID SIGNAL`; false if it failed (no container yet).
    async fn kill(&self, signal: Signal) -> bool {
        let mut command = tokio::process::Command::from(self.runtime.command());
        command
            .args(["kill", &self.id, &(signal as i32).to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.started {
            self.runtime.delete(&self.id);
        }
        let bundle = self.bundle();
        if bundle.join("config.json").is_file()
            && let Err(e) = crate::bundle::remove(&bundle, self.store.as_ref())
        {
            tracing::warn!("cannot remove the bundle {}: {e}", escape::path(&bundle));
        }
        if let Err(e) = crate::fsroot::remove_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", escape::path(&self.dir));
        }
    }
}

/// Environment entries from a Docker `--env-file`: `NAME=value` lines, `#`
/// comments and blank lines skipped, a bare `NAME` taking this process's
/// value (and skipped when it has none).
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut env = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            env.push(line.to_owned());
        } else if let Some(value) = std::env::var_os(line.trim_end()) {
            env.push(format!("{}={}", line.trim_end(), value.to_string_lossy()));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs() {
        let cwd = Path::new("/work");
        assert_eq!(
            BindMount::parse("data:/data:ro", cwd).unwrap(),
            BindMount {
                source: "/work/data".into(),
                destination: "/data".into(),
                read_only: true
            }
        );
        let m = BindMount::parse("/h:/c", cwd).unwrap();
        assert_eq!((m.source.as_path(), m.read_only), (Path::new("/h"), false));
        for bad in ["/h", ":/c", "/h:c", "/h:ro"] {
            assert!(BindMount::parse(bad, cwd).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_additions() {
        let mut spec = json!({
            "mounts": [],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
        });
        let mounts = [BindMount::parse("/h:/c:ro", Path::new("/")).unwrap()];
        let volumes = [("/data".to_owned(), PathBuf::from("/t/volumes/0"))];
        adapt_config(&mut spec, &mounts, &volumes, Network::Host).unwrap();
        let dests: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/tmp", "/data", "/c"]);
        assert_eq!(spec["mounts"][2]["options"], json!(["rbind", "ro"]));
        assert_eq!(spec["linux"]["namespaces"], json!([{"type": "pid"}]));
    }

    #[test]
    fn start_failures_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"/x\\\": stat /x: no such file or directory\"}\n",
        )
        .unwrap();
        assert_eq!(start_failure(&log), Some(127));
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"exec /x: permission denied\"}\n",
        )
        .unwrap();
        assert_eq!(start_failure(&log), Some(126));
        std::fs::write(&log, "{\"level\":\"info\",\"msg\":\"hello\"}\n").unwrap();
        assert_eq!(start_failure(&log), None);
    }
}
