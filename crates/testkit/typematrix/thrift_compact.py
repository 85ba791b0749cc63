"""A small, generic Thrift *compact protocol* decoder and encoder, enough to read a
Parquet footer (FileMetaData) into nested field-id -> value dicts, edit it, and write it
back. No IDL: every struct decodes to a `Struct` (a dict from field id to value) that
remembers each field's wire type, so an untouched footer re-encodes byte for byte.

Values:
  bool                      Python bool     (wire types 1/2 in a struct, one byte in a list)
  byte, i16, i32, i64       Python int      (the wire type is kept in Struct.types / List.etype)
  double                    Python float
  binary (also strings)     Python bytes
  list, set                 List (a list subclass with .etype, .is_set)
  map                       Map (a list of (key, value) pairs with .ktype, .vtype)
  struct                    Struct (a dict subclass: {field_id: value}, with .types)
  uuid                      bytes (16)

Also the Parquet file helpers `split_parquet` / `join_parquet`, and the field ids of the
Parquet structs this project rewrites (see parquet.thrift).
"""

from __future__ import annotations

import struct as _struct

# Compact protocol wire types.
T_STOP = 0
T_BOOL_TRUE = 1
T_BOOL_FALSE = 2
T_BYTE = 3
T_I16 = 4
T_I32 = 5
T_I64 = 6
T_DOUBLE = 7
T_BINARY = 8
T_LIST = 9
T_SET = 10
T_MAP = 11
T_STRUCT = 12
T_UUID = 13

BOOL = T_BOOL_TRUE  # the type to name when adding a bool field; its value picks 1 or 2
INT_TYPES = (T_BYTE, T_I16, T_I32, T_I64)


