//! Binary COPY → Arrow: the rows of `COPY (…) TO STDOUT (FORMAT binary)`
//! decoded straight into one builder per column, a batch at a time.
//!
//! The stream is a signature and header, then per row a field count and per
//! field a length (-1 for NULL) and the value in its type's binary send form,
//! then a trailer (a field count of -1). Values are big-endian; dates and
//! timestamps count from 2000-01-01.

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, make_builder,
};
use arrow::datatypes::SchemaRef;
use bytes::{Buf, BytesMut};
use weir_core::{Error, Result};

use crate::types::{Column, Kind, arrow_type};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

type ValueResult<T> = std::result::Result<T, String>;

/// One column being decoded.
struct ColumnBuilder {
    name: String,
    kind: Kind,
    builder: Box<dyn ArrayBuilder>,
}

/// Decodes a binary COPY stream into batches of `batch_size` rows.
pub struct Decoder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    /// Columns that name a row in an error: the primary key.
    key: Vec<usize>,
    batch_size: usize,
    buf: BytesMut,
    header_done: bool,
    ended: bool,
    rows: usize,
}

impl Decoder {
    pub fn new(schema: SchemaRef, columns: &[Column], key: Vec<usize>, batch_size: usize) -> Self {
        let columns = columns
            .iter()
            .map(|c| ColumnBuilder {
                name: c.name.clone(),
                kind: c.kind.clone(),
                builder: make_builder(&arrow_type(&c.kind), batch_size.min(8192)),
            })
            .collect();
        Self { schema, columns, key, batch_size, buf: BytesMut::new(), header_done: false, ended: false, rows: 0 }
    }

    /// Rows decoded and not yet returned in a batch.
    pub fn pending(&self) -> usize {
        self.rows
    }

