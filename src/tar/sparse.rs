//! GNU sparse files: which regions of a file hold data, in each of the
//! four ways GNU tar has written it (old GNU headers, PAX 0.0, 0.1, 1.0).
//! Reading the 1.0 map needs the entry's data, so the reader does that
//! part; the parsing and checks are here.

use super::header::Block;
use super::pax::{self, Records, go_int};
use super::{MAX_SPECIAL, Region};

/// The PAX records that make a header a GNU sparse file, and which map
/// format it uses.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PaxSparse {
    /// Not sparse (or a version we do not know: Go reads those as plain).
    No,
    /// 0.0 or 0.1: the map is in the records.
    InRecords,
    /// 1.0: the map starts the entry's data.
    InData,
}

pub(super) fn pax_kind(records: &Records) -> PaxSparse {
    let get = |k: &str| records.get(k.as_bytes()).map(Vec::as_slice);
    match (get("GNU.sparse.major"), get("GNU.sparse.minor")) {
        (Some(b"0"), Some(b"0" | b"1")) => PaxSparse::InRecords,
        (Some(b"1"), Some(b"0")) => PaxSparse::InData,
        (Some(m), _) | (_, Some(m)) if !m.is_empty() => PaxSparse::No,
        _ if get("GNU.sparse.map").is_some_and(|m| !m.is_empty()) => PaxSparse::InRecords,
        _ => PaxSparse::No,
    }
}

/// The real size a sparse PAX header gives, if any.
pub(super) fn pax_size(records: &Records) -> Result<Option<i64>, &'static str> {
    let size = [&b"GNU.sparse.size"[..], b"GNU.sparse.realsize"]
        .iter()
        .filter_map(|k| records.get(*k))
        .find(|v| !v.is_empty());
    size.map(|v| go_int(v).ok_or("GNU sparse size is not a number"))
        .transpose()
}

/// The map of formats 0.0 and 0.1: `GNU.sparse.numblocks` pairs in
/// `GNU.sparse.map` (`offset,length,offset,length...`).
pub(super) fn map_from_records(records: &Records) -> Result<Vec<Region>, &'static str> {
    const BAD: &str = "GNU sparse map records are malformed";
    let count = records
        .get(&b"GNU.sparse.numblocks"[..])
        .and_then(|v| go_int(v))
        .filter(|n| *n >= 0)
        .ok_or(BAD)?;
    let map = records
        .get(pax::SPARSE_MAP)
        .map(Vec::as_slice)
        .unwrap_or(b"");
    let numbers: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|&c| c == b',').collect()
    };
    if numbers.len() as u64 != (count as u64).saturating_mul(2) {
        return Err(BAD);
    }
    pairs(numbers.into_iter()).ok_or(BAD)
}

/// Offset/length pairs of decimal numbers.
fn pairs<'a>(mut numbers: impl Iterator<Item = &'a [u8]>) -> Option<Vec<Region>> {
    let mut regions = Vec::new();
    while let Some(offset) = numbers.next() {
        let (offset, len) = (go_int(offset)?, go_int(numbers.next()?)?);
        regions.push(Region::signed(offset, len)?);
    }
    Some(regions)
}

/// Accumulates the 1.0 map, which is text at the start of the entry's
/// data: the count, then an offset and a length per region, each ending
/// in a newline, padded to whole blocks. At most [`MAX_SPECIAL`] bytes.
#[derive(Default)]
pub(super) struct TextMap {
    text: Vec<u8>,
    newlines: u64,
    count: Option<u64>,
}

impl TextMap {
    /// Add the next block of data; `Ok(Some(map))` once the map is whole.
    pub fn feed(&mut self, block: &Block) -> Result<Option<Vec<Region>>, &'static str> {
        if self.text.len() + block.len() > MAX_SPECIAL as usize {
            return Err("GNU sparse map is longer than 1 MiB");
        }
        self.text.extend_from_slice(block);
        self.newlines += block.iter().filter(|&&c| c == b'\n').count() as u64;
        let mut lines = self.text.split(|&c| c == b'\n');
        let count = match self.count {
            Some(count) => count,
            None if self.newlines == 0 => return Ok(None),
            None => {
                let count = lines
                    .next()
                    .and_then(go_int)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or("GNU sparse map: bad region count")?;
                *self.count.insert(count)
            }
        };
        // The count is checked against what has arrived, never allocated by.
        if self.newlines - 1 < count.saturating_mul(2) {
            return Ok(None);
        }
        let lines = self.text.split(|&c| c == b'\n').skip(1);
        pairs(lines.take(count as usize * 2))
            .map(Some)
            .ok_or("GNU sparse map: bad region")
    }
}

