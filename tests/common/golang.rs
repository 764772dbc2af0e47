//! Go programs the tests compare us with, built offline with Debian's
//! `golang-go` (standard library only) into the target directory.
//!
//! ```ignore
//! let tarlist = common::golang::tarlist(); // tests/golang/tarlist.go
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `tests/golang/tarlist.go` built (once per test process, again only when
/// the source changed): Go's archive/tar as a reference lister.
pub fn tarlist() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("tarlist")).clone()
}

/// Build tests/golang/NAME.go into the target directory. A missing `go`
/// fails the test: a differential test that compares nothing is a defect
/// (CI installs golang-go).
fn build(name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golang")
        .join(format!("{name}.go"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golang");
    std::fs::create_dir_all(&dir).expect("create the Go build directory");
    let out = dir.join(name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(src)) = (modified(&out), modified(&source))
        && built > src
    {
        return out;
    }
    // Built beside, then renamed: test processes may build at once.
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go` ({e}): the differential tests need Go \
                 (Debian: apt-get install golang-go)"
            )
        });
    assert!(status.success(), "go build {} failed", source.display());
    std::fs::rename(&tmp, &out).expect("install the Go binary");
    out
}
