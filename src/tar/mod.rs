//! Our own strict, streaming tar reader.
//!
//! Layers are read exactly as Go's `archive/tar` reads them, since that is
//! the reader that built, scanned and ran almost every image (Docker,
//! containerd, buildkit, buildah, podman, umoci): a scanner and a runtime
//! must see the same tree as we write. It reads v7, USTAR, STAR, GNU (long
//! names and links, base-256 numbers, old sparse headers) and PAX
//! (length-prefixed records with any byte in a value, every GNU sparse
//! format, `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`).
//!
//! Go's choices, which are ours:
//! - Two zero blocks end the archive, and so does the end of the stream at
//!   a header boundary or inside an entry's padding; one zero block
//!   followed by anything else is an invalid header.
//! - A header's checksum may be summed as unsigned or signed bytes.
//! - Directories, links, devices and FIFOs carry no data, whatever their
//!   size field says: the next header follows at once.
//! - Numbers are octal or base-256 (negative values included, as GNU tar
//!   writes pre-1970 times); what does not fit in 64 signed bits is
//!   refused.
//! - The last of duplicate PAX keys wins; an empty PAX value keeps the
//!   header's field. A global PAX header is returned as an entry of its own
//!   ([`Kind::GlobalExtension`]) and changes nothing else. A GNU long name
//!   beats a PAX `path`.
//! - Unknown type flags are returned as [`Kind::Other`] for the caller to
//!   refuse or skip.
//!
//! Memory is bounded whatever an archive says: PAX headers and GNU long
//! names are capped at [`MAX_SPECIAL`] bytes as Go caps them, and so are
//! GNU sparse maps, where Go 1.19 has no cap (our one deliberate
//! difference, listed in `fuzz/checks.rs`); nothing is allocated by a size
//! read from the archive. The
//! [`Limits`] count entries and logical bytes (a sparse file counts its
//! full size) as the headers arrive, before any content is read.

mod header;
mod pax;
mod sparse;

use std::io::{self, Read};

use header::{BLOCK, Block, Format};
pub use pax::Records;

/// The largest PAX header, GNU long name or link, or GNU sparse map read.
pub const MAX_SPECIAL: u64 = 1 << 20;

/// An entry's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`, or an old NUL type flag on a name without a trailing slash.
    Regular,
    /// `1`.
    Link,
    /// `2`.
    Symlink,
    /// `3`.
    Char,
    /// `4`.
    Block,
    /// `5`, or an old NUL type flag on a name with a trailing slash.
    Directory,
    /// `6`.
    Fifo,
    /// `7`: POSIX says to read it as a regular file.
    Contiguous,
    /// `S`: a regular file in the old GNU sparse format.
    GnuSparse,
    /// `g`: a global PAX header, returned as Go returns it.
    GlobalExtension,
    /// Any other type flag.
    Other(u8),
}

impl Kind {
    fn from_flag(flag: u8) -> Kind {
        match flag {
            b'0' => Kind::Regular,
            b'1' => Kind::Link,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Directory,
            b'6' => Kind::Fifo,
            b'7' => Kind::Contiguous,
            b'S' => Kind::GnuSparse,
            b'g' => Kind::GlobalExtension,
            other => Kind::Other(other),
        }
    }

    /// The type flag byte.
    pub fn flag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::Link => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
            Kind::Contiguous => b'7',
            Kind::GnuSparse => b'S',
            Kind::GlobalExtension => b'g',
            Kind::Other(flag) => flag,
        }
    }

    /// Types that never carry data.
    pub fn is_header_only(self) -> bool {
        matches!(
            self,
            Kind::Link | Kind::Symlink | Kind::Char | Kind::Block | Kind::Directory | Kind::Fifo
        )
    }
}

/// A time as seconds since the epoch and nanoseconds (always 0..1e9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// Seconds since 1970-01-01 UTC; negative before.
    pub secs: i64,
    /// Nanoseconds after `secs`.
    pub nanos: u32,
}

impl Time {
    const fn from_secs(secs: i64) -> Time {
        Time { secs, nanos: 0 }
    }

    /// Seconds and a signed nanosecond part (|nanos| < 1e9), normalised as
    /// Go's `time.Unix` does (wrapping at the ends of the range, as Go).
    fn new(secs: i64, nanos: i64) -> Time {
        if nanos < 0 {
            Time {
                secs: secs.wrapping_sub(1),
                nanos: (nanos + 1_000_000_000) as u32,
            }
        } else {
            Time {
                secs,
                nanos: nanos as u32,
            }
        }
    }
}