class Struct(dict):
    """A Thrift struct: {field_id: value}, in wire order, plus each field's wire type."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.types: dict[int, int] = {}

    def set(self, fid: int, ttype: int, value) -> None:
        """Set (or add) field `fid` with wire type `ttype`. New fields go where the
        field ids keep ascending, as a Thrift writer would put them."""
        if fid not in self:
            items = list(self.items())
            types = dict(self.types)
            self.clear()
            placed = False
            for k, v in items:
                if not placed and k > fid:
                    dict.__setitem__(self, fid, value)
                    placed = True
                dict.__setitem__(self, k, v)
            if not placed:
                dict.__setitem__(self, fid, value)
            self.types = types
        else:
            dict.__setitem__(self, fid, value)
        self.types[fid] = BOOL if ttype in (T_BOOL_TRUE, T_BOOL_FALSE) else ttype

    def __setitem__(self, fid, value):
        if fid not in self.types:
            raise KeyError(f"field {fid} is new: use .set(fid, type, value) to give its wire type")
        dict.__setitem__(self, fid, value)

    def __delitem__(self, fid):
        dict.__delitem__(self, fid)
        del self.types[fid]

    def pop(self, fid, *default):
        if fid in self:
            del self.types[fid]
        return dict.pop(self, fid, *default)

    def __repr__(self):
        return "Struct(" + dict.__repr__(self) + ")"


class List(list):
    def __init__(self, etype: int, items=(), is_set: bool = False):
        super().__init__(items)
        self.etype = BOOL if etype in (T_BOOL_TRUE, T_BOOL_FALSE) else etype
        self.is_set = is_set

    def __repr__(self):
        return f"List({self.etype}, {list.__repr__(self)})"


class Map(list):
    def __init__(self, ktype: int, vtype: int, items=()):
        super().__init__(items)
        self.ktype, self.vtype = ktype, vtype


class ThriftError(ValueError):
    pass


# --------------------------------------------------------------------------- decoding

class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = memoryview(data)
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ThriftError("unexpected end of data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ThriftError("unexpected end of data")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, ttype: int):
        if ttype == T_BOOL_TRUE or ttype == T_BOOL_FALSE:
            # Only inside a list/set/map: one byte (1 = true; 0 or 2 = false).
            return self.byte() == 1
        if ttype == T_BYTE:
            b = self.byte()
            return b - 256 if b > 127 else b
        if ttype in (T_I16, T_I32, T_I64):
            return self.zigzag()
        if ttype == T_DOUBLE:
            return _struct.unpack("<d", self.take(8))[0]
        if ttype == T_BINARY:
            return self.take(self.varint())
        if ttype in (T_LIST, T_SET):
            head = self.byte()
            size, etype = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return List(etype, [self.value(etype) for _ in range(size)], is_set=ttype == T_SET)
        if ttype == T_MAP:
            size = self.varint()
            if size == 0:
                return Map(0, 0)
            kv = self.byte()
            kt, vt = kv >> 4, kv & 0x0F
            return Map(kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        if ttype == T_STRUCT:
            return self.struct()
        if ttype == T_UUID:
            return self.take(16)
        raise ThriftError(f"unknown compact type {ttype} at byte {self.pos}")

    def struct(self) -> Struct:
        out = Struct()
        last = 0
        while True:
            head = self.byte()
            if head == T_STOP:
                return out
            ttype, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else self.zigzag()
            if ttype in (T_BOOL_TRUE, T_BOOL_FALSE):
                value = ttype == T_BOOL_TRUE
            else:
                value = self.value(ttype)
            dict.__setitem__(out, fid, value)
            out.types[fid] = BOOL if ttype in (T_BOOL_TRUE, T_BOOL_FALSE) else ttype
            last = fid


def decode_struct(data: bytes, pos: int = 0) -> tuple[Struct, int]:
    """Decode one struct at `pos`; returns it and the position after it."""
    r = Reader(data, pos)
    s = r.struct()
    return s, r.pos


def decode(data: bytes) -> Struct:
    """Decode a struct that must fill `data` exactly."""
    s, end = decode_struct(data)
    if end != len(data):
        raise ThriftError(f"{len(data) - end} bytes left after the struct")
    return s


# --------------------------------------------------------------------------- encoding

def _varint(n: int) -> bytes:
    if n < 0:
        raise ThriftError("negative varint")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int, bits: int) -> bytes:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= n <= hi:
        raise ThriftError(f"{n} does not fit i{bits}")
    return _varint((n << 1) ^ (n >> (bits - 1)))


def _value(ttype: int, v, out: bytearray) -> None:
    if ttype in (T_BOOL_TRUE, T_BOOL_FALSE):
        out.append(1 if v else 2)  # in containers, as Apache Thrift's C++ writer does
    elif ttype == T_BYTE:
        out.append(v & 0xFF)
    elif ttype == T_I16:
        out += _zigzag(v, 16)
    elif ttype == T_I32:
        out += _zigzag(v, 32)
    elif ttype == T_I64:
        out += _zigzag(v, 64)
    elif ttype == T_DOUBLE:
        out += _struct.pack("<d", v)
    elif ttype == T_BINARY:
        if isinstance(v, str):
            v = v.encode()
        out += _varint(len(v)) + bytes(v)
    elif ttype in (T_LIST, T_SET):
        etype = v.etype
        if len(v) < 15:
            out.append((len(v) << 4) | etype)
        else:
            out.append(0xF0 | etype)
            out += _varint(len(v))
        for item in v:
            _value(etype, item, out)
    elif ttype == T_MAP:
        out += _varint(len(v))
        if len(v):
            out.append((v.ktype << 4) | v.vtype)
            for k, item in v:
                _value(v.ktype, k, out)
                _value(v.vtype, item, out)
    elif ttype == T_STRUCT:
        _struct_into(v, out)
    elif ttype == T_UUID:
        if len(v) != 16:
            raise ThriftError("a uuid is 16 bytes")
        out += v
    else:
        raise ThriftError(f"unknown compact type {ttype}")


def _struct_into(s: Struct, out: bytearray) -> None:
    last = 0
    for fid, v in s.items():
        ttype = s.types[fid]
        if ttype in (T_BOOL_TRUE, T_BOOL_FALSE):
            ttype = T_BOOL_TRUE if v else T_BOOL_FALSE
        delta = fid - last
        if 0 < delta <= 15:
            out.append((delta << 4) | ttype)
        else:
            out.append(ttype)
            out += _zigzag(fid, 16)
        if ttype not in (T_BOOL_TRUE, T_BOOL_FALSE):
            _value(ttype, v, out)
        last = fid
    out.append(T_STOP)


def encode(s: Struct) -> bytes:
    out = bytearray()
    _struct_into(s, out)
    return bytes(out)


# --------------------------------------------------------------------------- Parquet

MAGIC = b"PAR1"


def split_parquet(data: bytes) -> tuple[bytes, bytes]:
    """A Parquet file's bytes -> (everything before the footer, the footer's Thrift bytes)."""
    if data[:4] != MAGIC or data[-4:] != MAGIC:
        raise ThriftError("not a Parquet file (no PAR1 magic; encrypted footers are not handled)")
    n = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - n
    if start < 4:
        raise ThriftError("footer length out of range")
    return data[:start], data[start:-8]


def join_parquet(body: bytes, footer: bytes) -> bytes:
    return body + footer + len(footer).to_bytes(4, "little") + MAGIC


def read_footer(path) -> tuple[bytes, Struct]:
    """(the bytes before the footer, the decoded FileMetaData). Refuses a footer this module
    would not write back byte for byte, so a rewrite changes only what it means to."""
    with open(path, "rb") as f:
        data = f.read()
    body, footer = split_parquet(data)
    meta = decode(footer)
    if encode(meta) != footer:
        raise ThriftError(f"{path}: the footer does not re-encode byte for byte")
    return body, meta


def write_with_footer(path, body: bytes, meta: Struct) -> None:
    with open(path, "wb") as f:
        f.write(join_parquet(body, encode(meta)))


class FMD:  # FileMetaData
    version, schema, num_rows, row_groups, key_value_metadata, created_by, column_orders = 1, 2, 3, 4, 5, 6, 7


class SE:  # SchemaElement
    type, type_length, repetition_type, name, num_children, converted_type = 1, 2, 3, 4, 5, 6
    scale, precision, field_id, logicalType = 7, 8, 9, 10


class RG:  # RowGroup
    columns, total_byte_size, num_rows, sorting_columns, file_offset, total_compressed_size, ordinal = 1, 2, 3, 4, 5, 6, 7


class CC:  # ColumnChunk
    file_path, file_offset, meta_data, offset_index_offset, offset_index_length = 1, 2, 3, 4, 5
    column_index_offset, column_index_length = 6, 7


class CMD:  # ColumnMetaData
    type, encodings, path_in_schema, codec, num_values = 1, 2, 3, 4, 5
    total_uncompressed_size, total_compressed_size, key_value_metadata = 6, 7, 8
    data_page_offset, index_page_offset, dictionary_page_offset, statistics = 9, 10, 11, 12
    encoding_stats, bloom_filter_offset, bloom_filter_length, size_statistics = 13, 14, 15, 16


class LT:  # LogicalType union members
    STRING, MAP, LIST, ENUM, DECIMAL, DATE, TIME, TIMESTAMP = 1, 2, 3, 4, 5, 6, 7, 8
    INTEGER, UNKNOWN, JSON, BSON, UUID, FLOAT16 = 10, 11, 12, 13, 14, 15


class Rep:  # FieldRepetitionType
    REQUIRED, OPTIONAL, REPEATED = 0, 1, 2


class Conv:  # ConvertedType
    UTF8, MAP, MAP_KEY_VALUE, LIST, ENUM, DECIMAL = 0, 1, 2, 3, 4, 5


class PT:  # physical Type
    BOOLEAN, INT32, INT64, INT96, FLOAT, DOUBLE, BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY = range(8)


def _selftest() -> None:
    s = Struct()
    s.set(1, T_I32, -5)
    s.set(3, BOOL, False)
    s.set(2, T_BINARY, b"x" * 200)
    s.set(40, T_LIST, List(T_I64, range(20)))
    s.set(41, T_MAP, Map(T_BINARY, T_BOOL_TRUE, [(b"k", True), (b"j", False)]))
    inner = Struct()
    inner.set(1, T_DOUBLE, -0.0)
    s.set(5, T_STRUCT, inner)
    s.set(6, T_I64, -(1 << 63))
    s.set(7, T_BYTE, -1)
    data = encode(s)
    back = decode(data)
    assert back == s and back.types == s.types and list(back) == [1, 2, 3, 5, 6, 7, 40, 41], back
    assert encode(back) == data


if __name__ == "__main__":
    import sys

    _selftest()
    for p in sys.argv[1:]:
        with open(p, "rb") as f:
            raw = f.read()
        _, footer = split_parquet(raw)
        same = encode(decode(footer)) == footer
        print(f"{p}: footer {len(footer)} bytes, round trip {'identical' if same else 'DIFFERENT'}")
        if not same:
            sys.exit(1)
