//! Output filters (`--normalize-timestamps`, `--exclude`) against a real
//! registry, read back by our bundles and loaded by a real Docker engine:
//! a new image, the same bytes every run, the same tree but what was left
//! out (and, normalised, the mtimes).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use common::busybox::busybox_image;
use common::cli::{command, docker_load_and_run, fails_with, occystrap, ok};
use common::image::{ImageSpec, LayerSpec};
use common::registry::Registry;
use common::tree::{Node, snapshot};

const LONG: &str = "usr/share/a-directory-with-a-name-long-enough/that-together-with-this-one/the-path-needs-more-than-100-bytes.txt";

/// busybox, a layer with what the tests exclude, keep and link, and a
/// layer whiting out some of it.
fn image() -> ImageSpec {
    busybox_image()
        .layer(
            LayerSpec::new()
                .dir("etc/app", 0o755)
                .mtime(1_600_000_000)
                .file("etc/app/motd", b"filtered\n", 0o644)
                .mtime(1_700_000_000)
                .xattr("user.origin", b"test\nvalue")
                .hardlink("etc/app/motd.link", "etc/app/motd")
                .dir("var", 0o755)
                .dir("var/cache", 0o755)
                .file("var/cache/big", b"cache", 0o644)
                .mtime(1_650_000_000)
                .hardlink("etc/app/cache.link", "var/cache/big")
                .file("lib/mod.pyc", b"bytecode", 0o644)
                .file("lib/mod.py", b"source", 0o644)
                .file(LONG, b"long", 0o600)
                .owner(1000, 1000)
                .file("old/gone", b"removed above", 0o644),
        )
        .layer(
            LayerSpec::new()
                .whiteout("old/gone")
                .file("var/cache/more", b"more", 0o644)
                .mtime(1_750_000_000),
        )
        .cmd(&["sh", "-c", "cat /etc/app/motd"])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The rootfs of a bundle of `image`, made with `extra` flags.
fn bundle_tree(image: &str, extra: &[&str]) -> BTreeMap<String, Node> {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    let mut args = vec!["bundle", image, path(&bundle)];
    args.extend_from_slice(extra);
    ok(&occystrap(&args));
    snapshot(&bundle.join("rootfs"))
}

fn without_mtimes(mut tree: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    for node in tree.values_mut() {
        node.mtime = 0;
    }
    tree
}

/// What `--exclude var/cache --exclude '**/*.pyc'` leaves of `tree`: the
/// hardlink to an excluded file goes too.
fn excluded(mut tree: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    tree.retain(|p, _| {
        !(p == "var/cache"
            || p.starts_with("var/cache/")
            || p.ends_with(".pyc")
            || p == "etc/app/cache.link")
    });
    tree
}

/// The docker-archive's manifest.json, config (and its name) and layer
/// files.
struct Archive {
    config_name: String,
    config: serde_json::Value,
    layers: Vec<(String, Vec<u8>)>,
}

fn read_archive(file: &Path) -> Archive {
    let entries = common::cli::tar_entries(std::fs::File::open(file).unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap().to_string();
    let config = serde_json::from_slice(&entries[&config_name]).unwrap();
    let layers = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let name = l.as_str().unwrap().to_string();
            (name.clone(), entries[&name].clone())
        })
        .collect();
    Archive {
        config_name,
        config,
        layers,
    }
}

/// Every entry's (name, mtime) in an uncompressed layer.
fn mtimes(layer: &[u8]) -> Vec<(String, u64)> {
    let mut archive = tar::Archive::new(layer);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mtime = e.header().mtime().unwrap();
            e.read_to_end(&mut Vec::new()).unwrap();
            (name, mtime)
        })
        .collect()
}

