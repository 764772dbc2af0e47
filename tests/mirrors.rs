//! registries.conf (containers-registries.conf(5)): a real pull-through
//! cache (`docker-registry` in proxy mode) as a mirror, fallback when the
//! mirror is down, `pull-from-mirror`, blocked and insecure registries,
//! `location` rewrites and the longest prefix; proxies from the
//! environment; CA roots from `--cert-dir`.

mod common;

use std::path::{Path, PathBuf};

use common::busybox::busybox_image;
use common::cli::{command, fails_with, noise, occystrap, ok, stderr};
use common::fake::FakeServer;
use common::image::LayerSpec;
use common::registry::Registry;

fn image() -> common::image::ImageSpec {
    busybox_image().layer(LayerSpec::new().file("data/noise", noise(200_000, 3), 0o644))
}

fn blob_gets(fake: &FakeServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .count()
}

fn v2_requests(fake: &FakeServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.starts_with("/v2/") && r.path != "/v2/")
        .count()
}

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// `occystrap --registries-conf CONF export REFERENCE DIR/NAME`.
fn export(conf: &Path, reference: &str, dir: &Path, name: &str) -> std::process::Output {
    let out = dir.join(name);
    occystrap(&[
        "--registries-conf",
        conf.to_str().unwrap(),
        "export",
        reference,
        out.to_str().unwrap(),
    ])
}

/// A pull-through cache in front of the upstream: the second pull through
/// it makes no upstream blob request; with the cache down, the pull falls
/// back to the upstream, with a warning.
#[test]
fn pull_through_cache_as_mirror_then_fallback() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    // Counts what reaches the upstream, from the cache and from us.
    let counted = FakeServer::in_front_of(&upstream);
    let cache = Registry::start_proxy(&counted.url());
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!(
            "[[registry]]\nprefix = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
            counted.addr, cache.addr
        ),
    );
    let reference = counted.image_ref("test/app", "v1");

    let first = export(&conf, &reference, tmp.path(), "1.tar");
    ok(&first);
    assert!(
        !stderr(&first).contains("mirror"),
        "no fallback: {}",
        stderr(&first)
    );
    let after_first = blob_gets(&counted);
    assert!(
        after_first >= 2,
        "the cache fetched config and layers upstream"
    );

    let second = export(&conf, &reference, tmp.path(), "2.tar");
    ok(&second);
    assert_eq!(
        blob_gets(&counted),
        after_first,
        "the second pull came from the cache: {:?}",
        counted.requests()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("1.tar")).unwrap(),
        std::fs::read(tmp.path().join("2.tar")).unwrap()
    );

    let cache_addr = cache.addr.clone();
    drop(cache);
    let third = export(&conf, &reference, tmp.path(), "3.tar");
    ok(&third);
    let err = stderr(&third);
    assert!(
        err.contains(&format!("mirror {cache_addr} failed")),
        "warned: {err}"
    );
    assert!(
        blob_gets(&counted) > after_first,
        "fell back to the upstream"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("1.tar")).unwrap(),
        std::fs::read(tmp.path().join("3.tar")).unwrap()
    );
}

/// `pull-from-mirror = "digest-only"`: a pull by tag never asks the
/// mirror; a pull by digest does (and the upstream is not asked).
#[test]
fn digest_only_mirror_skipped_for_tags() {
    let upstream = Registry::start();
    let pushed = upstream.push_image("test/app", "v1", &image());
    let mirror = FakeServer::in_front_of(&upstream);
    let counted = FakeServer::in_front_of(&upstream);
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!(
            "[[registry]]\nprefix = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\npull-from-mirror = \"digest-only\"\n",
            counted.addr, mirror.addr
        ),
    );
    ok(&export(
        &conf,
        &counted.image_ref("test/app", "v1"),
        tmp.path(),
        "tag.tar",
    ));
    assert_eq!(v2_requests(&mirror), 0, "a tag pull skips the mirror");
    assert!(blob_gets(&counted) >= 2);

    let upstream_before = v2_requests(&counted);
    ok(&export(
        &conf,
        &counted.image_ref("test/app", &pushed.manifest_digest),
        tmp.path(),
        "digest.tar",
    ));
    assert!(blob_gets(&mirror) >= 2, "a digest pull uses the mirror");
    assert_eq!(
        v2_requests(&counted),
        upstream_before,
        "and not the upstream"
    );
}

