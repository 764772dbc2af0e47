//! Integration tier: `bundle --profile docker` behaves as `docker run` of
//! the same image. Each image is pushed to a real registry, bundled and
//! started with the real runc, and also exported, `docker load`ed and run
//! by a real dockerd (Debian's; started if need be). Needs root.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::busybox::busybox_image;
use common::cli::{docker, ensure_dockerd, occystrap, ok};
use common::image::ImageSpec;
use common::registry::Registry;

/// Exit code, stdout and stderr of a container.
#[derive(Debug, PartialEq)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ran(out: std::process::Output) -> Ran {
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `runc run` the bundle, whatever its exit code.
fn runc_run(bundle: &Path) -> Ran {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "occystrap-docker-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    ran(Command::new("runc")
        .args(["run", &id])
        .current_dir(bundle)
        .stdin(Stdio::null())
        .output()
        .expect("run runc: install Debian's runc"))
}

/// Bundle `reference` at `dir` with `--profile profile` and `extra`, and run it.
fn bundle_and_run(reference: &str, dir: &Path, profile: &str, extra: &[&str]) -> Ran {
    let mut args = vec![
        "bundle",
        reference,
        dir.to_str().unwrap(),
        "--profile",
        profile,
    ];
    args.extend(extra);
    ok(&occystrap(&args));
    runc_run(dir)
}

/// `docker run` the image as occystrap exports it, with no network (a
/// bundle has only loopback too) and the `docker run` flags in `extra`.
fn docker_run(reference: &str, extra: &[&str]) -> Ran {
    ensure_dockerd();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("image.tar");
    ok(&occystrap(&[
        "export",
        reference,
        tarball.to_str().unwrap(),
    ]));
    let _ = Command::new("docker")
        .args(["rmi", "-f", reference])
        .output();
    docker(&["load", "-i", tarball.to_str().unwrap()]);
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend(extra);
    args.push(reference);
    let out = ran(Command::new("docker")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker"));
    docker(&["rmi", "-f", reference]);
    out
}

/// busybox running `script` as its Cmd, pushed as `repo:v1`; the reference.
fn push(registry: &Registry, repo: &str, script: &str) -> String {
    let image: ImageSpec = busybox_image().cmd(&["sh", "-c", script]);
    registry.push_image(repo, "v1", &image);
    registry.image_ref(repo, "v1")
}

/// An entrypoint as many images have: as root, give a data directory to
/// the service user, switch to it (su) and serve on a port below 1024.
const PRIVILEGED_ENTRYPOINT: &str = "set -e
busybox mkdir /data
busybox chown 1000:1000 /data
busybox su app -s /bin/sh -c 'id; echo hi >/data/file; busybox ls -n /data; \
busybox httpd -p 80 -h /tmp; echo listening on 80'";

#[test]
fn an_entrypoint_that_chowns_switches_user_and_binds_port_80_runs_as_in_docker() {
    let registry = Registry::start();
    let reference = push(&registry, "test/entrypoint", PRIVILEGED_ENTRYPOINT);
    let dir = tempfile::tempdir().unwrap();

    let dockers = docker_run(&reference, &[]);
    let expected = "uid=1000(app) gid=1000(app) groups=100(users),1000(app)\n\
                    total 4\n\
                    -rw-r--r--    1 1000     1000             3 "; // then a date
    assert_eq!(dockers.code, Some(0), "docker: {dockers:?}");
    assert!(dockers.stdout.starts_with(expected), "docker: {dockers:?}");
    assert!(
        dockers.stdout.ends_with(" file\nlistening on 80\n"),
        "{dockers:?}"
    );

    let ours = bundle_and_run(&reference, &dir.path().join("docker"), "docker", &[]);
    assert_eq!(ours.code, Some(0), "runc: {ours:?}");
    assert!(ours.stdout.starts_with(expected), "runc: {ours:?}");
    assert!(
        ours.stdout.ends_with(" file\nlistening on 80\n"),
        "{ours:?}"
    );
    assert_eq!(ours.stderr, dockers.stderr);

    // Control: runc's default profile (3 capabilities) cannot chown.
    let default = bundle_and_run(&reference, &dir.path().join("default"), "default", &[]);
    assert_eq!(default.code, Some(1), "{default:?}");
    assert_eq!(default.stdout, "");
    assert!(
        default
            .stderr
            .contains("chown: /data: Operation not permitted"),
        "{default:?}"
    );
}

/// Creating a user namespace: allowed without seccomp (runc's default
/// profile has none), refused with EPERM by Docker's default profile.
const UNSHARE: &str = "busybox unshare -U true && echo unshared";

#[test]
fn seccomp_refuses_what_docker_refuses() {
    let registry = Registry::start();
    let reference = push(&registry, "test/unshare", UNSHARE);
    let dir = tempfile::tempdir().unwrap();

    let dockers = docker_run(&reference, &[]);
    let refused = Ran {
        code: Some(1),
        stdout: String::new(),
        stderr: "unshare: unshare(0x10000000): Operation not permitted\n".into(),
    };
    assert_eq!(dockers, refused, "docker");
    let ours = bundle_and_run(&reference, &dir.path().join("docker"), "docker", &[]);
    assert_eq!(ours, refused, "runc, docker profile");

    // Control: without a seccomp filter the same call succeeds.
    let default = bundle_and_run(&reference, &dir.path().join("default"), "default", &[]);
    assert_eq!(default.code, Some(0), "{default:?}");
    assert_eq!(default.stdout, "unshared\n");
}

/// What the process is given: capabilities, no-new-privileges, seccomp,
/// environment, hostname, /dev/shm and a few masked or read-only paths.
const SURROUNDINGS: &str = "busybox grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status
busybox env | busybox sort
busybox hostname
busybox grep -E ' /dev/(shm|mqueue) ' /proc/self/mounts
busybox cat /proc/kcore | busybox wc -c
busybox ls /sys/firmware /sys/devices/virtual/powercap | busybox wc -l
echo 1 >/proc/sys/kernel/domainname || echo /proc/sys read-only
busybox cat /proc/sys/net/ipv4/ip_unprivileged_port_start
busybox mknod /tmp/null c 1 3 && echo mknod";

#[test]
fn the_process_sees_what_it_sees_in_docker() {
    let registry = Registry::start();
    let reference = push(&registry, "test/surroundings", SURROUNDINGS);
    let dir = tempfile::tempdir().unwrap();

    let dockers = docker_run(&reference, &["--hostname", "box"]);
    assert_eq!(dockers.code, Some(0), "docker: {dockers:?}");
    let ours = bundle_and_run(
        &reference,
        &dir.path().join("docker"),
        "docker",
        &["--hostname", "box"],
    );
    assert_eq!(ours, dockers);
    // Docker's default capabilities, in bounding/effective/permitted only.
    assert!(
        ours.stdout.starts_with(
            "CapInh:\t0000000000000000\n\
             CapPrm:\t00000000a80425fb\n\
             CapEff:\t00000000a80425fb\n\
             CapBnd:\t00000000a80425fb\n\
             CapAmb:\t0000000000000000\n\
             NoNewPrivs:\t0\n\
             Seccomp:\t2\n\
             HOME=/root\n\
             HOSTNAME=box\n"
        ),
        "{ours:?}"
    );

    // Control: runc's default profile differs (3 capabilities, no seccomp).
    let default = bundle_and_run(
        &reference,
        &dir.path().join("default"),
        "default",
        &["--hostname", "box"],
    );
    assert_ne!(default.stdout, dockers.stdout);
    assert!(default.stdout.contains("Seccomp:\t0\n"), "{default:?}");
}