/// A region of a sparse file that holds data; the rest reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Where the data starts in the file, in bytes.
    pub offset: u64,
    /// How many bytes of data.
    pub len: u64,
}

impl Region {
    fn signed(offset: i64, len: i64) -> Option<Region> {
        Some(Region {
            offset: u64::try_from(offset).ok()?,
            len: u64::try_from(len).ok()?,
        })
    }

    /// The offset just past the region.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Caps on one archive, so that a hostile one fails before it fills a
/// disk. `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes: the uncompressed stream, and the sum of the entries'
    /// logical sizes (a sparse file counts its full size).
    pub max_size: Option<u64>,
    /// Most entries (extension headers do not count).
    pub max_entries: Option<u64>,
}

/// One entry's header, with its extension headers merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The path as the archive gives it (PAX `path`, GNU long name or
    /// USTAR prefix and name): raw bytes, not cleaned, possibly absolute
    /// or holding `..`; escape it before printing.
    pub name: Vec<u8>,
    /// A hardlink's target path or a symlink's target, raw bytes as
    /// stored; empty for other kinds.
    pub link_name: Vec<u8>,
    /// The entry's type.
    pub kind: Kind,
    /// The mode field as stored (type bits included if the writer put them).
    pub mode: i64,
    /// Owner user ID (PAX `uid` if given).
    pub uid: i64,
    /// Owner group ID (PAX `gid` if given).
    pub gid: i64,
    /// Owner user name, raw bytes; often empty.
    pub uname: Vec<u8>,
    /// Owner group name, raw bytes; often empty.
    pub gname: Vec<u8>,
    /// The logical size. Header-only kinds keep what their field said but
    /// have no content.
    pub size: i64,
    /// Modification time (PAX `mtime` gives nanoseconds).
    pub mtime: Time,
    /// Access time, when a PAX or GNU header gives one.
    pub atime: Option<Time>,
    /// Status change time, when a PAX or GNU header gives one.
    pub ctime: Option<Time>,
    /// A device node's major number; meaningless for other kinds.
    pub dev_major: i64,
    /// A device node's minor number; meaningless for other kinds.
    pub dev_minor: i64,
    /// Every record of the entry's PAX header (not of global headers).
    pub pax: Records,
    /// For a sparse file, the regions holding data, in order.
    pub sparse: Option<Vec<Region>>,
    /// Where the entry's first header block starts in the stream.
    pub offset: u64,
}

const SCHILY_XATTR: &[u8] = b"SCHILY.xattr.";
const LIBARCHIVE_XATTR: &[u8] = b"LIBARCHIVE.xattr.";

impl Header {
    /// Bytes of content: the logical size, none for header-only kinds.
    pub fn content_size(&self) -> u64 {
        if self.kind.is_header_only() {
            0
        } else {
            u64::try_from(self.size).unwrap_or(0)
        }
    }

    /// The permission bits (setuid, setgid and sticky included), without
    /// the type bits some writers add.
    pub fn permissions(&self) -> u32 {
        (self.mode & 0o7777) as u32
    }

    /// Extended attributes: every `SCHILY.xattr.NAME` record (empty values
    /// included, as Docker and containerd set them), then libarchive's
    /// `LIBARCHIVE.xattr.NAME` (URL-encoded name, base64 value) for names
    /// that the first form does not give.
    pub fn xattrs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .pax
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(SCHILY_XATTR)?.to_vec(), v.clone())))
            .collect();
        for (k, v) in &self.pax {
            let Some(encoded) = k.strip_prefix(LIBARCHIVE_XATTR) else {
                continue;
            };
            if let (Some(name), Some(value)) =
                (url_decode(encoded), crate::encoding::decode_base64(v))
                && !out.iter().any(|(n, _)| *n == name)
            {
                out.push((name, value));
            }
        }
        out
    }
}

fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The stream under the archive failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The stream ends inside a header or an entry's data.
    #[error("the archive is truncated at byte {offset}")]
    Truncated {
        /// Bytes read from the stream when it ended.
        offset: u64,
    },
    /// A header block that is not a valid header (checksum, number field,
    /// PAX record, sparse map).
    #[error("invalid tar header at byte {offset}: {reason}")]
    Header {
        /// Where the header block starts in the stream.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A PAX header, GNU long name or link, or GNU sparse map over
    /// [`MAX_SPECIAL`] bytes.
    #[error("{what} at byte {offset} is {size} bytes, over the limit of {MAX_SPECIAL}")]
    TooLong {
        /// Which of them.
        what: &'static str,
        /// Where its header starts in the stream.
        offset: u64,
        /// Its size as declared or read so far, in bytes.
        size: u64,
    },
    /// A sparse file's stored data disagrees with its sparse map.
    #[error("{}: {reason}", crate::escape::bytes(name))]
    Content {
        /// The entry's name, raw bytes.
        name: Vec<u8>,
        /// How they disagree.
        reason: &'static str,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("more than the limit of {limit} tar entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The stream or the entries' logical sizes exceed
    /// [`Limits::max_size`].
    #[error("entries of more than the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A read after the reader already returned an error: it does not
    /// resynchronise.
    #[error("the archive could not be read past an earlier error")]
    Failed,
}

impl From<TarError> for io::Error {
    fn from(e: TarError) -> io::Error {
        match e {
            TarError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

type Result<T, E = TarError> = std::result::Result<T, E>;

fn bad(offset: u64, reason: impl Into<String>) -> TarError {
    TarError::Header {
        offset,
        reason: reason.into(),
    }
}

/// A piece of the current entry's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `len` bytes of data at `offset` were read into the buffer.
    Data {
        /// Where the bytes go in the file.
        offset: u64,
        /// How many bytes, from the start of the buffer.
        len: usize,
    },
    /// Zeros (a sparse file's hole) from `offset` for `len` bytes.
    Hole {
        /// Where the hole starts in the file.
        offset: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// The content is complete.
    End,
}

/// Where reading the current entry's content stands.
#[derive(Default)]
struct Content {
    pos: u64,
    size: u64,
    regions: Vec<Region>,
    next: usize,
    sparse: bool,
    name: Vec<u8>,
}

#[derive(PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Failed,
}

/// Reads an archive entry by entry; the current entry's content through
/// [`Reader::read_chunk`] (sparse holes as holes) or [`Read`] (holes as
/// zeros).
pub struct Reader<R> {
    inner: R,
    limits: Limits,
    /// Bytes consumed from `inner`.
    offset: u64,
    /// Stored bytes of the current entry not read yet, then its padding.
    remaining: u64,
    pad: u64,
    content: Content,
    entries: u64,
    bytes: u64,
    state: State,
    scratch: Vec<u8>,
}

impl<R: Read + io::Seek> Reader<R> {
    /// Move past the rest of the current entry's stored data by seeking,
    /// not reading: an index of a large archive costs one read per header.
    /// A stream shorter than the data is noticed at the next header.
    pub fn seek_past(&mut self) -> Result<()> {
        if self.remaining > 0 {
            let skip = i64::try_from(self.remaining).map_err(|_| TarError::Truncated {
                offset: self.offset,
            })?;
            self.inner
                .seek(io::SeekFrom::Current(skip))
                .map_err(TarError::Io)?;
            self.offset += self.remaining;
            self.remaining = 0;
        }
        Ok(())
    }
}

impl<R: Read> Reader<R> {
    /// A reader of the archive `inner`, held to `limits`.
    pub fn new(inner: R, limits: Limits) -> Reader<R> {
        Reader {
            inner,
            limits,
            offset: 0,
            remaining: 0,
            pad: 0,
            content: Content::default(),
            entries: 0,
            bytes: 0,
            state: State::Open,
            scratch: Vec::new(),
        }
    }

    /// The stream, positioned after what the reader consumed.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Bytes consumed from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry (whatever of the previous one's content was not read
    /// is skipped), or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Header>> {
        match self.state {
            State::Ended => return Ok(None),
            State::Failed => return Err(TarError::Failed),
            State::Open => {}
        }
        let next = self.next_header();
        match &next {
            Ok(None) => self.state = State::Ended,
            Err(_) => self.state = State::Failed,
            Ok(Some(_)) => {}
        }
        next
    }

    /// Read every entry, skipping content; returns how many there were.
    /// Checks the archive's structure and limits without writing anything.
    pub fn skim(&mut self) -> Result<u64> {
        let mut entries = 0;
        while self.next_entry()?.is_some() {
            entries += 1;
        }
        Ok(entries)
    }

    /// The next piece of the current entry's content into `buf` (which
    /// must not be empty). A hole is reported whole.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Chunk> {
        self.chunk(buf, u64::MAX)
    }

    fn chunk(&mut self, buf: &mut [u8], max_hole: u64) -> Result<Chunk> {
        if self.state == State::Failed {
            return Err(TarError::Failed);
        }
        let chunk = self.chunk_inner(buf, max_hole);
        if chunk.is_err() {
            self.state = State::Failed;
        }
        chunk
    }

    fn chunk_inner(&mut self, buf: &mut [u8], max_hole: u64) -> Result<Chunk> {
        let c = &mut self.content;
        loop {
            if c.pos >= c.size {
                if c.sparse && self.remaining > 0 {
                    return Err(TarError::Content {
                        name: c.name.clone(),
                        reason: "holds more data than its sparse map says",
                    });
                }
                return Ok(Chunk::End);
            }
            let (start, end) = match c.regions.get(c.next) {
                Some(r) if c.pos >= r.end() => {
                    c.next += 1;
                    continue;
                }
                Some(r) => (r.offset, r.end()),
                None => (c.size, c.size),
            };
            if c.pos < start {
                let offset = c.pos;
                let len = (start - c.pos).min(max_hole);
                c.pos += len;
                return Ok(Chunk::Hole { offset, len });
            }
            if self.remaining == 0 {
                return Err(TarError::Content {
                    name: c.name.clone(),
                    reason: "holds less data than its sparse map says",
                });
            }
            let want = (end - c.pos).min(self.remaining).min(buf.len() as u64) as usize;
            let offset = c.pos;
            let n = read_some(&mut self.inner, &mut buf[..want]).map_err(TarError::Io)?;
            if n == 0 && want > 0 {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            c.pos += n as u64;
            self.remaining -= n as u64;
            self.offset += n as u64;
            return Ok(Chunk::Data { offset, len: n });
        }
    }

    fn next_header(&mut self) -> Result<Option<Header>> {
        let mut first: Option<u64> = None;
        let mut records: Option<Records> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            if !self.skip_rest()? {
                return Ok(None);
            }
            let at = self.offset;
            let start = *first.get_or_insert(at);
            let Some(block) = self.header_block()? else {
                return Ok(None);
            };
            let format = header::format(&block)
                .ok_or_else(|| bad(at, "not a tar header (the checksum does not match)"))?;
            let mut raw = header::parse(&block, format).map_err(|r| bad(at, r))?;
            self.expect_data(raw.kind(), raw.size, at)?;
            match raw.flag {
                b'x' | b'g' => {
                    let data = self.read_special("a PAX header", at)?;
                    let parsed = pax::parse(&data).map_err(|r| bad(at, r))?;
                    if raw.flag == b'x' {
                        records = Some(parsed);
                        continue;
                    }
                    // As Go: a record that does not merge is no error here,
                    // but then the header keeps no records.
                    let parsed = match merge(&mut raw, &parsed) {
                        Ok(()) => parsed,
                        Err(_) => Records::new(),
                    };
                    return Ok(Some(Header {
                        name: raw.name,
                        link_name: Vec::new(),
                        kind: Kind::GlobalExtension,
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        uname: Vec::new(),
                        gname: Vec::new(),
                        size: 0,
                        mtime: Time::default(),
                        atime: None,
                        ctime: None,
                        dev_major: 0,
                        dev_minor: 0,
                        pax: parsed,
                        sparse: None,
                        offset: at,
                    }));
                }
                b'L' | b'K' => {
                    let what = if raw.flag == b'L' {
                        "a GNU long name"
                    } else {
                        "a GNU long link"
                    };
                    let data = self.read_special(what, at)?;
                    let value = header::string(&data).to_vec();
                    match raw.flag {
                        b'L' => long_name = Some(value),
                        _ => long_link = Some(value),
                    }
                }
                _ => {
                    let records = records.unwrap_or_default();
                    return self
                        .entry(raw, records, long_name, long_link, &block, start, at)
                        .map(Some);
                }
            }
        }
    }

    /// Finish an entry's header: extension headers merged, type settled,
    /// sparse map read, limits checked.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        mut raw: header::Raw,
        records: Records,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        block: &Block,
        start: u64,
        at: u64,
    ) -> Result<Header> {
        merge(&mut raw, &records).map_err(|r| bad(at, r))?;
        if let Some(name) = long_name.filter(|n| !n.is_empty()) {
            raw.name = name;
        }
        if let Some(link) = long_link.filter(|l| !l.is_empty()) {
            raw.link_name = link;
        }
        if raw.flag == 0 {
            raw.flag = if raw.name.ends_with(b"/") { b'5' } else { b'0' };
        }
        let kind = raw.kind();
        // PAX may have changed the size.
        self.expect_data(kind, raw.size, at)?;
        let regions = if kind == Kind::GnuSparse {
            Some(self.old_gnu_sparse(&mut raw, block, at)?)
        } else {
            self.pax_sparse(&mut raw, &records, at)?
        };
        if let Some(regions) = &regions
            && (kind.is_header_only() || !sparse::validate(regions, raw.size))
        {
            return Err(bad(at, "invalid GNU sparse map"));
        }
        // Not header-only: expect_data or validate refused a negative size.
        let size = if kind.is_header_only() {
            0
        } else {
            raw.size as u64
        };
        if kind != Kind::GlobalExtension {
            self.entries += 1;
            if let Some(limit) = self.limits.max_entries
                && self.entries > limit
            {
                return Err(TarError::TooManyEntries { limit });
            }
            self.bytes = self.bytes.saturating_add(size);
            if let Some(limit) = self.limits.max_size
                && self.bytes > limit
            {
                return Err(TarError::TooLarge { limit });
            }
        }
        self.content = Content {
            pos: 0,
            size,
            regions: regions.clone().unwrap_or_else(|| {
                vec![Region {
                    offset: 0,
                    len: size,
                }]
            }),
            next: 0,
            sparse: regions.is_some(),
            name: raw.name.clone(),
        };
        Ok(Header {
            name: raw.name,
            link_name: raw.link_name,
            kind,
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            uname: raw.uname,
            gname: raw.gname,
            size: raw.size,
            mtime: raw.mtime,
            atime: raw.atime,
            ctime: raw.ctime,
            dev_major: raw.dev_major,
            dev_minor: raw.dev_minor,
            pax: records,
            sparse: regions,
            offset: start,
        })
    }

    /// The old GNU format: up to 4 regions in the header, then extension
    /// blocks of 21 (not counted in the entry's size); the real size in
    /// the header.
    fn old_gnu_sparse(
        &mut self,
        raw: &mut header::Raw,
        block: &Block,
        at: u64,
    ) -> Result<Vec<Region>> {
        if header::format(block) != Some(Format::Gnu) {
            return Err(bad(
                at,
                "an old GNU sparse entry that is not in the GNU format",
            ));
        }
        raw.size = header::numeric(&block[483..495])
            .map_err(|r| bad(at, format!("sparse real size: {r}")))?;
        let mut regions = Vec::new();
        sparse::old_gnu_entries(&block[386..482], 4, &mut regions).map_err(|r| bad(at, r))?;
        let mut extended = block[482] != 0;
        let mut read = 0;
        while extended {
            read += BLOCK as u64;
            if read > MAX_SPECIAL {
                return Err(TarError::TooLong {
                    what: "an old GNU sparse map",
                    offset: at,
                    size: read,
                });
            }
            let mut ext = [0u8; BLOCK];
            if self.fill(&mut ext)? != BLOCK {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            sparse::old_gnu_entries(&ext[..504], 21, &mut regions).map_err(|r| bad(at, r))?;
            extended = ext[504] != 0;
        }
        Ok(regions)
    }

    /// The PAX formats 0.0, 0.1 and 1.0; `None` when not sparse.
    fn pax_sparse(
        &mut self,
        raw: &mut header::Raw,
        records: &Records,
        at: u64,
    ) -> Result<Option<Vec<Region>>> {
        let format = sparse::pax_kind(records);
        if format == sparse::PaxSparse::No {
            return Ok(None);
        }
        if let Some(name) = records
            .get(&b"GNU.sparse.name"[..])
            .filter(|n| !n.is_empty())
        {
            raw.name = name.clone();
        }
        if let Some(size) = sparse::pax_size(records).map_err(|r| bad(at, r))? {
            raw.size = size;
        }
        if format == sparse::PaxSparse::InRecords {
            return sparse::map_from_records(records)
                .map(Some)
                .map_err(|r| bad(at, r));
        }
        let mut map = sparse::TextMap::default();
        loop {
            let mut block = [0u8; BLOCK];
            let n = (self.remaining.min(BLOCK as u64)) as usize;
            if n < BLOCK || self.fill(&mut block)? != BLOCK {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
            self.remaining -= BLOCK as u64;
            if let Some(regions) = map.feed(&block).map_err(|r| bad(at, r))? {
                return Ok(Some(regions));
            }
        }
    }

    /// Set up the data that follows a header: none for header-only types.
    fn expect_data(&mut self, kind: Kind, size: i64, at: u64) -> Result<()> {
        let size = if kind.is_header_only() {
            0
        } else {
            u64::try_from(size).map_err(|_| bad(at, "negative size"))?
        };
        self.remaining = size;
        self.pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.content = Content::default();
        Ok(())
    }

    /// The whole data of a special header, capped.
    fn read_special(&mut self, what: &'static str, at: u64) -> Result<Vec<u8>> {
        if self.remaining > MAX_SPECIAL {
            return Err(TarError::TooLong {
                what,
                offset: at,
                size: self.remaining,
            });
        }
        let mut data = Vec::new();
        let want = self.remaining;
        let n = (&mut self.inner)
            .take(want)
            .read_to_end(&mut data)
            .map_err(TarError::Io)?;
        self.offset += n as u64;
        if (n as u64) < want {
            return Err(TarError::Truncated {
                offset: self.offset,
            });
        }
        self.remaining = 0;
        Ok(data)
    }

    /// Skip the rest of the current entry and its padding. `false` when
    /// the stream ends exactly where the padding would start (Go reads
    /// that as the end of the archive).
    fn skip_rest(&mut self) -> Result<bool> {
        if self.remaining > 0 {
            if self.scratch.is_empty() {
                self.scratch = vec![0; 64 * 1024];
            }
            while self.remaining > 0 {
                let want = self.remaining.min(self.scratch.len() as u64) as usize;
                let n =
                    read_some(&mut self.inner, &mut self.scratch[..want]).map_err(TarError::Io)?;
                if n == 0 {
                    return Err(TarError::Truncated {
                        offset: self.offset,
                    });
                }
                self.remaining -= n as u64;
                self.offset += n as u64;
            }
        }
        if self.pad > 0 {
            let mut pad = [0u8; BLOCK];
            let want = self.pad as usize;
            let n = self.fill(&mut pad[..want])?;
            self.pad = 0;
            // Go's tryReadFull: a stream ending anywhere in the padding
            // ends the archive.
            if n < want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next header block; `None` at the end of the archive.
    fn header_block(&mut self) -> Result<Option<Block>> {
        let mut block = [0u8; BLOCK];
        match self.fill(&mut block)? {
            0 => return Ok(None),
            BLOCK => {}
            _ => {
                return Err(TarError::Truncated {
                    offset: self.offset,
                });
            }
        }
        if block.iter().any(|&b| b != 0) {
            return Ok(Some(block));
        }
        let at = self.offset;
        match self.fill(&mut block)? {
            0 => Ok(None),
            BLOCK if block.iter().all(|&b| b == 0) => Ok(None),
            BLOCK => Err(bad(at, "a header after a single zero block")),
            _ => Err(TarError::Truncated {
                offset: self.offset,
            }),
        }
    }

    /// Read until `buf` is full or the stream ends; how much was read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match read_some(&mut self.inner, &mut buf[filled..]).map_err(TarError::Io)? {
                0 => break,
                n => filled += n,
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Apply a PAX header's records to the header they precede (Go's
/// `mergePAX`): empty values keep the header's field.
fn merge(raw: &mut header::Raw, records: &Records) -> Result<(), String> {
    for (key, value) in records {
        if value.is_empty() {
            continue;
        }
        let int = || pax::go_int(value).ok_or_else(|| pax_field(key));
        let time = || pax::time(value).ok_or_else(|| pax_field(key));
        match key.as_slice() {
            b"path" => raw.name = value.clone(),
            b"linkpath" => raw.link_name = value.clone(),
            b"uname" => raw.uname = value.clone(),
            b"gname" => raw.gname = value.clone(),
            b"uid" => raw.uid = int()?,
            b"gid" => raw.gid = int()?,
            b"size" => raw.size = int()?,
            b"mtime" => raw.mtime = time()?,
            b"atime" => raw.atime = Some(time()?),
            b"ctime" => raw.ctime = Some(time()?),
            _ => {}
        }
    }
    Ok(())
}

fn pax_field(key: &[u8]) -> String {
    format!(
        "PAX record {}: not a valid value",
        crate::escape::bytes(key)
    )
}

impl<R: Read> Read for Reader<R> {
    /// The current entry's logical content: a sparse file's holes read as
    /// zeros.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.chunk(buf, buf.len() as u64)? {
            Chunk::Data { len, .. } => Ok(len),
            Chunk::Hole { len, .. } => {
                let len = len as usize; // at most buf.len()
                buf[..len].fill(0);
                Ok(len)
            }
            Chunk::End => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests;
