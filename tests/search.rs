//! `search` streams the layers and reports matches with the layer that
//! removes them; checked against the tree a bundle of the same image has.

mod common;

use common::cli::{fails_with, occystrap, ok, stderr};
use common::image::{ImageSpec, LayerSpec};
use common::registry::Registry;
use serde_json::Value;

fn image() -> ImageSpec {
    ImageSpec::new()
        .entrypoint(&["/usr/bin/dash"])
        .layer(
            LayerSpec::new()
                .dir("usr", 0o755)
                .dir("usr/bin", 0o755)
                .file("usr/bin/bash", b"#bash", 0o755)
                .file("usr/bin/zsh", b"#zsh", 0o755)
                .symlink("usr/bin/sh", "bash")
                .file("usr/lib/libsh.so", b"lib", 0o644)
                .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644),
        )
        .layer(LayerSpec::new().whiteout("usr/bin/zsh"))
        .layer(
            LayerSpec::new()
                .opaque("usr/bin")
                .file("usr/bin/dash", b"#dash", 0o755),
        )
}

#[test]
fn search_finds_matches_and_the_layer_that_removes_them() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/shells", "v1", &image());
    let reference = registry.image_ref("test/shells", "v1");

    let out = occystrap(&["--format", "json", "search", &reference, "/usr/bin/*sh"]);
    ok(&out);
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let matches: Vec<(String, u64, Option<u64>)> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["layer"].as_u64().unwrap(),
                m["removedBy"].as_u64(),
            )
        })
        .collect();
    let want = [
        ("usr/bin/bash", 0, Some(2)),
        ("usr/bin/zsh", 0, Some(1)),
        ("usr/bin/sh", 0, Some(2)),
        ("usr/bin/dash", 2, None),
    ];
    let want: Vec<(String, u64, Option<u64>)> = want
        .iter()
        .map(|(p, l, r)| (p.to_string(), *l, *r))
        .collect();
    assert_eq!(matches, want);
    assert_eq!(
        found["matches"][0]["digest"],
        pushed.layer_digests[0].as_str()
    );
    assert_eq!(found["matches"][2]["type"], "2");
    assert_eq!(found["matches"][2]["link"], "bash");
    assert_eq!(found["matches"][0]["size"], 5);
    assert_eq!(found["matches"][0]["mode"], "0755");

    // The bundle's tree agrees: what is not removed is there, the rest not.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    ok(&occystrap(&[
        "bundle",
        &reference,
        bundle.to_str().unwrap(),
    ]));
    for (path, _, removed) in &matches {
        let present = bundle.join("rootfs").join(path).symlink_metadata().is_ok();
        assert_eq!(present, removed.is_none(), "{path}");
    }

    // Text: a line per match; `**` crosses directories; regexes.
    let out = occystrap(&["search", &reference, "**/*.so"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("usr/lib/libsh.so"), "{text}");
    let out = occystrap(&["search", "--regex", &reference, "^etc/pass"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("etc/passwd"));
    let out = occystrap(&["search", &reference, "usr/bin/sh"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-> bash  (removed by layer 2)"), "{text}");

    // Bad patterns are usage errors, before anything is fetched.
    fails_with(&occystrap(&["search", &reference, "a["]), 2, "not a glob");
    let bad = occystrap(&["search", "--regex", &reference, "("]);
    fails_with(&bad, 2, "not a regular expression");
    assert!(!stderr(&bad).contains("layer 1/"), "{}", stderr(&bad));
}

/// Two images sharing a base: every kind of change between their final
/// trees, which bundles of both confirm.
#[test]
fn diff_lists_what_differs_between_final_trees() {
    let registry = Registry::start();
    let base = LayerSpec::new()
        .dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644)
        .file("etc/motd", b"hello\n", 0o644)
        .file("etc/gone", b"bye\n", 0o644)
        .file("bin/tool", b"#tool", 0o755)
        .file("bin/link-me", b"#target", 0o755)
        .dir("opt/data", 0o755)
        .file("opt/data/a", b"a", 0o644);
    let a = ImageSpec::new()
        .entrypoint(&["/bin/tool"])
        .layer(base.clone());
    let b = ImageSpec::new()
        .entrypoint(&["/bin/tool"])
        .layer(base)
        .layer(
            LayerSpec::new()
                .whiteout("etc/gone")
                .file("etc/motd", b"changed\n", 0o644)
                .file("bin/tool", b"#tool", 0o700)
                .symlink("etc/hosts", "/run/hosts")
                .opaque("opt/data")
                .file("opt/data/b", b"b", 0o644)
                .file("new", b"new", 0o644),
        );
    registry.push_image("test/diff", "a", &a);
    registry.push_image("test/diff", "b", &b);
    let (ra, rb) = (
        registry.image_ref("test/diff", "a"),
        registry.image_ref("test/diff", "b"),
    );
    let out = occystrap(&["diff", &ra, &rb]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "~ bin/tool (mode 0755 → 0700)",
            "- etc/gone",
            "~ etc/hosts (type 0 → 2, content, mode 0644 → 0777, link)",
            "~ etc/motd (content)",
            "+ new",
            "- opt/data/a",
            "+ opt/data/b",
        ],
        "{text}"
    );
    let out = occystrap(&["--format", "json", "diff", &ra, &rb]);
    ok(&out);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["changes"][1]["change"], "removed");
    assert_eq!(json["changes"][3]["what"], serde_json::json!(["content"]));
    // The same image: no difference at all.
    let same = occystrap(&["diff", &ra, &ra]);
    ok(&same);
    assert!(same.stdout.is_empty());

    // Bundles of both agree on what was added and removed.
    let dir = tempfile::tempdir().unwrap();
    for (r, name) in [(&ra, "a"), (&rb, "b")] {
        ok(&occystrap(&[
            "bundle",
            r,
            dir.path().join(name).to_str().unwrap(),
        ]));
    }
    for line in &lines {
        let (sign, path) = line.split_at(2);
        let path = path.split(" (").next().unwrap();
        let in_a = dir
            .path()
            .join("a/rootfs")
            .join(path)
            .symlink_metadata()
            .is_ok();
        let in_b = dir
            .path()
            .join("b/rootfs")
            .join(path)
            .symlink_metadata()
            .is_ok();
        match sign {
            "+ " => assert!(!in_a && in_b, "{line}"),
            "- " => assert!(in_a && !in_b, "{line}"),
            _ => assert!(in_a && in_b, "{line}"),
        }
    }
}