/// A mirror that answers 404 for the manifest, then the upstream.
#[test]
fn mirror_without_the_image_falls_back() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    let empty = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!(
            "[[registry]]\nprefix = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
            upstream.addr, empty.addr
        ),
    );
    let out = export(
        &conf,
        &upstream.image_ref("test/app", "v1"),
        tmp.path(),
        "a.tar",
    );
    ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("mirror {} failed", empty.addr)) && err.contains("not found"),
        "{err}"
    );
}

/// `blocked = true`: exit 2, naming the file and line of the entry.
#[test]
fn blocked_registry_is_refused() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!(
            "# comment\n[[registry]]\nprefix = \"{}/test\"\nblocked = true\n",
            upstream.addr
        ),
    );
    let out = export(
        &conf,
        &upstream.image_ref("test/app", "v1"),
        tmp.path(),
        "a.tar",
    );
    fails_with(&out, 2, "blocked by the [[registry]]");
    fails_with(&out, 2, &format!("{}:2", conf.display()));
    assert!(!tmp.path().join("a.tar").exists());
    // Another namespace of the same registry is not blocked.
    upstream.push_image("other/app", "v1", &image());
    ok(&export(
        &conf,
        &upstream.image_ref("other/app", "v1"),
        tmp.path(),
        "b.tar",
    ));
}

/// `location` rewrites the name; the longest matching prefix wins.
#[test]
fn location_rewrite_and_longest_prefix() {
    let upstream = Registry::start();
    upstream.push_image("real/team/app", "v1", &image());
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!(
            "[[registry]]\nprefix = \"registry.invalid\"\nblocked = true\n\
             [[registry]]\nprefix = \"registry.invalid/team\"\nlocation = \"{}/real/team\"\n",
            upstream.addr
        ),
    );
    ok(&export(
        &conf,
        "registry.invalid/team/app:v1",
        tmp.path(),
        "a.tar",
    ));
    let out = export(&conf, "registry.invalid/other/app:v1", tmp.path(), "b.tar");
    fails_with(&out, 2, "blocked");
}

/// `insecure = true` falls back to plain HTTP for a host that is not loopback by
/// name (`127.1` is 127.0.0.1 once resolved, but not a loopback literal
/// for occystrap, which would otherwise use HTTPS).
#[test]
fn insecure_registry_uses_plain_http() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    let port = upstream.addr.rsplit(':').next().unwrap();
    let name = format!("127.1:{port}");
    let reference = format!("{name}/test/app:v1");
    let tmp = tempfile::tempdir().unwrap();
    let secure = write_conf(tmp.path(), "");
    let out = export(&secure, &reference, tmp.path(), "a.tar");
    assert!(!out.status.success(), "HTTPS to a plain HTTP registry");
    let conf = write_conf(
        tmp.path(),
        &format!("[[registry]]\nprefix = \"{name}\"\ninsecure = true\n"),
    );
    ok(&export(&conf, &reference, tmp.path(), "b.tar"));
}

/// A malformed registries.conf is an error naming the file and line.
#[test]
fn malformed_conf_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_conf(
        tmp.path(),
        "[[registry]]\nprefix = \"a.io\"\n\n[[registry.mirror]]\npull-from-mirror = \"often\"\nlocation = \"b.io\"\n",
    );
    let out = export(&conf, "a.io/x:1", tmp.path(), "a.tar");
    fails_with(&out, 2, &format!("{}:4", conf.display()));
    fails_with(&out, 2, "often");
    let missing = tmp.path().join("missing.conf");
    let out = export(&missing, "a.io/x:1", tmp.path(), "a.tar");
    fails_with(&out, 5, "missing.conf");
}

