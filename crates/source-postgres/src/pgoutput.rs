//! pgoutput, protocol version 1: the messages PostgreSQL's built-in logical
//! decoding plugin sends for a publication. Values arrive as the text the
//! type's output function prints (the replication connection sets ISO dates
//! and `extra_float_digits = 3`, so every value is exact).

use bytes::{Buf, Bytes};
use weir_core::{Error, Result};

use crate::replication::Lsn;

/// A column of a relation, as the Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    /// Part of the replica identity (the primary key, or every column with FULL).
    pub key: bool,
}

/// A table as the stream describes it, before its first change and after each schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// `d` default (primary key), `f` full, `i` index, `n` nothing.
    pub identity: u8,
    pub columns: Vec<RelColumn>,
}

/// One column's value in a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value the update did not change: the server did not send it.
    Unchanged,
    Text(Bytes),
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    /// `old`: the old key (or whole old row with REPLICA IDENTITY FULL) when it changed.
    Update {
        relation: u32,
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        relation: u32,
        old: Vec<Value>,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Origin, Type and logical decoding messages: nothing to apply.
    Other,
}

fn cut(body: &Bytes, need: usize) -> Result<()> {
    if body.remaining() < need {
        return Err(Error::internal("a pgoutput message is cut short"));
    }
    Ok(())
}

fn string(body: &mut Bytes) -> Result<String> {
    let end = body.iter().position(|b| *b == 0).ok_or_else(|| Error::internal("a pgoutput string has no end"))?;
    let s = String::from_utf8_lossy(&body[..end]).into_owned();
    body.advance(end + 1);
    Ok(s)
}

fn tuple(body: &mut Bytes) -> Result<Vec<Value>> {
    cut(body, 2)?;
    let n = body.get_i16();
    let mut values = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        cut(body, 1)?;
        values.push(match body.get_u8() {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => {
                cut(body, 4)?;
                let len = body.get_i32().max(0) as usize;
                cut(body, len)?;
                Value::Text(body.split_to(len))
            }
            other => {
                return Err(Error::internal(format!("pgoutput tuple value kind {:?} is not known", other as char)));
            }
        });
    }
    Ok(values)
}

/// Decode one message (the body of an XLogData).
pub fn decode(mut body: Bytes) -> Result<Message> {
    cut(&body, 1)?;
    Ok(match body.get_u8() {
        b'B' => {
            cut(&body, 20)?;
            Message::Begin { final_lsn: Lsn(body.get_u64()), commit_time: body.get_i64(), xid: body.get_u32() }
        }
        b'C' => {
            cut(&body, 25)?;
            body.advance(1);
            Message::Commit {
                commit_lsn: Lsn(body.get_u64()),
                end_lsn: Lsn(body.get_u64()),
                commit_time: body.get_i64(),
            }
        }
        b'R' => {
            cut(&body, 4)?;
            let id = body.get_u32();
            let schema = string(&mut body)?;
            let name = string(&mut body)?;
            cut(&body, 3)?;
            let identity = body.get_u8();
            let n = body.get_i16();
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                cut(&body, 1)?;
                let flags = body.get_u8();
                let name = string(&mut body)?;
                cut(&body, 8)?;
                columns.push(RelColumn { name, type_oid: body.get_u32(), typmod: body.get_i32(), key: flags & 1 == 1 });
            }
            Message::Relation(Relation { id, schema, name, identity, columns })
        }
        b'I' => {
            cut(&body, 5)?;
            let relation = body.get_u32();
            body.advance(1); // 'N'
            Message::Insert { relation, new: tuple(&mut body)? }
        }
        b'U' => {
            cut(&body, 5)?;
            let relation = body.get_u32();
            let mut old = None;
            let mut kind = body.get_u8();
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut body)?);
                cut(&body, 1)?;
                kind = body.get_u8();
            }
            if kind != b'N' {
                return Err(Error::internal("a pgoutput update has no new tuple"));
            }
            Message::Update { relation, old, new: tuple(&mut body)? }
        }
        b'D' => {
            cut(&body, 5)?;
            let relation = body.get_u32();
            body.advance(1); // 'K' or 'O'
            Message::Delete { relation, old: tuple(&mut body)? }
        }
        b'T' => {
            cut(&body, 5)?;
            let n = body.get_u32();
            body.advance(1); // options: CASCADE, RESTART IDENTITY
            cut(&body, 4 * n as usize)?;
            Message::Truncate { relations: (0..n).map(|_| body.get_u32()).collect() }
        }
        _ => Message::Other,
    })
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    #[test]
    fn decodes_a_relation_and_its_changes() {
        let mut r = BytesMut::new();
        r.put_u8(b'R');
        r.put_u32(42);
        r.put_slice(b"public\0events\0");
        r.put_u8(b'd');
        r.put_i16(2);
        for (flags, name, oid) in [(1u8, "id", 20u32), (0, "body", 25)] {
            r.put_u8(flags);
            r.put_slice(name.as_bytes());
            r.put_u8(0);
            r.put_u32(oid);
            r.put_i32(-1);
        }
        let Message::Relation(rel) = decode(r.freeze()).unwrap() else { panic!("a relation") };
        assert_eq!((rel.name.as_str(), rel.columns.len(), rel.columns[0].key), ("events", 2, true));

        let mut u = BytesMut::new();
        u.put_u8(b'U');
        u.put_u32(42);
        u.put_u8(b'N');
        u.put_i16(2);
        u.put_u8(b't');
        u.put_i32(1);
        u.put_slice(b"7");
        u.put_u8(b'u');
        let change = decode(u.freeze()).unwrap();
        assert_eq!(
            change,
            Message::Update {
                relation: 42,
                old: None,
                new: vec![Value::Text(Bytes::from_static(b"7")), Value::Unchanged]
            }
        );
    }
}
