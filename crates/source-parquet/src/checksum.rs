//! Page checksums: each page header of a column chunk may carry the CRC-32 of
//! the page bytes that follow it (the compressed page, with its levels for a
//! v2 data page). A page whose bytes do not match was damaged after it was
//! written; reading it could load wrong values without any other error.
//!
//! The headers are Thrift compact-protocol structs; only two fields matter
//! here (3: `compressed_page_size`, 4: `crc`), and the rest is skipped.

use std::fmt;

/// A page whose bytes do not match its checksum.
#[derive(Debug)]
pub struct ChecksumMismatch {
    /// Byte offset of the page header in the file.
    pub offset: u64,
    pub stored: u32,
    pub computed: u32,
}

impl fmt::Display for ChecksumMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the page at byte {} fails its checksum (CRC-32 stored {:08x}, computed {:08x})",
            self.offset, self.stored, self.computed
        )
    }
}

impl std::error::Error for ChecksumMismatch {}

/// Check every page of a column chunk (`bytes`, read from byte `start` of the
/// file). Returns how many pages carried a checksum. A header this walker
/// cannot parse ends the walk: the Parquet reader reports broken headers itself.
pub fn verify_chunk(bytes: &[u8], start: u64) -> Result<usize, ChecksumMismatch> {
    let mut pos = 0usize;
    let mut checked = 0;
    while pos < bytes.len() {
        let mut reader = Compact { bytes, pos };
        let Some(header) = reader.page_header() else { break };
        let body = reader.pos;
        let Some(end) = usize::try_from(header.compressed_size).ok().and_then(|n| body.checked_add(n)) else { break };
        if end > bytes.len() {
            break;
        }
        if let Some(stored) = header.crc {
            let computed = crc32fast::hash(&bytes[body..end]);
            if computed != stored {
                return Err(ChecksumMismatch { offset: start + pos as u64, stored, computed });
            }
            checked += 1;
        }
        pos = end;
    }
    Ok(checked)
}

struct PageHeader {
    compressed_size: i32,
    crc: Option<u32>,
}

/// A reader of the Thrift compact protocol, just enough to skip what it does not need.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
}

const STOP: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

impl Compact<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The header's size and checksum; the reader stops after the header.
    fn page_header(&mut self) -> Option<PageHeader> {
        let (mut size, mut crc) = (None, None);
        let mut last = 0i16;
        loop {
            let header = self.byte()?;
            let kind = header & 0x0f;
            if kind == STOP {
                break;
            }
            let delta = (header >> 4) as i16;
            let id = if delta == 0 { i16::try_from(self.zigzag()?).ok()? } else { last + delta };
            last = id;
            match (id, kind) {
                (3, I32) => size = i32::try_from(self.zigzag()?).ok(),
                (4, I32) => crc = Some(self.zigzag()? as i32 as u32),
                _ => self.skip(kind, 0)?,
            }
        }
        Some(PageHeader { compressed_size: size?, crc })
    }

    fn skip(&mut self, kind: u8, depth: u8) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match kind {
            TRUE | FALSE => {}
            BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => self.advance(8)?,
            BINARY => {
                let n = self.varint()?;
                self.advance(usize::try_from(n).ok()?)?;
            }
            LIST | SET => {
                let header = self.byte()?;
                let n = match header >> 4 {
                    15 => usize::try_from(self.varint()?).ok()?,
                    n => n as usize,
                };
                let element = header & 0x0f;
                for _ in 0..n {
                    // Booleans in a collection take a byte each.
                    match element {
                        TRUE | FALSE => self.advance(1)?,
                        _ => self.skip(element, depth + 1)?,
                    }
                }
            }
            MAP => {
                let n = usize::try_from(self.varint()?).ok()?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.skip(types >> 4, depth + 1)?;
                        self.skip(types & 0x0f, depth + 1)?;
                    }
                }
            }
            STRUCT => loop {
                let header = self.byte()?;
                let kind = header & 0x0f;
                if kind == STOP {
                    break;
                }
                if header >> 4 == 0 {
                    self.zigzag()?;
                }
                self.skip(kind, depth + 1)?;
            },
            _ => return None,
        }
        Some(())
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.pos = end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page header with sizes, a CRC and a nested data page header, then the page.
    fn page(body: &[u8], crc: u32) -> Vec<u8> {
        let zz = |v: i64| -> Vec<u8> {
            let mut v = ((v << 1) ^ (v >> 63)) as u64;
            let mut out = Vec::new();
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    return out;
                }
                out.push(b | 0x80);
            }
        };
        let mut h = vec![0x15];
        h.extend(zz(0)); // 1: type
        h.push(0x15);
        h.extend(zz(body.len() as i64)); // 2: uncompressed size
        h.push(0x15);
        h.extend(zz(body.len() as i64)); // 3: compressed size
        h.push(0x15);
        h.extend(zz(i64::from(crc as i32))); // 4: crc
        h.push(0x1c); // 5: data page header, a struct
        h.push(0x15);
        h.extend(zz(3)); // num_values
        h.push(0x00); // end of the nested struct
        h.push(0x00); // end of the page header
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn good_pages_pass_and_a_flipped_byte_is_found() {
        let body = b"some page bytes";
        let mut chunk = page(body, crc32fast::hash(body));
        chunk.extend(page(b"second", crc32fast::hash(b"second")));
        assert_eq!(verify_chunk(&chunk, 4).unwrap(), 2);
        let last = chunk.len() - 1;
        chunk[last] ^= 0x01;
        let err = verify_chunk(&chunk, 4).unwrap_err();
        assert_eq!(err.stored, crc32fast::hash(b"second"));
        assert!(err.to_string().contains("fails its checksum"));
    }
}
