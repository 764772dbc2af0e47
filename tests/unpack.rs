//! Layer application: layers are built in memory, applied into a temporary
//! root, and the resulting tree is inspected. Runs as root (chown, mknod,
//! trusted and security xattrs).

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use occystrap::fsroot::RootDir;
use occystrap::unpack::{LayerStats, UnpackError, UnpackOptions, apply_layer};
use tar::{EntryType, Header};

const MTIME: u64 = 1_600_000_000;

// ---------- building layers ----------

/// One layer under construction; every entry's header is written by hand
/// so that any name (`..`, absolute, non-UTF-8) can be expressed.
struct Layer(tar::Builder<Vec<u8>>);

#[derive(Clone, Copy)]
struct Attr {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

const fn attr(mode: u32) -> Attr {
    Attr {
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME,
    }
}

fn set_bytes(field: &mut [u8], value: &[u8]) {
    assert!(value.len() <= field.len(), "name too long for a raw header");
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(
        &mut self,
        kind: EntryType,
        path: &[u8],
        link: &[u8],
        data: &[u8],
        a: Attr,
        dev: (u32, u32),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(a.mode);
        h.set_uid(a.uid);
        h.set_gid(a.gid);
        h.set_mtime(a.mtime);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        set_bytes(&mut h.as_old_mut().name, path);
        set_bytes(&mut h.as_old_mut().linkname, link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, path: impl AsRef<[u8]>, mode: u32) -> &mut Self {
        self.dir_a(path, attr(mode))
    }
    fn dir_a(&mut self, path: impl AsRef<[u8]>, a: Attr) -> &mut Self {
        self.raw(EntryType::Directory, path.as_ref(), b"", b"", a, (0, 0))
    }
    fn file(&mut self, path: impl AsRef<[u8]>, mode: u32, data: &[u8]) -> &mut Self {
        self.file_a(path, attr(mode), data)
    }
    fn file_a(&mut self, path: impl AsRef<[u8]>, a: Attr, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, path.as_ref(), b"", data, a, (0, 0))
    }
    fn symlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        self.symlink_a(path, target, attr(0o777))
    }
    fn symlink_a(
        &mut self,
        path: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
        a: Attr,
    ) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            path.as_ref(),
            target.as_ref(),
            b"",
            a,
            (0, 0),
        )
    }
    fn hardlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let (p, t) = (path.as_ref(), target.as_ref());
        self.raw(EntryType::Link, p, t, b"", attr(0o644), (0, 0))
    }
    fn node(&mut self, path: &str, kind: EntryType, mode: u32, dev: (u32, u32)) -> &mut Self {
        self.raw(kind, path.as_bytes(), b"", b"", attr(mode), dev)
    }
    fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        self.node(path, EntryType::Fifo, mode, (0, 0))
    }
    /// PAX records for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply_with(root: &Path, layers: &[Vec<u8>], opts: &UnpackOptions) -> Result<(), UnpackError> {
    let r = RootDir::open(root).unwrap();
    for layer in layers {
        apply_layer(&r, layer.as_slice(), opts)?;
    }
    Ok(())
}

fn apply(root: &Path, layers: &[Vec<u8>]) -> Result<(), UnpackError> {
    apply_with(root, layers, &UnpackOptions::default())
}

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    (tmp, root)
}

/// Apply `layers` to a fresh root, which must succeed.
fn build(layers: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf) {
    let (tmp, root) = fresh();
    apply(&root, layers).unwrap();
    (tmp, root)
}

// ---------- inspecting trees ----------

fn meta(root: &Path, p: &str) -> fs::Metadata {
    fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn kind(root: &Path, p: &str) -> &'static str {
    let Ok(m) = fs::symlink_metadata(root.join(p)) else {
        return "absent";
    };
    let t = m.file_type();
    match () {
        _ if t.is_dir() => "dir",
        _ if t.is_file() => "file",
        _ if t.is_symlink() => "symlink",
        _ if t.is_fifo() => "fifo",
        _ if t.is_char_device() => "char",
        _ if t.is_block_device() => "block",
        _ => "other",
    }
}

fn mode(root: &Path, p: &str) -> u32 {
    meta(root, p).mode() & 0o7777
}

fn owner(root: &Path, p: &str) -> (u32, u32) {
    let m = meta(root, p);
    (m.uid(), m.gid())
}

fn content(root: &Path, p: &str) -> Vec<u8> {
    fs::read(root.join(p)).unwrap()
}

fn target(root: &Path, p: &str) -> PathBuf {
    fs::read_link(root.join(p)).unwrap()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (cp, cn) = (cpath(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid C strings and buffer.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn xattr_names(p: &Path) -> Vec<u8> {
    let cp = cpath(p);
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C string and buffer.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf
}

/// Everything observable about each path under `base`, `skip` excluded.
fn snapshot(base: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![base.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let body = if m.is_file() {
            format!("{:?}", fs::read(&p).unwrap())
        } else if m.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&p).unwrap())
        } else {
            String::new()
        };
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        let desc = format!(
            "mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{} ino={} nlink={} rdev={} xattrs={:?} {body}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.nlink(),
            m.rdev(),
            xattr_names(&p)
        );
        out.insert(p, desc);
    }
    out
}

// ---------- entry types, modes, owners, times ----------

#[test]
fn files_directories_modes_and_owners() {
    let mut l = Layer::new();
    l.dir("bin", 0o755)
        .file_a(
            "bin/su",
            Attr {
                mode: 0o4755,
                uid: 0,
                gid: 0,
                mtime: MTIME,
            },
            b"su",
        )
        .file_a(
            "bin/wall",
            Attr {
                mode: 0o2755,
                uid: 0,
                gid: 5,
                mtime: MTIME,
            },
            b"wall",
        )
        .file_a(
            "bin/mine",
            Attr {
                mode: 0o6750,
                uid: 1000,
                gid: 1001,
                mtime: MTIME,
            },
            b"x",
        )
        .dir("tmp", 0o1777)
        .dir_a(
            "srv",
            Attr {
                mode: 0o2770,
                uid: 33,
                gid: 33,
                mtime: MTIME,
            },
        )
        .file("empty", 0o600, b"")
        .file("/abs/file", 0o644, b"abs")
        .file("./dot/./file", 0o640, b"dot");
    let (_t, root) = build(&[l.bytes()]);

    assert_eq!(kind(&root, "bin"), "dir");
    assert_eq!(mode(&root, "bin/su"), 0o4755);
    assert_eq!(content(&root, "bin/su"), b"su");
    assert_eq!(
        (mode(&root, "bin/wall"), owner(&root, "bin/wall")),
        (0o2755, (0, 5))
    );
    // Mode applied after chown, which would have cleared setuid/setgid.
    assert_eq!(
        (mode(&root, "bin/mine"), owner(&root, "bin/mine")),
        (0o6750, (1000, 1001))
    );
    assert_eq!(mode(&root, "tmp"), 0o1777);
    assert_eq!(
        (mode(&root, "srv"), owner(&root, "srv")),
        (0o2770, (33, 33))
    );
    assert_eq!(
        (kind(&root, "empty"), meta(&root, "empty").len()),
        ("file", 0)
    );
    assert_eq!(content(&root, "abs/file"), b"abs");
    assert_eq!(content(&root, "dot/file"), b"dot");
    // Implicit parents.
    assert_eq!((kind(&root, "abs"), mode(&root, "abs")), ("dir", 0o755));
}

