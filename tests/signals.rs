//! SIGINT/SIGTERM during `export` and `bundle`: the process stops promptly,
//! exits 130, and leaves neither the output nor any temporary behind; an
//! existing output is left untouched.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::busybox::busybox_image;
use common::cli::noise;
use common::image::{Compression, LayerSpec};
use common::registry::Registry;

fn big_image() -> common::image::ImageSpec {
    let mut image = busybox_image();
    for i in 0..4u64 {
        image = image.layer(
            LayerSpec::new()
                .file(&format!("data/blob{i}"), noise(24 << 20, i + 1), 0o644)
                .compression(Compression::None),
        );
    }
    image
}

/// Start occystrap with `-v`, wait until it reports layer `at` of the
/// pull, send `signal`, and return the exit code and how long it took to stop.
fn interrupt_at(
    args: &[&str],
    at: usize,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, Duration) {
    let mut child = common::cli::command()
        .arg("-v")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let marker = format!("layer {at}/");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let hit = line.contains(&marker);
        seen.push(line);
        if hit {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains(&marker)),
        "never reached {marker}: {seen:?}"
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    let sent = Instant::now();
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("interrupted")),
        "no interruption reported: {seen:?} {rest:?}"
    );
    (status.code(), sent.elapsed())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn signals_during_export_and_bundle_leave_nothing() {
    let registry = Registry::start();
    registry.push_image("test/big", "v1", &big_image());
    let reference = registry.image_ref("test/big", "v1");
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("out.tar");
    let bundle = dir.path().join("bundle");
    use nix::sys::signal::Signal::{SIGINT, SIGTERM};
    for (at, signal) in [(2, SIGINT), (3, SIGTERM), (5, SIGINT)] {
        for args in [
            ["export", reference.as_str(), tarball.to_str().unwrap()],
            ["bundle", reference.as_str(), bundle.to_str().unwrap()],
        ] {
            let (code, took) = interrupt_at(&args, at, signal);
            assert_eq!(code, Some(130), "{args:?} at layer {at}");
            assert!(took < Duration::from_secs(5), "took {took:?} to stop");
            assert!(
                entries(dir.path()).is_empty(),
                "left: {:?}",
                entries(dir.path())
            );
        }
    }
}

#[test]
fn interrupted_replacement_keeps_the_existing_output() {
    let registry = Registry::start();
    registry.push_image("test/big", "v1", &big_image());
    let reference = registry.image_ref("test/big", "v1");
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("out.tar");
    let bundle = dir.path().join("bundle");
    std::fs::write(&tarball, b"previous").unwrap();
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), b"previous").unwrap();

    let (code, _) = interrupt_at(
        &["export", &reference, tarball.to_str().unwrap()],
        3,
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(code, Some(130));
    let (code, _) = interrupt_at(
        &["bundle", "--force", &reference, bundle.to_str().unwrap()],
        3,
        nix::sys::signal::Signal::SIGINT,
    );
    assert_eq!(code, Some(130));
    assert_eq!(std::fs::read(&tarball).unwrap(), b"previous");
    assert_eq!(
        std::fs::read(bundle.join("config.json")).unwrap(),
        b"previous"
    );
    assert_eq!(entries(dir.path()), ["bundle", "out.tar"]);
}
