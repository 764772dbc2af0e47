//! Running the occystrap binary and checking what it did, plus the Docker
//! engine for the integration tier.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Short waits between retries, so tests stay fast (unless a test sets
/// these flags itself).
const FAST: &[(&str, &str)] = &[("--retry-delay", "10"), ("--timeout", "5")];

/// The binary with a clean environment: no credentials from the caller's
/// environment, auth.json files or Docker config, no registries.conf or
/// certs.d from the machine (`OCCYSTRAP_NO_SYSTEM_CONFIG`), and no blob cache (tests that tamper with
/// a registry's blobs must see the registry's bytes; cache tests pass
/// `--cache DIR`, which this leaves alone).
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_occystrap"));
    cmd.env_remove("OCCYSTRAP_USERNAME")
        .env_remove("OCCYSTRAP_PASSWORD")
        .env_remove("OCCYSTRAP_CACHE_DIR")
        .env("OCCYSTRAP_NO_CACHE", "1")
        .env("DOCKER_CONFIG", "/nonexistent-occystrap-test")
        .env("HOME", "/nonexistent-occystrap-test")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .env("OCCYSTRAP_NO_SYSTEM_CONFIG", "1");
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(proxy).env_remove(proxy.to_lowercase());
    }
    cmd
}

/// Run another tool (skopeo, umoci, ...), which must succeed.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Like [`occystrap`], with the blob cache at `cache`.
pub fn occystrap_cached(cache: &Path, args: &[&str]) -> Output {
    command()
        .env_remove("OCCYSTRAP_NO_CACHE")
        .env("OCCYSTRAP_CACHE_DIR", cache)
        .args(FAST.iter().flat_map(|(flag, value)| [*flag, *value]))
        .args(args)
        .output()
        .expect("run occystrap")
}

/// Run occystrap with `args` (and fast retry settings) to completion.
pub fn occystrap(args: &[&str]) -> Output {
    let defaults = FAST
        .iter()
        .filter(|(flag, _)| !args.contains(flag))
        .flat_map(|(flag, value)| [*flag, *value]);
    command()
        .args(defaults)
        .args(args)
        .output()
        .expect("run occystrap")
}

/// Its stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert success, showing stderr otherwise.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "occystrap failed ({:?}): {}",
        out.status.code(),
        stderr(out)
    );
}

/// Assert exit `code` with `needle` in stderr.
pub fn fails_with(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// Nothing at all in `dir`: no output, no temporary file.
pub fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Every entry of a tar archive: name → content.
pub fn tar_entries(reader: impl Read) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Run `docker` with `args`; returns stdout, panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure `docker` has an engine to talk to, starting Debian's
/// `dockerd` if need be (tests run as root). Panics (no silent skip) when
/// there is none after 60 s.
pub fn ensure_dockerd() {
    static START: Once = Once::new();
    START.call_once(|| {
        if engine_answers() {
            return;
        }
        // Detached through a shell so the engine outlives this test process.
        let log = std::env::temp_dir().join("occystrap-test-dockerd.log");
        let started = Command::new("sh")
            .arg("-c")
            .arg(format!("dockerd >'{}' 2>&1 &", log.display()))
            .status()
            .expect("start dockerd: install Debian's docker.io and run as root");
        assert!(started.success(), "could not start dockerd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine_answers() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up (see {})",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

/// `docker load -i tarball` must load `tag` with image ID `image_id`, and
/// `docker run` of it must print `expect`. The image is removed afterwards.
pub fn docker_load_and_run(tarball: &Path, tag: &str, image_id: &str, expect: &str) {
    ensure_dockerd();
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    let loaded = docker(&["load", "-i", tarball.to_str().unwrap()]);
    assert!(loaded.contains(tag), "docker load said: {loaded}");
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert_eq!(id.trim(), image_id, "image ID is the registry's");
    let ran = docker(&["run", "--rm", "--network", "none", tag]);
    assert_eq!(ran, expect);
    docker(&["rmi", "-f", tag]);
}
