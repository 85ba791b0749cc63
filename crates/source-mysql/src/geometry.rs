//! MySQL's spatial values: what the server sends is its internal form, a
//! 4-byte little-endian SRID followed by standard (OGC) WKB. Weir loads the
//! WKB itself (or its WKT, by option), which PostGIS, DuckDB, Sedona and every
//! GIS library read, and the SRID in a column of its own beside it.

use std::fmt::Write;

/// The SRID and the standard WKB of MySQL's internal geometry bytes.
pub fn split(internal: &[u8]) -> Option<(u32, &[u8])> {
    let (srid, wkb) = internal.split_first_chunk::<4>()?;
    (!wkb.is_empty()).then(|| (u32::from_le_bytes(*srid), wkb))
}

/// Well-known text of standard WKB (2D, as MySQL stores it); `None` if the
/// bytes are not WKB.
pub fn wkt(wkb: &[u8]) -> Option<String> {
    let mut reader = Wkb { bytes: wkb, pos: 0 };
    let mut out = String::with_capacity(wkb.len() * 2);
    reader.geometry(&mut out, true, 0)?;
    (reader.pos == wkb.len()).then_some(out)
}

struct Wkb<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.pos.checked_add(N)?;
        let out = self.bytes.get(self.pos..end)?.try_into().ok()?;
        self.pos = end;
        Some(out)
    }

    fn u32(&mut self, little: bool) -> Option<u32> {
        let b = self.take::<4>()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }

    fn f64(&mut self, little: bool) -> Option<f64> {
        let b = self.take::<8>()?;
        Some(if little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) })
    }

    /// One geometry: its byte order, its type, its body. `tagged`: write the
    /// type name (members of a multi-geometry are written without it).
    fn geometry(&mut self, out: &mut String, tagged: bool, depth: u8) -> Option<()> {
        if depth > 32 {
            return None;
        }
        let little = match self.take::<1>()?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let kind = self.u32(little)?;
        let name = match kind {
            1 => "POINT",
            2 => "LINESTRING",
            3 => "POLYGON",
            4 => "MULTIPOINT",
            5 => "MULTILINESTRING",
            6 => "MULTIPOLYGON",
            7 => "GEOMETRYCOLLECTION",
            _ => return None,
        };
        if tagged {
            out.push_str(name);
        }
        match kind {
            1 => {
                let (x, y) = (self.f64(little)?, self.f64(little)?);
                if x.is_nan() && y.is_nan() {
                    out.push_str(if tagged { " EMPTY" } else { "EMPTY" });
                } else {
                    out.push('(');
                    point(out, x, y);
                    out.push(')');
                }
            }
            2 => self.points(out, little)?,
            3 => self.rings(out, little)?,
            4..=6 => {
                let n = self.u32(little)?;
                if n == 0 {
                    out.push_str(" EMPTY");
                    return Some(());
                }
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    self.geometry(out, false, depth + 1)?;
                }
                out.push(')');
            }
            _ => {
                let n = self.u32(little)?;
                if n == 0 {
                    out.push_str(" EMPTY");
                    return Some(());
                }
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    self.geometry(out, true, depth + 1)?;
                }
                out.push(')');
            }
        }
        Some(())
    }

    fn points(&mut self, out: &mut String, little: bool) -> Option<()> {
        let n = self.u32(little)?;
        if n == 0 {
            out.push_str(" EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            let (x, y) = (self.f64(little)?, self.f64(little)?);
            point(out, x, y);
        }
        out.push(')');
        Some(())
    }

    fn rings(&mut self, out: &mut String, little: bool) -> Option<()> {
        let n = self.u32(little)?;
        if n == 0 {
            out.push_str(" EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.points(out, little)?;
        }
        out.push(')');
        Some(())
    }
}

/// `x y`, each the shortest decimal that reads back as the same double.
fn point(out: &mut String, x: f64, y: f64) {
    let _ = write!(out, "{x} {y}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point_wkb(x: f64, y: f64) -> Vec<u8> {
        let mut b = vec![1, 1, 0, 0, 0];
        b.extend(x.to_le_bytes());
        b.extend(y.to_le_bytes());
        b
    }

    #[test]
    fn splits_the_srid_from_the_wkb() {
        let mut internal = 4326u32.to_le_bytes().to_vec();
        internal.extend(point_wkb(51.4, 35.7));
        let (srid, wkb) = split(&internal).unwrap();
        assert_eq!(srid, 4326);
        assert_eq!(wkt(wkb).unwrap(), "POINT(51.4 35.7)");
    }

    #[test]
    fn writes_nested_geometries() {
        let mut poly = vec![1, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0];
        for (x, y) in [(0.0f64, 0.0f64), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)] {
            poly.extend(x.to_le_bytes());
            poly.extend(y.to_le_bytes());
        }
        let mut collection = vec![1, 7, 0, 0, 0, 2, 0, 0, 0];
        collection.extend(point_wkb(1.5, -2.0));
        collection.extend(&poly);
        assert_eq!(wkt(&collection).unwrap(), "GEOMETRYCOLLECTION(POINT(1.5 -2),POLYGON((0 0,1 0,1 1,0 0)))");
        let mut multi = vec![1, 4, 0, 0, 0, 2, 0, 0, 0];
        multi.extend(point_wkb(1.0, 2.0));
        multi.extend(point_wkb(3.0, 4.0));
        assert_eq!(wkt(&multi).unwrap(), "MULTIPOINT((1 2),(3 4))");
        assert!(wkt(&[9, 9]).is_none());
    }
}
