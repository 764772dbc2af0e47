//! Integration tier: tarballs from `export` are proven by a real Docker
//! engine (`docker load`, `docker image inspect`, `docker run`). Needs root
//! and Debian's docker.io; dockerd is started if it is not running.

mod common;

use common::busybox::busybox_image;
use common::cli::{docker_load_and_run, occystrap, ok};
use common::image::{Compression, Format, LayerSpec};
use common::registry::Registry;

#[test]
fn docker_loads_and_runs_exported_tarballs() {
    let registry = Registry::start();
    for (format, repo) in [(Format::Docker, "load/docker"), (Format::Oci, "load/oci")] {
        let image = busybox_image()
            .format(format)
            .layer(
                LayerSpec::new()
                    .file("etc/motd", b"from a zstd layer\n", 0o644)
                    .compression(Compression::Zstd),
            )
            .cmd(&["sh", "-c", "echo hello; cat /etc/motd"]);
        let pushed = registry.push_image(repo, "v1", &image);
        let reference = registry.image_ref(repo, "v1");
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("image.tar");
        ok(&occystrap(&[
            "export",
            &reference,
            tarball.to_str().unwrap(),
        ]));
        docker_load_and_run(
            &tarball,
            &reference,
            &pushed.config_digest,
            "hello\nfrom a zstd layer\n",
        );
    }
}
