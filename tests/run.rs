//! `occystrap run` with the real runc (the tests run as root): statuses,
//! streams and options pass through, signals are forwarded, and nothing is
//! left behind (no container, no mount, no temporary directory) whatever
//! the ending.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::busybox::busybox_image;
use common::image::LayerSpec;
use common::registry::Registry;

/// A registry holding a busybox image with `sleep` and a declared volume,
/// and a TMPDIR of its own to check for leftovers.
struct Fixture {
    _registry: Registry,
    reference: String,
    tmp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let registry = Registry::start();
    let image = busybox_image()
        .layer(LayerSpec::new().symlink("bin/sleep", "/bin/busybox"))
        .volume("/data");
    registry.push_image("test/run", "v1", &image);
    Fixture {
        reference: registry.image_ref("test/run", "v1"),
        _registry: registry,
        tmp: tempfile::tempdir().unwrap(),
    }
}

/// A unique container name.
fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "occystrap-test-run-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Fixture {
    fn command(&self, options: &[&str], cmd: &[&str]) -> Command {
        let mut command = common::cli::command();
        command
            .env("TMPDIR", self.tmp.path())
            .args(["--retry-delay", "10", "--progress", "none", "run"])
            .args(options)
            .arg(&self.reference);
        if !cmd.is_empty() {
            command.arg("--").args(cmd);
        }
        command
    }

    /// Run to completion with stdin from /dev/null (or `input` piped),
    /// then check that nothing is left.
    fn run(&self, options: &[&str], cmd: &[&str], input: Option<&[u8]>) -> Output {
        let out = self.output(options, cmd, input);
        self.assert_clean();
        out
    }

    /// Run to completion, stdin from /dev/null or `input`.
    fn output(&self, options: &[&str], cmd: &[&str], input: Option<&[u8]>) -> Output {
        let mut command = self.command(options, cmd);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().unwrap();
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// No container, mount or temporary directory of ours is left.
    /// The containers runc lists whose bundles are under our TMPDIR.
    fn containers(&self) -> Vec<serde_json::Value> {
        let tmp = self.tmp.path().to_str().unwrap();
        let list = Command::new("runc")
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let containers: serde_json::Value =
            serde_json::from_slice(&list.stdout).unwrap_or(serde_json::Value::Null);
        containers
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["bundle"].as_str().unwrap_or_default().starts_with(tmp))
            .cloned()
            .collect()
    }

    fn assert_clean(&self) {
        let tmp = self.tmp.path().to_str().unwrap();
        let left = self.containers();
        assert!(left.is_empty(), "containers left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(tmp), "mount left: {mounts}");
        let left: Vec<_> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("occystrap-run"))
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect(out: &Output, code: i32, stdout: &str) {
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(code), stdout),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn statuses_and_streams_pass_through() {
    let f = fixture();
    expect(&f.run(&[], &[], None), 0, "hello\n");
    expect(
        &f.run(&[], &["sh", "-c", "echo out; exit 3"], None),
        3,
        "out\n",
    );
    // Killed by SIGKILL: 128 + 9. (From outside: the command is the
    // namespace's init, which no signal from inside can kill.)
    let name = unique_name();
    let child = f
        .command(&["--name", &name], &["sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&name);
    let killed = Command::new("runc").args(["kill", &name, "KILL"]).status();
    assert!(killed.unwrap().success());
    expect(&child.wait_with_output().unwrap(), 137, "");
    f.assert_clean();
    // stdin with -i; /dev/null without, whatever ours is.
    expect(&f.run(&["-i"], &["cat"], Some(b"hi\n")), 0, "hi\n");
    expect(&f.run(&[], &["cat"], Some(b"hi\n")), 0, "");
    let err = f.run(&[], &["sh", "-c", "echo oops >&2"], None);
    expect(&err, 0, "");
    assert!(text(&err.stderr).contains("oops"));
    // A command that cannot start: 127 as Docker says.
    expect(&f.run(&[], &["/nonexistent"], None), 127, "");
    let started = Instant::now();
    let out = f.run(&["--time-limit", "1"], &["sleep", "30"], None);
    expect(&out, 124, "");
    assert!(
        text(&out.stderr).contains("time limit"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // docker's habit: --timeout here is the registry's, and we say so.
    let out = f.run(&["--timeout", "30"], &["true"], None);
    expect(&out, 0, "");
    assert!(
        text(&out.stderr).contains("--time-limit"),
        "{}",
        text(&out.stderr)
    );
    // Errors before the container starts are occystrap's own.
    let out = f.run(&["--volume", "/nonexistent-occystrap:/x"], &[], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn options_reach_the_container() {
    let f = fixture();
    let env_file = f.tmp.path().join("env");
    std::fs::write(&env_file, "# comment\nA=from-file\nB=file\n").unwrap();
    let env_file = env_file.to_str().unwrap();
    let out = f.run(
        &[
            "-e",
            "B=flag",
            "--env-file",
            env_file,
            "-u",
            "app",
            "-w",
            "/home",
        ],
        &["sh", "-c", "echo $A $B; id -u; pwd"],
        None,
    );
    expect(&out, 0, "from-file flag\n1000\n/home\n");
    let name = unique_name();
    let out = f.run(
        &["--hostname", "box", "--name", &name],
        &["sh", "-c", "cat /proc/sys/kernel/hostname"],
        None,
    );
    expect(&out, 0, "box\n");

    // Bind mounts: read-write (seen on the host) and read-only.
    let host: PathBuf = f.tmp.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let rw = format!("{}:/rw", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let out = f.run(
        &["--volume", &rw, "--volume", &ro],
        &[
            "sh",
            "-c",
            "cat /ro/in; echo written > /rw/out; (echo no > /ro/x) 2>/dev/null || echo ro-refused",
        ],
        None,
    );
    expect(&out, 0, "from host\nro-refused\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "written\n"
    );
    assert!(!host.join("x").exists());
    // A relative host path is the current directory's.
    let mut command = f.command(&["--volume", "shared:/s"], &["cat", "/s/in"]);
    let out = command
        .current_dir(f.tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    expect(&out, 0, "from host\n");
    f.assert_clean();

    // Read-only root; /tmp and the image's volume stay writable.
    let out = f.run(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "(echo x > /f) 2>/dev/null || echo root-ro; echo t > /tmp/t && cat /tmp/t; echo d > /data/d && cat /data/d",
        ],
        None,
    );
    expect(&out, 0, "root-ro\nt\nd\n");
    assert!(text(&out.stderr).contains("/data"), "{}", text(&out.stderr));

    // --network none (the default): only lo.
    for options in [&["--network", "none"][..], &[]] {
        let out = f.run(options, &["cat", "/proc/net/dev"], None);
        let interfaces: Vec<String> = text(&out.stdout)
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|i| i.trim().to_owned())
            .collect();
        assert_eq!(interfaces, ["lo"], "{}", text(&out.stderr));
    }
    // --network host: the host's interfaces.
    let out = f.run(&["--network", "host"], &["cat", "/proc/net/dev"], None);
    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(
        text(&out.stdout).lines().count(),
        host_dev.lines().count(),
        "{}",
        text(&out.stderr)
    );
}

/// Wait until runc says `name` runs.
fn wait_running(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = Command::new("runc").args(["state", name]).output().unwrap();
        if text(&state.stdout).contains("\"running\"") {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn signals_are_forwarded_and_everything_is_removed() {
    let f = fixture();
    // The command is the namespace's init: signals it has no handler for
    // do not reach it, so it traps them (and runs sleep as a child).
    let script = "trap 'exit 143' TERM; trap 'exit 130' INT; sleep 30 & wait";
    for (signal, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let name = unique_name();
        let child = f
            .command(&["--name", &name], &["sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_running(&name);
        let started = Instant::now();
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        expect(&out, status, "");
        f.assert_clean();
    }
}

#[test]
fn a_name_in_use_is_refused_and_kept() {
    let f = fixture();
    let name = unique_name();
    let script = "trap 'exit 143' TERM; sleep 30 & wait";
    let mut first = f
        .command(&["--name", &name], &["sh", "-c", script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_running(&name);
    let out = f.output(&["--name", &name], &["true"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // The first one still runs: the refusal did not delete it.
    let state = Command::new("runc")
        .args(["state", &name])
        .output()
        .unwrap();
    assert!(text(&state.stdout).contains("\"running\""));
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert_eq!(first.wait().unwrap().code(), Some(143));
    f.assert_clean();
}

#[test]
fn a_terminal_only_when_asked_and_stdin_is_one() {
    let f = fixture();
    // Without a terminal on stdin, -t is ignored.
    let out = f.run(&["-t"], &["sh", "-c", "test -t 0 || echo no-tty"], None);
    expect(&out, 0, "no-tty\n");
    // Under script(1), stdin is a terminal: the container gets one of its own.
    let command = f.command(
        &["-t"],
        &["sh", "-c", "test -t 0 && test -t 1 && echo tty; exit 5"],
    );
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| format!("'{}'", a.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    let out = script
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // (script(1) may put control bytes before it.)
    assert!(stdout.lines().any(|l| l.ends_with("tty")), "{stdout}");
    f.assert_clean();
}

#[test]
fn runs_are_overlays_of_the_store_and_leave_it_as_it_was() {
    let f = fixture();
    let store = f.tmp.path().join("store");
    let with_store = |cmd: &[&str]| {
        let store = store.to_str().unwrap().to_string();
        let out = f
            .command(&[], cmd)
            .env("OCCYSTRAP_STORE", &store)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        f.assert_clean();
        out
    };
    let out = with_store(&[
        "sh",
        "-c",
        "grep ' / ' /proc/mounts | cut -d' ' -f3; echo x > /written",
    ]);
    expect(&out, 0, "overlay\n");
    let layers = || {
        let mut names: Vec<_> = std::fs::read_dir(store.join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let stored = layers();
    assert_eq!(stored.len(), 2, "the image's two layers");
    // The second run mounts the same layers, without the first one's write.
    let out = with_store(&["sh", "-c", "test -e /written && echo seen || echo fresh"]);
    expect(&out, 0, "fresh\n");
    assert_eq!(layers(), stored);
    let info = common::cli::occystrap(&["--store", store.to_str().unwrap(), "store", "info"]);
    assert!(
        text(&info.stdout).contains("used by no bundle"),
        "{}",
        text(&info.stdout)
    );
}

#[test]
fn what_a_killed_run_left_is_cleared_by_the_next() {
    let f = fixture();
    let name = unique_name();
    let mut child = f
        .command(&["--name", &name], &["sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = || {
        Command::new("runc")
            .args(["state", &name])
            .output()
            .is_ok_and(|o| o.status.success() && text(&o.stdout).contains("\"running\""))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed outright: its directory and its container are left.
    let left = |prefix: &str| {
        std::fs::read_dir(f.tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
    };
    assert_eq!(left("occystrap-run-"), 1);
    assert!(running(), "the container outlived its occystrap");
    // Past the grace a directory being made gets, the next run clears it.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    expect(&f.run(&[], &["true"], None), 0, "");
    assert!(!running());
    assert_eq!(left("occystrap-run-"), 0);
}

#[test]
fn twenty_runs_at_once_share_one_store() {
    let f = fixture();
    let store = f.tmp.path().join("store");
    // Each run waits for `go` so that prunes happen while all of them live.
    let sync = f.tmp.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    let volume = format!("{}:/sync:ro", sync.display());
    let children: Vec<_> = (0..20)
        .map(|i| {
            let script = format!(
                "until cat /sync/go 2>/dev/null; do sleep 0.05; done; echo {i} > /mine; cat /mine"
            );
            f.command(&["--volume", &volume], &["sh", "-c", &script])
                .env("OCCYSTRAP_STORE", &store)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every run's container is up (runc holds its state) once runc lists
    // twenty containers with bundles here.
    let started = Instant::now();
    loop {
        let ours = f.containers().len();
        if ours == 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {ours} of 20 runs started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let prunes: Vec<_> = (0..3)
        .map(|_| {
            common::cli::command()
                .args(["store", "prune"])
                .env("OCCYSTRAP_STORE", &store)
                .output()
                .unwrap()
        })
        .collect();
    for out in prunes {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let layers = std::fs::read_dir(store.join("layers")).unwrap().count();
    assert_eq!(layers, 2, "each layer stored once, and kept while leased");
    std::fs::write(sync.join("go"), b"").unwrap();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        expect(&out, 0, &format!("{i}\n"));
    }
    f.assert_clean();
}