#[test]
fn owners_are_numeric_and_optional() {
    let mut l = Layer::new();
    l.file_a(
        "f",
        Attr {
            mode: 0o644,
            uid: 4242,
            gid: 4343,
            mtime: MTIME,
        },
        b"x",
    )
    .symlink_a(
        "l",
        "f",
        Attr {
            mode: 0o777,
            uid: 777,
            gid: 778,
            mtime: MTIME,
        },
    )
    .dir_a(
        "d",
        Attr {
            mode: 0o755,
            uid: 12,
            gid: 13,
            mtime: MTIME,
        },
    );
    let layer = l.bytes();
    let (_t, root) = build(std::slice::from_ref(&layer));
    assert_eq!(owner(&root, "f"), (4242, 4343));
    // lchown: the symlink itself, not its target.
    assert_eq!(owner(&root, "l"), (777, 778));
    assert_eq!(owner(&root, "d"), (12, 13));

    let (_t2, root2) = fresh();
    let opts = UnpackOptions {
        preserve_owners: false,
        ..UnpackOptions::default()
    };
    apply_with(&root2, &[layer], &opts).unwrap();
    assert_eq!(owner(&root2, "f"), (0, 0));
    assert_eq!(owner(&root2, "l"), (0, 0));
}

#[test]
fn default_options() {
    let o = UnpackOptions::default();
    assert!(o.apply_whiteouts);
    assert_eq!(o.preserve_owners, nix::unistd::geteuid().is_root());
}

#[test]
fn mtimes_of_files_symlinks_and_directories() {
    let mut l = Layer::new();
    l.dir_a(
        "d",
        Attr {
            mtime: 1_000_000_000,
            ..attr(0o755)
        },
    )
    .dir_a(
        "d/sub",
        Attr {
            mtime: 1_100_000_000,
            ..attr(0o555)
        },
    )
    .file_a(
        "d/sub/f",
        Attr {
            mtime: 1_200_000_000,
            ..attr(0o644)
        },
        b"f",
    )
    .symlink_a(
        "d/l",
        "sub/f",
        Attr {
            mtime: 1_300_000_000,
            ..attr(0o777)
        },
    )
    .pax(&[("mtime", b"1400000000.25"), ("atime", b"1400000001.5")])
    .file("d/precise", 0o644, b"p")
    .fifo("d/fifo", 0o644);
    let (_t, root) = build(&[l.bytes()]);
    // Directory times survive the creation of their contents.
    assert_eq!(meta(&root, "d").mtime(), 1_000_000_000);
    assert_eq!(meta(&root, "d/sub").mtime(), 1_100_000_000);
    assert_eq!(meta(&root, "d/sub/f").mtime(), 1_200_000_000);
    assert_eq!(meta(&root, "d/l").mtime(), 1_300_000_000);
    let p = meta(&root, "d/precise");
    assert_eq!((p.mtime(), p.mtime_nsec()), (1_400_000_000, 250_000_000));
    assert_eq!((p.atime(), p.atime_nsec()), (1_400_000_001, 500_000_000));
    assert_eq!(meta(&root, "d/fifo").mtime(), MTIME as i64);
}

#[test]
fn symlinks_are_stored_verbatim() {
    let mut l = Layer::new();
    l.symlink("abs", "/usr/bin/env")
        .symlink("rel", "../x/y")
        .symlink("dangling", "nowhere")
        .symlink("up", "../../../../etc/passwd");
    let (_t, root) = build(&[l.bytes()]);
    assert_eq!(target(&root, "abs"), Path::new("/usr/bin/env"));
    assert_eq!(target(&root, "rel"), Path::new("../x/y"));
    assert_eq!(target(&root, "dangling"), Path::new("nowhere"));
    assert_eq!(target(&root, "up"), Path::new("../../../../etc/passwd"));
}

#[test]
fn hardlinks_within_and_across_layers() {
    let mut l1 = Layer::new();
    l1.file("lower", 0o644, b"lower").symlink("sym", "lower");
    let mut l2 = Layer::new();
    l2.hardlink("to-lower", "lower")
        .file("a", 0o600, b"a")
        .hardlink("dir/b", "a")
        .hardlink("/c", "/a")
        .hardlink("to-sym", "sym");
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    let ino = |p: &str| meta(&root, p).ino();
    assert_eq!(ino("to-lower"), ino("lower"));
    assert_eq!(ino("dir/b"), ino("a"));
    assert_eq!(ino("c"), ino("a"));
    assert_eq!(meta(&root, "a").nlink(), 3);
    // A link to a symlink links the symlink itself.
    assert_eq!(kind(&root, "to-sym"), "symlink");
    assert_eq!(ino("to-sym"), ino("sym"));
    assert_eq!(meta(&root, "lower").nlink(), 2);
}

#[test]
fn hardlink_errors_name_the_entry() {
    let mut l = Layer::new();
    l.hardlink("link", "missing");
    let (_t, root) = fresh();
    let err = apply(&root, &[l.bytes()]).unwrap_err();
    assert!(matches!(err, UnpackError::Malformed { .. }), "{err}");
    assert!(err.is_integrity());
    assert!(err.to_string().contains("link"), "{err}");

    let mut l = Layer::new();
    l.dir("d", 0o755).hardlink("link", "d");
    let err = apply(&root, &[l.bytes()]).unwrap_err();
    assert!(matches!(err, UnpackError::Malformed { .. }), "{err}");
}

#[test]
fn devices_and_fifos() {
    let mut l = Layer::new();
    l.node("dev/null", EntryType::Char, 0o666, (1, 3))
        .node("dev/sda", EntryType::Block, 0o660, (8, 0))
        .node("dev/big", EntryType::Char, 0o600, (300, 70000))
        .fifo("run/fifo", 0o620);
    let (_t, root) = build(&[l.bytes()]);
    let dev = |p: &str| {
        let r = meta(&root, p).rdev();
        (libc::major(r), libc::minor(r))
    };
    assert_eq!(
        (
            kind(&root, "dev/null"),
            mode(&root, "dev/null"),
            dev("dev/null")
        ),
        ("char", 0o666, (1, 3))
    );
    assert_eq!(
        (
            kind(&root, "dev/sda"),
            mode(&root, "dev/sda"),
            dev("dev/sda")
        ),
        ("block", 0o660, (8, 0))
    );
    assert_eq!(dev("dev/big"), (300, 70000));
    assert_eq!(
        (kind(&root, "run/fifo"), mode(&root, "run/fifo")),
        ("fifo", 0o620)
    );
}

/// `security.capability` v2: cap_net_bind_service, effective.
const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn xattrs_from_pax_records() {
    let mut l = Layer::new();
    l.pax(&[
        ("SCHILY.xattr.security.capability", &CAP),
        ("SCHILY.xattr.user.note", b"hi"),
    ])
    // Owned by a user: the chown before must not clear the capability.
    .file_a(
        "ping",
        Attr {
            mode: 0o755,
            uid: 1000,
            gid: 1000,
            mtime: MTIME,
        },
        b"elf",
    )
    .pax(&[("SCHILY.xattr.user.dir", b"d")])
    .dir("d", 0o755)
    .pax(&[("SCHILY.xattr.trusted.link", b"l")])
    .symlink("lnk", "ping")
    // user.* is not allowed on a FIFO: skipped, not fatal.
    .pax(&[
        ("SCHILY.xattr.user.fifo", b"u"),
        ("SCHILY.xattr.trusted.fifo", b"f"),
    ])
    .fifo("fifo", 0o644);
    let (_t, root) = build(&[l.bytes()]);
    assert_eq!(
        xattr(&root.join("ping"), "security.capability").as_deref(),
        Some(&CAP[..])
    );
    assert_eq!(
        xattr(&root.join("ping"), "user.note").as_deref(),
        Some(&b"hi"[..])
    );
    assert_eq!(owner(&root, "ping"), (1000, 1000));
    assert_eq!(
        xattr(&root.join("d"), "user.dir").as_deref(),
        Some(&b"d"[..])
    );
    assert_eq!(
        xattr(&root.join("lnk"), "trusted.link").as_deref(),
        Some(&b"l"[..])
    );
    assert_eq!(xattr(&root.join("ping"), "trusted.link"), None);
    assert_eq!(
        xattr(&root.join("fifo"), "trusted.fifo").as_deref(),
        Some(&b"f"[..])
    );
    assert_eq!(xattr(&root.join("fifo"), "user.fifo"), None);
}

