//! A tiny runnable image made from Debian's busybox-static.

use super::image::{ImageSpec, LayerSpec};

/// Where Debian's `busybox-static` package installs the binary.
const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into `/bin` (absolute symlinks, as `busybox --install -s` makes).
const APPLETS: &[&str] = &["sh", "echo", "cat", "id", "ls", "true"];

/// `PATH` of the image, Docker's default.
pub const BUSYBOX_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A one-layer gzip Docker image that runs `sh -c "echo hello"`.
///
/// Contents: `/bin/busybox` (0755) and `/bin/{sh,echo,cat,id,ls,true}`
/// symlinks to `/bin/busybox`; `/etc/passwd` with `root` (0) and `app`
/// (1000, home `/home/app`); `/etc/group` with `root` (0), `app` (1000) and
/// `users` (100, member `app`); `/tmp` (1777), `/root` (0700), `/home/app`
/// (0755, owned 1000:1000). Env: `PATH` only. Panics if busybox-static is
/// not installed.
pub fn busybox_image() -> ImageSpec {
    let binary = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("read {BUSYBOX} ({e}): install the Debian package busybox-static")
    });
    let mut layer = LayerSpec::new()
        .dir("bin", 0o755)
        .file("bin/busybox", binary, 0o755);
    for applet in APPLETS {
        layer = layer.symlink(&format!("bin/{applet}"), BUSYBOX);
    }
    let layer = layer
        .dir("etc", 0o755)
        .file("etc/passwd", PASSWD, 0o644)
        .file("etc/group", GROUP, 0o644)
        .dir("home", 0o755)
        .dir("home/app", 0o755)
        .owner(1000, 1000)
        .dir("root", 0o700)
        .dir("tmp", 0o1777);
    ImageSpec::new()
        .layer(layer)
        .env(BUSYBOX_PATH)
        .cmd(&["sh", "-c", "echo hello"])
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      app:x:1000:1000:app:/home/app:/bin/sh\n";

const GROUP: &str = "root:x:0:\n\
                     users:x:100:app\n\
                     app:x:1000:\n";