    /// Take in `data` and decode every complete row; full batches go to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<()> {
        self.buf.extend_from_slice(data);
        if !self.header_done {
            // Signature, flags (4 bytes), header extension length (4 bytes) and the extension.
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(Error::internal("the server's COPY data is not in PostgreSQL's binary format"));
            }
            let ext = u32::from_be_bytes([self.buf[15], self.buf[16], self.buf[17], self.buf[18]]) as usize;
            if self.buf.len() < SIGNATURE.len() + 8 + ext {
                return Ok(());
            }
            self.buf.advance(SIGNATURE.len() + 8 + ext);
            self.header_done = true;
        }
        while !self.ended {
            let Some(fields) = row_fields(&self.buf, self.columns.len())? else { break };
            match fields {
                None => {
                    self.ended = true;
                    self.buf.advance(2);
                }
                Some((spans, len)) => {
                    let row = self.buf.split_to(len).freeze();
                    self.push(&row, &spans)?;
                    if self.rows >= self.batch_size {
                        out.push(self.finish()?);
                    }
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, row: &[u8], spans: &[Option<(usize, usize)>]) -> Result<()> {
        for (i, span) in spans.iter().enumerate() {
            let column = &mut self.columns[i];
            match span {
                None => append_null(&column.kind, column.builder.as_mut()),
                Some((start, end)) => {
                    let raw = &row[*start..*end];
                    if let Err(why) = append(&column.kind, column.builder.as_mut(), raw) {
                        return Err(self.value_error(row, spans, i, &why));
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn value_error(&self, row: &[u8], spans: &[Option<(usize, usize)>], column: usize, why: &str) -> Error {
        let key: Vec<String> = self
            .key
            .iter()
            .map(|&k| {
                let c = &self.columns[k];
                let value = spans[k].map(|(s, e)| render(&c.kind, &row[s..e])).unwrap_or_else(|| "NULL".to_owned());
                format!("{}={value}", c.name)
            })
            .collect();
        let at = if key.is_empty() { "a row".to_owned() } else { format!("the row {}", key.join(", ")) };
        Error::user(format!("column `{}` at {at}: {why}", self.columns[column].name))
    }

    /// The rows decoded so far as one batch; the builders start over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.builder.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::internal(format!("building an Arrow batch from COPY data: {e}")))
    }

    /// Whether the trailer arrived: the COPY data is complete.
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// The next row's field spans (offsets into `buf`) and its length, `Some(None)`
/// for the trailer, `None` if the row is not complete yet.
#[allow(clippy::type_complexity)]
fn row_fields(buf: &[u8], columns: usize) -> Result<Option<Option<(Vec<Option<(usize, usize)>>, usize)>>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([buf[0], buf[1]]);
    if count == -1 {
        return Ok(Some(None));
    }
    if count as usize != columns {
        return Err(Error::internal(format!("a COPY row has {count} fields, not the {columns} columns asked for")));
    }
    let mut pos = 2;
    let mut spans = Vec::with_capacity(columns);
    for _ in 0..columns {
        let Some(len) = buf.get(pos..pos + 4) else { return Ok(None) };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if len < 0 {
            spans.push(None);
            continue;
        }
        let end = pos + len as usize;
        if end > buf.len() {
            return Ok(None);
        }
        spans.push(Some((pos, end)));
        pos = end;
    }
    Ok(Some(Some((spans, pos))))
}

fn fixed<const N: usize>(raw: &[u8]) -> ValueResult<[u8; N]> {
    raw.try_into().map_err(|_| format!("expected {N} bytes from the server, got {}", raw.len()))
}

fn downcast<T: 'static>(builder: &mut dyn ArrayBuilder) -> &mut T {
    // The builder was made from this column's kind.
    #[allow(clippy::expect_used)]
    builder.as_any_mut().downcast_mut::<T>().expect("a builder of the column's kind")
}

pub(crate) fn append_null(kind: &Kind, builder: &mut dyn ArrayBuilder) {
    match kind {
        Kind::Bool => downcast::<BooleanBuilder>(builder).append_null(),
        Kind::Int2 => downcast::<Int16Builder>(builder).append_null(),
        Kind::Int4 => downcast::<Int32Builder>(builder).append_null(),
        Kind::Int8 => downcast::<Int64Builder>(builder).append_null(),
        Kind::Float4 => downcast::<Float32Builder>(builder).append_null(),
        Kind::Float8 => downcast::<Float64Builder>(builder).append_null(),
        Kind::Decimal { .. } => downcast::<Decimal128Builder>(builder).append_null(),
        Kind::Text | Kind::Uuid | Kind::Json | Kind::Jsonb => downcast::<StringBuilder>(builder).append_null(),
        Kind::Bytea => downcast::<BinaryBuilder>(builder).append_null(),
        Kind::Date => downcast::<Date32Builder>(builder).append_null(),
        Kind::Time => downcast::<Time64MicrosecondBuilder>(builder).append_null(),
        Kind::Timestamp | Kind::TimestampTz => downcast::<TimestampMicrosecondBuilder>(builder).append_null(),
        Kind::Array(_) => downcast::<ListBuilder<Box<dyn ArrayBuilder>>>(builder).append_null(),
    }
}

/// Append one value in its binary send form.
fn append(kind: &Kind, builder: &mut dyn ArrayBuilder, raw: &[u8]) -> ValueResult<()> {
    match kind {
        Kind::Bool => downcast::<BooleanBuilder>(builder).append_value(fixed::<1>(raw)?[0] != 0),
        Kind::Int2 => downcast::<Int16Builder>(builder).append_value(i16::from_be_bytes(fixed(raw)?)),
        Kind::Int4 => downcast::<Int32Builder>(builder).append_value(i32::from_be_bytes(fixed(raw)?)),
        Kind::Int8 => downcast::<Int64Builder>(builder).append_value(i64::from_be_bytes(fixed(raw)?)),
        Kind::Float4 => downcast::<Float32Builder>(builder).append_value(f32::from_be_bytes(fixed(raw)?)),
        Kind::Float8 => downcast::<Float64Builder>(builder).append_value(f64::from_be_bytes(fixed(raw)?)),
        Kind::Decimal { scale, .. } => downcast::<Decimal128Builder>(builder).append_value(numeric(raw, *scale)?),
        Kind::Text | Kind::Json => downcast::<StringBuilder>(builder).append_value(utf8(raw)?),
        Kind::Jsonb => match raw.split_first() {
            Some((1, text)) => downcast::<StringBuilder>(builder).append_value(utf8(text)?),
            _ => return Err("a jsonb value in an unknown binary version".to_owned()),
        },
        Kind::Uuid => downcast::<StringBuilder>(builder).append_value(uuid(&fixed::<16>(raw)?)),
        Kind::Bytea => downcast::<BinaryBuilder>(builder).append_value(raw),
        Kind::Date => downcast::<Date32Builder>(builder).append_value(date(raw)?),
        Kind::Time => downcast::<Time64MicrosecondBuilder>(builder).append_value(i64::from_be_bytes(fixed(raw)?)),
        Kind::Timestamp | Kind::TimestampTz => {
            downcast::<TimestampMicrosecondBuilder>(builder).append_value(timestamp(raw)?)
        }
        Kind::Array(item) => {
            let list = downcast::<ListBuilder<Box<dyn ArrayBuilder>>>(builder);
            for element in array_elements(raw)? {
                match element {
                    None => append_null(item, list.values().as_mut()),
                    Some(value) => append(item, list.values().as_mut(), value)?,
                }
            }
            list.append(true);
        }
    }
    Ok(())
}

fn utf8(raw: &[u8]) -> ValueResult<&str> {
    std::str::from_utf8(raw).map_err(|e| format!("the server sent text that is not UTF-8 ({e})"))
}

fn date(raw: &[u8]) -> ValueResult<i32> {
    match i32::from_be_bytes(fixed(raw)?) {
        i32::MAX | i32::MIN => Err(infinite("date")),
        days => days.checked_add(EPOCH_DAYS).ok_or_else(|| "the date is out of range".to_owned()),
    }
}

fn timestamp(raw: &[u8]) -> ValueResult<i64> {
    match i64::from_be_bytes(fixed(raw)?) {
        i64::MAX | i64::MIN => Err(infinite("timestamp")),
        micros => micros.checked_add(EPOCH_MICROS).ok_or_else(|| "the timestamp is out of range".to_owned()),
    }
}

fn infinite(what: &str) -> String {
    format!(
        "the {what} is ±infinity, which Arrow (and so every destination but PostgreSQL) cannot hold; select it \
         in options.query as NULL (`CASE WHEN isfinite(col) THEN col END`) or as text (`col::text`)"
    )
}

/// `numeric`'s send form as an integer at `scale`: a digit count, a weight
/// (the power of 10000 of the first digit), a sign, a display scale, then
/// base-10000 digits.
fn numeric(raw: &[u8], scale: i8) -> ValueResult<i128> {
    let word = |i: usize| raw.get(2 * i..2 * i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let bad = || format!("a numeric value of {} bytes is not in its binary form", raw.len());
    let (ndigits, weight, sign) = (word(0).ok_or_else(bad)?, word(1).ok_or_else(bad)? as i16, word(2).ok_or_else(bad)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err(special("NaN")),
        0xD000 => return Err(special("Infinity")),
        0xF000 => return Err(special("-Infinity")),
        _ => return Err(bad()),
    }
    let overflow = || "the numeric value does not fit its declared precision".to_owned();
    let mut value: i128 = 0;
    for i in 0..ndigits as usize {
        let digit = i128::from(word(4 + i).ok_or_else(bad)?);
        let exp = 4 * (i32::from(weight) - i as i32) + i32::from(scale);
        if exp >= 0 {
            let factor = 10i128.checked_pow(exp as u32).ok_or_else(overflow)?;
            value = digit.checked_mul(factor).and_then(|d| value.checked_add(d)).ok_or_else(overflow)?;
        } else {
            let divisor = 10i128.pow((-exp).min(4) as u32);
            if digit % divisor != 0 {
                return Err("the numeric value has more fraction digits than its declared scale".to_owned());
            }
            value += digit / divisor;
        }
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

fn special(value: &str) -> String {
    format!(
        "the numeric value is {value}, which a decimal cannot hold; declare the column `numeric` without \
         precision (it then loads as exact text), or select it in options.query as `col::text`"
    )
}

fn uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The elements of a one-dimensional array's send form (NULL elements as `None`).
fn array_elements(raw: &[u8]) -> ValueResult<Vec<Option<&[u8]>>> {
    let int = |at: usize| {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "an array value is cut short".to_owned())
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array; Weir loads one-dimensional arrays as lists: select it in options.query \
             as JSON (`to_jsonb(col)`) or text"
        ));
    }
    let (count, lower) = (int(12)?, int(16)?);
    if lower != 1 {
        return Err(format!(
            "an array whose first index is {lower}, not 1 (a list would lose that); select it in options.query \
             as JSON (`to_jsonb(col)`) or text"
        ));
    }
    let mut pos = 20;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let len = int(pos)?;
        pos += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = pos + len as usize;
        out.push(Some(raw.get(pos..end).ok_or_else(|| "an array value is cut short".to_owned())?));
        pos = end;
    }
    Ok(out)
}

/// A key value as text, for an error message.
fn render(kind: &Kind, raw: &[u8]) -> String {
    let ok = |r: ValueResult<String>| r.unwrap_or_else(|_| "?".to_owned());
    match kind {
        Kind::Int2 => ok(fixed(raw).map(|b| i16::from_be_bytes(b).to_string())),
        Kind::Int4 => ok(fixed(raw).map(|b| i32::from_be_bytes(b).to_string())),
        Kind::Int8 => ok(fixed(raw).map(|b| i64::from_be_bytes(b).to_string())),
        Kind::Text => String::from_utf8_lossy(raw).into_owned(),
        Kind::Uuid => ok(fixed::<16>(raw).map(|b| uuid(&b))),
        _ => format!("({} bytes)", raw.len()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Schema;

    use super::*;

    fn numeric_bytes(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            out.extend(w.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_decode_exactly_at_their_scale() {
        // 1234567.89 = [123, 4567, 8900] with weight 1
        assert_eq!(numeric(&numeric_bytes(3, 1, 0, 2, &[123, 4567, 8900]), 2).unwrap(), 123456789);
        assert_eq!(numeric(&numeric_bytes(1, -1, 0x4000, 4, &[5]), 4).unwrap(), -5);
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 0, &[]), 2).unwrap(), 0);
        assert!(numeric(&numeric_bytes(0, 0, 0xC000, 0, &[]), 2).unwrap_err().contains("NaN"));
    }

    #[test]
    fn a_stream_decodes_into_batches_of_rows() {
        let columns = vec![
            Column { name: "id".into(), kind: Kind::Int4, pg_type: "integer".into(), as_text: false },
            Column { name: "s".into(), kind: Kind::Text, pg_type: "text".into(), as_text: false },
        ];
        let schema = Arc::new(Schema::new(columns.iter().map(Column::field).collect::<Vec<_>>()));
        let mut data = SIGNATURE.to_vec();
        data.extend([0u8; 8]);
        for (id, s) in [(1, Some("a")), (2, None), (3, Some("ccc"))] {
            data.extend(2i16.to_be_bytes());
            data.extend(4i32.to_be_bytes());
            data.extend(i32::to_be_bytes(id));
            match s {
                Some(s) => {
                    data.extend((s.len() as i32).to_be_bytes());
                    data.extend(s.as_bytes());
                }
                None => data.extend((-1i32).to_be_bytes()),
            }
        }
        data.extend((-1i16).to_be_bytes());
        let mut decoder = Decoder::new(schema, &columns, vec![0], 2);
        let mut out = Vec::new();
        // Fed in awkward pieces, as the network may cut it.
        for piece in data.chunks(7) {
            decoder.feed(piece, &mut out).unwrap();
        }
        assert!(decoder.ended());
        out.push(decoder.finish().unwrap());
        assert_eq!(out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), [2, 1]);
        assert!(out[0].column(1).as_string::<i32>().is_null(1));
        assert_eq!(out[1].column(1).as_string::<i32>().value(0), "ccc");
    }
}
