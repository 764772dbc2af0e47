//! Integration tier: tarballs from `export` are proven by a real Docker
//! engine (`docker load`, `docker image inspect`, `docker run`). Needs root
//! and Debian's docker.io; dockerd is started if it is not running.

mod common;

use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::busybox::busybox_image;
use common::image::{Compression, Format, LayerSpec};
use common::registry::Registry;

fn docker(args: &[&str]) -> String {
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

#[test]
fn docker_loads_and_runs_exported_tarballs() {
    ensure_dockerd();
    let registry = Registry::start();
    for (format, repo) in [(Format::Docker, "load/docker"), (Format::Oci, "load/oci")] {
        let image = busybox_image()
            .format(format)
            .layer(
                LayerSpec::new()
                    .file("etc/motd", b"from a zstd layer\n", 0o644)
                    .compression(Compression::Zstd),
            )
            .cmd(&["sh", "-c", "echo hello; cat /etc/motd"]);
        let pushed = registry.push_image(repo, "v1", &image);
        let reference = registry.image_ref(repo, "v1");
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("image.tar");
        let out = Command::new(env!("CARGO_BIN_EXE_occystrap"))
            .args(["export", &reference, tarball.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let _ = Command::new("docker")
            .args(["rmi", "-f", &reference])
            .output();
        let loaded = docker(&["load", "-i", tarball.to_str().unwrap()]);
        assert!(loaded.contains(&reference), "docker load said: {loaded}");
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &reference]);
        assert_eq!(
            id.trim(),
            pushed.config_digest,
            "image ID is the registry's"
        );
        let ran = docker(&["run", "--rm", "--network", "none", &reference]);
        assert_eq!(ran, "hello\nfrom a zstd layer\n");
        docker(&["rmi", "-f", &reference]);
    }
}

fn engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure `docker` has an engine to talk to, starting `dockerd` if need
/// be. Panics (no silent skip) when there is none after 60 s.
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
                "dockerd did not come up (see the dockerd log in the temp dir)"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}