#[test]
fn long_pax_and_non_utf8_names() {
    let long_dir = "a".repeat(120);
    let long = format!("{long_dir}/{}", "b".repeat(130));
    let mut l = Layer::new();
    // GNU long name, written by the Builder.
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(4);
    l.0.append_data(&mut h, &long, &b"long"[..]).unwrap();
    // PAX path and linkpath.
    let pax_path = format!("{long_dir}/{}", "c".repeat(140));
    let pax_target = format!("/{}", "t".repeat(200));
    l.pax(&[
        ("path", pax_path.as_bytes()),
        ("linkpath", pax_target.as_bytes()),
    ])
    .symlink("short", "short");
    l.file(b"caf\xe9", 0o644, b"latin1")
        .dir(b"d\xff\xfe", 0o755);
    let (_t, root) = build(&[l.bytes()]);
    assert_eq!(content(&root, &long), b"long");
    assert_eq!(target(&root, &pax_path), Path::new(&pax_target));
    assert_eq!(kind(&root, "short"), "absent");
    let latin = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    assert_eq!(fs::read(latin).unwrap(), b"latin1");
    assert!(
        root.join(std::ffi::OsStr::from_bytes(b"d\xff\xfe"))
            .is_dir()
    );
}

#[test]
fn stats_and_unread_trailing_data() {
    let mut l = Layer::new();
    l.dir("d", 0o755)
        .file("d/f", 0o644, b"12345")
        .file("d/.wh.gone", 0o644, b"");
    let mut bytes = l.bytes();
    let len = bytes.len();
    // Junk after the end-of-archive marker is left to the caller.
    bytes.extend_from_slice(&[0xAB; 4096]);
    let (_t, root) = fresh();
    let r = RootDir::open(&root).unwrap();
    let mut reader = std::io::Cursor::new(bytes);
    let stats = apply_layer(&r, &mut reader, &UnpackOptions::default()).unwrap();
    assert_eq!(
        stats,
        LayerStats {
            entries: 3,
            bytes: 5,
            whiteouts: 1,
            ..LayerStats::default()
        }
    );
    assert!(reader.position() as usize <= len);
    assert_eq!(content(&root, "d/f"), b"12345");
}

#[test]
fn malformed_tar_is_an_integrity_error() {
    let mut l = Layer::new();
    l.file("f", 0o644, b"data");
    let mut bytes = l.bytes();
    bytes[0] ^= 0x55; // breaks the header checksum
    let (_t, root) = fresh();
    let err = apply(&root, &[bytes]).unwrap_err();
    assert!(matches!(err, UnpackError::Tar(_)), "{err}");
    assert!(err.is_integrity());

    // Truncated content.
    let mut l = Layer::new();
    l.file("big", 0o644, &[7u8; 4000]);
    let bytes = l.bytes();
    let err = apply(&root, &[bytes[..2048].to_vec()]).unwrap_err();
    assert!(matches!(err, UnpackError::Read { .. }), "{err}");
    assert!(err.is_integrity(), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
}

#[test]
fn local_failures_are_io_errors() {
    let (_t, root) = fresh();
    let r = RootDir::open(&root).unwrap();
    fs::remove_dir(&root).unwrap();
    let mut l = Layer::new();
    l.file("f", 0o644, b"x");
    let err = apply_layer(&r, l.bytes().as_slice(), &UnpackOptions::default()).unwrap_err();
    assert!(matches!(err, UnpackError::Io { .. }), "{err}");
    assert!(!err.is_integrity());
    assert!(err.to_string().starts_with("f:"), "{err}");
}

#[test]
fn unsupported_entry_type_is_refused() {
    let mut l = Layer::new();
    l.raw(
        EntryType::new(b'V'),
        b"label",
        b"",
        b"",
        attr(0o644),
        (0, 0),
    );
    let (_t, root) = fresh();
    let err = apply(&root, &[l.bytes()]).unwrap_err();
    assert!(matches!(err, UnpackError::Malformed { .. }), "{err}");
}

// ---------- read-only directories ----------

#[test]
fn read_only_directories_receive_contents() {
    let mut l1 = Layer::new();
    l1.dir("ro", 0o555)
        .file("ro/a", 0o444, b"a")
        .dir("ro/deeper", 0o500)
        .file("ro/deeper/b", 0o400, b"b")
        .dir("none", 0o000)
        .file("none/c", 0o644, b"c");
    let mut l2 = Layer::new();
    l2.file("ro/new", 0o644, b"new")
        .file("ro/deeper/b", 0o644, b"b2");
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    assert_eq!(mode(&root, "ro"), 0o555);
    assert_eq!(mode(&root, "ro/deeper"), 0o500);
    assert_eq!(mode(&root, "none"), 0o000);
    assert_eq!(content(&root, "ro/new"), b"new");
    assert_eq!(content(&root, "ro/deeper/b"), b"b2");
    assert_eq!(content(&root, "none/c"), b"c");
}

// ---------- replacement ----------

#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
}

fn put(l: &mut Layer, k: Kind, tag: &str) {
    match k {
        Kind::File => l.file("x", 0o640, tag.as_bytes()),
        Kind::Dir => l
            .dir_a(
                "x",
                Attr {
                    uid: 7,
                    ..attr(0o750)
                },
            )
            .file(format!("x/{tag}"), 0o644, b"child"),
        Kind::Symlink => l.symlink("x", tag),
        Kind::Fifo => l.fifo("x", 0o600),
        Kind::Char => l.node("x", EntryType::Char, 0o600, (1, 5)),
    };
}

#[test]
fn every_type_replaces_every_type() {
    use Kind::*;
    let names = |k: Kind| match k {
        File => "file",
        Dir => "dir",
        Symlink => "symlink",
        Fifo => "fifo",
        Char => "char",
    };
    for lower in [File, Dir, Symlink, Fifo, Char] {
        for upper in [File, Dir, Symlink, Fifo, Char] {
            let (mut l1, mut l2) = (Layer::new(), Layer::new());
            put(&mut l1, lower, "low");
            put(&mut l2, upper, "up");
            let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
            let case = format!("{lower:?} -> {upper:?}");
            assert_eq!(kind(&root, "x"), names(upper), "{case}");
            match upper {
                File => assert_eq!(content(&root, "x"), b"up", "{case}"),
                Symlink => assert_eq!(target(&root, "x"), Path::new("up"), "{case}"),
                Dir => {
                    // Directory over directory merges; anything else is replaced.
                    let merged = matches!(lower, Dir);
                    assert_eq!(kind(&root, "x/low") == "file", merged, "{case}");
                    assert_eq!(content(&root, "x/up"), b"child", "{case}");
                }
                Fifo | Char => {}
            }
        }
    }
}

