//! `occystrap check` against a real registry: a sound image passes, and
//! each kind of broken image is reported with its problem code (exit 4),
//! every problem in one run.

mod common;

use std::process::Output;

use common::cli::{fails_with, noise, occystrap, ok};
use common::fake::FakeServer;
use common::image::{Format, ImageSpec, LayerSpec, PlatformSpec, raw_entry};
use common::registry::Registry;
use serde_json::{Value, json};
use tar::EntryType;

fn check(reference: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--progress", "none", "check", reference];
    args.extend(extra);
    occystrap(&args)
}

/// `check --format json`, which must exit 0 when sound and 4 otherwise.
fn check_json(reference: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend(extra);
    let out = check(reference, &args);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::cli::stderr(&out)));
    let sound = report["sound"].as_bool().unwrap();
    let errors = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == "error")
        .count();
    assert_eq!(sound, errors == 0, "{report}");
    assert_eq!(
        out.status.code(),
        Some(if sound { 0 } else { 4 }),
        "{report}"
    );
    report
}

/// The problems of `kind` in a JSON report.
fn problems<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == kind)
        .collect()
}

fn kinds(report: &Value) -> Vec<&str> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect()
}

fn two_layers() -> ImageSpec {
    ImageSpec::new()
        .layer(
            LayerSpec::new()
                .dir("etc", 0o755)
                .file("etc/motd", b"hi\n", 0o644)
                .file("etc/old", b"old\n", 0o644)
                .symlink("etc/link", "motd"),
        )
        .layer(
            LayerSpec::new()
                .whiteout("etc/old")
                .file("data/noise", noise(100_000, 7), 0o644)
                .hardlink("data/again", "data/noise"),
        )
}

#[test]
fn a_sound_image_passes_in_text_and_json() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/sound", "v1", &two_layers());
    let reference = registry.image_ref("test/sound", "v1");
    let out = check(&reference, &[]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("sound (2 layers checked)"), "{text}");
    let report = check_json(&reference, &[]);
    assert_eq!(report["sound"], true);
    assert_eq!(report["problems"], json!([]));
    assert_eq!(report["layersChecked"], 2);
    assert_eq!(report["imageID"], pushed.config_digest.as_str());
    assert_eq!(report["manifestDigest"], pushed.manifest_digest.as_str());
    let fast = check_json(&reference, &["--fast"]);
    assert_eq!(
        (fast["sound"].clone(), fast["layersChecked"].clone()),
        (json!(true), json!(0))
    );
}

