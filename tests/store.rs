//! The layer store and overlay bundles, on real overlayfs (root): the same
//! tree as a copy bundle, containers that cannot see each other's writes,
//! `remove` that leaves nothing mounted, and `store prune` that frees only
//! what no bundle uses.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::busybox::busybox_image;
use common::cli::{fails_with, occystrap, ok};
use common::image::{ImageSpec, LayerSpec};
use common::registry::Registry;
use common::tree::{Node, snapshot};

/// `security.capability` (vfs_cap_data v2): cap_net_raw, effective.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Layers that exercise what overlay must get right: whiteouts of files
/// and directories, an opaque directory, a hardlink to a lower file,
/// xattrs, a directory made anew over a lower file, implicit parents.
fn image() -> ImageSpec {
    busybox_image()
        .cmd(&["cat", "/data/kept"])
        .layer(
            LayerSpec::new()
                .dir("data", 0o755)
                .owner(5, 6)
                .file("data/kept", b"kept\n", 0o644)
                .file("data/gone", b"gone\n", 0o644)
                .file("data/sub/x", b"x\n", 0o600)
                .dir("opaque", 0o755)
                .file("opaque/old", b"old\n", 0o644)
                .file("was-file", b"file\n", 0o644)
                .file("lower-target", b"shared\n", 0o640)
                .xattr("user.origin", b"lower")
                // Set-id bits and file capabilities, which writing data
                // clears, and data beyond one copy buffer.
                .file("capable", common::cli::noise(3 << 20, 7), 0o4755)
                .xattr("security.capability", CAP_NET_RAW),
        )
        .layer(
            LayerSpec::new()
                .whiteout("data/gone")
                .whiteout("data/sub")
                .opaque("opaque")
                .file("opaque/new", b"new\n", 0o644)
                .dir("was-file", 0o700)
                .file("was-file/inside", b"in\n", 0o644)
                .hardlink("upper-link", "lower-target")
                // An implicit parent: `data` is not declared again.
                .file("data/added", b"added\n", 0o644),
        )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(s(dir)))
        .map(str::to_string)
        .collect()
}

/// `mount -t overlay` of one lower directory at `target`.
fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) {
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            s(lower),
            s(upper),
            s(work)
        ))
        .arg(target)
        .status()
        .unwrap();
    assert!(mounted.success());
}

/// A registry serving [`image`], a temporary directory, a store in it.
struct Setup {
    registry: Registry,
    reference: String,
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

fn setup() -> Setup {
    let registry = Registry::start();
    registry.push_image("test/store", "v1", &image());
    let reference = registry.image_ref("test/store", "v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    Setup {
        registry,
        reference,
        dir,
        store,
    }
}

fn bundle_with(store: &Path, reference: &str, dir: &Path, rootfs: &str) {
    ok(&occystrap(&[
        "--store",
        s(store),
        "bundle",
        "--rootfs",
        rootfs,
        reference,
        s(dir),
    ]));
}

/// Assert that the tree at `root` is `expected` (a copy bundle's rootfs),
/// naming every difference; the tree's snapshot.
fn assert_same_tree(expected: &BTreeMap<String, Node>, root: &Path) -> BTreeMap<String, Node> {
    let got = snapshot(root);
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(got.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| expected.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  copy {:?}\n  here {:?}",
                expected.get(k),
                got.get(k)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{}: trees differ:\n{}",
        root.display(),
        differences.join("\n")
    );
    got
}

#[test]
fn an_overlay_rootfs_is_the_copy_rootfs_and_containers_keep_their_writes() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();

    let copy = dir.path().join("copy");
    bundle_with(&store, &reference, &copy, "copy");
    let one = dir.path().join("one");
    bundle_with(&store, &reference, &one, "overlay");
    let two = dir.path().join("two");
    bundle_with(&store, &reference, &two, "overlay");

    let expected = snapshot(&copy.join("rootfs"));
    for bundle in [&one, &two] {
        assert_same_tree(&expected, &bundle.join("rootfs"));
    }
    assert!(!expected.contains_key("data/gone") && !expected.contains_key("opaque/old"));
    assert_eq!(
        expected["upper-link"].link_group,
        expected["lower-target"].link_group
    );
    assert_eq!(
        std::fs::read(one.join("config.json")).unwrap(),
        std::fs::read(copy.join("config.json")).unwrap()
    );

