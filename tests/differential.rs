//! Differential: the same image through `skopeo copy` + `umoci unpack`
//! (Debian packages) and through `occystrap bundle` gives the same rootfs:
//! types, modes, owners, sizes, contents, link targets, device numbers,
//! xattrs, mtimes and hardlink groups.

mod common;

use common::busybox::busybox_image;
use common::cli::run;
use common::image::{Format, LayerSpec};
use common::registry::Registry;
use common::tree::snapshot;

#[test]
fn occystrap_and_umoci_unpack_the_same_tree() {
    let image = busybox_image()
        .layer(
            LayerSpec::new()
                .file("usr/bin/ping", b"\x7fELF not really", 0o4755)
                .xattr(
                    "security.capability",
                    [
                        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                )
                .file("usr/bin/sgid", b"sgid", 0o2711)
                .owner(0, 42)
                .dir("shared", 0o1777)
                .file("data/a", b"first", 0o640)
                .owner(1000, 1000)
                .mtime(1_600_000_000)
                .hardlink("data/a-link", "data/a")
                .fifo("run-fifo", 0o600)
                .char_device("dev-null", 1, 3, 0o666)
                .file("data/replace-me", b"old", 0o644)
                .hardlink("data/peer", "data/replace-me")
                .dir("readonly", 0o555)
                .file("readonly/inside", b"in", 0o444)
                .dir("opaque", 0o755)
                .file("opaque/lower", b"lower", 0o644),
        )
        .layer(
            LayerSpec::new()
                .file("data/replace-me", b"new content", 0o600)
                .hardlink("data/lower-link", "data/a")
                .whiteout("run-fifo")
                .opaque("opaque")
                .file("opaque/upper", b"upper", 0o644)
                .file("readonly/later", b"later", 0o444)
                .symlink("abs-link", "/data/a"),
        )
        // umoci reads neither zstd layers nor Docker media types with them.
        .format(Format::Oci);
    let registry = Registry::start();
    registry.push_image("diff/image", "v1", &image);
    let reference = registry.image_ref("diff/image", "v1");
    let dir = tempfile::tempdir().unwrap();

    let ours = dir.path().join("ours");
    let out = common::cli::command()
        .args(["bundle", &reference, ours.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let layout = dir.path().join("layout");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:v1", layout.display()),
        ],
    );
    let theirs = dir.path().join("theirs");
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", layout.display()),
            theirs.to_str().unwrap(),
        ],
    );

    let a = snapshot(&ours.join("rootfs"));
    let b = snapshot(&theirs.join("rootfs"));
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
    let mut differences = Vec::new();
    for k in keys {
        if a.get(k) != b.get(k) {
            differences.push(format!(
                "{k}:\n  occystrap {:?}\n  umoci     {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "trees differ:\n{}",
        differences.join("\n")
    );
    // Sanity: the comparison saw the interesting entries.
    assert_eq!(a["usr/bin/ping"].mode, 0o4755);
    assert!(a["usr/bin/ping"].xattrs.contains_key("security.capability"));
    assert_eq!(a["data/lower-link"].link_group, a["data/a"].link_group);
    assert!(!a.contains_key("opaque/lower") && !a.contains_key("run-fifo"));
}
