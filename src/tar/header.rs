//! One 512-byte header block: checksum, format and fields, read as Go's
//! archive/tar reads them (`readHeader`, `getFormat`, `parseNumeric`).

use super::{Kind, Time};

pub(super) const BLOCK: usize = 512;
pub(super) type Block = [u8; BLOCK];

/// Which of the tar dialects a block is, from its checksum and magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    V7,
    /// USTAR or PAX (`ustar\0` `00`).
    Ustar,
    /// Jörg Schilling's star: USTAR magic and a `tar\0` trailer.
    Star,
    /// GNU (`ustar ` ` \0`).
    Gnu,
}

/// The fields of a header block, before extension headers are merged.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub flag: u8,
    pub name: Vec<u8>,
    pub link_name: Vec<u8>,
    pub size: i64,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub mtime: Time,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub dev_major: i64,
    pub dev_minor: i64,
    pub atime: Option<Time>,
    pub ctime: Option<Time>,
}

impl Raw {
    pub fn kind(&self) -> Kind {
        Kind::from_flag(self.flag)
    }
}

/// The checksum and magic decide the format; `None`: not a header.
pub(super) fn format(b: &Block) -> Option<Format> {
    let stored = parse_octal(&b[148..156]).ok()?;
    let (unsigned, signed) = checksums(b);
    if stored != unsigned && stored != signed {
        return None;
    }
    let (magic, version, trailer) = (&b[257..263], &b[263..265], &b[508..512]);
    Some(match (magic, version) {
        (b"ustar\0", _) if trailer == b"tar\0" => Format::Star,
        (b"ustar\0", _) => Format::Ustar,
        (b"ustar ", b" \0") => Format::Gnu,
        _ => Format::V7,
    })
}

/// The header checksum summed as unsigned and as signed bytes (old tars
/// used signed chars; Go accepts both), with the field itself as spaces.
fn checksums(b: &Block) -> (i64, i64) {
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    (unsigned, signed)
}

/// Parse a header block whose format is known.
pub(super) fn parse(b: &Block, format: Format) -> Result<Raw, String> {
    let mut raw = Raw {
        flag: b[156],
        name: string(&b[0..100]).to_vec(),
        link_name: string(&b[157..257]).to_vec(),
        size: numeric(&b[124..136]).map_err(field("size"))?,
        mode: numeric(&b[100..108]).map_err(field("mode"))?,
        uid: numeric(&b[108..116]).map_err(field("uid"))?,
        gid: numeric(&b[116..124]).map_err(field("gid"))?,
        mtime: Time::from_secs(numeric(&b[136..148]).map_err(field("mtime"))?),
        uname: Vec::new(),
        gname: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        atime: None,
        ctime: None,
    };
    if format == Format::V7 {
        return Ok(raw);
    }
    raw.uname = string(&b[265..297]).to_vec();
    raw.gname = string(&b[297..329]).to_vec();
    raw.dev_major = numeric(&b[329..337]).map_err(field("device major"))?;
    raw.dev_minor = numeric(&b[337..345]).map_err(field("device minor"))?;
    let prefix: &[u8] = match format {
        Format::Ustar => string(&b[345..500]),
        Format::Star => {
            raw.atime = Some(Time::from_secs(
                numeric(&b[476..488]).map_err(field("atime"))?,
            ));
            raw.ctime = Some(Time::from_secs(
                numeric(&b[488..500]).map_err(field("ctime"))?,
            ));
            string(&b[345..476])
        }
        Format::Gnu => gnu_times(b, &mut raw),
        Format::V7 => &[],
    };
    if !prefix.is_empty() {
        let mut name = prefix.to_vec();
        name.push(b'/');
        name.extend_from_slice(&raw.name);
        raw.name = name;
    }
    Ok(raw)
}

