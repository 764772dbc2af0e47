//! Progress on stderr (bars on a terminal, plain lines in a log, JSON
//! events for orchestrators) and results on stdout (`--format`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cli::{command, noise, occystrap, ok, stderr};
use common::image::{ImageSpec, LayerSpec};
use common::push::PushedImage;
use common::registry::Registry;
use serde_json::Value;

/// An image of two layers, the first big enough to take a while.
fn push_two_layers(registry: &Registry, repo: &str) -> (PushedImage, String) {
    // A volume: `bundle` warns about it (a warning event, a result warning).
    let image = ImageSpec::new()
        .cmd(&["/small"])
        .volume("/data")
        .layer(LayerSpec::new().file("big", noise(6 << 20, 7), 0o644))
        .layer(LayerSpec::new().file("small", b"small\n", 0o644));
    let pushed = registry.push_image(repo, "v1", &image);
    (pushed, registry.image_ref(repo, "v1"))
}

/// Every stderr line as a JSON event of schema version 1.
fn parse_events(out: &Output) -> Vec<Value> {
    stderr(out)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line:?}"));
            assert_eq!(event["v"], 1, "{line}");
            event
        })
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().expect("an event name"))
        .collect()
}

/// resolved → per layer started → verified → applied (in layer order) →
/// done, with the fields the README documents.
fn assert_schema_and_order(events: &[Value], pushed: &PushedImage, output: &Path) {
    let kinds = names(events);
    for kind in &kinds {
        assert!(
            [
                "resolved",
                "layer_started",
                "progress",
                "verified",
                "applied",
                "done",
                "warning"
            ]
            .contains(kind),
            "unexpected event {kind}"
        );
    }
    assert_eq!(kinds.first(), Some(&"resolved"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let resolved = &events[0];
    assert_eq!(resolved["manifest_digest"], pushed.manifest_digest.as_str());
    assert_eq!(resolved["image_id"], pushed.config_digest.as_str());
    assert!(resolved["reference"].is_string() && resolved["platform"].is_string());
    let layers = resolved["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer["digest"], pushed.layer_digests[i].as_str());
        assert_eq!(layer["diff_id"], pushed.diff_ids[i].as_str());
        assert!(layer["size"].as_u64().unwrap() > 0);
    }
    let position = |kind: &str, index: usize| {
        events
            .iter()
            .position(|e| e["event"] == kind && e["index"] == index)
            .unwrap_or_else(|| panic!("no {kind} for layer {index}: {kinds:?}"))
    };
    for (i, layer) in layers.iter().enumerate() {
        let (started, verified, applied) = (
            position("layer_started", i),
            position("verified", i),
            position("applied", i),
        );
        assert!(started < verified && verified < applied, "{kinds:?}");
        if i > 0 {
            assert!(position("layer_started", i - 1) < started, "{kinds:?}");
            assert!(position("applied", i - 1) < applied, "{kinds:?}");
        }
        let digest = pushed.layer_digests[i].as_str();
        assert_eq!(events[started]["digest"], digest);
        assert_eq!(events[started]["count"], 2);
        assert_eq!(events[started]["size"], layer["size"]);
        let v = &events[verified];
        assert_eq!(v["digest"], digest);
        assert_eq!(v["diff_id"], pushed.diff_ids[i].as_str());
        assert_eq!(v["read"], layer["size"], "every blob byte counted");
        assert_eq!(
            v["written"].as_u64().unwrap(),
            pushed.layer_tars[i].len() as u64,
            "every tar byte counted"
        );
        assert_eq!(events[applied]["written"], v["written"]);
    }
    for p in events.iter().filter(|e| e["event"] == "progress") {
        for key in ["index", "digest", "size", "read", "written"] {
            assert!(!p[key].is_null(), "progress without {key}: {p}");
        }
    }
    let done = events.last().unwrap();
    assert_eq!(done["output"], output.to_str().unwrap());
    let total: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert_eq!(done["read"], total);
}

/// The `--format json` result of a command that wrote `output`.
fn assert_result(out: &Output, pushed: &PushedImage, output: &Path) {
    let text = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one result ({e}): {text}"));
    assert_eq!(result["manifestDigest"], pushed.manifest_digest.as_str());
    assert_eq!(result["imageID"], pushed.config_digest.as_str());
    assert_eq!(result["output"], output.to_str().unwrap());
    assert!(result["reference"].is_string() && result["platform"].is_string());
    let layers = result["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1]["diffID"], pushed.diff_ids[1].as_str());
    assert!(result["warnings"].is_array());
}

#[test]
fn json_events_and_results_for_a_bundle_and_an_export() {
    let registry = Registry::start();
    let (pushed, reference) = push_two_layers(&registry, "test/events");
    let dir = tempfile::tempdir().unwrap();

    let bundle = dir.path().join("bundle");
    let out = command()
        .env("OCCYSTRAP_PROGRESS_INTERVAL_MS", "1")
        .args([
            "--progress",
            "json",
            "--format",
            "json",
            "bundle",
            &reference,
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    ok(&out);
    let bundle_events = parse_events(&out);
    assert_schema_and_order(&bundle_events, &pushed, &bundle);
    assert_result(&out, &pushed, &bundle);
    let warning = bundle_events
        .iter()
        .find(|e| e["event"] == "warning")
        .expect("a warning event for the volume");
    assert!(
        warning["message"].as_str().unwrap().contains("/data"),
        "{warning}"
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        result["warnings"][0].as_str().unwrap().contains("/data"),
        "{result}"
    );

    let tarball = dir.path().join("image.tar");
    let out = occystrap(&[
        "--progress",
        "json",
        "--format",
        "json",
        "export",
        &reference,
        tarball.to_str().unwrap(),
    ]);
    ok(&out);
    assert_schema_and_order(&parse_events(&out), &pushed, &tarball);
    assert_result(&out, &pushed, &tarball);
}

#[test]
fn a_failure_is_an_error_event_and_no_result() {
    let registry = Registry::start();
    let reference = registry.image_ref("test/absent", "v1");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b");
    let out = occystrap(&[
        "--progress",
        "json",
        "--format",
        "json",
        "bundle",
        &reference,
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let events = parse_events(&out);
    let last = events.last().expect("an error event");
    assert_eq!(last["event"], "error", "{events:?}");
    assert_eq!(last["exit_code"], 3);
    assert!(
        last["message"].as_str().unwrap().contains("test/absent"),
        "{last}"
    );
    assert!(out.stdout.is_empty(), "no result for a failure");

    // A layer that fails its digest mid-stream: started, then the error.
    let (pushed, reference) = push_two_layers(&registry, "test/damaged");
    let blob = registry.blob_path(&pushed.layer_digests[0]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out = occystrap(&[
        "--progress",
        "json",
        "export",
        &reference,
        dir.path().join("t.tar").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let events = parse_events(&out);
    let kinds = names(&events);
    assert_eq!(kinds.first(), Some(&"resolved"), "{kinds:?}");
    assert!(kinds.contains(&"layer_started"), "{kinds:?}");
    assert!(!kinds.contains(&"done"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"error"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["exit_code"], 4);
}

#[test]
fn piped_progress_is_plain_lines_without_escape_codes_and_stdout_is_only_the_result() {
    let registry = Registry::start();
    let (pushed, reference) = push_two_layers(&registry, "test/plain");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b");
    // Colour asked for by the environment: still none off a terminal.
    let out = command()
        .env("OCCYSTRAP_PROGRESS_INTERVAL_MS", "20")
        .env("CLICOLOR_FORCE", "1")
        .args(["-v", "bundle", &reference])
        .arg(&target)
        .output()
        .unwrap();
    ok(&out);
    let err = stderr(&out);
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in a piped log: {err:?}"
    );
    assert!(err.contains("layer 1/2 "), "{err}");
    assert!(err.contains("started"), "{err}");
    assert!(err.contains("layer 2/2 "), "{err}");
    assert!(err.contains("progress: "), "a summary line: {err}");
    assert!(err.contains("done: "), "{err}");
    // stdout: the text result and nothing else, whatever -v logs.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}'));
    for line in text.lines() {
        let label = line.split(':').next().unwrap();
        assert!(
            [
                "reference",
                "manifest",
                "image ID",
                "platform",
                "output",
                "layer",
                "warning"
            ]
            .contains(&label),
            "not a result line on stdout: {line:?}"
        );
    }
    assert!(
        text.contains(&format!("manifest: {}", pushed.manifest_digest)),
        "{text}"
    );
    assert!(
        text.contains(&format!("image ID: {}", pushed.config_digest)),
        "{text}"
    );
    assert!(
        text.contains(&format!("output: {}", target.display())),
        "{text}"
    );

    // none: nothing at all on stderr.
    let out = command()
        .args([
            "--progress",
            "none",
            "--format",
            "json",
            "bundle",
            "--force",
            &reference,
        ])
        .arg(&target)
        .output()
        .unwrap();
    ok(&out);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_result(&out, &pushed, &target);
}

/// Run occystrap on a pseudo-terminal (util-linux `script`), 120 columns;
/// returns what the terminal showed.
fn on_a_terminal(args: &[&str]) -> (Option<i32>, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_occystrap"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let inner = format!("stty cols 120 rows 40; exec {}", quoted.join(" "));
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("OCCYSTRAP_NO_CACHE", "1")
        .env("HOME", "/nonexistent-occystrap-test")
        .env_remove("NO_COLOR");
    let out = script.output().expect("run script (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What is left on the last line after the last escape sequence: a
/// cleanly ended display has none of the bars there.
fn after_last_escape(screen: &str) -> &str {
    let tail = screen.rfind('\u{1b}').map_or(screen, |i| &screen[i..]);
    // Skip the escape sequence itself (ESC [ params final-byte).
    match tail
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((i, _)) => &tail[i + 1..],
        None => tail,
    }
}

#[test]
fn bars_on_a_terminal_end_cleanly_on_success_and_on_error() {
    let registry = Registry::start();
    let (pushed, reference) = push_two_layers(&registry, "test/tty");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b");
    let (code, screen) = on_a_terminal(&[
        "--format",
        "json",
        "bundle",
        &reference,
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("total"), "a total bar: {screen:?}");
    assert!(screen.contains("1/2 "), "a layer bar: {screen:?}");
    assert!(screen.contains("ETA"), "bars: {screen:?}");
    let tail = after_last_escape(&screen);
    assert!(
        !tail.contains("ETA") && !tail.contains("total"),
        "bar left behind: {tail:?}"
    );
    assert!(screen.contains("pulled 2 layers"), "{screen:?}");
    assert!(
        screen.contains(&pushed.config_digest),
        "the result: {screen:?}"
    );
    assert!(
        screen.ends_with("\r\n"),
        "the cursor ends on a fresh line: {screen:?}"
    );

    // inspect fetches no layer: no bar, no summary, just the result.
    let (code, screen) = on_a_terminal(&["inspect", &reference]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        !screen.contains("ETA") && !screen.contains("pulled"),
        "{screen:?}"
    );
    assert!(screen.contains(&pushed.manifest_digest), "{screen:?}");

    // A layer that fails its digest: the bars go, the error stays.
    let blob = registry.blob_path(&pushed.layer_digests[0]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let target = dir.path().join("c");
    let (code, screen) = on_a_terminal(&["bundle", &reference, target.to_str().unwrap()]);
    assert_eq!(code, Some(4), "{screen}");
    assert!(screen.contains("1/2 "), "a layer bar: {screen:?}");
    let tail = after_last_escape(&screen);
    assert!(
        tail.starts_with("occystrap: "),
        "only the error after the bars: {tail:?}"
    );
    assert!(!tail.contains("ETA"), "{tail:?}");
    assert!(screen.ends_with("\r\n"), "{screen:?}");
    fails_with_nothing_left(&target);
}

fn fails_with_nothing_left(target: &Path) {
    assert!(!target.exists(), "{} left behind", target.display());
}

#[test]
fn the_original_forms_and_recreate_image_print_results_too() {
    let registry = Registry::start();
    let (pushed, _) = push_two_layers(&registry, "test/legacy");
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let out = occystrap(&[
        "--progress",
        "none",
        "--format",
        "json",
        "fetch-to-extracted",
        "--use-unique-names",
        &registry.addr,
        "test/legacy",
        "v1",
        shared.to_str().unwrap(),
    ]);
    ok(&out);
    assert_result(&out, &pushed, &shared);

    let tarball = dir.path().join("again.tar");
    let name = format!("{}/test/legacy", registry.addr);
    let out = occystrap(&[
        "--format",
        "json",
        "recreate-image",
        shared.to_str().unwrap(),
        &name,
        "v1",
        tarball.to_str().unwrap(),
    ]);
    ok(&out);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["imageID"], pushed.config_digest.as_str());
    assert_eq!(result["output"], tarball.to_str().unwrap());

    // Text, the default: one `key: value` per line.
    let out = occystrap(&[
        "--progress",
        "none",
        "fetch-to-tarfile",
        &registry.addr,
        "test/legacy",
        "v1",
        dir.path().join("t.tar").to_str().unwrap(),
    ]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l == format!("image ID: {}", pushed.config_digest)),
        "{text}"
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}
