//! Differential: our tar reader (`occystrap::tar`) against Go's
//! archive/tar, the reader Docker, containerd, buildkit, podman and umoci
//! use. Both list every archive of a corpus in one canonical format
//! (tests/golang/tarlist.go; ours is `tar_listing` in fuzz/checks.rs):
//! names, types, links, sizes, modes, owners, times, device numbers, PAX
//! records and a hash of each entry's content, or `error` where reading
//! fails. They must be equal, archive by archive.
//!
//! The corpus: GNU tar in every `--format` (long names, sparse files in
//! every sparse version, ACLs and xattrs, FIFOs, devices, large ids,
//! pre-1970 and far-future times, odd names), Python's tarfile (GNU, PAX,
//! USTAR), Go's own writer, hostile archives built here byte by byte, and
//! then a few thousand deterministic mutants of all of those.
//!
//! Needs `go` (Debian: golang-go), GNU tar, python3, setfacl, setfattr
//! and root (mknod, chown); CI installs them.

mod common;

#[path = "../fuzz/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use checks::{GoTarList, TAR_KNOWN_DIFFERENCES, tar_difference, tar_known_difference, tar_listing};

// The list of known differences, TAR_KNOWN_DIFFERENCES, is in fuzz/checks.rs:
// the fuzz target tolerates them too.

type Corpus = Vec<(String, Vec<u8>)>;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------
// GNU tar

/// The trees GNU tar archives, each under `root`: which formats can hold
/// which is decided in [`gnu_tar`].
const TREES: &str = r#"
set -eu
cd "$1"
fixed() { find "$@" -depth -exec touch -h -d @1700000000 {} +; }

mkdir -p base/dir/sub base/empty-dir
printf 'hello\n' > base/dir/file
: > base/empty
seq 1 3000 > base/dir/numbers
ln -s dir/file base/symlink
ln -s ../nowhere base/dir/dangling
ln base/dir/file base/hardlink
printf x > 'base/café-日本'
printf y > 'base/new
line'
printf z > 'base/tab	and space '
chmod 4755 base/dir/file
chmod 1777 base/dir/sub
chmod 2711 base/dir/numbers
chown 1000:1000 base/dir/numbers
fixed base

mkdir special
mkfifo special/fifo
mknod special/null c 1 3
mknod special/big b 4095 1048575
fixed special

mkdir times
printf old > times/1960
printf older > times/1901
printf far > times/2300
printf frac > times/fraction
fixed times
touch -h -d '1960-01-01 00:00:00 UTC' times/1960
touch -h -d '1901-12-14 00:00:00 UTC' times/1901
touch -h -d '2300-01-01 00:00:00 UTC' times/2300
touch -h -d '2001-02-03 04:05:06.123456789 UTC' times/fraction

l100=$(printf 'a%.0s' $(seq 1 120))
l200=$(printf 'b%.0s' $(seq 1 200))
mkdir -p "long/$l100/$l200"
printf 'long\n' > "long/$l100/$l200/$l100"
ln -s "../long/$l100/$l200/$l100" long/long-target
ln "long/$l100/$l200/$l100" long/long-hardlink
fixed long

m90=$(printf "m%.0s" $(seq 1 70))
mkdir -p "medium/$m90/$m90"
printf 'split by prefix\n' > "medium/$m90/$m90/$m90"
fixed medium

mkdir ids
printf big > ids/big
chown 70000000:70000001 ids/big
printf edge > ids/edge
chown 2097152:2097151 ids/edge
fixed ids

mkdir sparse
data() { yes "$1" | head -c "$2"; }
truncate -s 3M sparse/holes
for off in 0 64 300 511 700; do
    data "block $off" 8192 | dd of=sparse/holes bs=4096 seek=$off conv=notrunc status=none
done
truncate -s 2M sparse/all-hole
truncate -s 1M sparse/many
for i in $(seq 0 2 120); do
    data "fragment $i" 4096 | dd of=sparse/many bs=4096 seek=$i conv=notrunc status=none
done
data tail 5000 > sparse/hole-first
truncate -s 1M sparse/hole-first
data tail 5000 | dd of=sparse/hole-first bs=4096 seek=200 conv=notrunc status=none
data head 100 > sparse/hole-last
truncate -s 600K sparse/hole-last
fixed sparse

mkdir -p acl/dir
printf acl > acl/file
printf cap > acl/cap
setfacl -m u:1234:r,g:10:rw acl/file
setfacl -d -m u:1234:rwx,g:10:rx acl/dir
setfacl -m u:1234:rwx acl/dir
setfattr -n user.binary -v 0x0a00ff0a410a acl/file
setfattr -n user.empty acl/file
setfattr -n user.text -v 'line one
line two' acl/dir
if command -v setcap >/dev/null; then
    setcap cap_net_raw,cap_net_admin+ep acl/cap
else
    setfattr -n security.capability -v 0x0100000200300000000000000000000000000000 acl/cap
fi
fixed acl
"#;

fn gnu_tar(work: &Path) -> Corpus {
    let root = work.join("trees");
    std::fs::create_dir_all(&root).unwrap();
    run(Command::new("bash")
        .arg("-c")
        .arg(TREES)
        .arg("trees")
        .arg(&root));
    // Deterministic PAX headers: GNU tar would record the real atime and
    // ctime.
    let pax_times = "--pax-option=atime:=1000000000.25,ctime:=-1000000000.75";
    let posix_sparse = |version: &'static str| -> Vec<&'static str> {
        vec![
            "--format=posix",
            pax_times,
            "--sparse",
            version,
            "sparse",
            "base",
        ]
    };
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "gnu",
            vec![
                "--format=gnu",
                "base",
                "special",
                "times",
                "long",
                "medium",
                "ids",
            ],
        ),
        (
            "oldgnu",
            vec![
                "--format=oldgnu",
                "base",
                "special",
                "times",
                "long",
                "medium",
                "ids",
            ],
        ),
        (
            "posix",
            vec![
                "--format=posix",
                pax_times,
                "base",
                "special",
                "times",
                "long",
                "medium",
                "ids",
            ],
        ),
        (
            "posix-native-times",
            vec!["--format=posix", "times", "base"],
        ),
        ("ustar", vec!["--format=ustar", "base", "special", "medium"]),
        ("v7", vec!["--format=v7", "base"]),
        (
            "gnu-sparse",
            vec!["--format=gnu", "--sparse", "sparse", "base"],
        ),
        (
            "oldgnu-sparse",
            vec!["--format=oldgnu", "--sparse", "sparse"],
        ),
        ("posix-sparse", posix_sparse("--sparse-version=1.0")),
        ("posix-sparse-0.0", posix_sparse("--sparse-version=0.0")),
        ("posix-sparse-0.1", posix_sparse("--sparse-version=0.1")),
        ("posix-sparse-1.0", posix_sparse("--sparse-version=1.0")),
        (
            "posix-acls-xattrs",
            vec![
                "--format=posix",
                pax_times,
                "--acls",
                "--xattrs",
                "--xattrs-include=*",
                "acl",
                "base",
            ],
        ),
        (
            "gnu-numeric-owner",
            vec!["--format=gnu", "--numeric-owner", "base", "ids"],
        ),
        (
            "posix-numeric-owner",
            vec![
                "--format=posix",
                pax_times,
                "--numeric-owner",
                "base",
                "ids",
            ],
        ),
        (
            "gnu-owner-override",
            vec![
                "--format=gnu",
                "--owner=somebody:70000000",
                "--group=somegroup:3000000000",
                "base",
            ],
        ),
        (
            "posix-owner-override",
            vec![
                "--format=posix",
                pax_times,
                "--owner=somebody:70000000",
                "--group=somegroup:3000000000",
                "base",
            ],
        ),
        (
            "posix-global-header",
            vec![
                "--format=posix",
                "--pax-option=comment=a global comment,atime:=1.5,ctime:=2.5",
                "base",
            ],
        ),
        (
            "gnu-mtime-override",
            vec!["--format=gnu", "--mtime=1950-06-01 UTC", "base"],
        ),
    ];
    let mut corpus = Corpus::new();
    for (name, args) in cases {
        let out = work.join(format!("gnu-tar-{name}.tar"));
        run(Command::new("tar")
            .arg("--sort=name")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&out)
            .args(args));
        corpus.push((format!("gnu-tar-{name}"), std::fs::read(&out).unwrap()));
    }
    corpus
}