    // Writes, deletes and chmods in one are seen in neither the other nor
    // the store.
    let stored = snapshot(&store.join("layers"));
    std::fs::write(one.join("rootfs/data/kept"), b"changed\n").unwrap();
    std::fs::remove_file(one.join("rootfs/opaque/new")).unwrap();
    std::fs::set_permissions(
        one.join("rootfs/was-file/inside"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(one.join("rootfs/fresh"), b"fresh\n").unwrap();
    assert_eq!(
        std::fs::read(two.join("rootfs/data/kept")).unwrap(),
        b"kept\n"
    );
    assert!(two.join("rootfs/opaque/new").exists() && !two.join("rootfs/fresh").exists());
    assert!(snapshot(&two.join("rootfs")) == expected);
    assert!(
        snapshot(&store.join("layers")) == stored,
        "the store changed"
    );

    // runc starts it as it is.
    let out = Command::new("runc")
        .args(["run", &format!("occystrap-store-{}", std::process::id())])
        .current_dir(&two)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kept\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Info names who uses what; prune keeps what is used.
    let info = occystrap(&["--store", s(&store), "store", "info"]);
    ok(&info);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(text.contains("3 layers"), "{text}");
    assert!(text.contains(s(&one)) && text.contains(s(&two)), "{text}");
    let pruned = occystrap(&["--store", s(&store), "store", "prune"]);
    ok(&pruned);
    assert!(String::from_utf8_lossy(&pruned.stdout).contains("removed 0 layers"));

    // remove unmounts and deletes; once no bundle uses them, prune frees.
    ok(&occystrap(&[
        "--store",
        s(&store),
        "remove",
        s(&one),
        s(&two),
    ]));
    assert!(!one.exists() && !two.exists());
    assert!(
        mounts_under(dir.path()).is_empty(),
        "{:?}",
        mounts_under(dir.path())
    );
    let pruned = occystrap(&["--store", s(&store), "store", "prune"]);
    ok(&pruned);
    assert!(
        String::from_utf8_lossy(&pruned.stdout).contains("removed 3 layers"),
        "{}",
        String::from_utf8_lossy(&pruned.stdout)
    );
    // A copy bundle is removed too; what is not a bundle is refused.
    ok(&occystrap(&["--store", s(&store), "remove", s(&copy)]));
    assert!(!copy.exists());
    let out = occystrap(&["remove", s(dir.path())]);
    fails_with(&out, 2, "not a bundle");
    assert!(store.exists());
}

#[test]
fn a_second_overlay_bundle_unpacks_nothing_and_a_failed_one_leaves_nothing() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();
    bundle_with(&store, &reference, &dir.path().join("a"), "overlay");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let layers: Vec<_> = std::fs::read_dir(store.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let before: Vec<u64> = layers.iter().map(|p| inode(p)).collect();
    bundle_with(&store, &reference, &dir.path().join("b"), "overlay");
    let after: Vec<u64> = layers.iter().map(|p| inode(p)).collect();
    assert_eq!(before, after, "layers were unpacked again");

    // A bundle that fails (an existing target) leaves no mount and no lease.
    let out = occystrap(&[
        "--store",
        s(&store),
        "bundle",
        "--rootfs",
        "overlay",
        &reference,
        s(&dir.path().join("a")),
    ]);
    fails_with(&out, 2, "already exists");
    let out = occystrap(&[
        "--store",
        s(&store),
        "bundle",
        "--rootfs",
        "overlay",
        "--exclude",
        "data/**",
        &reference,
        s(&dir.path().join("c")),
    ]);
    fails_with(&out, 2, "--rootfs copy");
    assert!(!dir.path().join("c").exists());
    assert_eq!(
        mounts_under(dir.path()).len(),
        2,
        "the two bundles' mounts only"
    );
    ok(&occystrap(&[
        "--store",
        s(&store),
        "remove",
        s(&dir.path().join("a")),
        s(&dir.path().join("b")),
    ]));
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn where_an_overlay_rootfs_differs_from_a_copy_is_where_the_readme_says() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();
    let (copy, over) = (dir.path().join("copy"), dir.path().join("over"));
    bundle_with(&store, &reference, &copy, "copy");
    bundle_with(&store, &reference, &over, "overlay");
    let exdev = |bundle: &Path| {
        std::fs::rename(bundle.join("rootfs/data"), bundle.join("rootfs/moved"))
            .err()
            .and_then(|e| e.raw_os_error())
    };
    let write_one_name = |bundle: &Path| {
        std::fs::write(bundle.join("rootfs/upper-link"), b"changed\n").unwrap();
        std::fs::read(bundle.join("rootfs/lower-target")).unwrap()
    };
    // A directory from a stored layer cannot be renamed (overlayfs without
    // redirects): EXDEV, which mv and most tools answer with a copy.
    assert_eq!(exdev(&copy), None);
    assert_eq!(exdev(&over), Some(libc::EXDEV));
    // Two names of one stored file part when one is written (copy-up
    // without overlayfs's index), as under Docker's overlay2.
    assert_eq!(write_one_name(&copy), b"changed\n");
    assert_eq!(write_one_name(&over), b"shared\n");
    ok(&occystrap(&[
        "--store",
        s(&store),
        "remove",
        s(&over),
        s(&copy),
    ]));
}

#[test]
fn a_store_where_overlay_will_not_mount_means_a_copy_for_auto_and_an_error_for_overlay() {
    let registry = Registry::start();
    registry.push_image("test/store", "v1", &image());
    let reference = registry.image_ref("test/store", "v1");
    let dir = tempfile::tempdir().unwrap();
    // The store on an overlayfs, which overlayfs refuses as an upper.
    let over = dir.path().join("over");
    for d in ["lower", "upper", "work", "over"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    mount_overlay(
        &dir.path().join("lower"),
        &dir.path().join("upper"),
        &dir.path().join("work"),
        &over,
    );
    let store = over.join("store");
    let bundle = |rootfs: &str, target: &Path| {
        occystrap(&[
            "--store",
            s(&store),
            "bundle",
            "--rootfs",
            rootfs,
            &reference,
            s(target),
        ])
    };
    let refused = bundle("overlay", &dir.path().join("o"));
    fails_with(&refused, 5, "cannot mount an overlay");
    assert!(!dir.path().join("o").exists());
    let auto = dir.path().join("a");
    let out = bundle("auto", &auto);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("making a copy instead"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("c");
    ok(&bundle("copy", &copy));
    assert_same_tree(&snapshot(&copy.join("rootfs")), &auto.join("rootfs"));
    assert!(
        !mounts_under(dir.path())
            .iter()
            .any(|m| m.contains(s(&auto)))
    );
    Command::new("umount").arg(&over).status().unwrap();
}

#[test]
fn fetch_to_mounts_is_the_original_form_of_an_overlay_bundle() {
    let registry = Registry::start();
    registry.push_image("test/store", "v1", &image());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let copy = dir.path().join("copy");
    bundle_with(
        &store,
        &registry.image_ref("test/store", "v1"),
        &copy,
        "copy",
    );

    let mounts = dir.path().join("mounts");
    let legacy = |target: &Path, extra: &[&str]| {
        let mut args = vec!["--store", s(&store), "fetch-to-mounts"];
        args.extend(extra);
        args.extend([registry.addr.as_str(), "test/store", "v1", s(target)]);
        occystrap(&args)
    };
    ok(&legacy(&mounts, &[]));
    let rootfs = mounts.join("rootfs");
    assert!(
        mounts_under(dir.path())
            .iter()
            .any(|m| m.contains(s(&rootfs)) && m.contains("overlay")),
        "rootfs/ is an overlay mount: {:?}",
        mounts_under(dir.path())
    );
    assert_same_tree(&snapshot(&copy.join("rootfs")), &rootfs);
    assert_eq!(
        std::fs::read(mounts.join("config.json")).unwrap(),
        std::fs::read(copy.join("config.json")).unwrap()
    );
    // The rootfs is always an overlay here: --rootfs is bundle's.
    fails_with(
        &legacy(&dir.path().join("x"), &["--rootfs", "copy"]),
        2,
        "--rootfs",
    );
    ok(&occystrap(&["--store", s(&store), "remove", s(&mounts)]));
    assert!(mounts_under(dir.path()).is_empty() && !mounts.exists());
}

#[test]
fn concurrent_bundles_share_one_store_and_prune_keeps_their_layers() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();
    let bin = env!("CARGO_BIN_EXE_occystrap");
    let spawn = |args: Vec<String>| {
        common::cli::command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"))
    };
    let bundles: Vec<_> = (0..12).map(|i| dir.path().join(format!("b{i}"))).collect();
    let mut children: Vec<_> = bundles
        .iter()
        .map(|b| {
            spawn(
                [
                    "--store",
                    s(&store),
                    "bundle",
                    "--rootfs",
                    "overlay",
                    &reference,
                    s(b),
                ]
                .map(String::from)
                .to_vec(),
            )
        })
        .collect();
    // Pruning while they are made must not take their layers.
    for _ in 0..3 {
        children.push(spawn(
            ["--store", s(&store), "store", "prune"]
                .map(String::from)
                .to_vec(),
        ));
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(&occystrap(&["--store", s(&store), "store", "prune"]));
    let first = snapshot(&bundles[0].join("rootfs"));
    assert!(first.contains_key("data/added"));
    for b in &bundles {
        assert!(snapshot(&b.join("rootfs")) == first, "{}", b.display());
    }
    let mut args = vec!["--store", s(&store), "remove"];
    args.extend(bundles.iter().map(|b| s(b)));
    ok(&occystrap(&args));
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn what_a_killed_run_left_is_swept_not_trusted() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();
    // The state a SIGKILL mid-unpack leaves: a scratch overlay still
    // mounted, and a staged (half-made) layer, of a process long gone.
    let dead = 4_000_000; // above pid_max's largest value: never alive
    let scratch = store.join(format!("scratch/{dead}-1"));
    for d in ["m", "w", "lower", "upper"] {
        std::fs::create_dir_all(scratch.join(d)).unwrap();
    }
    let staged = store.join(format!("layers/.abc.occystrap-{dead}-1.tmp"));
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("half"), b"half").unwrap();
    mount_overlay(
        &scratch.join("lower"),
        &scratch.join("upper"),
        &scratch.join("w"),
        &scratch.join("m"),
    );
    // And a staged overlay bundle beside the one to make, its rootfs
    // still mounted.
    let bundle = dir.path().join(format!(".a.occystrap-{dead}-2.tmp"));
    for d in ["rootfs", ".overlay/upper", ".overlay/work"] {
        std::fs::create_dir_all(bundle.join(d)).unwrap();
    }
    mount_overlay(
        &scratch.join("lower"),
        &bundle.join(".overlay/upper"),
        &bundle.join(".overlay/work"),
        &bundle.join("rootfs"),
    );
    bundle_with(&store, &reference, &dir.path().join("a"), "overlay");
    assert!(!scratch.exists(), "the dead run's scratch is gone");
    assert!(!staged.exists(), "its staged layer is gone");
    assert!(!bundle.exists(), "its staged bundle is unmounted and gone");
    let left: Vec<String> = mounts_under(dir.path())
        .into_iter()
        .filter(|l| l.contains("scratch"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ok(&occystrap(&[
        "--store",
        s(&store),
        "remove",
        s(&dir.path().join("a")),
    ]));
}

#[test]
fn a_run_killed_mid_unpack_leaves_nothing_the_next_run_trusts() {
    use common::fake::{Canned, FakeServer};
    use std::time::{Duration, Instant};

    // On top of the three layers, one of many incompressible files,
    // uncompressed: its blob's bytes are its tar's, so stalling halfway
    // through the blob leaves the unpacking halfway through the files.
    let count = 32;
    let mut big = LayerSpec::new()
        .dir("big", 0o755)
        .compression(common::image::Compression::None);
    for i in 0..count {
        big = big.file(
            &format!("big/f{i:02}"),
            common::cli::noise(64 << 10, i as u64 + 1),
            0o644,
        );
    }
    let registry = Registry::start();
    let pushed = registry.push_image("test/store", "v1", &image().layer(big));
    let reference = registry.image_ref("test/store", "v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let copy = dir.path().join("copy");
    ok(&occystrap(&[
        "bundle",
        "--rootfs",
        "copy",
        &reference,
        s(&copy),
    ]));

    // Through the fake, the big layer's body stops halfway, for longer
    // than the test lasts.
    let fake = FakeServer::in_front_of(&registry);
    let half = pushed.layer_tars[3].len() / 2;
    fake.on(
        "GET",
        &format!("/v2/test/store/blobs/{}", pushed.layer_digests[3]),
        vec![Canned::forward().stall_after(half, Duration::from_secs(60))],
    );
    let log = dir.path().join("killed.log");
    let mut child = common::cli::command()
        .args(["--timeout", "60", "--store", s(&store), "bundle"])
        .args(["--rootfs", "overlay", &fake.image_ref("test/store", "v1")])
        .arg(dir.path().join("killed"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();

    // Wait for the moment: the big layer staged, with its first file
    // written, and the scratch overlay it is written through mounted.
    let layers = store.join("layers");
    let scratch = store.join("scratch");
    let staged = || -> Option<std::path::PathBuf> {
        std::fs::read_dir(&layers)
            .ok()?
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with('.') && name.contains(&format!(".occystrap-{pid}-"))
            })
    };
    let scratch_mounts = || -> Vec<String> {
        mounts_under(&scratch)
            .into_iter()
            .filter(|l| l.contains(&format!("/scratch/{pid}-")))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let staged = loop {
        if let Some(staged) = staged()
            && staged.join("big/f00").is_file()
            && !scratch_mounts().is_empty()
        {
            break staged;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "occystrap ended ({status}) before it was caught mid-unpack: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "never saw the big layer staged with a scratch overlay mounted \
                 (layers: {:?}; scratch mounts: {:?}; log: {})",
                std::fs::read_dir(&layers).map(|d| d.count()),
                mounts_under(&scratch),
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status}"
    );

    // What it left: a half-made layer, never renamed into place, and its
    // scratch overlay still mounted.
    assert!(staged.join("big/f00").is_file(), "{}", staged.display());
    assert!(
        !staged.join(format!("big/f{:02}", count - 1)).exists(),
        "the layer was not half made"
    );
    let stored = || -> Vec<String> {
        std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    assert_eq!(
        stored().len(),
        3,
        "only the three layers below: {:?}",
        stored()
    );
    assert!(!scratch_mounts().is_empty(), "the kill unmounted nothing");

    // The next run, unthrottled, makes the bundle whole and clears it all.
    let bundle = dir.path().join("again");
    bundle_with(&store, &reference, &bundle, "overlay");
    let expected = snapshot(&copy.join("rootfs"));
    let got = snapshot(&bundle.join("rootfs"));
    assert!(expected.contains_key(&format!("big/f{:02}", count - 1)));
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(got.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| expected.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  copy    {:?}\n  overlay {:?}",
                expected.get(k),
                got.get(k)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "trees differ:\n{}",
        differences.join("\n")
    );
    assert!(!staged.exists(), "the killed run's staged layer is gone");
    assert_eq!(stored().len(), 4, "{:?}", stored());
    let left: Vec<String> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "staged layers left: {left:?}");
    common::cli::assert_empty(&scratch);
    assert!(
        mounts_under(&scratch).is_empty(),
        "{:?}",
        mounts_under(&scratch)
    );

    ok(&occystrap(&["--store", s(&store), "remove", s(&bundle)]));
    assert!(
        mounts_under(dir.path()).is_empty(),
        "{:?}",
        mounts_under(dir.path())
    );
}

#[test]
fn a_store_copy_rootfs_is_the_copy_rootfs_and_needs_the_store_no_more() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();

    let copy = dir.path().join("copy");
    bundle_with(&store, &reference, &copy, "copy");
    let made = dir.path().join("made");
    bundle_with(&store, &reference, &made, "store-copy");

    let expected = snapshot(&copy.join("rootfs"));
    let got = assert_same_tree(&expected, &made.join("rootfs"));
    assert_eq!(got["upper-link"].link_group, got["lower-target"].link_group);
    assert_eq!(
        std::fs::read(made.join("config.json")).unwrap(),
        std::fs::read(copy.join("config.json")).unwrap()
    );
    assert!(
        mounts_under(dir.path()).is_empty(),
        "{:?}",
        mounts_under(dir.path())
    );
    assert!(!made.join(".overlay").exists());
    // The root directory too: its mode and owner are the copy's.
    let root_of = |b: &Path| {
        let md = std::fs::metadata(b.join("rootfs")).unwrap();
        use std::os::unix::fs::MetadataExt;
        (md.mode(), md.uid(), md.gid())
    };
    assert_eq!(root_of(&made), root_of(&copy));

    // No bundle leases the layers: prune frees them all, and the copy
    // is still whole.
    let pruned = occystrap(&["--store", s(&store), "store", "prune"]);
    ok(&pruned);
    assert!(
        String::from_utf8_lossy(&pruned.stdout).contains("removed 3 layers"),
        "{}",
        String::from_utf8_lossy(&pruned.stdout)
    );
    assert_eq!(
        std::fs::read(made.join("rootfs/data/kept")).unwrap(),
        b"kept\n"
    );
    assert!(snapshot(&made.join("rootfs")) == got);

    // runc starts it as it is.
    let out = Command::new("runc")
        .args([
            "run",
            &format!("occystrap-store-copy-{}", std::process::id()),
        ])
        .current_dir(&made)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kept\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&occystrap(&["--store", s(&store), "remove", s(&made)]));
    assert!(!made.exists());
}

/// A fresh XFS with reflinks, on a loop device, mounted at `dir/xfs`;
/// unmounted when dropped.
struct Xfs {
    mountpoint: std::path::PathBuf,
}

impl Xfs {
    fn new(dir: &Path) -> Xfs {
        let image = dir.join("xfs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let made = Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(made.success());
        let mountpoint = dir.join("xfs");
        std::fs::create_dir(&mountpoint).unwrap();
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint)
            .status()
            .unwrap();
        assert!(mounted.success());
        Xfs { mountpoint }
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

/// How many of `path`'s extents are shared with another file.
fn shared_extents(path: &Path) -> usize {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("shared"))
        .count()
}

#[test]
fn a_store_copy_on_xfs_shares_the_stored_blocks() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        ..
    } = setup();
    let xfs = Xfs::new(dir.path());
    let store = xfs.mountpoint.join("store");
    let copy = xfs.mountpoint.join("copy");
    bundle_with(&store, &reference, &copy, "copy");
    let made = xfs.mountpoint.join("made");
    bundle_with(&store, &reference, &made, "store-copy");
    assert_same_tree(&snapshot(&copy.join("rootfs")), &made.join("rootfs"));
    // The 3 MiB file's blocks are the stored layer's; the copy bundle's
    // are its own.
    assert!(shared_extents(&made.join("rootfs/capable")) > 0);
    assert_eq!(shared_extents(&copy.join("rootfs/capable")), 0);
    ok(&occystrap(&[
        "--store",
        s(&store),
        "remove",
        s(&made),
        s(&copy),
    ]));
}

#[test]
fn a_failed_store_copy_names_what_failed_and_leaves_nothing() {
    let Setup {
        registry: _registry,
        reference,
        dir,
        store,
    } = setup();
    // The bundle on a disk too small for the image's 3 MiB file.
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let made = small.join("made");
    let out = occystrap(&[
        "--store",
        s(&store),
        "bundle",
        "--rootfs",
        "store-copy",
        &reference,
        s(&made),
    ]);
    let full = std::fs::read_dir(&small).unwrap().count();
    Command::new("umount").arg(&small).status().unwrap();
    fails_with(&out, 5, "capable: No space left on device");
    assert_eq!(full, 0, "the full disk holds nothing of the bundle");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>(),
        ["small", "store"].map(String::from).into()
    );
    assert!(
        mounts_under(dir.path()).is_empty(),
        "{:?}",
        mounts_under(dir.path())
    );
    common::cli::assert_empty(&store.join("scratch"));
    common::cli::assert_empty(&store.join("leases"));

    // --exclude changes the layers: refused, as for overlay.
    let out = occystrap(&[
        "--store",
        s(&store),
        "bundle",
        "--rootfs",
        "store-copy",
        "--exclude",
        "data",
        &reference,
        s(&made),
    ]);
    fails_with(&out, 2, "--rootfs copy");
    assert!(!made.exists());
}

/// `command` as another user, running a copy of the binary they can reach.
fn as_user(uid: u32, binary: &Path, args: &[&str], home: &Path) -> std::process::Output {
    as_user_with(uid, binary, args, home, &[])
}

/// [`as_user`] with more environment.
fn as_user_with(
    uid: u32,
    binary: &Path,
    args: &[&str],
    home: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let template = common::cli::command();
    let mut command = Command::new(binary);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .envs(env.iter().copied())
        .args(args)
        .uid(uid)
        .gid(uid)
        .current_dir(home)
        .output()
        .unwrap()
}

#[test]
fn a_rootless_run_gets_an_overlay_of_a_user_namespace_store() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let registry = Registry::start();
    // A read-only directory too: only root of the namespace may empty it.
    let image = image().layer(
        LayerSpec::new()
            .dir("ro", 0o555)
            .file("ro/f", b"f\n", 0o444),
    );
    registry.push_image("test/store", "v1", &image);
    let reference = registry.image_ref("test/store", "v1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let nobody = 65534;
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    for d in [&home, &home.join("tmp")] {
        std::os::unix::fs::chown(d, Some(nobody), Some(nobody)).unwrap();
    }
    let binary = dir.path().join("occystrap");
    std::fs::copy(env!("CARGO_BIN_EXE_occystrap"), &binary).unwrap();
    let store = home.join("store");
    let script = "cat /data/kept; ls /data; ls /opaque; cat /was-file/inside; id -u; echo \"h=$HOSTNAME\"; \
                  ls -i /upper-link /lower-target";
    let run = || {
        as_user(
            nobody,
            &binary,
            &[
                "--store",
                s(&store),
                "run",
                &reference,
                "--",
                "sh",
                "-c",
                script,
            ],
            &home,
        )
    };
    for round in ["cold", "warm"] {
        let out = run();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{round}: {stderr}");
        assert!(
            !stderr.contains("copy instead"),
            "{round}: not an overlay: {stderr}"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[..7],
            ["kept", "added", "kept", "new", "in", "0", "h=runc"][..],
            "{round}: {stdout}"
        );
        let inode = |line: &str| line.split_whitespace().next().unwrap().to_string();
        assert_eq!(
            inode(lines[7]),
            inode(lines[8]),
            "{round}: one file: {stdout}"
        );
    }

    // The layers are the user's, in overlayfs's user-namespace form.
    assert_eq!(
        std::fs::read_to_string(store.join("xattrs")).unwrap(),
        "user"
    );
    let layers: Vec<_> = std::fs::read_dir(store.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(layers.len(), 4, "{layers:?}");
    let top = layers
        .iter()
        .find(|l| l.join("opaque/new").exists())
        .expect("the top layer");
    // A directory made anew over a lower file is opaque.
    let opaque = std::ffi::CString::new(s(&top.join("was-file"))).unwrap();
    let mut value = [0u8; 8];
    // SAFETY: a NUL-terminated path, a name literal and a buffer of its length.
    let got = unsafe {
        libc::lgetxattr(
            opaque.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(got, 1, "user.overlay.opaque on {}", top.display());
    assert_eq!(value[0], b'y');
    use std::os::unix::fs::FileTypeExt;
    for removed in ["data/gone", "opaque/old"] {
        let gone = std::fs::symlink_metadata(top.join(removed)).unwrap();
        assert!(
            gone.file_type().is_char_device() && gone.rdev() == 0,
            "{removed}"
        );
    }
    for layer in &layers {
        assert_eq!(std::fs::metadata(layer).unwrap().uid(), nobody);
    }
    assert_eq!(
        std::fs::read_dir(home.join("tmp")).unwrap().count(),
        0,
        "the runs left nothing"
    );

    // One id is all a rootless run has.
    let other = as_user(
        nobody,
        &binary,
        &[
            "--store",
            s(&store),
            "run",
            "-u",
            "1000",
            &reference,
            "--",
            "true",
        ],
        &home,
    );
    fails_with(&other, 2, "uid 1000 is not mapped");
    // With no home to keep a store in, a run is a copy, not a failure.
    let homeless = as_user_with(
        nobody,
        &binary,
        &["run", &reference, "--", "cat", "/data/kept"],
        &home,
        &[("HOME", "/nonexistent-occystrap-test")],
    );
    ok(&homeless);
    assert_eq!(homeless.stdout, b"kept\n");
    assert!(String::from_utf8_lossy(&homeless.stderr).contains("the rootfs is a copy"));
    // The user sees and frees their store (no run leases it now).
    let info = as_user(
        nobody,
        &binary,
        &["--store", s(&store), "store", "info"],
        &home,
    );
    ok(&info);
    assert!(String::from_utf8_lossy(&info.stdout).contains("4 layers"));
    let pruned = as_user(
        nobody,
        &binary,
        &["--store", s(&store), "store", "prune"],
        &home,
    );
    ok(&pruned);
    assert_eq!(std::fs::read_dir(store.join("layers")).unwrap().count(), 0);
    // Root cannot take these layers for an image's.
    fails_with(
        &occystrap(&[
            "--store",
            s(&store),
            "bundle",
            "--rootfs",
            "overlay",
            &reference,
            s(&dir.path().join("b")),
        ]),
        2,
        "made by an unprivileged user",
    );
}