/// `HTTP_PROXY` is honoured (the proxy here refuses everything), and
/// `NO_PROXY` exempts a host from it.
#[test]
fn proxy_from_environment() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    let proxy = FakeServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let reference = upstream.image_ref("test/app", "v1");
    let run = |no_proxy: Option<&str>, name: &str| {
        let mut cmd = command();
        cmd.env("HTTP_PROXY", proxy.url())
            .args(["--retries", "0", "export", &reference])
            .arg(tmp.path().join(name));
        if let Some(no_proxy) = no_proxy {
            cmd.env("NO_PROXY", no_proxy);
        }
        cmd.output().unwrap()
    };
    let out = run(None, "a.tar");
    assert!(!out.status.success(), "the proxy refused: {}", stderr(&out));
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.contains(&upstream.addr)),
        "the request went to the proxy: {:?}",
        proxy.requests()
    );
    ok(&run(Some("127.0.0.1"), "b.tar"));
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate it signed for 127.0.0.1, in `dir`: ca.crt,
/// server.pem, server.key.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=occystrap test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ],
    );
}

/// `--cert-dir`: a registry whose certificate a private CA signed is
/// trusted with the CA's `*.crt`, and refused without it. (`127.1` is
/// 127.0.0.1, not a loopback literal, so HTTPS is used.)
#[test]
fn cert_dir_adds_ca_roots() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let server = tmp.path().join("server");
    std::fs::create_dir(&server).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::rename(certs.join(f), server.join(f)).unwrap();
    }
    std::fs::remove_file(certs.join("ca.key")).unwrap();
    // A bundle whose first certificate is not the CA: every one counts.
    let bundle = [
        std::fs::read(server.join("server.pem")).unwrap(),
        std::fs::read(certs.join("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(certs.join("ca.crt"), bundle).unwrap();
    let tls = Registry::start_tls_proxy(
        &upstream.url(),
        &server.join("server.pem"),
        &server.join("server.key"),
    );
    let port = tls.addr.rsplit(':').next().unwrap();
    let reference = format!("127.1:{port}/test/app:v1");
    let out = tmp.path().join("a.tar");
    let refused = occystrap(&[
        "--retries",
        "0",
        "export",
        &reference,
        out.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).to_lowercase().contains("certificate"),
        "{}",
        stderr(&refused)
    );
    ok(&occystrap(&[
        "--cert-dir",
        certs.to_str().unwrap(),
        "export",
        &reference,
        out.to_str().unwrap(),
    ]));
    // registries.conf's insecure: HTTPS without verification.
    std::fs::remove_file(&out).unwrap();
    let conf = write_conf(
        tmp.path(),
        &format!("[[registry]]\nprefix = \"127.1:{port}\"\ninsecure = true\n"),
    );
    ok(&export(&conf, &reference, tmp.path(), "a.tar"));
}

/// Without `--registries-conf` or `--no-system-config`, the user's
/// `~/.config/containers/registries.conf` and its `.d` drop-ins are read
/// (a later drop-in replaces an entry with the same prefix).
#[test]
fn user_registries_conf_and_drop_ins() {
    let upstream = Registry::start();
    upstream.push_image("test/app", "v1", &image());
    upstream.push_image("other/app", "v1", &image());
    let home = tempfile::tempdir().unwrap();
    let containers = home.path().join(".config/containers");
    std::fs::create_dir_all(containers.join("registries.conf.d")).unwrap();
    std::fs::write(
        containers.join("registries.conf"),
        format!(
            "[[registry]]\nprefix = \"{0}/test\"\nblocked = true\n\
             [[registry]]\nprefix = \"{0}/other\"\nblocked = true\n",
            upstream.addr
        ),
    )
    .unwrap();
    std::fs::write(
        containers.join("registries.conf.d/50-unblock.conf"),
        format!("[[registry]]\nprefix = \"{}/other\"\n", upstream.addr),
    )
    .unwrap();
    let run = |repo: &str| {
        let out = home.path().join(format!("{}.tar", repo.replace('/', "-")));
        command()
            .env_remove("OCCYSTRAP_NO_SYSTEM_CONFIG")
            .env("HOME", home.path())
            .args(["export", &upstream.image_ref(repo, "v1")])
            .arg(out)
            .output()
            .unwrap()
    };
    fails_with(&run("test/app"), 2, "registries.conf:1");
    ok(&run("other/app"));
}