// ---------------------------------------------------------------------
// Python's tarfile

const PYTHON: &str = r#"
import io, os, sys, tarfile

out = sys.argv[1]
long = "long-python-name/" * 12 + "file"

def add(tf, name, data=b"", pax=None, **kw):
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    if pax:
        ti.pax_headers = pax
    if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)

formats = [
    ("gnu", tarfile.GNU_FORMAT, {}),
    ("pax", tarfile.PAX_FORMAT, {"comment": "global\nvalue", "x.binary": "\x01\x02\n\x7f"}),
    ("ustar", tarfile.USTAR_FORMAT, {}),
]
for name, fmt, global_pax in formats:
    path = os.path.join(out, "%s.tar" % name)
    with tarfile.open(path, "w", format=fmt, pax_headers=global_pax) as tf:
        add(tf, "file", b"data\n", mode=0o644, uid=1000, gid=1000, uname="user", gname="group")
        add(tf, "dir", type=tarfile.DIRTYPE, mode=0o755)
        add(tf, "dir/sym", type=tarfile.SYMTYPE, linkname="../file")
        add(tf, "hard", type=tarfile.LNKTYPE, linkname="file")
        add(tf, "chr", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add(tf, "blk", type=tarfile.BLKTYPE, devmajor=259, devminor=65537)
        add(tf, "fifo", type=tarfile.FIFOTYPE)
        add(tf, "contiguous", b"contiguous", type=tarfile.CONTTYPE)
        add(tf, "empty", b"")
        add(tf, "big", b"x" * 70000, mode=0o7777)
        add(tf, "epoch", b"0", mtime=0)
        add(tf, "new\nline", b"nl")
        if fmt == tarfile.USTAR_FORMAT:
            add(tf, "p" * 150 + "/" + "n" * 99, b"prefix")
            continue
        add(tf, long, b"long")
        add(tf, "sym-long", type=tarfile.SYMTYPE, linkname=long)
        add(tf, "unicode-日本語-é", b"u", uname="ユーザー", gname="grüppe")
        add(tf, "negative-mtime", b"n", mtime=-1000000)
        add(tf, "huge-ids", b"h", uid=2**40, gid=2**33 + 5, mtime=2**40)
        if fmt == tarfile.PAX_FORMAT:
            add(tf, "fraction", b"f", mtime=1700000000.5)
            add(tf, "records", b"r", pax={
                "SCHILY.xattr.user.nl": "a\nb\n",
                "SCHILY.xattr.user.bin": "\udcff\udc80\x01\n",
                "comment": "=\n=",
                "atime": "-1.5",
                "ctime": "12345678901.000000001",
            })
            add(tf, "undecodable-\udcff", b"surrogate")
            add(tf, "pax-size-wins", b"abc", pax={"size": "3"})
"#;

fn python(work: &Path) -> Corpus {
    let dir = work.join("python");
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("python3").arg("-c").arg(PYTHON).arg(&dir));
    read_dir(&dir, "python")
}

fn go_writer(tarlist: &Path, work: &Path) -> Corpus {
    let dir = work.join("go");
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new(tarlist).arg("--write").arg(&dir));
    read_dir(&dir, "go-writer")
}

fn read_dir(dir: &Path, prefix: &str) -> Corpus {
    let mut corpus: Corpus = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            (format!("{prefix}-{stem}"), std::fs::read(&path).unwrap())
        })
        .collect();
    corpus.sort();
    assert!(!corpus.is_empty(), "nothing written in {}", dir.display());
    corpus
}

// ---------------------------------------------------------------------
// Hand-made archives

const BLOCK: usize = 512;

/// One header block, built field by field.
#[derive(Clone)]
struct H([u8; BLOCK]);

impl H {
    /// A USTAR header: mode 0644, owner 0, mtime 1700000000.
    fn new(name: &[u8], flag: u8, size: u64) -> H {
        let mut h = H([0; BLOCK]);
        h.0[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h = h
            .octal(100, 8, 0o644)
            .octal(108, 8, 0)
            .octal(116, 8, 0)
            .octal(124, 12, size)
            .octal(136, 12, 1_700_000_000)
            .set(156, &[flag])
            .set(257, b"ustar\x0000");
        h
    }

    fn set(mut self, at: usize, bytes: &[u8]) -> H {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
        self
    }

    /// Octal digits, NUL-terminated, zero-padded to the field.
    fn octal(self, at: usize, len: usize, value: u64) -> H {
        let text = format!("{value:0width$o}\0", width = len - 1);
        assert_eq!(text.len(), len, "{value} does not fit in {len} bytes");
        self.set(at, text.as_bytes())
    }

    /// Base-256: two's complement, big endian, top bit set.
    fn b256(self, at: usize, len: usize, value: i128) -> H {
        let bytes = value.to_be_bytes();
        let mut field = bytes[16 - len.min(16)..].to_vec();
        while field.len() < len {
            field.insert(0, if value < 0 { 0xff } else { 0 });
        }
        field[0] |= 0x80;
        self.set(at, &field)
    }

    fn gnu(self) -> H {
        self.set(257, b"ustar  \0")
    }

    fn v7(self) -> H {
        self.set(257, &[0; 8])
    }

    fn star(self) -> H {
        self.set(508, b"tar\0")
    }

    fn link(self, target: &[u8]) -> H {
        self.set(157, target)
    }

    /// The block with its checksum (unsigned sum, the usual one).
    fn block(&self) -> Vec<u8> {
        let mut b = self.0;
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b.to_vec()
    }

    /// The block with the checksum summed over signed bytes.
    fn signed_block(&self) -> Vec<u8> {
        let mut b = self.0;
        b[148..156].fill(b' ');
        let sum: i32 = b.iter().map(|&c| i32::from(c as i8)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b.to_vec()
    }
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().next_multiple_of(BLOCK), 0);
    v
}

fn entry(h: &H, data: &[u8]) -> Vec<u8> {
    [h.block(), padded(data)].concat()
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    entry(&H::new(name.as_bytes(), b'0', data.len() as u64), data)
}

fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = [key, b"=", value, b"\n"].concat();
    let mut len = body.len() + 2;
    while len != body.len() + 1 + len.to_string().len() {
        len = body.len() + 1 + len.to_string().len();
    }
    [len.to_string().as_bytes(), b" ", &body].concat()
}

