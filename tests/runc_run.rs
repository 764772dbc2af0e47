//! Integration tier: bundles are proven by running them with the real runc
//! (Debian's; the tests run as root). Each image is built in Rust, pushed to
//! a real registry, bundled by the occystrap binary, then `runc run`.

mod common;

use std::path::Path;
use std::process::Command;

use common::busybox::busybox_image;
use common::cli::occystrap;
use common::image::{Compression, LayerSpec};
use common::registry::Registry;

/// `runc run` the bundle; returns stdout. A unique container id per call.
fn runc_run(bundle: &Path) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "occystrap-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("runc")
        .args(["run", &id])
        .current_dir(bundle)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run runc: install Debian's runc");
    assert!(
        out.status.success(),
        "runc run failed ({:?}): {}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bundle(reference: &str, dir: &Path, extra: &[&str]) {
    let mut args = vec!["bundle", reference, dir.to_str().unwrap()];
    args.extend(extra);
    let out = occystrap(&args);
    assert!(
        out.status.success(),
        "bundle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A multi-layer image: busybox, then a layer adding a user, a group, a
/// working directory and files, then one deleting files and directories
/// (whiteouts and an opaque directory), in zstd.
fn layered_image() -> common::image::ImageSpec {
    busybox_image()
        .layer(
            LayerSpec::new()
                .file(
                    "etc/passwd",
                    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nsvc:x:2000:2001:svc:/srv/svc:/bin/sh\n",
                    0o644,
                )
                .file(
                    "etc/group",
                    "root:x:0:\nusers:x:100:app,svc\napp:x:1000:\nsvc:x:2001:\nextra:x:3000:svc\n",
                    0o644,
                )
                .dir("srv", 0o755)
                .dir("srv/svc", 0o750)
                .owner(2000, 2001)
                .file("srv/svc/keep", b"kept\n", 0o644)
                .dir("data", 0o755)
                .file("data/old-a", b"a\n", 0o644)
                .file("data/old-b", b"b\n", 0o644)
                .dir("gone", 0o755)
                .file("gone/file", b"x\n", 0o644),
        )
        .layer(
            LayerSpec::new()
                .whiteout("gone")
                .opaque("data")
                .file("data/new", b"new\n", 0o644)
                .whiteout("bin/ls")
                .compression(Compression::Zstd),
        )
        .user("svc")
        .working_dir("/srv/svc")
        .env("GREETING=hi")
        .cmd(&[
            "sh",
            "-c",
            "id; pwd; echo $GREETING $HOME; ls_missing=$(test -e /bin/ls || echo no-ls); echo $ls_missing; \
             test -e /gone || echo no-gone; cat /data/*; cat keep",
        ])
}

#[test]
fn runc_runs_a_multi_layer_bundle_as_the_image_user() {
    let registry = Registry::start();
    registry.push_image("test/layered", "v1", &layered_image());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bundle");
    bundle(&registry.image_ref("test/layered", "v1"), &target, &[]);
    let out = runc_run(&target);
    assert_eq!(
        out,
        "uid=2000(svc) gid=2001(svc) groups=100(users),3000(extra)\n\
         /srv/svc\n\
         hi /srv/svc\n\
         no-ls\n\
         no-gone\n\
         new\n\
         kept\n"
    );
}

#[test]
fn legacy_fetch_to_oci_and_command_override() {
    let registry = Registry::start();
    registry.push_image("test/busybox", "latest", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bar");
    let out = occystrap(&[
        "fetch-to-oci",
        &registry.addr,
        "test/busybox",
        "latest",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(runc_run(&target), "hello\n");

    // An existing bundle is refused, then replaced with --force.
    let reference = registry.image_ref("test/busybox", "latest");
    let refused = occystrap(&["bundle", &reference, target.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    bundle(
        &reference,
        &target,
        &[
            "--force",
            "-u",
            "app",
            "-e",
            "X=1",
            "--",
            "sh",
            "-c",
            "id -u; echo $X",
        ],
    );
    assert_eq!(runc_run(&target), "1000\n1\n");
}

#[test]
fn failed_bundle_leaves_nothing() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/broken", "v1", &layered_image());
    let blob = registry.blob_path(&pushed.layer_digests[2]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("bundle");
    let out = occystrap(&[
        "bundle",
        &registry.image_ref("test/broken", "v1"),
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&pushed.layer_digests[2]));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn read_only_root_and_hostname_reach_the_container() {
    let registry = Registry::start();
    registry.push_image("test/busybox", "latest", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ro");
    bundle(
        &registry.image_ref("test/busybox", "latest"),
        &target,
        &[
            "--read-only",
            "--hostname",
            "box",
            "--",
            "sh",
            "-c",
            "cat /proc/sys/kernel/hostname; touch /x 2>/dev/null && echo rw || echo ro",
        ],
    );
    assert_eq!(runc_run(&target), "box\nro\n");
}

#[test]
fn a_profile_of_ones_own_is_the_base_config() {
    let registry = Registry::start();
    registry.push_image("test/busybox", "latest", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let mut profile: serde_json::Value =
        serde_json::from_str(occystrap::bundle::convert::DEFAULT_PROFILE).unwrap();
    profile["hostname"] = "from-profile".into();
    let profile_path = dir.path().join("profile.json");
    std::fs::write(&profile_path, profile.to_string()).unwrap();
    let target = dir.path().join("b");
    bundle(
        &registry.image_ref("test/busybox", "latest"),
        &target,
        &[
            "--profile",
            profile_path.to_str().unwrap(),
            "--",
            "cat",
            "/proc/sys/kernel/hostname",
        ],
    );
    assert_eq!(runc_run(&target), "from-profile\n");
    // A profile that is not a runtime config is refused, nothing written.
    std::fs::write(&profile_path, "[1, 2]").unwrap();
    let bad = dir.path().join("bad");
    let out = occystrap(&[
        "bundle",
        "--profile",
        profile_path.to_str().unwrap(),
        &registry.image_ref("test/busybox", "latest"),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bad.exists());
}

/// busybox with `root` in several groups, as in Alpine, and `app` in one.
fn grouped_image() -> common::image::ImageSpec {
    busybox_image()
        .layer(LayerSpec::new().file(
            "etc/group",
            "root:x:0:root\nbin:x:1:root,bin\nusers:x:100:app\nwheel:x:10:root\napp:x:1000:\n",
            0o644,
        ))
        .cmd(&["id"])
}

#[test]
fn supplementary_groups_for_every_form_of_user() {
    let registry = Registry::start();
    registry.push_image("test/groups", "v1", &grouped_image());
    registry.push_image("test/groups", "uid", &grouped_image().user("1000"));
    let dir = tempfile::tempdir().unwrap();
    // (tag, extra options, what `id` prints): the groups `docker run` and
    // umoci give (Docker also repeats the primary gid in the list).
    let cases: &[(&str, &[&str], &str)] = &[
        // Empty User: root, with every group listing root.
        (
            "v1",
            &[],
            "uid=0(root) gid=0(root) groups=0(root),1(bin),10(wheel)\n",
        ),
        // A numeric User: the groups of its passwd entry's name.
        (
            "uid",
            &[],
            "uid=1000(app) gid=1000(app) groups=100(users)\n",
        ),
        // The same for -u, with a number or a name.
        (
            "v1",
            &["-u", "1000"],
            "uid=1000(app) gid=1000(app) groups=100(users)\n",
        ),
        (
            "v1",
            &["-u", "app"],
            "uid=1000(app) gid=1000(app) groups=100(users)\n",
        ),
        // A group given: that group only.
        ("v1", &["-u", "0:100"], "uid=0(root) gid=100(users)\n"),
        // A uid without a passwd entry: no groups to find.
        ("v1", &["-u", "4242"], "uid=4242 gid=0(root)\n"),
    ];
    for (i, (tag, extra, want)) in cases.iter().enumerate() {
        let target = dir.path().join(format!("b{i}"));
        bundle(&registry.image_ref("test/groups", tag), &target, extra);
        assert_eq!(runc_run(&target), *want, "{tag} {extra:?}");
    }
}

#[test]
fn a_numeric_user_needs_no_passwd() {
    let registry = Registry::start();
    // /etc/passwd points at /dev/null, a device in the layer (so it cannot
    // be read as a file when the bundle is made), as some minimal images do.
    let image = busybox_image()
        .layer(
            LayerSpec::new()
                .whiteout("etc/passwd")
                .dir("dev", 0o755)
                .char_device("dev/null", 1, 3, 0o666),
        )
        .layer(LayerSpec::new().symlink("etc/passwd", "/dev/null"))
        .user("1000:1000")
        .cmd(&["sh", "-c", "id -u; id -g"]);
    registry.push_image("test/nopasswd", "v1", &image);
    let reference = registry.image_ref("test/nopasswd", "v1");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b");
    bundle(&reference, &target, &[]);
    assert_eq!(runc_run(&target), "1000\n1000\n");
    // A name does need it: the error names the file in the image, never
    // the staging directory (which is gone by then).
    let named = dir.path().join("named");
    let out = occystrap(&["bundle", "-u", "app", &reference, named.to_str().unwrap()]);
    common::cli::fails_with(
        &out,
        4,
        "user \"app\" not found in /etc/passwd in the image (it cannot be read: not a regular file)",
    );
    assert!(
        !common::cli::stderr(&out).contains("occystrap-"),
        "{}",
        common::cli::stderr(&out)
    );
    assert!(!named.exists());
}

/// Run `cmd` as the host user nobody (uid and gid 65534, no groups).
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .output()
        .expect("run setpriv (util-linux)")
}

#[test]
fn other_host_users_cannot_reach_a_bundles_rootfs() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start();
    let image = busybox_image().layer(
        LayerSpec::new()
            .file("bin/suid", b"#!/bin/sh\n", 0o4755)
            .dir("dev", 0o755)
            .char_device("dev/zero", 1, 5, 0o666),
    );
    registry.push_image("test/private", "v1", &image);
    let dir = tempfile::tempdir().unwrap();
    // The parent is open to all, so only the bundle's own mode protects it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().join("bundle");
    let reference = registry.image_ref("test/private", "v1");
    bundle(&reference, &target, &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&target), 0o700);
    let inside = |name: &str| target.join(name).to_str().unwrap().to_owned();
    let probes = [
        vec!["stat".to_owned(), inside("rootfs/bin/suid")],
        vec!["cat".to_owned(), inside("rootfs/dev/zero")],
        vec!["cat".to_owned(), inside("config.json")],
        vec!["ls".to_owned(), inside("rootfs")],
    ];
    for probe in &probes {
        let args: Vec<&str> = probe.iter().map(String::as_str).collect();
        let out = as_nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied"),
            "{probe:?} as nobody: {:?} {err}",
            out.status
        );
    }
    // The probe itself works: nobody can reach the parent, and with the
    // bundle opened up, the rootfs too.
    assert!(
        as_nobody(&["stat", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        as_nobody(&["stat", &inside("rootfs/bin/suid")])
            .status
            .success()
    );
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    // runc (root) runs it as ever, and --force keeps the new bundle private.
    assert_eq!(runc_run(&target), "hello\n");
    bundle(&reference, &target, &["--force"]);
    assert_eq!(mode(&target), 0o700);
    assert_eq!(runc_run(&target), "hello\n");
}

/// Not root: the default profile becomes the rootless one, mapped to the
/// caller, and that user's own runc starts the bundle.
#[test]
fn a_non_root_user_gets_a_bundle_its_own_runc_starts() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start();
    let devices = LayerSpec::new()
        .char_device("dev/null", 1, 3, 0o666)
        .char_device("dev/zero", 1, 5, 0o666)
        .char_device("dev/full", 1, 7, 0o666)
        .char_device("dev/random", 1, 8, 0o666);
    let image = busybox_image()
        .layer(devices)
        .entrypoint(&["/bin/echo", "hello from a rootless bundle"]);
    registry.push_image("test/rootless", "v1", &image);
    let reference = registry.image_ref("test/rootless", "v1");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).unwrap();
    let dir = home.join("b");
    let (dir_s, home_s) = (dir.to_str().unwrap(), home.to_str().unwrap());
    let out = as_nobody(&[
        "env",
        &format!("HOME={home_s}"),
        "OCCYSTRAP_NO_CACHE=1",
        "OCCYSTRAP_NO_SYSTEM_CONFIG=1",
        env!("CARGO_BIN_EXE_occystrap"),
        "bundle",
        &reference,
        dir_s,
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // One line for what could not be made, not one per device.
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("device node")).collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert!(
        skipped[0].contains("skipped 4 device nodes (not root): dev/null, dev/zero, dev/full, …"),
        "{log}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    for key in ["uidMappings", "gidMappings"] {
        assert_eq!(config["linux"][key][0]["hostID"], 65534, "{key}");
        assert_eq!(config["linux"][key][0]["containerID"], 0, "{key}");
    }
    let runc_root = home.join("runc");
    let out = as_nobody(&[
        "runc",
        "--root",
        runc_root.to_str().unwrap(),
        "run",
        "--bundle",
        dir_s,
        &format!("rootless-{}", std::process::id()),
    ]);
    assert!(
        out.status.success(),
        "runc as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("hello from a rootless bundle"), "{said}");
}