/// Three layers; the middle one's stored blob is damaged, the top one
/// whites out something no lower layer has.
fn corrupted(registry: &Registry) -> (String, Vec<String>) {
    let image = ImageSpec::new()
        .layer(LayerSpec::new().file("a", b"a\n", 0o644))
        .layer(LayerSpec::new().file("big", noise(200_000, 3), 0o644))
        .layer(LayerSpec::new().whiteout("never-there"));
    let pushed = registry.push_image("test/corrupt", "v1", &image);
    let path = registry.blob_path(&pushed.layer_digests[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    (pushed.manifest_digest, pushed.layer_digests)
}

#[test]
fn a_corrupt_blob_is_reported_and_the_walk_goes_on() {
    let registry = Registry::start();
    let (_, digests) = corrupted(&registry);
    let reference = registry.image_ref("test/corrupt", "v1");
    let report = check_json(&reference, &[]);
    assert_eq!(
        kinds(&report),
        ["digest-mismatch", "whiteout-removes-nothing"],
        "{report:#}"
    );
    let bad = problems(&report, "digest-mismatch")[0];
    assert_eq!(
        (bad["layer"].clone(), bad["digest"].clone()),
        (json!(1), json!(digests[1]))
    );
    let later = problems(&report, "whiteout-removes-nothing")[0];
    assert_eq!(later["layer"], 2);
    assert_eq!(later["path"], ".wh.never-there");
    assert_eq!(report["layersChecked"], 3);

    let out = check(&reference, &[]);
    fails_with(&out, 4, "the check found 1 problem(s)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(&format!("error digest-mismatch layer 1 {}: ", digests[1])),
        "{text}"
    );
    assert!(
        text.contains("1 problem(s), 1 note(s) (3 layers checked)"),
        "{text}"
    );

    // With a cache, later layers are fetched ahead into it while earlier
    // ones are checked: the same report, and only sound blobs kept (the
    // damaged one too was once kept: read again after its failed end, the
    // verifier took a second end for a good one).
    let cache = tempfile::tempdir().unwrap();
    let out = common::cli::occystrap_cached(
        cache.path(),
        &[
            "--progress",
            "none",
            "--format",
            "json",
            "check",
            &reference,
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", common::cli::stderr(&out));
    let cached: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kinds(&cached), kinds(&report), "{cached:#}");
    assert_eq!(cached["layersChecked"], 3);
    let kept = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        cache.path().join("blobs/sha256").join(hex).exists()
    };
    assert!(kept(&digests[0]) && kept(&digests[2]) && !kept(&digests[1]));
}

#[test]
fn fast_checks_no_layer_and_downloads_none() {
    let registry = Registry::start();
    let (_, digests) = corrupted(&registry);
    let fake = FakeServer::in_front_of(&registry);
    let reference = fake.image_ref("test/corrupt", "v1");
    let report = check_json(&reference, &["--fast"]);
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert_eq!(report["layersChecked"], 0);
    let layer_gets = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && digests.iter().any(|d| r.path.ends_with(d.as_str())))
        .count();
    assert_eq!(layer_gets, 0, "--fast downloaded a layer");
    // Without --fast the same server serves the damaged layer.
    let full = check_json(&reference, &[]);
    assert!(kinds(&full).contains(&"digest-mismatch"), "{full:#}");
}

#[test]
fn a_wrong_diff_id_is_reported() {
    let registry = Registry::start();
    let zeros = format!("sha256:{}", "0".repeat(64));
    let wrong = zeros.clone();
    let image = two_layers().edit_config(move |c| c["rootfs"]["diff_ids"][0] = json!(wrong));
    registry.push_image("test/diffid", "v1", &image);
    let report = check_json(&registry.image_ref("test/diffid", "v1"), &[]);
    assert_eq!(kinds(&report), ["diff-id-mismatch"], "{report:#}");
    let p = problems(&report, "diff-id-mismatch")[0];
    assert_eq!(p["layer"], 0);
    assert!(p["message"].as_str().unwrap().contains(&zeros), "{p}");
}

#[test]
fn hostile_entries_are_reported_refused_or_confined() {
    let registry = Registry::start();
    let layer = LayerSpec::new()
        .file("ok", b"ok\n", 0o644)
        .raw(raw_entry(b"/abs", EntryType::Regular, b"", b"x", 0o644))
        .raw(raw_entry(
            b"../escape",
            EntryType::Regular,
            b"",
            b"x",
            0o644,
        ))
        .symlink("out", "../../../etc/passwd")
        .symlink("abs-link", "/etc/shadow")
        .raw(raw_entry(b"hl", EntryType::Link, b"../../x", b"", 0o644));
    registry.push_image("test/hostile", "v1", &ImageSpec::new().layer(layer));
    let report = check_json(&registry.image_ref("test/hostile", "v1"), &[]);
    let paths = |kind| -> Vec<String> {
        problems(&report, kind)
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_string())
            .collect()
    };
    // An absolute symlink is ordinary: not even a note.
    assert_eq!(paths("confined-entry"), ["/abs", "out"], "{report:#}");
    assert_eq!(paths("refused-entry"), ["../escape", "hl"], "{report:#}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 4);
    for p in problems(&report, "confined-entry") {
        assert_eq!(p["severity"], "note");
    }
    assert_eq!(report["sound"], false, "refused entries make it unsound");
    let escape = problems(&report, "refused-entry")[0];
    assert!(
        escape["message"]
            .as_str()
            .unwrap()
            .contains("climbs above the root"),
        "{escape}"
    );
}

#[test]
fn whiteouts_that_remove_nothing_are_reported() {
    let registry = Registry::start();
    let image = ImageSpec::new()
        .layer(LayerSpec::new().file("etc/passwd", b"root\n", 0o644))
        .layer(
            LayerSpec::new()
                .whiteout("etc/passwd")
                .opaque("etc")
                .whiteout("etc/missing")
                .opaque("var"),
        );
    registry.push_image("test/whiteouts", "v1", &image);
    let report = check_json(&registry.image_ref("test/whiteouts", "v1"), &[]);
    let found: Vec<_> = problems(&report, "whiteout-removes-nothing")
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(found, ["etc/.wh.missing", "var/.wh..wh..opq"], "{report:#}");
    assert_eq!(kinds(&report).len(), 2, "{report:#}");
}

#[test]
fn a_history_that_does_not_match_the_layers_is_reported() {
    let registry = Registry::start();
    let image = two_layers().edit_config(|c| {
        c["history"] = json!([
            {"created_by": "one"},
            {"created_by": "env", "empty_layer": true},
        ])
    });
    registry.push_image("test/history", "v1", &image);
    let reference = registry.image_ref("test/history", "v1");
    for extra in [&[][..], &["--fast"]] {
        let report = check_json(&reference, extra);
        assert_eq!(kinds(&report), ["history-mismatch"], "{report:#}");
        let message = problems(&report, "history-mismatch")[0]["message"].clone();
        assert!(
            message
                .as_str()
                .unwrap()
                .contains("1 entries that made a layer, for 2 layers")
        );
    }
    // inspect matches the history by the same rule, and warns alike.
    let out = occystrap(&["inspect", "--history", &reference]);
    ok(&out);
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers: Vec<_> = inspected["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["layer"].clone())
        .collect();
    assert_eq!(layers, [json!(0), Value::Null]);
    assert_eq!(
        inspected["warnings"],
        json!(["the history has 1 entries that made a layer, for 2 layers"])
    );
}

#[test]
fn paths_declared_twice_in_a_layer_are_reported() {
    let registry = Registry::start();
    let layer = LayerSpec::new()
        .dir("d", 0o755)
        .dir("d", 0o700)
        .file("d/f", b"one\n", 0o644)
        .file("d/f", b"two\n", 0o644)
        .file("d/f", b"three\n", 0o644);
    let image = ImageSpec::new()
        .layer(LayerSpec::new().file("d/f", b"lower\n", 0o644))
        .layer(layer);
    registry.push_image("test/dup", "v1", &image);
    let report = check_json(&registry.image_ref("test/dup", "v1"), &[]);
    assert_eq!(
        kinds(&report),
        ["duplicate-path"],
        "once per path: {report:#}"
    );
    let p = problems(&report, "duplicate-path")[0];
    assert_eq!(
        (p["layer"].clone(), p["path"].clone()),
        (json!(1), json!("d/f"))
    );
}

#[test]
fn a_platform_other_than_the_index_entry_is_reported() {
    let registry = Registry::start();
    let arm = registry.push_image("test/multi", "", &two_layers().platform("linux/arm64"));
    let amd = registry.push_image("test/multi", "", &two_layers().format(Format::Docker));
    registry.push_index(
        "test/multi",
        "latest",
        Format::Docker,
        &[
            (PlatformSpec::parse("linux/amd64"), &arm),
            (PlatformSpec::parse("linux/arm64"), &amd),
        ],
    );
    let reference = registry.image_ref("test/multi", "latest");
    for platform in ["linux/amd64", "linux/arm64"] {
        let report = check_json(&reference, &["--platform", platform, "--fast"]);
        assert_eq!(kinds(&report), ["platform-mismatch"], "{report:#}");
    }
    // A normalised spelling of the same platform is no mismatch.
    let same = registry.push_image("test/multi", "", &two_layers().platform("linux/arm64/v8"));
    registry.push_index(
        "test/multi",
        "same",
        Format::Docker,
        &[(PlatformSpec::parse("linux/arm64"), &same)],
    );
    let report = check_json(
        &registry.image_ref("test/multi", "same"),
        &["--platform", "linux/arm64"],
    );
    assert_eq!(report["problems"], json!([]), "{report:#}");
}

#[test]
fn failures_that_say_nothing_about_the_image_keep_their_exit_codes() {
    let registry = Registry::start();
    fails_with(&check(&registry.image_ref("test/absent", "v1"), &[]), 3, "");
    fails_with(&check("not a reference!", &[]), 2, "");
}