fn records(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(k, v)| record(k.as_bytes(), v))
        .collect()
}

/// A PAX header (`x`, or `g` for global) holding `body`.
fn pax(flag: u8, body: &[u8]) -> Vec<u8> {
    entry(&H::new(b"PaxHeaders/x", flag, body.len() as u64), body)
}

fn gnu_long(flag: u8, value: &[u8]) -> Vec<u8> {
    entry(
        &H::new(b"././@LongLink", flag, value.len() as u64).gnu(),
        value,
    )
}

fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Deterministic bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An old GNU sparse header (`S`) with the given regions in the header
/// (at most 4) and its real size.
fn old_sparse(name: &str, regions: &[(u64, u64)], stored: u64, real: u64, extended: bool) -> H {
    let mut h = H::new(name.as_bytes(), b'S', stored)
        .gnu()
        .octal(483, 12, real);
    for (i, (offset, len)) in regions.iter().enumerate() {
        h = h
            .octal(386 + 24 * i, 12, *offset)
            .octal(386 + 24 * i + 12, 12, *len);
    }
    if extended {
        h = h.set(482, &[1]);
    }
    h
}

/// An old GNU sparse extension block: up to 21 regions.
fn sparse_ext(regions: &[(u64, u64)], extended: bool) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    for (i, (offset, len)) in regions.iter().enumerate() {
        let o = format!("{offset:011o}\0");
        let l = format!("{len:011o}\0");
        b[24 * i..24 * i + 12].copy_from_slice(o.as_bytes());
        b[24 * i + 12..24 * i + 24].copy_from_slice(l.as_bytes());
    }
    b[504] = u8::from(extended);
    b
}

/// A PAX 1.0 sparse entry: the map text, then the data.
fn sparse_1_0(name: &str, map: &str, data: &[u8], real: u64) -> Vec<u8> {
    let body = [padded(map.as_bytes()), data.to_vec()].concat();
    cat(&[
        pax(
            b'x',
            &records(&[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", name.as_bytes()),
                ("GNU.sparse.realsize", real.to_string().as_bytes()),
            ]),
        ),
        entry(
            &H::new(b"GNUSparseFile.0/x", b'0', body.len() as u64),
            &body,
        ),
        end(),
    ])
}

/// A PAX 0.1 sparse entry (0.0 when `zero_zero`: one record per number).
fn sparse_0_x(
    name: &str,
    regions: &[(u64, u64)],
    data: &[u8],
    real: u64,
    zero_zero: bool,
) -> Vec<u8> {
    let mut body = records(&[
        ("GNU.sparse.numblocks", regions.len().to_string().as_bytes()),
        ("GNU.sparse.name", name.as_bytes()),
        ("GNU.sparse.size", real.to_string().as_bytes()),
    ]);
    if zero_zero {
        for (offset, len) in regions {
            body.extend(record(b"GNU.sparse.offset", offset.to_string().as_bytes()));
            body.extend(record(b"GNU.sparse.numbytes", len.to_string().as_bytes()));
        }
    } else {
        let map: Vec<String> = regions
            .iter()
            .flat_map(|(o, l)| [o.to_string(), l.to_string()])
            .collect();
        body.extend(record(b"GNU.sparse.map", map.join(",").as_bytes()));
        body.extend(record(b"GNU.sparse.major", b"0"));
        body.extend(record(b"GNU.sparse.minor", b"1"));
    }
    cat(&[
        pax(b'x', &body),
        entry(&H::new(b"GNUSparseFile.0/x", b'0', data.len() as u64), data),
        end(),
    ])
}

/// An archive with a bit of everything, to truncate at every offset.
fn kitchen_sink() -> Vec<u8> {
    cat(&[
        pax(b'g', &records(&[("comment", b"global")])),
        pax(b'x', &records(&[("path", b"pax-name"), ("mtime", b"1.5")])),
        file("ignored", &pattern(700, 1)),
        gnu_long(b'L', &[b"l".repeat(300), vec![0]].concat()),
        entry(&H::new(b"short", b'0', 20).gnu(), &pattern(20, 2)),
        entry(
            &old_sparse(
                "old-sparse",
                &[(0, 10), (600, 10), (1200, 10), (1800, 10)],
                50,
                5000,
                true,
            ),
            &[],
        ),
        sparse_ext(&[(3000, 10)], false),
        padded(&pattern(50, 3)),
        entry(&H::new(b"dir/", b'5', 0), &[]),
        file("last", b"last"),
        end(),
    ])
}