/// `inspect --config --history --layers`: the config summary, history
/// entries matched to layers (empty ones to none), sizes, and a warning
/// when the history does not pair up with the layers.
#[test]
fn inspect_shows_config_history_matched_to_layers_and_sizes() {
    let registry = Registry::start();
    let two = ImageSpec::new()
        .entrypoint(&["/bin/app"])
        .user("app")
        .label("org.example.team", "forensics")
        .layer(LayerSpec::new().file("a", b"1", 0o644))
        .layer(LayerSpec::new().file("b", b"22", 0o644))
        .edit_config(|c| {
            let history = c["history"].as_array_mut().unwrap();
            history.insert(
                1,
                serde_json::json!({"created_by": "ENV X=1", "empty_layer": true}),
            );
        });
    let pushed = registry.push_image("test/inspect", "v1", &two);
    let reference = registry.image_ref("test/inspect", "v1");
    let out = occystrap(&["inspect", "--config", "--history", "--layers", &reference]);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["user"], "app");
    assert_eq!(v["config"]["entrypoint"], serde_json::json!(["/bin/app"]));
    assert_eq!(v["config"]["labels"]["org.example.team"], "forensics");
    let layers: Vec<Value> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["layer"].clone())
        .collect();
    assert_eq!(
        layers,
        [serde_json::json!(0), Value::Null, serde_json::json!(1)]
    );
    assert_eq!(v["history"][1]["createdBy"], "ENV X=1");
    assert_eq!(v["layers"][1]["index"], 1);
    let manifest: Value = serde_json::from_slice(&pushed.manifest_bytes).unwrap();
    let total: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(v["totalSize"], total);
    assert_eq!(v["warnings"], serde_json::json!([]));

    // One history entry too many for the layers: said, not fatal.
    let odd = ImageSpec::new()
        .layer(LayerSpec::new().file("a", b"1", 0o644))
        .edit_config(|c| {
            c["history"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"created_by": "RUN ghost"}));
        });
    registry.push_image("test/inspect", "odd", &odd);
    let out = occystrap(&[
        "inspect",
        "--history",
        &registry.image_ref("test/inspect", "odd"),
    ]);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("2 entries that made a layer, for 1 layers"),
        "{v:#}"
    );
    assert_eq!(v["history"][1]["layer"], Value::Null);
}
