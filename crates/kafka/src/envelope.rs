//! Rows as messages: the key (the primary key's columns as a JSON object) and
//! the value (the row as a JSON object; for a change stream, Debezium's
//! envelope: `before`, `after`, `op`, `source`, `ts_ms`).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use weir_core::changes;
use weir_core::json::{JsonCounts, write_str, write_value};
use weir_core::{Error, Result};

/// How a batch's rows become keys and values.
pub struct Encoder {
    /// The table's columns (not the change columns), by index in the batch.
    columns: Vec<(usize, String)>,
    key: Vec<usize>,
    changes: bool,
    /// `source.name` of the envelope: the pipeline.
    name: String,
    pub counts: JsonCounts,
}

impl Encoder {
    pub fn new(schema: &arrow::datatypes::Schema, key: &[String], name: &str) -> Result<Self> {
        let columns: Vec<(usize, String)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !changes::is_meta(f.name()))
            .map(|(i, f)| (i, f.name().clone()))
            .collect();
        let key = key
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|_| Error::user(format!("primary_key column `{k}` is not among the source's columns")))
            })
            .collect::<Result<_>>()?;
        let changes = schema.index_of(changes::OP).is_ok();
        Ok(Self { columns, key, changes, name: name.to_owned(), counts: JsonCounts::default() })
    }

    /// The message key: `{"id": 7}`; `None` without a primary key.
    pub fn key(&mut self, batch: &RecordBatch, row: usize) -> Result<Option<Vec<u8>>> {
        if self.key.is_empty() {
            return Ok(None);
        }
        let mut out = String::from("{");
        for (n, &i) in self.key.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_str(batch.schema().field(i).name(), &mut out, &mut self.counts);
            out.push(':');
            value(batch.column(i).as_ref(), row, &mut out, &mut self.counts)?;
        }
        out.push('}');
        Ok(Some(out.into_bytes()))
    }

    /// The message value.
    pub fn message(&mut self, batch: &RecordBatch, row: usize, now_ms: i64) -> Result<Vec<u8>> {
        if !self.changes {
            let mut out = String::with_capacity(256);
            self.object(batch, row, &mut out)?;
            return Ok(out.into_bytes());
        }
        let column =
            |name: &str| batch.column_by_name(name).ok_or_else(|| Error::internal(format!("no `{name}` column")));
        let op = column(changes::OP)?.as_string::<i32>().value(row).to_owned();
        let lsn = column(changes::LSN)?.as_primitive::<Int64Type>().value(row);
        let commit_lsn = column(changes::COMMIT_LSN)?.as_primitive::<Int64Type>().value(row);
        let time = column(changes::COMMIT_TIME)?;
        let time = time.as_primitive::<TimestampMicrosecondType>();
        let ts_ms = (!time.is_null(row)).then(|| time.value(row).div_euclid(1000));
        let mut out = String::with_capacity(320);
        out.push_str("{\"before\":");
        match op.as_str() {
            changes::op::DELETE => self.object(batch, row, &mut out)?,
            _ => out.push_str("null"),
        }
        out.push_str(",\"after\":");
        match op.as_str() {
            changes::op::DELETE | changes::op::TRUNCATE => out.push_str("null"),
            _ => self.object(batch, row, &mut out)?,
        }
        out.push_str(",\"source\":{\"connector\":\"weir\",\"name\":");
        write_str(&self.name, &mut out, &mut self.counts);
        out.push_str(&format!(",\"lsn\":{lsn},\"commit_lsn\":{commit_lsn},\"ts_ms\":"));
        out.push_str(&ts_ms.map_or("null".to_owned(), |t| t.to_string()));
        out.push_str(&format!(",\"snapshot\":{}}}", if op == changes::op::READ { "\"true\"" } else { "\"false\"" }));
        out.push_str(",\"op\":");
        write_str(&op, &mut out, &mut self.counts);
        out.push_str(&format!(",\"ts_ms\":{now_ms}}}"));
        Ok(out.into_bytes())
    }

    fn object(&mut self, batch: &RecordBatch, row: usize, out: &mut String) -> Result<()> {
        out.push('{');
        for (n, (i, name)) in self.columns.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write_str(name, out, &mut self.counts);
            out.push(':');
            value(batch.column(*i).as_ref(), row, out, &mut self.counts)?;
        }
        out.push('}');
        Ok(())
    }
}

/// A value as exact JSON; `null` for a NULL.
fn value(array: &dyn Array, row: usize, out: &mut String, counts: &mut JsonCounts) -> Result<()> {
    if array.is_null(row) {
        out.push_str("null");
        return Ok(());
    }
    write_value(array, row, out, counts).map_err(Error::user)
}

/// Kafka's default partitioner: murmur2 of the key, as the Java client computes it,
/// so that consumers and other producers agree on where a key lives.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i64 % i64::from(partitions.max(1))) as i32
}

fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_the_java_clients() {
        // Kafka's own test vectors (UtilsTest.testMurmur2).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