/// One old-GNU sparse array: `count` entries of a 12-byte offset and a
/// 12-byte length from `field`, stopping at the first whose offset starts
/// with NUL (as GNU and BSD tar do).
pub(super) fn old_gnu_entries(
    field: &[u8],
    count: usize,
    regions: &mut Vec<Region>,
) -> Result<(), String> {
    for entry in field.chunks_exact(24).take(count) {
        if entry[0] == 0 {
            break;
        }
        let offset =
            super::header::numeric(&entry[..12]).map_err(|e| format!("sparse offset: {e}"))?;
        let len =
            super::header::numeric(&entry[12..]).map_err(|e| format!("sparse length: {e}"))?;
        regions.push(Region::signed(offset, len).ok_or("negative sparse region")?);
    }
    Ok(())
}

/// Regions must be in order, not overlap, and end within the file (the
/// checks of BSD tar and Go).
pub(super) fn validate(regions: &[Region], size: i64) -> bool {
    let Ok(size) = u64::try_from(size) else {
        return false;
    };
    let mut end = 0u64;
    for r in regions {
        let Some(r_end) = r
            .offset
            .checked_add(r.len)
            .filter(|e| *e <= i64::MAX as u64)
        else {
            return false;
        };
        if r.offset < end || r_end > size {
            return false;
        }
        end = r_end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(&str, &str)]) -> Records {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn r(offset: u64, len: u64) -> Region {
        Region { offset, len }
    }

    #[test]
    fn formats_are_told_apart_as_go_does() {
        let k = |p: &[(&str, &str)]| pax_kind(&records(p));
        assert_eq!(k(&[]), PaxSparse::No);
        assert_eq!(
            k(&[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")]),
            PaxSparse::InData
        );
        assert_eq!(
            k(&[("GNU.sparse.major", "0"), ("GNU.sparse.minor", "1")]),
            PaxSparse::InRecords
        );
        assert_eq!(
            k(&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")]),
            PaxSparse::No
        );
        assert_eq!(k(&[("GNU.sparse.map", "0,1")]), PaxSparse::InRecords);
        assert_eq!(
            k(&[("GNU.sparse.major", "3"), ("GNU.sparse.map", "0,1")]),
            PaxSparse::No
        );
    }

    #[test]
    fn maps_in_records() {
        let m = |n: &str, map: &str| {
            map_from_records(&records(&[
                ("GNU.sparse.numblocks", n),
                ("GNU.sparse.map", map),
            ]))
        };
        assert_eq!(m("2", "0,5,100,7"), Ok(vec![r(0, 5), r(100, 7)]));
        assert_eq!(m("0", ""), Ok(vec![]));
        assert!(m("1", "0,5,100,7").is_err());
        assert!(m("1", "0,-5").is_err());
        assert!(m("-1", "").is_err());
        assert!(m("1", "0,x").is_err());
    }

    #[test]
    fn maps_in_data_arrive_in_blocks() {
        // The text runs on across blocks; only the last one is padded.
        let text = format!("2\n{}\n5\n100\n7\n", "0".repeat(600));
        let mut blocks = text.into_bytes();
        blocks.resize(1024, 0);
        let mut map = TextMap::default();
        assert_eq!(map.feed(blocks[..512].try_into().unwrap()), Ok(None));
        assert_eq!(
            map.feed(blocks[512..].try_into().unwrap()),
            Ok(Some(vec![r(0, 5), r(100, 7)]))
        );
        let mut huge = TextMap::default();
        let mut block = [b'1'; 512];
        block[0] = b'9';
        let err = (0..3000).find_map(|_| huge.feed(&block).err());
        assert!(err.is_some(), "a map without end is capped");
    }

    #[test]
    fn validation() {
        assert!(validate(&[r(0, 5), r(5, 5)], 10));
        assert!(validate(&[], 0));
        assert!(!validate(&[r(0, 5), r(4, 5)], 10), "overlap");
        assert!(!validate(&[r(5, 1), r(0, 1)], 10), "order");
        assert!(!validate(&[r(8, 5)], 10), "past the end");
        assert!(!validate(&[r(u64::MAX, 1)], i64::MAX), "overflow");
        assert!(!validate(&[], -1));
    }
}