fn handmade() -> Corpus {
    let mut c: Corpus = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| c.push((format!("hand-{name}"), bytes));
    let hello = file("hello", b"hello\n");

    add("empty-input", vec![]);
    add("only-end", end());
    add("one-zero-block", vec![0; BLOCK]);
    add("no-end-marker", file("a", b"a"));
    add(
        "trailing-single-zero-block",
        cat(&[file("a", b"a"), vec![0; BLOCK]]),
    );
    add(
        "zero-block-then-entry",
        cat(&[vec![0; BLOCK], hello.clone(), end()]),
    );
    add(
        "garbage-after-end",
        cat(&[hello.clone(), end(), pattern(1000, 9)]),
    );
    add("partial-block-at-end", cat(&[hello.clone(), vec![0; 100]]));
    add(
        "zero-then-partial",
        cat(&[hello.clone(), vec![0; BLOCK + 100]]),
    );

    // Header-only types whose size field claims data: the "data" is a
    // header, which Go reads as the next entry.
    for flag in [b'1', b'2', b'3', b'4', b'5', b'6'] {
        let h = H::new(
            format!("typed-{}", flag as char).as_bytes(),
            flag,
            BLOCK as u64,
        )
        .link(b"target");
        add(
            &format!("header-only-{}-with-size", flag as char),
            cat(&[h.block(), hello.clone(), end()]),
        );
    }
    // Unknown and vendor type flags carry data by their size.
    for flag in [b'Z', b'V', b'D', b'M', b'N', b'A', b'z', 0xff, b'7'] {
        let h = H::new(format!("flag-{flag:02x}").as_bytes(), flag, 5);
        add(
            &format!("flag-{flag:02x}"),
            cat(&[entry(&h, b"12345"), hello.clone(), end()]),
        );
    }
    // The old NUL type flag: a trailing slash makes a directory.
    add(
        "nul-flag-file",
        cat(&[entry(&H::new(b"old-file", 0, 3), b"abc"), end()]),
    );
    add(
        "nul-flag-dir",
        cat(&[entry(&H::new(b"old-dir/", 0, 0), &[]), hello.clone(), end()]),
    );
    add(
        "nul-flag-dir-with-size",
        cat(&[entry(&H::new(b"old-dir/", 0, 3).v7(), b"abc"), end()]),
    );

    // PAX records.
    add(
        "pax-duplicate-keys",
        cat(&[
            pax(
                b'x',
                &records(&[("path", b"first"), ("uid", b"5"), ("path", b"second")]),
            ),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-two-x-headers",
        cat(&[
            pax(b'x', &records(&[("path", b"first")])),
            pax(b'x', &records(&[("uid", b"77")])),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-size-overrides-header",
        cat(&[
            pax(b'x', &records(&[("size", b"3")])),
            entry(&H::new(b"f", b'0', 10), b"abc"),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-size-larger-than-header",
        cat(&[
            pax(b'x', &records(&[("size", b"600")])),
            entry(&H::new(b"f", b'0', 1), &pattern(600, 4)),
            end(),
        ]),
    );
    add(
        "pax-size-negative",
        cat(&[
            pax(b'x', &records(&[("size", b"-1")])),
            hello.clone(),
            end(),
        ]),
    );
    for flag in [b'1', b'2', b'5'] {
        add(
            &format!("pax-size-on-header-only-{}", flag as char),
            cat(&[
                pax(b'x', &records(&[("size", b"1000")])),
                H::new(b"header-only", flag, 0).link(b"t").block(),
                hello.clone(),
                end(),
            ]),
        );
    }
    add(
        "pax-size-then-gnu-long-name",
        cat(&[
            pax(b'x', &records(&[("size", b"5")])),
            gnu_long(b'L', b"long"),
            entry(&H::new(b"f", b'0', 5), b"12345"),
            end(),
        ]),
    );
    add(
        "pax-size-not-a-number",
        cat(&[
            pax(b'x', &records(&[("size", b"12a")])),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-uid-plus-sign",
        cat(&[
            pax(b'x', &records(&[("uid", b"+12")])),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-empty-values-keep-fields",
        cat(&[
            pax(
                b'x',
                &records(&[("path", b""), ("uid", b""), ("mtime", b"")]),
            ),
            hello.clone(),
            end(),
        ]),
    );
    for (i, t) in [
        "1.123456789123",
        "-1.5",
        "-0.000000001",
        "12.",
        "1.2.3",
        ".5",
        "9223372036854775807.999999999",
        "-9223372036854775808.5",
        "+5.5",
        "1e3",
        "-62135596800",
    ]
    .iter()
    .enumerate()
    {
        add(
            &format!("pax-mtime-{i}"),
            cat(&[
                pax(
                    b'x',
                    &records(&[("mtime", t.as_bytes()), ("atime", t.as_bytes())]),
                ),
                hello.clone(),
                end(),
            ]),
        );
    }
    add(
        "pax-nul-in-path",
        cat(&[pax(b'x', &record(b"path", b"a\0b")), hello.clone(), end()]),
    );
    add(
        "pax-nul-in-comment",
        cat(&[
            pax(b'x', &record(b"comment", b"a\0b")),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-nul-in-key",
        cat(&[
            pax(b'x', &record(b"co\0mment", b"ab")),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-length-plus",
        cat(&[pax(b'x', b"+11 path=ab\n"), hello.clone(), end()]),
    );
    add(
        "pax-length-leading-zero",
        cat(&[pax(b'x', b"011 path=ab\n"), hello.clone(), end()]),
    );
    add(
        "pax-length-short",
        cat(&[pax(b'x', b"4 a=\n"), hello.clone(), end()]),
    );
    add(
        "pax-length-long",
        cat(&[pax(b'x', b"99 path=ab\n"), hello.clone(), end()]),
    );
    add(
        "pax-no-equals",
        cat(&[pax(b'x', b"9 pathab\n"), hello.clone(), end()]),
    );
    add(
        "pax-key-with-equals-in-value",
        cat(&[
            pax(b'x', &record(b"comment", b"a=b=c")),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-padding-nul",
        cat(&[
            pax(b'x', &[record(b"path", b"x"), vec![0; 5]].concat()),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "pax-binary-values",
        cat(&[
            pax(
                b'x',
                &records(&[
                    (
                        "SCHILY.xattr.security.capability",
                        b"\x01\x00\x00\x02\n\x00\x00\x00\x0a\x00",
                    ),
                    ("SCHILY.xattr.user.empty", b""),
                    ("LIBARCHIVE.xattr.user.b64", b"aGVsbG8"),
                    (
                        "SCHILY.acl.access",
                        b"user::rw-\nuser:1234:r--\ngroup::r--\nmask::r--\nother::r--\n",
                    ),
                    ("hdrcharset", b"BINARY"),
                    ("path", b"\xff\xfe-not-utf8"),
                ]),
            ),
            hello.clone(),
            end(),
        ]),
    );
    let big_value = vec![b'v'; (1 << 20) - 40];
    let exactly = [record(b"comment", &big_value)].concat();
    let pad = (1 << 20) - exactly.len();
    let exactly_1mib = [exactly, record(b"c", &vec![b'p'; pad - 6])].concat();
    assert_eq!(exactly_1mib.len(), 1 << 20);
    add(
        "pax-exactly-1mib",
        cat(&[pax(b'x', &exactly_1mib), hello.clone(), end()]),
    );
    let over = [exactly_1mib.clone(), record(b"a", b"")].concat();
    add(
        "pax-over-1mib",
        cat(&[pax(b'x', &over), hello.clone(), end()]),
    );
    add(
        "pax-truncated",
        cat(&[pax(b'x', &records(&[("path", b"x")]))[..BLOCK + 5].to_vec()]),
    );
    add("x-then-eof", pax(b'x', &records(&[("path", b"x")])));

    // Global headers.
    add(
        "global-header",
        cat(&[
            pax(
                b'g',
                &records(&[("comment", b"g"), ("mtime", b"5"), ("uid", b"9")]),
            ),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "global-after-x",
        cat(&[
            pax(b'x', &records(&[("path", b"dropped")])),
            pax(b'g', &records(&[("comment", b"g")])),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "global-bad-uid",
        cat(&[pax(b'g', &records(&[("uid", b"x")])), hello.clone(), end()]),
    );
    add(
        "global-bad-record",
        cat(&[pax(b'g', b"3 a\n"), hello.clone(), end()]),
    );
    add(
        "global-with-data-size-header-flag",
        cat(&[
            entry(&H::new(b"g", b'g', 0).octal(124, 12, 0), &[]),
            hello.clone(),
            end(),
        ]),
    );

    // GNU long names and links.
    add(
        "gnu-long-name",
        cat(&[
            gnu_long(b'L', &[b"n".repeat(300), vec![0]].concat()),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "gnu-long-link",
        cat(&[
            gnu_long(b'K', &b"t".repeat(200)),
            entry(&H::new(b"sym", b'2', 0).gnu(), &[]),
            end(),
        ]),
    );
    add(
        "gnu-long-name-nul-inside",
        cat(&[gnu_long(b'L', b"abc\0def"), hello.clone(), end()]),
    );
    add(
        "gnu-long-name-empty",
        cat(&[gnu_long(b'L', b""), hello.clone(), end()]),
    );
    add(
        "gnu-long-name-twice",
        cat(&[
            gnu_long(b'L', b"first"),
            gnu_long(b'L', b"second"),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "gnu-long-name-beats-pax",
        cat(&[
            pax(b'x', &records(&[("path", b"pax")])),
            gnu_long(b'L', b"gnu"),
            hello.clone(),
            end(),
        ]),
    );
    add("gnu-long-name-then-eof", gnu_long(b'L', b"dangling"));
    let name_1mib = vec![b'n'; 1 << 20];
    add(
        "gnu-long-name-exactly-1mib",
        cat(&[gnu_long(b'L', &name_1mib), hello.clone(), end()]),
    );
    let name_over = vec![b'n'; (1 << 20) + 1];
    add(
        "gnu-long-name-over-1mib",
        cat(&[gnu_long(b'L', &name_over), hello.clone(), end()]),
    );

    // Checksums and numbers.
    let high = H::new("é-signed".as_bytes(), b'0', 2).set(265, b"\xff\xfe\xfd");
    add(
        "signed-checksum",
        cat(&[high.signed_block(), padded(b"ok"), end()]),
    );
    add(
        "unsigned-checksum-high-bytes",
        cat(&[high.block(), padded(b"ok"), end()]),
    );
    let mut bad = H::new(b"bad-sum", b'0', 0).block();
    bad[150] ^= 1;
    add("bad-checksum", cat(&[hello.clone(), bad, end()]));
    let mut blank = H::new(b"blank-sum", b'0', 0).0;
    blank[148..156].fill(b' ');
    add("blank-checksum", cat(&[blank.to_vec(), end()]));
    let mut nul_sum = H::new(b"nul-sum", b'0', 0).block();
    let sum = String::from_utf8_lossy(&nul_sum[148..154]).into_owned();
    nul_sum[148..156].copy_from_slice(format!("  {sum}").as_bytes());
    add("checksum-leading-spaces", cat(&[nul_sum, end()]));
    add(
        "b256-negative-mtime",
        cat(&[
            entry(
                &H::new(b"f", b'0', 1).gnu().b256(136, 12, -1_000_000_000),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "b256-mtime-i64-min",
        cat(&[
            entry(
                &H::new(b"f", b'0', 1).gnu().b256(136, 12, i64::MIN.into()),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "b256-mtime-i64-max",
        cat(&[
            entry(
                &H::new(b"f", b'0', 1).gnu().b256(136, 12, i64::MAX.into()),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "b256-mtime-overflow",
        cat(&[
            entry(&H::new(b"f", b'0', 1).gnu().b256(136, 12, 1 << 64), b"x"),
            end(),
        ]),
    );
    add(
        "b256-mtime-negative-overflow",
        cat(&[
            entry(&H::new(b"f", b'0', 1).gnu().b256(136, 12, -(1 << 64)), b"x"),
            end(),
        ]),
    );
    add(
        "b256-size-overflow",
        cat(&[
            entry(&H::new(b"f", b'0', 1).gnu().b256(124, 12, 1 << 63), b"x"),
            end(),
        ]),
    );
    add(
        "b256-size-negative",
        cat(&[
            entry(&H::new(b"f", b'0', 1).gnu().b256(124, 12, -512), b"x"),
            end(),
        ]),
    );
    add(
        "b256-ids-and-devices",
        cat(&[
            entry(
                &H::new(b"dev", b'3', 0)
                    .gnu()
                    .b256(108, 8, -1)
                    .b256(116, 8, i64::MAX.into())
                    .b256(329, 8, 1 << 40)
                    .b256(337, 8, -(1 << 50))
                    .b256(100, 8, 0o100755),
                &[],
            ),
            end(),
        ]),
    );
    add(
        "b256-in-ustar",
        cat(&[
            entry(&H::new(b"f", b'0', 1).b256(108, 8, 70_000_000), b"x"),
            end(),
        ]),
    );
    add(
        "octal-padding",
        cat(&[
            entry(
                &H::new(b"f", b'0', 1)
                    .set(100, b"  755 \0\0")
                    .set(108, b"\0\0\x0012\0 ")
                    .set(116, b"12\x0034\0\0\0")
                    .set(136, b"17777777777 "),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "octal-bad-digit",
        cat(&[
            entry(&H::new(b"f", b'0', 1).set(108, b"0000089\0"), b"x"),
            end(),
        ]),
    );
    add(
        "octal-no-nul",
        cat(&[
            entry(&H::new(b"f", b'0', 1).set(124, b"000000000001"), b"x"),
            end(),
        ]),
    );
    add(
        "octal-size-huge",
        cat(&[
            H::new(b"f", b'0', 0).set(124, b"77777777777\0").block(),
            end(),
        ]),
    );
    add(
        "octal-all-spaces",
        cat(&[
            entry(
                &H::new(b"f", b'0', 0)
                    .set(100, b"        ")
                    .set(136, b"            "),
                b"",
            ),
            end(),
        ]),
    );
    add(
        "negative-dev-in-ustar-ignored",
        cat(&[
            entry(&H::new(b"f", b'0', 1).set(329, b"-1\0\0\0\0\0\0"), b"x"),
            end(),
        ]),
    );

    // Formats.
    add(
        "v7",
        cat(&[
            entry(
                &H::new(b"v7-file", b'0', 2).v7().set(265, b"not-a-uname"),
                b"v7",
            ),
            entry(&H::new(b"v7-dir/", 0, 0).v7(), &[]),
            end(),
        ]),
    );
    add(
        "ustar-prefix",
        cat(&[
            entry(&H::new(b"name", b'0', 1).set(345, b"the/prefix"), b"p"),
            end(),
        ]),
    );
    add(
        "star",
        cat(&[
            entry(
                &H::new(b"star-file", b'0', 4)
                    .set(345, b"star/prefix")
                    .octal(476, 12, 1_600_000_000)
                    .octal(488, 12, 1_500_000_000)
                    .star(),
                b"star",
            ),
            end(),
        ]),
    );
    add(
        "star-bad-atime",
        cat(&[
            entry(
                &H::new(b"star-file", b'0', 4).set(476, b"xyz").star(),
                b"star",
            ),
            end(),
        ]),
    );
    add(
        "star-sparse-flag",
        cat(&[
            entry(&H::new(b"star-sparse", b'S', 4).star(), b"star"),
            end(),
        ]),
    );
    add(
        "gnu-atime-ctime",
        cat(&[
            entry(
                &H::new(b"f", b'0', 1)
                    .gnu()
                    .octal(345, 12, 1_600_000_000)
                    .b256(357, 12, -5),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "gnu-pre-go-1.8-prefix",
        cat(&[
            entry(
                &H::new(b"name", b'0', 1)
                    .gnu()
                    .set(345, b"some/ascii/prefix"),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "gnu-pre-go-1.8-prefix-non-ascii",
        cat(&[
            entry(
                &H::new(b"name", b'0', 1)
                    .gnu()
                    .set(345, "préfixe".as_bytes()),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "gnu-atime-ok-ctime-bad",
        cat(&[
            entry(
                &H::new(b"name", b'0', 1)
                    .gnu()
                    .octal(345, 12, 5)
                    .set(357, b"zz"),
                b"x",
            ),
            end(),
        ]),
    );
    add(
        "gnu-magic-wrong-version",
        cat(&[
            entry(
                &H::new(b"name", b'0', 1)
                    .set(257, b"ustar \0x")
                    .set(345, b"not-a-prefix"),
                b"x",
            ),
            end(),
        ]),
    );

    // Old GNU sparse files.
    let d = pattern(40, 7);
    add(
        "old-sparse",
        cat(&[
            entry(
                &old_sparse("s", &[(0, 10), (100, 10), (5000, 20)], 40, 6000, false),
                &d,
            ),
            end(),
        ]),
    );
    add(
        "old-sparse-extended",
        cat(&[
            old_sparse("s", &[(0, 1), (10, 1), (20, 1), (30, 1)], 30, 100_000, true).block(),
            sparse_ext(&(0..21).map(|i| (40 + 10 * i, 1)).collect::<Vec<_>>(), true),
            sparse_ext(&[(1000, 2), (99_998, 2)], false),
            padded(&pattern(30, 8)),
            hello.clone(),
            end(),
        ]),
    );
    add(
        "old-sparse-extension-truncated",
        cat(&[old_sparse("s", &[(0, 1)], 1, 10, true).block()]),
    );
    add(
        "old-sparse-not-gnu",
        cat(&[entry(&H::new(b"s", b'S', 4), b"abcd"), end()]),
    );
    add(
        "old-sparse-out-of-order",
        cat(&[
            entry(
                &old_sparse("s", &[(100, 10), (0, 10)], 20, 200, false),
                &pattern(20, 1),
            ),
            end(),
        ]),
    );
    add(
        "old-sparse-past-end",
        cat(&[
            entry(
                &old_sparse("s", &[(0, 10), (195, 10)], 20, 200, false),
                &pattern(20, 1),
            ),
            end(),
        ]),
    );
    add(
        "old-sparse-more-data",
        cat(&[
            entry(
                &old_sparse("s", &[(0, 10)], 20, 200, false),
                &pattern(20, 1),
            ),
            end(),
        ]),
    );
    add(
        "old-sparse-less-data",
        cat(&[
            entry(
                &old_sparse("s", &[(0, 10), (50, 30)], 20, 200, false),
                &pattern(20, 1),
            ),
            end(),
        ]),
    );
    add(
        "old-sparse-no-regions",
        cat(&[
            entry(&old_sparse("s", &[], 0, 5000, false), &[]),
            hello.clone(),
            end(),
        ]),
    );
    // More than 1 MiB of extension blocks: Go reads them all.
    let mut long_map = vec![old_sparse("s", &[(0, 1)], 1, 1 << 30, true).block()];
    let blocks = 2100;
    for b in 0..blocks {
        let regions: Vec<_> = (0..21).map(|i| (1000 + (b * 21 + i) * 10, 0)).collect();
        long_map.push(sparse_ext(&regions, b + 1 < blocks));
    }
    long_map.push(padded(b"x"));
    long_map.push(end());
    add("old-sparse-map-over-1mib", cat(&long_map));

    // PAX sparse files, each version, with maps that fit and maps that do not.
    let data = pattern(30, 5);
    for (tag, zero_zero) in [("0.0", true), ("0.1", false)] {
        let s = |regions: &[(u64, u64)], data: &[u8], real: u64| {
            sparse_0_x("sparse-file", regions, data, real, zero_zero)
        };
        add(
            &format!("pax-sparse-{tag}"),
            s(&[(0, 10), (100, 10), (990, 10)], &data, 1000),
        );
        add(
            &format!("pax-sparse-{tag}-more-data"),
            s(&[(0, 10), (100, 10)], &data, 1000),
        );
        add(
            &format!("pax-sparse-{tag}-less-data"),
            s(&[(0, 10), (100, 30)], &data, 1000),
        );
        add(
            &format!("pax-sparse-{tag}-past-end"),
            s(&[(0, 10), (100, 10), (995, 10)], &data, 1000),
        );
        add(
            &format!("pax-sparse-{tag}-out-of-order"),
            s(&[(100, 10), (0, 10), (990, 10)], &data, 1000),
        );
        add(&format!("pax-sparse-{tag}-empty-map"), s(&[], &[], 1000));
        add(
            &format!("pax-sparse-{tag}-huge"),
            s(&[(0, 10), (100, 10), (1 << 62, 10)], &data, (1 << 62) + 10),
        );
    }
    add(
        "pax-sparse-0.1-count-mismatch",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.numblocks", b"3"),
                    ("GNU.sparse.map", b"0,1,5,1"),
                    ("GNU.sparse.size", b"10"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 2), b"ab"),
            end(),
        ]),
    );
    add(
        "pax-sparse-0.0-out-of-order-records",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.numbytes", b"1"),
                    ("GNU.sparse.offset", b"0"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 1), b"a"),
            end(),
        ]),
    );
    add(
        "pax-sparse-map-guess",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.map", b"2,3"),
                    ("GNU.sparse.size", b"10"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 3), b"abc"),
            end(),
        ]),
    );
    add(
        "pax-sparse-unknown-version",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.major", b"2"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.map", b"0,1"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 3), b"abc"),
            end(),
        ]),
    );
    add(
        "pax-sparse-on-directory",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.numblocks", b"0"),
                    ("GNU.sparse.map", b""),
                    ("GNU.sparse.major", b"0"),
                    ("GNU.sparse.minor", b"1"),
                ]),
            ),
            entry(&H::new(b"d/", b'5', 0), &[]),
            end(),
        ]),
    );
    add(
        "pax-sparse-on-symlink-with-map",
        cat(&[
            pax(
                b'x',
                &records(&[("GNU.sparse.map", b"0,0"), ("GNU.sparse.numblocks", b"1")]),
            ),
            entry(&H::new(b"l", b'2', 0).link(b"t"), &[]),
            end(),
        ]),
    );
    add(
        "pax-sparse-size-bad",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.map", b"0,1"),
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.size", b"ten"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 1), b"a"),
            end(),
        ]),
    );
    add(
        "pax-sparse-realsize-and-size",
        cat(&[
            pax(
                b'x',
                &records(&[
                    ("GNU.sparse.map", b"0,1"),
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.size", b"7"),
                    ("GNU.sparse.realsize", b"9"),
                ]),
            ),
            entry(&H::new(b"s", b'0', 1), b"a"),
            end(),
        ]),
    );
    let s10 = |name: &str, map: &str, data: &[u8], real: u64| sparse_1_0(name, map, data, real);
    add(
        "pax-sparse-1.0",
        s10("s", "3\n0\n10\n100\n10\n990\n10\n", &data, 1000),
    );
    add(
        "pax-sparse-1.0-more-data",
        s10("s", "2\n0\n10\n100\n10\n", &data, 1000),
    );
    add(
        "pax-sparse-1.0-less-data",
        s10("s", "2\n0\n10\n100\n30\n", &data, 1000),
    );
    add(
        "pax-sparse-1.0-past-end",
        s10("s", "2\n0\n10\n995\n20\n", &data, 1000),
    );
    add(
        "pax-sparse-1.0-out-of-order",
        s10("s", "2\n100\n10\n0\n20\n", &data, 1000),
    );
    add("pax-sparse-1.0-bad-count", s10("s", "-1\n", &data, 1000));
    add(
        "pax-sparse-1.0-count-too-big",
        s10("s", "5\n0\n10\n", &data, 1000),
    );
    add(
        "pax-sparse-1.0-bad-number",
        s10("s", "1\n0x\n10\n", &data, 1000),
    );
    add("pax-sparse-1.0-no-newline", s10("s", "1", &[], 1000));
    add(
        "pax-sparse-1.0-spaces",
        s10("s", "1\n 0\n30\n", &data, 1000),
    );
    add("pax-sparse-1.0-empty", s10("s", "0\n", &[], 1 << 40));
    let mut long_text = String::from("0\n");
    long_text.push_str(&"0".repeat((1 << 20) + 100));
    long_text.push('\n');
    add("pax-sparse-1.0-long-count", s10("s", &long_text, &[], 10));
    // A map over 1 MiB: Go reads it (it has no cap on this map).
    let regions = 150_000u64;
    let mut big_map = format!("{regions}\n");
    for i in 0..regions {
        big_map.push_str(&format!("{}\n0\n", i * 2));
    }
    add(
        "pax-sparse-1.0-map-over-1mib",
        s10("s", &big_map, &[], regions * 2),
    );
    let mut map_in_two = "2\n".to_string();
    map_in_two.push_str(&"0".repeat(600));
    map_in_two.push_str("\n10\n100\n20\n");
    add(
        "pax-sparse-1.0-map-over-two-blocks",
        s10("s", &map_in_two, &data, 1000),
    );

    // Truncations of a bit of everything, and padding cut short.
    let sink = kitchen_sink();
    add("kitchen-sink", sink.clone());
    let mut cuts: Vec<usize> = (0..sink.len()).step_by(97).collect();
    for b in (0..sink.len()).step_by(BLOCK) {
        cuts.extend([b.saturating_sub(1), b, b + 1, b + 100]);
    }
    cuts.sort();
    cuts.dedup();
    for cut in cuts.into_iter().filter(|&c| c < sink.len()) {
        add(&format!("kitchen-sink-cut-{cut}"), sink[..cut].to_vec());
    }
    let short = file("short", b"abc");
    add("cut-in-padding", short[..BLOCK + 100].to_vec());
    add("cut-after-data", short[..BLOCK + 3].to_vec());
    add("cut-in-data", short[..BLOCK + 2].to_vec());
    add("cut-in-header", short[..300].to_vec());
    c
}

// ---------------------------------------------------------------------
// Mutants

/// xorshift64*: a fixed-seed PRNG, so the mutants are the same each run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// Numeric fields of a header: (offset, length).
const NUMERIC: &[(usize, usize)] = &[
    (100, 8),  // mode
    (108, 8),  // uid
    (116, 8),  // gid
    (124, 12), // size
    (136, 12), // mtime
    (329, 8),  // devmajor
    (337, 8),  // devminor
    (345, 12), // GNU atime
    (357, 12), // GNU ctime
    (386, 12), // GNU sparse offset 0
    (398, 12), // GNU sparse length 0
    (410, 12), // GNU sparse offset 1
    (483, 12), // GNU real size
    (476, 12), // STAR atime
];

const FLAGS: &[u8] = b"0123456789SgxLKVDMNZA\0";

fn checksum_ok(b: &[u8]) -> bool {
    let stored = String::from_utf8_lossy(&b[148..156]);
    let Ok(stored) = i64::from_str_radix(stored.trim_matches([' ', '\0']), 8) else {
        return false;
    };
    let mut unsigned = 0i64;
    let mut signed = 0i64;
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    stored == unsigned || stored == signed
}

fn fix_checksum(b: &mut [u8], signed: bool) {
    b[148..156].fill(b' ');
    let sum: i64 = if signed {
        b.iter().map(|&c| i64::from(c as i8)).sum()
    } else {
        b.iter().map(|&c| i64::from(c)).sum()
    };
    b[148..156].copy_from_slice(format!("{:06o}\0 ", sum & 0o777777).as_bytes());
}

fn random_numeric(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(4) {
        // Octal text, maybe with odd padding or a bad digit.
        0 | 1 => {
            let digits = rng.below(len + 1);
            let mut f: Vec<u8> = (0..digits).map(|_| b'0' + rng.below(8) as u8).collect();
            if rng.chance(4) && !f.is_empty() {
                let i = rng.below(f.len());
                f[i] = *b" \09-+x".get(rng.below(6)).unwrap();
            }
            while f.len() < len {
                f.insert(0, if rng.chance(3) { b' ' } else { b'0' });
            }
            if rng.chance(2) {
                f[len - 1] = 0;
            }
            f
        }
        // Base-256, positive or negative, maybe overflowing.
        2 => {
            let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let zeros = rng.below(len);
            let fill = if rng.chance(2) { 0xff } else { 0 };
            f[..zeros].fill(fill);
            f[0] |= 0x80;
            f
        }
        // A small or extreme value.
        _ => {
            let values: &[&[u8]] = &[
                b"0",
                b"1",
                b"777",
                b"1000",
                b"7777777",
                b"77777777777",
                b"17777777777777777777777",
            ];
            let v = values[rng.below(values.len())];
            let mut f = vec![0u8; len];
            let n = v.len().min(len);
            f[..n].copy_from_slice(&v[..n]);
            f
        }
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut data = original.to_vec();
    let mut touched: Vec<usize> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let blocks = data.len() / BLOCK;
        let headers: Vec<usize> = (0..blocks)
            .filter(|&i| data[i * BLOCK..(i + 1) * BLOCK].iter().any(|&c| c != 0))
            .filter(|&i| checksum_ok(&data[i * BLOCK..(i + 1) * BLOCK]))
            .collect();
        let header = if headers.is_empty() || rng.chance(8) {
            rng.below(blocks)
        } else {
            headers[rng.below(headers.len())]
        };
        let at = header * BLOCK;
        match rng.below(10) {
            0 | 1 if blocks > 0 => {
                let i = at + rng.below(BLOCK);
                data[i] = rng.next() as u8;
                touched.push(header);
            }
            2..=4 if blocks > 0 => {
                let (off, len) = NUMERIC[rng.below(NUMERIC.len())];
                let field = random_numeric(rng, len);
                data[at + off..at + off + len].copy_from_slice(&field);
                touched.push(header);
            }
            5 if blocks > 0 => {
                data[at + 156] = FLAGS[rng.below(FLAGS.len())];
                touched.push(header);
            }
            6 => {
                let cut = if rng.chance(2) {
                    rng.below(data.len() + 1)
                } else {
                    rng.below(blocks + 1) * BLOCK
                };
                data.truncate(cut);
            }
            7 if blocks > 0 => {
                let b = rng.below(blocks) * BLOCK;
                let copy = data[b..b + BLOCK].to_vec();
                let to = rng.below(blocks + 1) * BLOCK;
                data.splice(to..to, copy);
            }
            8 if blocks > 0 => {
                let b = rng.below(blocks) * BLOCK;
                if rng.chance(2) {
                    data.drain(b..b + BLOCK);
                } else {
                    data.splice(b..b, vec![0u8; BLOCK]);
                }
            }
            _ if !data.is_empty() => {
                // Text-ish damage anywhere (PAX records, sparse maps).
                let i = rng.below(data.len());
                data[i] = b"0123456789 =\n.-,+x\0"[rng.below(19)];
            }
            _ => {}
        }
    }
    for h in touched {
        let range = h * BLOCK..(h + 1) * BLOCK;
        if range.end <= data.len() && !rng.chance(4) {
            let signed = rng.chance(8);
            fix_checksum(&mut data[range], signed);
        }
    }
    data
}

// ---------------------------------------------------------------------
// The test

/// Go's listing of each file, in one call of `tarlist FILE...`.
fn go_listings(tarlist: &Path, files: &[PathBuf]) -> Vec<String> {
    let out = Command::new(tarlist)
        .args(files)
        .output()
        .expect("run tarlist");
    assert!(
        out.status.success(),
        "tarlist: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("listings are ASCII");
    let mut listings: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(index) = line.strip_prefix("== ") {
            assert_eq!(index.parse::<usize>().unwrap(), listings.len());
            listings.push(String::new());
        } else {
            let current = listings.last_mut().expect("a listing starts with ==");
            current.push_str(line);
            current.push('\n');
        }
    }
    assert_eq!(listings.len(), files.len());
    listings
}

#[test]
fn our_tar_reader_agrees_with_go() {
    let started = Instant::now();
    let tarlist = common::golang::tarlist();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tar-differential");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let mut corpus = Corpus::new();
    corpus.extend(gnu_tar(&work));
    corpus.extend(python(&work));
    corpus.extend(go_writer(&tarlist, &work));
    corpus.extend(handmade());
    let names: BTreeMap<&str, usize> = corpus
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    assert_eq!(names.len(), corpus.len(), "corpus names are unique");
    for case in TAR_KNOWN_DIFFERENCES.iter().flat_map(|k| k.cases) {
        assert!(
            names.contains_key(case),
            "TAR_KNOWN_DIFFERENCES names {case}, which is not in the corpus"
        );
    }
    eprintln!(
        "corpus: {} archives, built in {:.1?}",
        corpus.len(),
        started.elapsed()
    );

    // The corpus, through Go in one batch.
    let dir = work.join("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = corpus
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(format!("{name}.tar"));
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let go = go_listings(&tarlist, &files);
    let mut failures = Vec::new();
    let mut known = BTreeMap::<&str, usize>::new();
    let mut outcomes = BTreeMap::<&str, usize>::new();
    for ((name, bytes), go) in corpus.iter().zip(&go) {
        let ours = tar_listing(bytes);
        *outcomes
            .entry(if go.ends_with("error\n") {
                "error"
            } else {
                "end"
            })
            .or_default() += 1;
        let listed = TAR_KNOWN_DIFFERENCES
            .iter()
            .any(|k| k.cases.contains(&name.as_str()));
        match tar_difference(&ours, go) {
            None if listed => failures.push(format!(
                "{name} now agrees with Go: remove it from TAR_KNOWN_DIFFERENCES"
            )),
            None => {}
            Some(diff) => match tar_known_difference(name, bytes, &ours, go) {
                Some(k) => *known.entry(k.what).or_default() += 1,
                None => failures.push(format!(
                    "{name} ({}): {diff}",
                    dir.join(format!("{name}.tar")).display()
                )),
            },
        }
    }
    eprintln!("corpus compared in {:.1?}: {outcomes:?}", started.elapsed());

    // Mutants of the corpus (of the archives small enough to be quick).
    let pool: Vec<&Vec<u8>> = corpus
        .iter()
        .filter(|(name, bytes)| {
            bytes.len() <= 256 * 1024
                && !TAR_KNOWN_DIFFERENCES
                    .iter()
                    .any(|k| k.cases.contains(&name.as_str()))
        })
        .map(|(_, bytes)| bytes)
        .collect();
    let mut server = GoTarList::start(&tarlist);
    let mut rng = Rng(0x0cc7_57a9_d1ff_0001);
    let mutants_dir = work.join("mutants");
    std::fs::create_dir_all(&mutants_dir).unwrap();
    let mut mutant_outcomes = BTreeMap::<&str, usize>::new();
    const MUTANTS: usize = 6000;
    for i in 0..MUTANTS {
        let original = pool[rng.below(pool.len())];
        let mutant = mutate(&mut rng, original);
        let (ours, go) = (tar_listing(&mutant), server.list(&mutant));
        *mutant_outcomes
            .entry(if go.ends_with("error\n") {
                "error"
            } else {
                "end"
            })
            .or_default() += 1;
        if let Some(diff) = tar_difference(&ours, &go) {
            if let Some(k) = tar_known_difference("", &mutant, &ours, &go) {
                *known.entry(k.what).or_default() += 1;
                continue;
            }
            let path = mutants_dir.join(format!("mutant-{i}.tar"));
            std::fs::write(&path, &mutant).unwrap();
            failures.push(format!("mutant {i} ({}): {diff}", path.display()));
        }
    }
    eprintln!(
        "{MUTANTS} mutants compared: {mutant_outcomes:?}; {:.1?} in all",
        started.elapsed()
    );
    for (what, count) in &known {
        eprintln!("KNOWN DIFFERENCE, {count} archive(s): {what}");
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s) with Go's archive/tar:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