#[test]
fn directory_over_directory_updates_metadata_only() {
    let mut l1 = Layer::new();
    l1.dir_a(
        "d",
        Attr {
            mode: 0o700,
            uid: 1,
            gid: 1,
            mtime: 1,
        },
    )
    .file("d/keep", 0o644, b"k");
    let mut l2 = Layer::new();
    l2.pax(&[("SCHILY.xattr.user.new", b"v")]).dir_a(
        "d",
        Attr {
            mode: 0o2751,
            uid: 2,
            gid: 3,
            mtime: 2_000_000_000,
        },
    );
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    assert_eq!(content(&root, "d/keep"), b"k");
    assert_eq!((mode(&root, "d"), owner(&root, "d")), (0o2751, (2, 3)));
    assert_eq!(meta(&root, "d").mtime(), 2_000_000_000);
    assert_eq!(
        xattr(&root.join("d"), "user.new").as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn root_directory_entry_sets_root_metadata() {
    let mut l = Layer::new();
    l.dir_a(
        "./",
        Attr {
            mode: 0o751,
            uid: 0,
            gid: 0,
            mtime: 1_234_567_890,
        },
    )
    .file("f", 0o644, b"f");
    let (_t, root) = build(&[l.bytes()]);
    assert_eq!(mode(&root, ""), 0o751);
    assert_eq!(meta(&root, "").mtime(), 1_234_567_890);
}

#[test]
fn replaced_file_keeps_its_former_hardlink_peers() {
    let mut l1 = Layer::new();
    l1.file("a", 0o644, b"old").hardlink("b", "a");
    let mut l2 = Layer::new();
    l2.file("a", 0o644, b"new");
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    assert_eq!(content(&root, "a"), b"new");
    assert_eq!(content(&root, "b"), b"old");
    assert_ne!(meta(&root, "a").ino(), meta(&root, "b").ino());
}

#[test]
fn writes_through_an_in_root_absolute_symlink() {
    let mut l1 = Layer::new();
    l1.dir("run", 0o755)
        .dir("var", 0o755)
        .symlink("var/run", "/run");
    let mut l2 = Layer::new();
    l2.file("var/run/x", 0o644, b"x");
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    assert_eq!(content(&root, "run/x"), b"x");
    assert_eq!(kind(&root, "var/run"), "symlink");
}

// ---------- whiteouts ----------

fn lower_tree() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .file("usr/lib/libc.so", 0o644, b"c")
        .dir("usr/lib/sub", 0o755)
        .file("usr/lib/sub/deep", 0o644, b"d")
        .dir("usr/lib64", 0o755)
        .file("usr/lib64/ld.so", 0o644, b"ld")
        .file("usr/lib.conf", 0o644, b"conf")
        .file("etc/passwd", 0o644, b"root")
        .symlink("etc/link", "/usr/lib64/ld.so")
        .dir("opq", 0o711)
        .file("opq/old", 0o644, b"old")
        .dir("opq/olddir", 0o755)
        .file("opq/olddir/x", 0o644, b"x")
        .dir("opq/both", 0o755)
        .file("opq/both/lower", 0o644, b"lower");
    l.bytes()
}

#[test]
fn whiteouts_remove_exact_lower_paths() {
    let mut l2 = Layer::new();
    l2.file("usr/.wh.lib", 0o644, b"")
        .file("etc/.wh.link", 0o644, b"")
        .file("etc/.wh.absent", 0o644, b"")
        .file("nodir/.wh.x", 0o644, b"")
        .file("nodir/.wh..wh..opq", 0o644, b"")
        .file("etc/passwd/.wh.x", 0o644, b"")
        .file(".wh..wh.plnk", 0o644, b"");
    let (_t, root) = build(&[lower_tree(), l2.bytes()]);
    assert_eq!(kind(&root, "usr/lib"), "absent");
    // Exact names: no prefix matching.
    assert_eq!(content(&root, "usr/lib64/ld.so"), b"ld");
    assert_eq!(content(&root, "usr/lib.conf"), b"conf");
    // The symlink goes, its target stays.
    assert_eq!(kind(&root, "etc/link"), "absent");
    assert_eq!(kind(&root, "nodir"), "absent");
    // No whiteout file is ever left.
    assert_eq!(kind(&root, "usr/.wh.lib"), "absent");
    assert_eq!(kind(&root, ".wh..wh.plnk"), "absent");
    assert_eq!(kind(&root, "etc/.wh.absent"), "absent");
}

#[test]
fn opaque_directories_keep_this_layers_entries() {
    // The marker before and after the layer's own entries.
    for marker_first in [true, false] {
        let mut l2 = Layer::new();
        if marker_first {
            l2.file("opq/.wh..wh..opq", 0o644, b"");
        }
        l2.file("opq/new", 0o644, b"new")
            .file("opq/both/upper", 0o644, b"up");
        if !marker_first {
            l2.file("opq/.wh..wh..opq", 0o644, b"");
        }
        let (_t, root) = build(&[lower_tree(), l2.bytes()]);
        let case = format!("marker first: {marker_first}");
        assert_eq!(kind(&root, "opq"), "dir", "{case}");
        assert_eq!(mode(&root, "opq"), 0o711, "{case}");
        assert_eq!(kind(&root, "opq/old"), "absent", "{case}");
        assert_eq!(kind(&root, "opq/olddir"), "absent", "{case}");
        assert_eq!(content(&root, "opq/new"), b"new", "{case}");
        assert_eq!(content(&root, "opq/both/upper"), b"up", "{case}");
        assert_eq!(kind(&root, "opq/both/lower"), "absent", "{case}");
        assert_eq!(kind(&root, "opq/.wh..wh..opq"), "absent", "{case}");
        // Other directories are untouched.
        assert_eq!(content(&root, "usr/lib/libc.so"), b"c", "{case}");
    }
}

#[test]
fn whiteouts_spare_entries_of_the_same_layer() {
    let mut l2 = Layer::new();
    // Entry first, whiteout after: the entry survives.
    l2.file("etc/passwd", 0o600, b"new")
        .file("etc/.wh.passwd", 0o644, b"")
        // A whited-out directory keeps what this layer put in it.
        .file("usr/lib/added", 0o644, b"added")
        .file("usr/.wh.lib", 0o644, b"")
        // Whiteout first, entry after.
        .file("usr/.wh.lib64", 0o644, b"")
        .dir("usr/lib64", 0o700)
        .file("usr/lib64/fresh", 0o644, b"fresh");
    let (_t, root) = build(&[lower_tree(), l2.bytes()]);
    assert_eq!(content(&root, "etc/passwd"), b"new");
    assert_eq!(content(&root, "usr/lib/added"), b"added");
    assert_eq!(kind(&root, "usr/lib/libc.so"), "absent");
    assert_eq!(kind(&root, "usr/lib/sub"), "absent");
    assert_eq!(kind(&root, "usr/lib64/ld.so"), "absent");
    assert_eq!(content(&root, "usr/lib64/fresh"), b"fresh");
    assert_eq!(mode(&root, "usr/lib64"), 0o700);
    assert_eq!(content(&root, "usr/lib.conf"), b"conf");
}

#[test]
fn whiteouts_can_be_kept_as_files() {
    let mut l2 = Layer::new();
    l2.file("usr/.wh.lib", 0o644, b"")
        .file("opq/.wh..wh..opq", 0o644, b"");
    let (_t, root) = fresh();
    let opts = UnpackOptions {
        apply_whiteouts: false,
        ..UnpackOptions::default()
    };
    apply_with(&root, &[lower_tree(), l2.bytes()], &opts).unwrap();
    assert_eq!(kind(&root, "usr/.wh.lib"), "file");
    assert_eq!(kind(&root, "opq/.wh..wh..opq"), "file");
    assert_eq!(content(&root, "usr/lib/libc.so"), b"c");
    assert_eq!(content(&root, "opq/old"), b"old");
}

#[test]
fn whiteouts_in_read_only_directories() {
    let mut l1 = Layer::new();
    l1.dir("ro", 0o555)
        .file("ro/f", 0o644, b"f")
        .dir("ro/d", 0o555)
        .file("ro/d/g", 0o444, b"g");
    let mut l2 = Layer::new();
    l2.file("ro/.wh.f", 0o644, b"").file("ro/.wh.d", 0o644, b"");
    let (_t, root) = build(&[l1.bytes(), l2.bytes()]);
    assert_eq!(kind(&root, "ro/f"), "absent");
    assert_eq!(kind(&root, "ro/d"), "absent");
    assert_eq!(mode(&root, "ro"), 0o555);
}

// ---------- hostile layers ----------

struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("sentinel"), "secret").unwrap();
        fs::write(outside.join("dir/inner"), "inner").unwrap();
        Sandbox {
            _tmp: tmp,
            base,
            root,
            outside,
        }
    }

    /// `outside` as bytes, for layer entries.
    fn out(&self, rest: &str) -> Vec<u8> {
        let mut p = self.outside.as_os_str().as_bytes().to_vec();
        p.extend_from_slice(rest.as_bytes());
        p
    }
}

