//! Every program the tests run comes from a Debian package that `make
//! deps` installs (or from an essential package every Debian has), so the
//! README's `make test` works on a fresh machine.

use std::collections::BTreeSet;
use std::path::Path;

/// The package each program the tests run comes from.
const PROVIDERS: &[(&str, &str)] = &[
    ("docker", "docker.io"),
    ("dockerd", "docker.io"),
    ("docker-registry", "docker-registry"),
    ("go", "golang-go"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
    ("runc", "runc"),
    ("umoci", "umoci"),
    ("skopeo", "skopeo"),
    ("python3", "python3"),
    ("setfacl", "acl"),
    ("setfattr", "attr"),
    ("setcap", "libcap2-bin"),
    ("tar", "tar"),
    ("setpriv", "util-linux"),
    ("script", "util-linux"),
    ("mount", "mount"),
    ("mkfs.xfs", "xfsprogs"),
    ("filefrag", "e2fsprogs"),
    ("umount", "mount"),
    // Essential packages (coreutils, bash, dash): on every Debian.
    ("bash", "essential"),
    ("sh", "essential"),
    ("date", "essential"),
    ("touch", "essential"),
];

/// Programs run through a shell or a helper rather than `Command::new`.
const INDIRECT: &[&str] = &[
    "dockerd",
    "docker-registry",
    "setfacl",
    "setfattr",
    "setcap",
    "umoci",
];

fn packages_in_makefile(root: &Path) -> BTreeSet<String> {
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let start = makefile
        .find("DEBIAN_PACKAGES =")
        .expect("the Makefile lists DEBIAN_PACKAGES");
    let mut packages = BTreeSet::new();
    for line in makefile[start + "DEBIAN_PACKAGES =".len()..].lines() {
        let continued = line.trim_end().ends_with('\\');
        packages.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_string),
        );
        if !continued {
            break;
        }
    }
    packages
}

fn programs_run_by_tests(root: &Path) -> BTreeSet<String> {
    let mut programs: BTreeSet<String> = INDIRECT.iter().map(|p| p.to_string()).collect();
    for dir in ["tests", "tests/common"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("Command::new(\"").skip(1) {
                if let Some(end) = piece.find('"') {
                    programs.insert(piece[..end].to_string());
                }
            }
        }
    }
    programs
}

#[test]
fn every_program_the_tests_run_is_installed_by_make_deps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let packages = packages_in_makefile(root);
    for program in programs_run_by_tests(root) {
        let Some((_, package)) = PROVIDERS.iter().find(|(p, _)| *p == program) else {
            panic!(
                "tests run {program:?}: add its Debian package to PROVIDERS and to DEBIAN_PACKAGES in the Makefile"
            );
        };
        assert!(
            *package == "essential" || packages.contains(*package),
            "tests run {program:?} from {package}, which `make deps` does not install"
        );
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.contains("make test"),
        ".ci/run runs the README's command"
    );
}