/// GNU atime and ctime (set only when their first byte is not NUL). Go
/// writers before 1.8 put a USTAR prefix there: when the times do not
/// parse and the field is ASCII, it is read as that prefix instead.
fn gnu_times<'b>(b: &'b Block, raw: &mut Raw) -> &'b [u8] {
    let time = |f: &[u8]| -> Result<Option<Time>, &'static str> {
        if f[0] == 0 {
            return Ok(None);
        }
        numeric(f).map(|s| Some(Time::from_secs(s)))
    };
    match (time(&b[345..357]), time(&b[357..369])) {
        (Ok(atime), Ok(ctime)) => {
            raw.atime = atime;
            raw.ctime = ctime;
            &[]
        }
        _ => {
            let prefix = string(&b[345..500]);
            if prefix.is_ascii() { prefix } else { &[] }
        }
    }
}

fn field(name: &'static str) -> impl Fn(&'static str) -> String {
    move |reason| format!("{name} field: {reason}")
}

/// A NUL-terminated string field (the whole field when there is no NUL).
pub(super) fn string(f: &[u8]) -> &[u8] {
    f.iter().position(|&c| c == 0).map_or(f, |n| &f[..n])
}

/// A numeric field: octal text, or base-256 (two's complement, big
/// endian) when the top bit of the first byte is set. Values that do not
/// fit in an i64 are refused, as Go refuses them.
pub(super) fn numeric(f: &[u8]) -> Result<i64, &'static str> {
    let Some(&first) = f.first() else {
        return Ok(0);
    };
    if first & 0x80 == 0 {
        return parse_octal(f);
    }
    // -a-1 == !a: invert a negative number's bytes and read it unsigned.
    let inv = if first & 0x40 != 0 { 0xff } else { 0 };
    let mut x: u64 = 0;
    for (i, &c) in f.iter().enumerate() {
        let mut c = c ^ inv;
        if i == 0 {
            c &= 0x7f;
        }
        if x >> 56 != 0 {
            return Err("base-256 number overflows 64 bits");
        }
        x = (x << 8) | u64::from(c);
    }
    if x >> 63 != 0 {
        return Err("base-256 number overflows 64 bits");
    }
    // x < 2^63 here, so both conversions are exact.
    let x = x as i64;
    Ok(if inv == 0xff { !x } else { x })
}

/// Octal text, padded with spaces or NULs on either side; empty is 0.
pub(super) fn parse_octal(f: &[u8]) -> Result<i64, &'static str> {
    let pad = |c: &u8| *c == b' ' || *c == 0;
    let start = f.iter().position(|c| !pad(c)).unwrap_or(f.len());
    let end = f.iter().rposition(|c| !pad(c)).map_or(start, |n| n + 1);
    let digits = string(&f[start..end]);
    if digits.is_empty() {
        return Ok(0);
    }
    let mut x: u64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return Err("not an octal number");
        }
        x = x
            .checked_mul(8)
            .and_then(|x| x.checked_add(u64::from(c - b'0')))
            .ok_or("octal number overflows 64 bits")?;
    }
    // As Go: the u64 is reinterpreted (a 12-byte field cannot reach 2^63).
    Ok(x as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_octal(b"  755 \0"), Ok(0o755));
        assert_eq!(parse_octal(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_octal(b"12\x0034"), Ok(0o12));
        assert!(parse_octal(b"0009").is_err());
        assert!(parse_octal(b"-1").is_err());
    }

    #[test]
    fn base256_fields() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[10] = 2;
        f[11] = 1;
        assert_eq!(numeric(&f), Ok(513));
        // -1 and GNU tar's pre-1970 times.
        assert_eq!(numeric(&[0xff; 12]), Ok(-1));
        let mut minus_1000 = [0xffu8; 12];
        minus_1000[10] = 0xfc;
        minus_1000[11] = 0x18;
        assert_eq!(numeric(&minus_1000), Ok(-1000));
        // i64::MAX fits, one more does not.
        let mut max = [0u8; 12];
        max[0] = 0x80;
        max[4] = 0x7f;
        max[5..].fill(0xff);
        assert_eq!(numeric(&max), Ok(i64::MAX));
        max[3] = 1;
        assert!(numeric(&max).is_err());
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4] = 0x80;
        assert!(numeric(&big).is_err());
    }
}