/// Apply the layers `build` makes to a sandbox's root and check that
/// nothing outside the root changed; returns the sandbox and the result.
fn hostile(build: impl FnOnce(&Sandbox) -> Vec<Vec<u8>>) -> (Sandbox, Result<(), UnpackError>) {
    let sb = Sandbox::new();
    let layers = build(&sb);
    let before = snapshot(&sb.base, &sb.root);
    let result = apply(&sb.root, &layers);
    let after = snapshot(&sb.base, &sb.root);
    assert_eq!(
        before, after,
        "something outside the root changed: {result:?}"
    );
    (sb, result)
}

fn assert_hostile(result: Result<(), UnpackError>) {
    match result {
        Err(e @ UnpackError::Hostile { .. }) => assert!(e.is_integrity()),
        other => panic!("expected a Hostile error, got {other:?}"),
    }
}

#[test]
fn dotdot_entry_paths_are_refused() {
    for path in [
        "../outside/pwned",
        "a/../../outside/pwned",
        "/../outside/pwned",
        "./../outside/sentinel",
    ] {
        let (sb, r) = hostile(|_| {
            let mut l = Layer::new();
            l.file(path, 0o644, b"pwned");
            vec![l.bytes()]
        });
        assert!(r.as_ref().unwrap_err().to_string().contains(path), "{r:?}");
        assert_hostile(r);
        assert_eq!(fs::read(sb.outside.join("sentinel")).unwrap(), b"secret");
    }
}

#[test]
fn dotdot_in_other_entry_kinds_is_refused() {
    let cases: [fn(&mut Layer); 4] = [
        |l| {
            l.dir("../outside/newdir", 0o777);
        },
        |l| {
            l.symlink("../outside/link", "/");
        },
        |l| {
            l.file("../.wh.outside", 0o644, b"");
        },
        |l| {
            l.file("x", 0o644, b"x")
                .hardlink("y", "../outside/sentinel");
        },
    ];
    for case in cases {
        let (_sb, r) = hostile(|_| {
            let mut l = Layer::new();
            case(&mut l);
            vec![l.bytes()]
        });
        assert_hostile(r);
    }
}

#[test]
fn non_directory_at_the_root_is_refused() {
    let (_sb, r) = hostile(|_| {
        let mut l = Layer::new();
        l.symlink("./", "/");
        vec![l.bytes()]
    });
    assert_hostile(r);
}

#[test]
fn absolute_entry_paths_stay_in_the_root() {
    let (sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.file(sb.out("/pwned"), 0o644, b"pwned")
            .dir(sb.out("/dir"), 0o777);
        vec![l.bytes()]
    });
    r.unwrap();
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("pwned")).unwrap(), b"pwned");
}

#[test]
fn absolute_symlink_parent_from_a_lower_layer_is_confined() {
    // The in-root target is missing: it is made inside the root, as Docker
    // and containerd make it; nothing escapes.
    let (sb, r) = hostile(|sb| {
        let mut l1 = Layer::new();
        l1.symlink("esc", sb.out(""));
        let mut l2 = Layer::new();
        l2.file("esc/pwned", 0o644, b"pwned");
        vec![l1.bytes(), l2.bytes()]
    });
    r.unwrap();
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("pwned")).unwrap(), b"pwned");

    // The in-root target exists: the write lands there.
    let (sb, r) = hostile(|sb| {
        let mut l1 = Layer::new();
        l1.dir(sb.out(""), 0o755).symlink("esc", sb.out(""));
        let mut l2 = Layer::new();
        l2.file("esc/sentinel", 0o644, b"pwned")
            .dir("esc/dir", 0o700);
        vec![l1.bytes(), l2.bytes()]
    });
    r.unwrap();
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("sentinel")).unwrap(), b"pwned");
}

#[test]
fn relative_and_chained_symlink_parents_are_confined() {
    let (sb, r) = hostile(|_| {
        let mut l = Layer::new();
        l.dir("outside", 0o755)
            .symlink("rel", "../../../../outside")
            .file("rel/a", 0o644, b"a")
            // a -> b -> /c -> ../../.. (the root) ; then a/outside/b
            .symlink("a", "b")
            .symlink("b", "/c")
            .symlink("c", "../../../..")
            .file("a/outside/b", 0o644, b"b")
            .dir("deep/er", 0o755)
            .symlink("deep/er/up", "../../../../../../..")
            .file("deep/er/up/outside/c", 0o644, b"c");
        vec![l.bytes()]
    });
    r.unwrap();
    assert_eq!(content(&sb.root, "outside/a"), b"a");
    assert_eq!(content(&sb.root, "outside/b"), b"b");
    assert_eq!(content(&sb.root, "outside/c"), b"c");
}

#[test]
fn symlink_in_final_position_is_replaced_not_followed() {
    let (sb, r) = hostile(|sb| {
        let mut l1 = Layer::new();
        l1.symlink("file", sb.out("/sentinel"))
            .symlink("dir", sb.out("/dir"))
            .symlink("fifo", sb.out("/sentinel"))
            .symlink("dev", sb.out("/sentinel"))
            .symlink("hl", sb.out("/sentinel"))
            .symlink("sym", sb.out("/sentinel"))
            .file("plain", 0o644, b"p");
        let mut l2 = Layer::new();
        l2.file_a(
            "file",
            Attr {
                mode: 0o4777,
                uid: 99,
                gid: 99,
                mtime: 5,
            },
            b"pwned",
        )
        .pax(&[("SCHILY.xattr.user.pwned", b"1")])
        .dir_a(
            "dir",
            Attr {
                mode: 0o777,
                uid: 99,
                gid: 99,
                mtime: 5,
            },
        )
        .fifo("fifo", 0o777)
        .node("dev", EntryType::Char, 0o777, (1, 3))
        .hardlink("hl", "plain")
        .symlink("sym", "/elsewhere");
        vec![l1.bytes(), l2.bytes()]
    });
    r.unwrap();
    assert_eq!(content(&sb.root, "file"), b"pwned");
    assert_eq!(kind(&sb.root, "dir"), "dir");
    assert_eq!(kind(&sb.root, "fifo"), "fifo");
    assert_eq!(kind(&sb.root, "dev"), "char");
    assert_eq!(content(&sb.root, "hl"), b"p");
    assert_eq!(target(&sb.root, "sym"), Path::new("/elsewhere"));
}

#[test]
fn symlink_planted_earlier_in_the_same_layer() {
    let (sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.symlink("esc", sb.out(""))
            .file("esc/sentinel", 0o644, b"pwned")
            .symlink("f", sb.out("/sentinel"))
            .file("f", 0o644, b"pwned");
        vec![l.bytes()]
    });
    r.unwrap();
    // Written at the symlink's target inside the root; `f` replaced.
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("sentinel")).unwrap(), b"pwned");
    assert_eq!(kind(&sb.root, "f"), "file");
}

#[test]
fn directory_swapped_for_a_symlink_keeps_its_deferred_mode_inside() {
    let (sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.dir("d", 0o777).symlink("d", sb.out("/dir"));
        vec![l.bytes()]
    });
    r.unwrap();
    assert_eq!(kind(&sb.root, "d"), "symlink");
}

#[test]
fn hardlinks_cannot_reach_outside() {
    // Absolute target: looked up in the root, where it does not exist.
    let (_sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.hardlink("h", sb.out("/sentinel"));
        vec![l.bytes()]
    });
    assert!(matches!(r, Err(UnpackError::Malformed { .. })), "{r:?}");

    // Through a symlinked parent.
    let (_sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.symlink("esc", sb.out("")).hardlink("h", "esc/sentinel");
        vec![l.bytes()]
    });
    assert!(matches!(r, Err(UnpackError::Malformed { .. })), "{r:?}");

    // To a symlink pointing outside: the symlink itself is linked.
    let (sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.symlink("s", sb.out("/sentinel")).hardlink("h", "s");
        vec![l.bytes()]
    });
    r.unwrap();
    assert_eq!(kind(&sb.root, "h"), "symlink");

    // An absolute target that exists in the root resolves there.
    let (sb, r) = hostile(|sb| {
        let mut l = Layer::new();
        l.file(sb.out("/sentinel"), 0o644, b"in-root")
            .hardlink("h", sb.out("/sentinel"));
        vec![l.bytes()]
    });
    r.unwrap();
    assert_eq!(content(&sb.root, "h"), b"in-root");
}

