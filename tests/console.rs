//! What reaches the console: results on stdout (and a reader that goes
//! away), logs on stderr without escape codes when it is not a terminal,
//! and the platform a single-platform image really is.

mod common;

use std::process::Stdio;

use common::cli::{command, fails_with, occystrap, ok, stderr};
use common::image::{ImageSpec, LayerSpec};
use common::registry::Registry;

#[test]
fn a_single_platform_image_of_another_platform_is_refused_when_asked_for() {
    let registry = Registry::start();
    let arm = ImageSpec::new()
        .platform("linux/arm64")
        .layer(LayerSpec::new().file("f", b"arm", 0o644));
    registry.push_image("test/arm", "v1", &arm);
    let reference = registry.image_ref("test/arm", "v1");

    // Asked for explicitly, in either spelling: exit 3, naming what it is.
    for flags in [
        &["--platform", "linux/amd64"][..],
        &["--architecture", "amd64"],
    ] {
        let mut args = flags.to_vec();
        args.extend(["inspect", &reference]);
        let out = occystrap(&args);
        fails_with(&out, 3, "linux/arm64");
        assert!(out.stdout.is_empty());
    }
    // Matching: no word about it.
    let out = occystrap(&["--platform", "linux/arm64/v8", "inspect", &reference]);
    ok(&out);
    assert!(!stderr(&out).contains("may not run"), "{}", stderr(&out));
    // By default (this machine's platform, when it is not arm64): a
    // warning, and no colour codes in a log that is not a terminal.
    if std::env::consts::ARCH != "aarch64" {
        let out = occystrap(&["-v", "inspect", &reference]);
        ok(&out);
        let err = stderr(&out);
        assert!(err.contains("is a linux/arm64 image"), "{err}");
        assert!(
            !err.contains('\u{1b}'),
            "escape codes in a piped log: {err:?}"
        );
    }
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    let cache = tempfile::tempdir().unwrap();
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = command()
        .env_remove("OCCYSTRAP_NO_CACHE")
        .args(["--cache", cache.path().to_str().unwrap(), "cache", "info"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panic"), "{err}");
    assert!(err.is_empty(), "quietly: {err}");
    assert_eq!(out.status.code(), Some(128 + libc::SIGPIPE), "{err}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = occystrap(&["completions", shell]);
        ok(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["bundle", "fetch-to-extracted", "max-layer-size"] {
            assert!(text.contains(word), "{shell}: no {word}");
        }
    }
    let man = occystrap(&["man"]);
    ok(&man);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.contains(".TH occystrap 1"), "{text}");
    fails_with(&occystrap(&["completions", "tcsh"]), 2, "tcsh");
}
