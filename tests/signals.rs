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

/// Hold an flock on `path` (a file or directory), as a live occystrap
/// process holds its temporaries.
fn hold(path: &Path) -> nix::fcntl::Flock<std::fs::File> {
    let file = std::fs::File::open(path).unwrap();
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap()
}

#[test]
fn leftovers_of_sigkill_are_swept_by_the_next_run_never_a_live_ones() {
    use common::fake::{Canned, FakeServer};
    let registry = Registry::start();
    let pushed = registry.push_image("test/big", "v1", &big_image());
    // The top layer's download stalls half way, so that when the process
    // is killed its blob cache temporary is there too.
    let fake = FakeServer::in_front_of(&registry);
    let top = format!("/v2/test/big/blobs/{}", pushed.layer_digests[4]);
    fake.on(
        "GET",
        &top,
        vec![Canned::forward().stall_after(1 << 20, Duration::from_secs(60))],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    for (output, command) in [("bundle", "bundle"), ("out.tar", "export")] {
        // A cache of its own: the first run must download.
        let cache = dir.path().join(format!("cache-{command}"));
        let cached = |args: &[&str]| {
            let mut cmd = common::cli::command();
            cmd.env_remove("OCCYSTRAP_NO_CACHE")
                .env("OCCYSTRAP_CACHE_DIR", &cache)
                .args(["--retry-delay", "10", "--timeout", "120"])
                .args(args);
            cmd
        };
        let target = out.join(output);
        let through_fake = fake.image_ref("test/big", "v1");
        let asked = |fake: &FakeServer| fake.requests().iter().filter(|r| r.path == top).count();
        let before = asked(&fake);
        let mut child = cached(&[command, &through_fake, target.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while asked(&fake) == before {
            assert!(
                Instant::now() < deadline,
                "the top layer was never asked for"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until the stalled download has its temporary in the cache.
        while entries(&cache.join("tmp")).is_empty() {
            assert!(Instant::now() < deadline, "no cache temporary appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap(); // SIGKILL: no handler runs
        child.wait().unwrap();
        let staged = format!(".{output}.occystrap-{}-", child.id());
        let left = entries(&out);
        assert!(
            left.iter()
                .any(|n| n.starts_with(&staged) && n.ends_with(".tmp")),
            "{command}: expected a staged leftover {staged}*.tmp in {left:?}"
        );
        assert!(
            !entries(&cache.join("tmp")).is_empty(),
            "{command}: no cache temporary left: {:?} {:?}",
            entries(&cache),
            fake.requests()
                .iter()
                .map(|r| r.path.clone())
                .collect::<Vec<_>>()
        );

        // A live process's temporaries beside them (held by this test).
        let live_out = out.join(format!(".{output}.occystrap-4242-abc0.tmp"));
        let live_tmp = cache.join("tmp").join("live.4242.0");
        std::fs::create_dir(&live_out).unwrap();
        std::fs::write(&live_tmp, b"in progress").unwrap();
        let locks = (hold(&live_out), hold(&live_tmp));

        // The next run (straight to the registry) sweeps what the killed
        // one left, and leaves the live ones alone.
        common::cli::ok(
            &cached(&[
                command,
                &registry.image_ref("test/big", "v1"),
                target.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
        );
        let mut want = vec![
            live_out.file_name().unwrap().to_string_lossy().into_owned(),
            "bundle".to_owned(),
        ];
        if output == "out.tar" {
            want.push("out.tar".to_owned());
        }
        assert_eq!(entries(&out), want, "{command}");
        assert_eq!(entries(&cache.join("tmp")), ["live.4242.0"], "{command}");
        assert!(live_out.is_dir() && live_tmp.is_file());

        // Once their process is gone, they are leftovers like any other.
        drop(locks);
        common::cli::ok(
            &cached(&[
                "bundle",
                "--force",
                &registry.image_ref("test/big", "v1"),
                out.join("bundle").to_str().unwrap(),
            ])
            .output()
            .unwrap(),
        );
        want.remove(0);
        assert_eq!(entries(&out), want, "{command}");
        assert!(entries(&cache.join("tmp")).is_empty(), "{command}");
    }
}