#[test]
fn filters_normalized_export_is_reproducible_and_loads() {
    let registry = Registry::start();
    let pushed = registry.push_image("filters/normalize", "v1", &image());
    let reference = registry.image_ref("filters/normalize", "v1");
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.tar"), dir.path().join("two.tar"));
    for out in [&one, &two] {
        let done = command()
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["export", "--normalize-timestamps", &reference, path(out)])
            .output()
            .unwrap();
        ok(&done);
    }
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    let zero = read_archive(&one);
    assert_ne!(
        zero.config_name,
        format!(
            "{}.json",
            pushed.config_digest.trim_start_matches("sha256:")
        ),
        "a new image"
    );
    assert_eq!(zero.config["created"], "1970-01-01T00:00:00Z");

    // SOURCE_DATE_EPOCH is the default epoch.
    let epoch = dir.path().join("epoch.tar");
    let done = command()
        .env("SOURCE_DATE_EPOCH", "1234567")
        .args(["export", "--normalize-timestamps", &reference, path(&epoch)])
        .output()
        .unwrap();
    ok(&done);
    let archive = read_archive(&epoch);
    assert_eq!(archive.config["created"], "1970-01-15T06:56:07Z");
    let diff_ids: Vec<String> = archive
        .layers
        .iter()
        .map(|(_, l)| common::sha256_digest(l))
        .collect();
    assert_eq!(
        archive.config["rootfs"]["diff_ids"],
        serde_json::json!(diff_ids)
    );
    // History is kept, one entry per layer.
    assert_eq!(
        archive.config["history"].as_array().map(Vec::len),
        Some(archive.layers.len())
    );
    for (name, layer) in &archive.layers {
        assert_eq!(
            name,
            &format!(
                "{}/layer.tar",
                common::sha256_digest(layer).trim_start_matches("sha256:")
            )
        );
        let times = mtimes(layer);
        assert!(!times.is_empty());
        assert!(times.iter().all(|(_, t)| *t == 1_234_567), "{times:?}");
    }
    // An explicit epoch wins.
    let explicit = dir.path().join("explicit.tar");
    ok(&occystrap(&[
        "export",
        "--normalize-timestamps=99",
        &reference,
        path(&explicit),
    ]));
    for (_, layer) in read_archive(&explicit).layers {
        assert!(mtimes(&layer).iter().all(|(_, t)| *t == 99));
    }

    let image_id = format!("sha256:{}", archive.config_name.trim_end_matches(".json"));
    docker_load_and_run(&epoch, &reference, &image_id, "filtered\n");

    // The same tree as the original's, but the mtimes.
    let original = bundle_tree(&reference, &[]);
    let filtered = bundle_tree(&format!("docker-archive:{}", path(&epoch)), &[]);
    assert_eq!(without_mtimes(filtered.clone()), without_mtimes(original));
    assert!(
        filtered
            .iter()
            .filter(|(_, n)| n.kind != "dir" && n.kind != "symlink")
            .all(|(_, n)| n.mtime == 1_234_567)
    );
}

#[test]
fn filters_exclude_in_export_copy_and_bundle() {
    let registry = Registry::start();
    registry.push_image("filters/exclude", "v1", &image());
    let reference = registry.image_ref("filters/exclude", "v1");
    let flags = ["--exclude", "var/cache", "--exclude", "**/*.pyc"];
    let expected = excluded(bundle_tree(&reference, &[]));
    assert!(expected.contains_key(LONG), "long names survive");
    assert!(!expected["etc/app/motd"].xattrs.is_empty());
    assert_eq!(
        expected["etc/app/motd.link"].link_group.as_deref(),
        Some("etc/app/motd")
    );
    assert!(!expected.contains_key("old/gone"));

    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("x.tar");
    let mut args = vec!["export"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&[&reference, path(&tarball)]);
    ok(&occystrap(&args));
    let archive = read_archive(&tarball);
    for (_, layer) in &archive.layers {
        assert!(
            mtimes(layer)
                .iter()
                .all(|(n, _)| !n.starts_with("var/cache/") && !n.ends_with(".pyc")),
        );
    }
    let tree = bundle_tree(&format!("docker-archive:{}", path(&tarball)), &[]);
    assert_eq!(tree, expected, "export");

    let layout = dir.path().join("layout");
    let dest = format!("oci:{}:v1", path(&layout));
    let mut args = vec!["copy"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&[&reference, &dest]);
    ok(&occystrap(&args));
    assert_eq!(bundle_tree(&dest, &[]), expected, "copy to oci:");

    assert_eq!(bundle_tree(&reference, &flags), expected, "bundle");
}

#[test]
fn filters_copy_to_registry_is_reproducible() {
    let (from, to) = (Registry::start(), Registry::start());
    from.push_image("filters/copy", "v1", &image());
    let source = from.image_ref("filters/copy", "v1");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let mut digests = Vec::new();
    for tag in ["a", "b"] {
        let dest = format!("docker://{}", to.image_ref("filters/copy", tag));
        ok(&occystrap(&[
            "copy",
            "--normalize-timestamps=5",
            "--exclude",
            "**/*.pyc",
            &source,
            &dest,
        ]));
        let reply = to.get(&format!("/v2/filters/copy/manifests/{tag}"), Some(accept));
        assert_eq!(reply.status, 200);
        digests.push(common::sha256_digest(&reply.body));
    }
    assert_eq!(digests[0], digests[1], "the same manifest twice");
    let original = bundle_tree(&source, &[]);
    let copied = bundle_tree(&to.image_ref("filters/copy", "a"), &[]);
    let mut expected = without_mtimes(original);
    expected.retain(|p, _| !p.ends_with(".pyc"));
    assert_eq!(without_mtimes(copied.clone()), expected);
    assert!(
        copied
            .values()
            .filter(|n| n.kind == "file")
            .all(|n| n.mtime == 5)
    );
}

#[test]
fn filters_bundle_refuses_normalize() {
    let dir = tempfile::tempdir().unwrap();
    let out = occystrap(&[
        "bundle",
        "--normalize-timestamps",
        "docker-archive:/nonexistent.tar",
        path(&dir.path().join("b")),
    ]);
    fails_with(&out, 2, "--normalize-timestamps");
    let out = occystrap(&[
        "copy",
        "--exclude",
        "x",
        "docker-archive:/nonexistent.tar",
        "docker-daemon:x:y",
    ]);
    fails_with(&out, 2, "filters");
}