#[test]
fn whiteouts_cannot_reach_outside() {
    let (sb, r) = hostile(|sb| {
        let mut l1 = Layer::new();
        l1.symlink("esc", sb.out(""))
            .symlink("rel", "../../outside")
            .symlink("sen", sb.out("/sentinel"));
        let mut l2 = Layer::new();
        l2.file("esc/.wh.sentinel", 0o644, b"")
            .file("esc/.wh.dir", 0o644, b"")
            .file("esc/.wh..wh..opq", 0o644, b"")
            .file("rel/.wh.sentinel", 0o644, b"")
            .file("rel/.wh..wh..opq", 0o644, b"")
            .file(".wh.sen", 0o644, b"");
        let mut l3 = Layer::new();
        l3.file(".wh.esc", 0o644, b"");
        vec![l1.bytes(), l2.bytes(), l3.bytes()]
    });
    r.unwrap();
    assert_eq!(kind(&sb.root, "esc"), "absent");
    assert_eq!(kind(&sb.root, "sen"), "absent");
    assert_eq!(kind(&sb.root, "rel"), "symlink");
}

#[test]
fn opaque_marker_through_in_root_symlink_to_root_is_harmless_outside() {
    // `up` resolves to the root itself; clearing it stays inside.
    let (sb, r) = hostile(|_| {
        let mut l1 = Layer::new();
        l1.file("keep", 0o644, b"k").symlink("up", "../..");
        let mut l2 = Layer::new();
        l2.file("up/.wh.keep", 0o644, b"");
        vec![l1.bytes(), l2.bytes()]
    });
    r.unwrap();
    assert_eq!(kind(&sb.root, "keep"), "absent");
}

// ---------- not root ----------

const NOBODY: u32 = 65534;
const NON_ROOT_DIR: &str = "OCCYSTRAP_UNPACK_NON_ROOT_DIR";

/// Runs `non_root_inner` as `nobody` in a copy of this test binary.
#[test]
fn behaves_sensibly_when_not_root() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("tests-unpack");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for p in [tmp.path(), work.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let out = std::process::Command::new(&exe)
        .args(["--exact", "non_root_inner", "--ignored", "--test-threads=1"])
        .env(NON_ROOT_DIR, &work)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run as nobody by behaves_sensibly_when_not_root"]
fn non_root_inner() {
    let Some(base) = std::env::var_os(NON_ROOT_DIR) else {
        return;
    };
    assert!(!nix::unistd::geteuid().is_root());
    assert!(!UnpackOptions::default().preserve_owners);
    let root = Path::new(&base).join("root");
    fs::create_dir(&root).unwrap();
    let mut l1 = Layer::new();
    l1.dir("ro", 0o555)
        .file("ro/f", 0o444, b"f")
        .dir("ro/sub", 0o500)
        .file("ro/sub/g", 0o400, b"g")
        .file_a(
            "mine",
            Attr {
                mode: 0o4755,
                uid: 0,
                gid: 0,
                mtime: MTIME,
            },
            b"m",
        )
        .node("dev/null", EntryType::Char, 0o666, (1, 3))
        .fifo("fifo", 0o600)
        // The owner may set and remove ACLs: none is inherited here either.
        .pax(&[("SCHILY.xattr.system.posix_acl_default", &acl_for_1000())])
        .dir("acl", 0o755)
        .file("acl/f", 0o640, b"f")
        .pax(&[("SCHILY.xattr.trusted.root-only", b"x")])
        .dir("acl/sub", 0o755);
    let mut l2 = Layer::new();
    l2.file("ro/new", 0o644, b"new")
        .file("ro/.wh.f", 0o644, b"")
        .file("ro/sub/g", 0o644, b"g2")
        .file("ro/.wh.gone", 0o644, b"");
    apply(&root, &[l1.bytes(), l2.bytes()]).unwrap();
    assert_eq!(mode(&root, "ro"), 0o555);
    assert_eq!(mode(&root, "ro/sub"), 0o500);
    assert_eq!(content(&root, "ro/new"), b"new");
    assert_eq!(content(&root, "ro/sub/g"), b"g2");
    assert_eq!(kind(&root, "ro/f"), "absent");
    assert_eq!(
        (mode(&root, "mine"), owner(&root, "mine")),
        (0o4755, (NOBODY, NOBODY))
    );
    // Device nodes need privilege: skipped. FIFOs do not.
    assert_eq!(kind(&root, "dev/null"), "absent");
    assert_eq!(kind(&root, "fifo"), "fifo");
    assert_eq!(names(&root.join("acl/f")), Vec::<String>::new());
    assert_eq!(mode(&root, "acl/f"), 0o640);
    // trusted.* is root's: skipped, and the inherited ACL still removed.
    assert_eq!(names(&root.join("acl/sub")), Vec::<String>::new());
    // Leave the tree removable by the owner of the temporary directory.
    fs::set_permissions(
        root.join("ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::set_permissions(
        root.join("ro/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

// ---------- parents through symlinks whose target is missing ----------

#[test]
fn missing_symlink_targets_are_made_inside_the_root() {
    // moby's regression test for its issue 53258, with and without the
    // target, and the same through a relative symlink.
    for with_target in [true, false] {
        let (_t, root) = fresh();
        let mut l1 = Layer::new();
        l1.dir("var", 0o755).symlink("var/run", "/run");
        if with_target {
            l1.dir("run", 0o700).dir("run/existing", 0o700);
        }
        l1.symlink("lib", "usr/lib");
        let mut l2 = Layer::new();
        l2.file("var/run/existing/non-existing/file", 0o644, b"content")
            .file("var/run/x", 0o600, b"x")
            .file("lib/libc.so", 0o644, b"libc");
        apply(&root, &[l1.bytes(), l2.bytes()]).unwrap();
        assert_eq!(content(&root, "run/existing/non-existing/file"), b"content");
        assert_eq!(content(&root, "run/x"), b"x");
        assert_eq!(content(&root, "usr/lib/libc.so"), b"libc");
        assert_eq!(kind(&root, "var/run"), "symlink");
        assert_eq!(kind(&root, "lib"), "symlink");
        // Made as Docker makes implied directories.
        assert_eq!(mode(&root, "run/existing/non-existing"), 0o755);
        assert_eq!(mode(&root, "usr"), 0o755);
        if !with_target {
            assert_eq!(mode(&root, "run"), 0o755);
        }
    }
}

#[test]
fn dotdot_after_a_missing_name_in_a_link_target() {
    let (_t, root) = fresh();
    let mut l = Layer::new();
    l.symlink("abs", "/missing/../b")
        .symlink("rel", "gone/deeper/../../c")
        .symlink("top", "/../../d")
        .file("abs/x", 0o644, b"x")
        .file("rel/y", 0o644, b"y")
        .file("top/z", 0o644, b"z");
    apply(&root, &[l.bytes()]).unwrap();
    assert_eq!(content(&root, "b/x"), b"x");
    assert_eq!(content(&root, "c/y"), b"y");
    assert_eq!(content(&root, "d/z"), b"z");
    // Names the path only passed through are not made.
    assert_eq!(kind(&root, "missing"), "absent");
    assert_eq!(kind(&root, "gone"), "absent");
}

/// The layer's fault, with a message naming the real cause.
fn assert_malformed(r: Result<(), UnpackError>, wanted: &str) {
    match r {
        Err(e @ UnpackError::Malformed { .. }) => {
            assert!(e.is_integrity());
            let shown = e.to_string();
            assert!(shown.contains(wanted), "{shown:?} does not say {wanted:?}");
            let top = e.into_error("sha256:0");
            assert_eq!(top.kind(), occystrap::error::ErrorKind::Integrity);
        }
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

#[test]
fn unresolvable_parents_name_the_cause() {
    let apply1 = |l: Layer| {
        let (_t, root) = fresh();
        apply(&root, &[l.bytes()])
    };
    // A symlink loop.
    let mut l = Layer::new();
    l.symlink("a", "b")
        .symlink("b", "/a")
        .file("a/x", 0o644, b"x");
    assert_malformed(apply1(l), "symlink loop");
    let mut l = Layer::new();
    l.symlink("self", "self/more").file("self/x", 0o644, b"x");
    assert_malformed(apply1(l), "symlink loop");
    // A file on the way, directly and through a symlink.
    let mut l = Layer::new();
    l.file("etc/passwd", 0o644, b"root")
        .file("etc/passwd/x", 0o644, b"x");
    assert_malformed(apply1(l), "/etc/passwd: is a regular file, not a directory");
    let mut l = Layer::new();
    l.file("etc/passwd", 0o644, b"root")
        .symlink("p", "/etc/passwd")
        .fifo("p/x", 0o644);
    assert_malformed(apply1(l), "reached through symlink /p -> /etc/passwd");
    // A hardlink through a dangling symlink.
    let mut l = Layer::new();
    l.symlink("lib", "/nowhere").hardlink("h", "lib/libc.so");
    assert_malformed(apply1(l), "dangling symlink /lib -> /nowhere");
}

#[test]
fn over_long_names_are_malformed() {
    let long_name = "n".repeat(300);
    let mut l = Layer::new();
    l.pax(&[("path", format!("d/{long_name}").as_bytes())])
        .file("x", 0o644, b"x");
    let (_t, root) = fresh();
    assert_malformed(apply(&root, &[l.bytes()]), "too long");

    // A name too long for a component on the way.
    let mut l = Layer::new();
    l.pax(&[("path", format!("{long_name}/f").as_bytes())])
        .file("x", 0o644, b"x");
    let (_t, root) = fresh();
    assert_malformed(apply(&root, &[l.bytes()]), "too long");

    // A path longer than PATH_MAX.
    let deep = "dir/".repeat(1100);
    let mut l = Layer::new();
    l.pax(&[("path", format!("{deep}f").as_bytes())])
        .file("x", 0o644, b"x");
    let (_t, root) = fresh();
    assert_malformed(apply(&root, &[l.bytes()]), "too long");
}

#[test]
fn names_in_messages_are_escaped() {
    let evil = b"evil\x1b]0;owned\x07\x1b[2J\xff";
    let mut name = evil.to_vec();
    name.extend_from_slice(b"/x");
    let mut l = Layer::new();
    l.file(evil, 0o644, b"f").file(&name, 0o644, b"x");
    let (_t, root) = fresh();
    let e = apply(&root, &[l.bytes()]).unwrap_err();
    let shown = occystrap::Error::Unpack {
        digest: "sha256:0".into(),
        source: e,
    }
    .to_string();
    assert!(
        !shown.bytes().any(|b| b.is_ascii_control()),
        "raw control bytes in {shown:?}"
    );
    assert!(
        shown.contains(r"evil\x1b]0;owned\x07\x1b[2J\xff/x"),
        "{shown}"
    );

    // DEL, a C1 control (CSI) and a newline, through a PAX path (the
    // reader refuses NUL bytes in names, as Go's archive/tar does).
    let mut l = Layer::new();
    l.pax(&[("path", "../a\x7f\u{9b}31m\nb".as_bytes())])
        .file("x", 0o644, b"x");
    let (_t, root) = fresh();
    let e = apply(&root, &[l.bytes()]).unwrap_err();
    assert!(matches!(e, UnpackError::Hostile { .. }), "{e:?}");
    assert!(e.to_string().starts_with(r"../a\x7f\u{9b}31m\nb: "), "{e}");

    // Hardlink targets too.
    let mut l = Layer::new();
    l.hardlink("h", b"no\x1b[0mpe");
    let (_t, root) = fresh();
    let e = apply(&root, &[l.bytes()]).unwrap_err().to_string();
    assert!(e.contains(r#""no\x1b[0mpe""#), "{e}");
}

// ---------- removal of very deep trees ----------

/// Run the test `name` again in a child process of this test binary with
/// RLIMIT_NOFILE at `limit`, where `body` runs: holding a descriptor per
/// level then fails with EMFILE, without starving the tests beside it.
fn with_fd_limit(name: &str, limit: u64, body: impl FnOnce()) {
    const CHILD: &str = "OCCYSTRAP_TEST_FD_LIMIT";
    if std::env::var_os(CHILD).is_some() {
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: a valid rlimit for the duration of the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        body();
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{name} failed under an fd limit of {limit}"
    );
}

/// `depth` nested directories `d` under `top`, holding one fd at a time.
fn deep_tree(top: &Path, depth: usize) {
    std::fs::create_dir_all(top).unwrap();
    let mut dir = RootDir::open(top).unwrap().root();
    for _ in 0..depth {
        dir.mkdir(std::ffi::OsStr::new("d"), 0o755).unwrap();
        dir = dir.open_subdir(std::ffi::OsStr::new("d")).unwrap();
    }
    dir.create_file(std::ffi::OsStr::new("leaf"), 0o644)
        .unwrap();
}

#[test]
fn removal_needs_few_descriptors_whatever_the_depth() {
    with_fd_limit(
        "removal_needs_few_descriptors_whatever_the_depth",
        64,
        || {
            let tmp = tempfile::tempdir().unwrap();
            let host = tmp.path().join("host");
            std::fs::create_dir(&host).unwrap();
            std::fs::write(host.join("keep"), "host").unwrap();
            let root = tmp.path().join("root");
            deep_tree(&root.join("top"), 5000);
            let r = RootDir::open(&root).unwrap();
            let d = r.root();
            // Symlinks to the host are removed, never followed, and
            // read-only levels (0500) are still emptied.
            let mut dir = d.open_subdir(std::ffi::OsStr::new("top")).unwrap();
            for i in 0..4000 {
                dir = dir.open_subdir(std::ffi::OsStr::new("d")).unwrap();
                if i % 1000 == 10 {
                    dir.symlink(std::ffi::OsStr::new("out"), host.as_os_str())
                        .unwrap();
                    dir.create_file(std::ffi::OsStr::new("f"), 0o600).unwrap();
                    nix::sys::stat::fchmod(&dir, nix::sys::stat::Mode::from_bits_truncate(0o500))
                        .unwrap();
                }
            }
            drop(dir);
            assert!(r.remove(&d, std::ffi::OsStr::new("top")).unwrap());
            assert!(std::fs::read_dir(&root).unwrap().next().is_none());
            assert_eq!(std::fs::read(host.join("keep")).unwrap(), b"host");

            deep_tree(&root.join("again"), 300);
            occystrap::fsroot::remove_all(&root.join("again")).unwrap();
            assert!(!root.join("again").exists());
            occystrap::fsroot::remove_all(&root.join("again")).unwrap();
        },
    );
}

#[test]
fn very_deep_trees_are_removed_with_few_descriptors() {
    with_fd_limit(
        "very_deep_trees_are_removed_with_few_descriptors",
        64,
        || {
            // Levels from a layer, many more than the fd limit, a file at
            // the bottom (fsroot's own test removes 5000 levels).
            const DEPTH: usize = 400;
            let mut lower = Layer::new();
            let mut p = String::new();
            for _ in 0..DEPTH {
                p.push_str("d/");
                lower.pax(&[("path", p.as_bytes())]).dir("x", 0o755);
            }
            lower
                .pax(&[("path", format!("{p}leaf").as_bytes())])
                .file("x", 0o644, b"leaf");
            let lower = lower.bytes();

            // A whiteout of the whole tree, and a file replacing it.
            for upper in [&b"d/.wh.d"[..], b"d"] {
                let (_t, root) = fresh();
                let mut l2 = Layer::new();
                l2.file(upper, 0o644, b"");
                apply(&root, &[lower.clone(), l2.bytes()]).unwrap();
                assert_eq!(kind(&root, "d/d"), "absent");
            }

            // A layer refused after the deep tree: what it staged can be
            // removed whole.
            let (_t, root) = fresh();
            let mut bad = Layer::new();
            bad.file("../escape", 0o644, b"");
            let mut refused = lower.clone();
            refused.truncate(refused.len() - 1024);
            refused.extend_from_slice(&bad.bytes());
            let r = apply(&root, &[refused]);
            assert!(matches!(r, Err(UnpackError::Hostile { .. })), "{r:?}");
            occystrap::fsroot::remove_all(&root).unwrap();
            assert!(!root.exists());
        },
    );
}

// ---------- xattrs and ACLs: exactly the header's ----------

/// A POSIX ACL as the kernel stores it in `system.posix_acl_*`: version 2,
/// then (tag, perm, id) entries sorted by tag and id.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

const NO_ID: u32 = u32::MAX;

/// user::rwx user:1000:rwx group::r-x mask::rwx other::---
fn acl_for_1000() -> Vec<u8> {
    acl(&[
        (0x01, 7, NO_ID),
        (0x02, 7, 1000),
        (0x04, 5, NO_ID),
        (0x10, 7, NO_ID),
        (0x20, 0, NO_ID),
    ])
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = xattr_names(p)
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_directory_declared_again_gets_exactly_its_new_xattrs() {
    let acl = acl_for_1000();
    let mut l1 = Layer::new();
    l1.pax(&[
        ("SCHILY.xattr.user.old", b"1"),
        ("SCHILY.xattr.user.kept", b"old"),
        ("SCHILY.xattr.trusted.old", b"2"),
        ("SCHILY.xattr.system.posix_acl_access", &acl),
        ("SCHILY.xattr.system.posix_acl_default", &acl),
    ])
    .dir("d", 0o750)
    .file("d/keep", 0o644, b"k");
    let mut l2 = Layer::new();
    l2.pax(&[("SCHILY.xattr.user.kept", b"new")])
        .dir("d", 0o750);
    let l1 = l1.bytes();
    let (_t, root) = build(std::slice::from_ref(&l1));
    assert_eq!(
        names(&root.join("d")),
        [
            "system.posix_acl_access",
            "system.posix_acl_default",
            "trusted.old",
            "user.kept",
            "user.old"
        ]
    );
    let (_t, root) = build(&[l1, l2.bytes()]);
    assert_eq!(names(&root.join("d")), ["user.kept"]);
    assert_eq!(
        xattr(&root.join("d"), "user.kept").as_deref(),
        Some(&b"new"[..])
    );
    // The mode is the header's, not the former ACL mask's.
    assert_eq!(mode(&root, "d"), 0o750);
    assert_eq!(content(&root, "d/keep"), b"k");
}

#[test]
fn entries_inherit_no_acl_from_a_default_acl() {
    let acl = acl_for_1000();
    // The default ACL from a lower layer's header, or set on the host
    // (setfacl), or from a header of the same layer.
    let mut lower = Layer::new();
    lower
        .pax(&[("SCHILY.xattr.system.posix_acl_default", &acl)])
        .dir("shared", 0o755);
    let entries = |l: &mut Layer, dir: &str| {
        l.file(format!("{dir}/secret"), 0o640, b"s")
            .dir(format!("{dir}/sub"), 0o750)
            .file(format!("{dir}/sub/deeper"), 0o600, b"d")
            .fifo(&format!("{dir}/fifo"), 0o600)
            .node(&format!("{dir}/null"), EntryType::Char, 0o600, (1, 3))
            .file(format!("{dir}/implied/f"), 0o600, b"i")
            // An entry that carries its own ACL keeps exactly that.
            .pax(&[("SCHILY.xattr.system.posix_acl_access", &acl)])
            .file(format!("{dir}/shared-on-purpose"), 0o770, b"p");
    };
    let mut upper = Layer::new();
    entries(&mut upper, "shared");
    let (_t, root) = fresh();
    let host = root.join("host");
    fs::create_dir(&host).unwrap();
    let st = std::process::Command::new("setfacl")
        .args(["-d", "-m", "u:1000:rwx"])
        .arg(&host)
        .status()
        .unwrap();
    assert!(st.success());
    let mut same = Layer::new();
    same.pax(&[("SCHILY.xattr.system.posix_acl_default", &acl)])
        .dir("same", 0o755);
    entries(&mut same, "same");
    entries(&mut upper, "host");
    apply(&root, &[lower.bytes(), upper.bytes(), same.bytes()]).unwrap();

    for dir in ["shared", "host", "same"] {
        for (p, m) in [
            ("secret", 0o640),
            ("sub", 0o750),
            ("sub/deeper", 0o600),
            ("fifo", 0o600),
            ("null", 0o600),
            ("implied/f", 0o600),
            // Made for a parent: no header, so no ACL either.
            ("implied", 0o755),
        ] {
            let p = format!("{dir}/{p}");
            assert_eq!(names(&root.join(&p)), Vec::<String>::new(), "{p}");
            assert_eq!(mode(&root, &p), m, "{p}");
        }
        let p = root.join(dir).join("shared-on-purpose");
        assert_eq!(names(&p), ["system.posix_acl_access"]);
        assert_eq!(
            xattr(&p, "system.posix_acl_access").as_deref(),
            Some(&acl[..])
        );
    }
    // The directories keep the default ACL their headers set.
    for dir in ["shared", "same"] {
        assert_eq!(
            xattr(&root.join(dir), "system.posix_acl_default").as_deref(),
            Some(&acl[..])
        );
    }
}

// ---------- through the command line ----------

#[test]
fn cli_exit_codes_and_messages_for_unresolvable_paths() {
    use common::image::LayerSpec;
    let registry = common::registry::Registry::start();
    let base = common::busybox::busybox_image();
    // A lower layer's dangling absolute symlink, then an entry beneath it.
    let good = base
        .clone()
        .layer(LayerSpec::new().symlink("var/run", "/run"))
        .layer(LayerSpec::new().file("var/run/app/pid", "1", 0o644));
    registry.push_image("test/dangling", "v1", &good);
    // A symlink loop on the way, under a name with escape sequences.
    let bad = base.layer(
        LayerSpec::new()
            .symlink("\x1b[31mloop", "b")
            .symlink("b", "/\x1b[31mloop")
            .file("\x1b[31mloop/x", "x", 0o644),
    );
    registry.push_image("test/loop", "v1", &bad);
    let out = tempfile::tempdir().unwrap();

    let dir = out.path().join("good");
    let run = common::cli::command()
        .args(["bundle", &registry.image_ref("test/dangling", "v1")])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(content(&dir, "rootfs/run/app/pid"), b"1");

    let dir = out.path().join("bad");
    let run = common::cli::command()
        .args(["bundle", &registry.image_ref("test/loop", "v1")])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("symlink loop"), "{stderr}");
    assert!(stderr.contains(r"\x1b[31mloop/x"), "{stderr}");
    assert!(!run.stderr.contains(&0x1b), "raw escape in {stderr:?}");
    // Nothing left but the good bundle.
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["good"]);
}

#[test]
fn cli_refused_deep_layer_leaves_nothing_under_a_low_fd_limit() {
    use common::image::LayerSpec;
    use std::os::unix::process::CommandExt;
    // 600 levels, more than the 256 descriptors the command may open, then
    // an entry the layer is refused for.
    let mut deep = Layer::new();
    let mut p = String::new();
    for _ in 0..600 {
        p.push_str("d/");
        deep.pax(&[("path", p.as_bytes())]).dir("x", 0o755);
    }
    deep.file("../escape", 0o644, b"");
    let registry = common::registry::Registry::start();
    let image = common::busybox::busybox_image().layer(LayerSpec::from_tar(deep.bytes()));
    registry.push_image("test/deep", "v1", &image);
    let out = tempfile::tempdir().unwrap();
    let mut cmd = common::cli::command();
    cmd.args(["bundle", &registry.image_ref("test/deep", "v1")])
        .arg(out.path().join("b"));
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
