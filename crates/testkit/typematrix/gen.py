#!/usr/bin/env python3
"""Write the type-matrix Parquet files and their manifest.

    python3 gen.py OUTDIR

One file per case at OUTDIR/<case>/part-0.parquet, and OUTDIR/manifest.json saying what
each destination must end up with (see README.md). Deterministic: the same pyarrow
writes the same bytes. After writing, every file is read back with pyarrow, the counts
Weir must report are recomputed from the data with check.py's rules and compared with the
counts written by hand below, and the legacy and malformed files are checked to be what
they claim to be.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
from decimal import Context, Decimal, localcontext

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402  (the mapping rules)
import thrift_compact as tc  # noqa: E402

I8, I16, I32, I64 = [(-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)]
U8, U16, U32, U64 = [(1 << b) - 1 for b in (8, 16, 32, 64)]
NAN, INF = float("nan"), float("inf")
DAY_US = 86_400_000_000


# ============================================================================ value helpers

class B:
    """A float given by its IEEE bits."""

    def __init__(self, bits: int):
        self.bits = bits


def floats(width: int, vals) -> pa.Array:
    fmt, size = {16: ("<e", 2), 32: ("<f", 4), 64: ("<d", 8)}[width]
    data = b"".join(
        b"\0" * size if v is None else v.bits.to_bytes(size, "little") if isinstance(v, B) else struct.pack(fmt, v)
        for v in vals)
    validity = pa.array([v is not None for v in vals]).buffers()[1] if None in vals else None
    typ = {16: pa.float16(), 32: pa.float32(), 64: pa.float64()}[width]
    return pa.Array.from_buffers(typ, len(vals), [validity, pa.py_buffer(data)])


def list_of(values_array: pa.Array, lengths, typ=None) -> pa.Array:
    """A list array over values_array; lengths: an int per row, or None for a null list."""
    offsets, pos = [0], 0
    for n in lengths:
        pos += n or 0
        offsets.append(pos)
    assert pos == len(values_array), (pos, len(values_array))
    mask = pa.array([n is None for n in lengths])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values_array, type=typ, mask=mask)


def struct_of(fields: dict, null_rows=(), typ=None) -> pa.Array:
    n = len(next(iter(fields.values())))
    mask = pa.array([i in null_rows for i in range(n)])
    if typ is not None:
        return pa.StructArray.from_arrays(list(fields.values()), fields=list(typ), mask=mask)
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields), mask=mask)


F32 = [0.0, -0.0, 1.5, NAN, INF, -INF, B(0x00000001), B(0x007FFFFF), B(0x00800000), B(0x7F7FFFFF),
       B(0xFF7FFFFF), 0.1, 1 / 3, -2.5e-30, 16777217.0, None]
F64 = [0.0, -0.0, 1.5, NAN, INF, -INF, B(0x1), B(0x000FFFFFFFFFFFFF), B(0x0010000000000000),
       B(0x7FEFFFFFFFFFFFFF), B(0xFFEFFFFFFFFFFFFF), 0.1, 1 / 3, -1e-300, 9007199254740993.0, None]
F16 = [0.0, -0.0, 1.5, NAN, INF, -INF, B(0x0001), B(0x03FF), B(0x0400), B(0x7BFF), B(0xFBFF),
       0.1, 1 / 3, -6.1e-5, 2049.0, None]

STRINGS = ["", "a", "ñandú", "日本語のテキスト", "😀👍🏽🇩🇪", "e\u0301 combining", "עברית العربية",
           'quote " backslash \\ slash /', "line1\nline2\ttab\rcr", "\u2028\u2029 separators",
           "\ufeffBOM", "\x01\x1f controls", "x" * 300, "\U0010FFFF max", "NULL", "\\x41", None]
BINARIES = [b"", b"\x00", b"\xff\xfe\xfd", b"\x80\x81", b"\xc3\x28", b"\xed\xa0\x80", b"plain ascii",
            bytes(range(256)), b"\x00" * 5, None]


def days(y, m, d) -> int:
    return check.days_from_civil(y, m, d)


def us(y, mo, d, h=0, mi=0, s=0, frac=0) -> int:
    """Microseconds since the epoch; frac in microseconds."""
    return ((days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1_000_000) + frac


def dec(p: int, s: int, kind: str) -> Decimal:
    with localcontext(Context(prec=100)):
        if kind == "max":
            return Decimal(10 ** p - 1).scaleb(-s)
        if kind == "min":
            return -Decimal(10 ** p - 1).scaleb(-s)
        if kind == "zero":
            return Decimal(0).scaleb(-s)
        if kind == "eps":
            return Decimal(1).scaleb(-s)
        if kind == "-eps":
            return Decimal(-1).scaleb(-s)
        if kind == "mid":
            return Decimal(int(("1234567890" * 8)[:p])).scaleb(-s)
    raise ValueError(kind)


DEC_KINDS = ["max", "min", "zero", "eps", "-eps", "mid", None]


def dec_column(p, s, typ=None, kinds=DEC_KINDS):
    typ = typ or (pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s))
    return pa.array([dec(p, s, k) if k else None for k in kinds], typ)


def table(columns: dict, schema_fields=None) -> pa.Table:
    """columns: name -> array; a non-null int32 row_id is put first."""
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = [pa.array(range(n), pa.int32())] + list(columns.values())
    fields = [pa.field("row_id", pa.int32(), nullable=False)]
    for name, arr in columns.items():
        f = (schema_fields or {}).get(name)
        fields.append(f if f is not None else pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# ============================================================================ the cases

CASES: list[dict] = []


def case(name, description, tbl, write=None, post=None, postgres=None, delta=None,
         pg_counts=None, delta_counts=None, reference=None, row_groups=None, verify=None):
    """Register a case. pg_counts/delta_counts: the audit.details counts, written by hand
    and checked against the data. postgres/delta: an explicit non-exact expectation."""
    assert name.isascii() and name == name.lower() and len(name) <= 40
    assert all(c.isalnum() or c == "_" for c in name), name
    assert name not in {c["name"] for c in CASES}, name
    CASES.append(dict(name=name, description=description, table=tbl, write=write or {}, post=post,
                      postgres=postgres, delta=delta, pg_counts=pg_counts or {},
                      delta_counts=delta_counts or {}, reference=reference,
                      row_groups=row_groups, verify=verify))


def fails(*substrings):
    return {"outcome": "fails", "message": list(substrings)}


# ---------------------------------------------------------------- scalars

def scalar_cases():
    case("ints_signed", "int8/16/32/64: min, max, 0, ±1, min+1, max-1, null", table({
        f"i{b}": pa.array([lo, hi, 0, -1, 1, None, lo + 1, hi - 1], t)
        for b, (lo, hi), t in [(8, I8, pa.int8()), (16, I16, pa.int16()), (32, I32, pa.int32()), (64, I64, pa.int64())]
    }))
    case("ints_unsigned", "uint8/16/32/64: 0, max, 1, max-1, 2^(n-1), 2^(n-1)-1, null", table({
        f"u{b}": pa.array([0, mx, 1, mx - 1, 1 << (b - 1), (1 << (b - 1)) - 1, None, 42], t)
        for b, mx, t in [(8, U8, pa.uint8()), (16, U16, pa.uint16()), (32, U32, pa.uint32()), (64, U64, pa.uint64())]
    }))
    case("floats", "float16 (FLBA(2) Float16), float32, float64: ±0, NaN, ±Inf, subnormals, "
         "min normal, ±max finite, inexact values, null", table({
             "f16": floats(16, F16), "f32": floats(32, F32), "f64": floats(64, F64)}))
    case("bool", "BOOLEAN: true, false, null; and a required boolean", table({
        "b": pa.array([True, False, None, True, False]),
        "b_req": pa.array([False, True, True, False, True])},
        {"b_req": pa.field("b_req", pa.bool_(), nullable=False)}))
    case("strings", "string and large_string: empty, multi-byte UTF-8, emoji, combining marks, "
         "RTL, quotes, backslashes, control characters, U+2028, BOM, U+10FFFF, 300 chars, null",
         table({"s": pa.array(STRINGS, pa.string()), "ls": pa.array(STRINGS, pa.large_string())}))
    case("string_nul", "a string holding U+0000 (PostgreSQL text cannot store it)", table({
        "text_with_nul": pa.array(["before\x00after", "plain", None])}),
        postgres=fails("text_with_nul"))
    case("struct_string_nul", "U+0000 in a string inside a struct (jsonb cannot store \\u0000)", table({
        "s_with_nul": pa.array([{"t": "a\x00b"}, {"t": "ok"}], pa.struct([("t", pa.string())]))}),
        postgres=fails("s_with_nul"))
    case("binary", "binary, large_binary, fixed_size_binary(4): empty, NUL bytes, invalid UTF-8, "
         "all 256 byte values, null", table({
             "bin": pa.array(BINARIES, pa.binary()),
             "lbin": pa.array(BINARIES, pa.large_binary()),
             "fbin": pa.array([b"\0\0\0\0", b"\xff\xff\xff\xff", b"abcd", b"\xc3\x28\x00\x80", None,
                               b"\xed\xa0\x80\x00", b"1234", b"    ", b"\x00\x01\x02\x03", b"zzzz"], pa.binary(4))}))
    case("view_types", "string_view and binary_view (restored from the ARROW:schema hint)", table({
        "sv": pa.array(STRINGS, pa.string_view()),
        "bv": pa.array(BINARIES + [b"x" * 20] * 7, pa.binary_view())}))
    dict_vals = ["a", "b", "a", None, "", "ü😀", "a", "b"]
    case("dictionary_strings", "dictionary<int32,string>, dictionary<int8,string>, "
         "dictionary<int16,large_string> with nulls and an empty string", table({
             "d32": pa.array(dict_vals).dictionary_encode(),
             "d8": pa.array(dict_vals).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string())),
             "d16l": pa.array(dict_vals, pa.large_string()).dictionary_encode().cast(
                 pa.dictionary(pa.int16(), pa.large_string()))}))
    case("dictionary_int", "dictionary<int32,int64> (pyarrow reads it back as int64; arrow-rs may "
         "keep the dictionary from the hint)", table({
             "di": pa.array([5, I64[0], 5, None, I64[1], 5], pa.int64()).dictionary_encode()}))
    case("null_type", "the null type (INT32 with the Null/UNKNOWN logical type) and list<null>", table({
        "n": pa.nulls(4),
        "ln": pa.array([None, [], [None, None], [None]], pa.list_(pa.null()))}))
    case("uuid", "arrow.uuid (FLBA(16) with the UUID logical type)", table({
        "u": pa.ExtensionArray.from_storage(pa.uuid(), pa.array(
            [b"\0" * 16, b"\xff" * 16, bytes(range(16)), None, bytes.fromhex("123e4567e89b12d3a456426614174000")],
            pa.binary(16)))}))
    case("json_logical", "arrow.json (BYTE_ARRAY with the JSON logical type); values written in "
         "PostgreSQL's jsonb output form", table({
             "j": pa.ExtensionArray.from_storage(pa.json_(), pa.array(
                 ['{"a": 1, "b": [true, null]}', "[]", '"text"', "1.50", "null", '{"é": "😀"}', "{}", None]))}))

    # decimals
    case("decimal_flba", "decimal128 in FIXED_LEN_BYTE_ARRAY: precisions 1..38, scales 0..p; "
         "±(10^p-1)/10^s, 0, ±10^-s, null", table({
             f"d_{p}_{s}": dec_column(p, s)
             for p, s in [(1, 0), (9, 2), (18, 18), (19, 4), (28, 10), (38, 0), (38, 10), (38, 38)]}))
    case("decimal_int", "decimal128 stored as INT32 (p<=9) and INT64 (p<=18) "
         "(store_decimal_as_integer), and one p=19 still in FLBA", table({
             f"d_{p}_{s}": dec_column(p, s)
             for p, s in [(1, 0), (4, 2), (9, 0), (9, 9), (10, 2), (18, 0), (18, 6), (19, 2)]}),
         write={"store_decimal_as_integer": True}, verify=verify_decimal_int)
    case("decimal256", "decimal256 with precision > 38 (text in PostgreSQL, string in Delta)", table({
        f"d_{p}_{s}": dec_column(p, s) for p, s in [(39, 0), (40, 2), (50, 25), (76, 0), (76, 38)]}))
    case("decimal256_narrow", "decimal256 with precision <= 38 (numeric / decimal as usual)", table({
        f"d_{p}_{s}": dec_column(p, s, pa.decimal256(p, s)) for p, s in [(1, 0), (20, 2), (38, 10)]}))
    case("decimal32_64", "decimal32 and decimal64 arrow types (INT32/INT64 storage)", table({
        "d32_1_0": dec_column(1, 0, pa.decimal32(1, 0)), "d32_9_2": dec_column(9, 2, pa.decimal32(9, 2)),
        "d64_10_0": dec_column(10, 0, pa.decimal64(10, 0)), "d64_18_6": dec_column(18, 6, pa.decimal64(18, 6))}),
        write={"store_decimal_as_integer": True})
    case("decimal_byte_array", "decimals in BYTE_ARRAY (minimal big-endian two's complement; "
         "footer rewritten from a binary column): (5,2), (38,6), (50,10)",
         table({name: pa.array([None if k is None else twos(dec(p, s, k), s) for k in DEC_KINDS])
                for name, p, s in [("d_5_2", 5, 2), ("d_38_6", 38, 6), ("d_50_10", 50, 10)]}),
         write={"store_schema": False},
         post=lambda path: rewrite_decimal_byte_array(path, {"d_5_2": (5, 2), "d_38_6": (38, 6), "d_50_10": (50, 10)}))

    # dates and times
    dvals = [days(1, 1, 1), days(9999, 12, 31), 0, -1, days(2000, 2, 29), days(1900, 2, 28),
             days(1582, 10, 4), days(1582, 10, 15), None]
    case("dates", "date32 and date64 (stored as INT32 DATE): years 1 and 9999, epoch, leap day, "
         "the Gregorian switch, null", table({
             "d32": pa.array(dvals, pa.date32()),
             "d64": pa.array([None if d is None else d * 86_400_000 for d in dvals], pa.date64())}))
    case("times", "time32[s] and time32[ms] (both stored as TIME_MILLIS), time64[us], time64[ns] "
         "(3 values with sub-microsecond digits)", table({
             "t_s": pa.array([0, 86399, 43200, 1, 3723, None], pa.time32("s")),
             "t_ms": pa.array([0, 86399999, 43200000, 1, 3723004, None], pa.time32("ms")),
             "t_us": pa.array([0, 86399999999, 43200000000, 1, 3723004005, None], pa.time64("us")),
             "t_ns": pa.array([0, 86399999999999, 43200000000000, 1, 3723004005006, None], pa.time64("ns"))}),
         pg_counts={"truncated_nanoseconds": 3})
    case("times_utc_adjusted", "time64[us] and time32[ms] written with isAdjustedToUTC=true", table({
        "t_us": pa.array([0, 86399999999, 1, None], pa.time64("us")),
        "t_ms": pa.array([0, 86399999, 1, None], pa.time32("ms"))}),
        write={"write_time_adjusted_to_utc": True})

    def ts_col(unit, tz=None):
        f = {"s": 10 ** 6, "ms": 1000, "us": 1}[unit]
        top = us(9999, 12, 31, 23, 59, 59, 999999)
        vals = [us(1, 1, 1), top - top % f, 0, -f, us(2000, 2, 29, 12, 34, 56, 789012) // f * f,
                us(1582, 10, 15), us(1969, 12, 31, 23, 59, 59, 500000) // f * f, None]
        return pa.array([None if v is None else v // f for v in vals], pa.timestamp(unit, tz))
    case("timestamps_naive", "timestamp[s/ms/us] without a zone (s is stored as ms): years 1 and "
         "9999, epoch, one unit before it, null", table({
             "ts_s": ts_col("s"), "ts_ms": ts_col("ms"), "ts_us": ts_col("us")}))
    case("timestamps_tz", "timestamp[s/ms/us] with zones UTC, Asia/Tokyo, +05:30", table({
        "ts_s_utc": ts_col("s", "UTC"), "ts_ms_tokyo": ts_col("ms", "Asia/Tokyo"),
        "ts_us_offset": ts_col("us", "+05:30")}))
    ns_vals = [I64[0], I64[1], 0, -1, us(2000, 2, 29, 12, 34, 56, 789012) * 1000 + 345,
               us(1700, 1, 1) * 1000 + 1, None, us(2024, 1, 1, 0, 0, 0, 123456) * 1000]
    case("timestamps_ns", "timestamp[ns] naive, UTC and America/New_York: the int64 extremes "
         "(1677-09-21 and 2262-04-11), -1 ns, sub-microsecond digits (5 per column)", table({
             "ts_ns": pa.array(ns_vals, pa.timestamp("ns")),
             "ts_ns_utc": pa.array(ns_vals, pa.timestamp("ns", "UTC")),
             "ts_ns_ny": pa.array(ns_vals, pa.timestamp("ns", "America/New_York"))}),
         pg_counts={"truncated_nanoseconds": 15}, delta_counts={"truncated_nanoseconds": 15})
    case("durations", "duration[s/ms/us/ns] (INT64, restored from the hint): 0, ±1, large "
         "values that fit in microseconds, -5.5 s, int64 extremes for us/ns, sub-µs ns (5)", table({
             "dur_s": pa.array([0, 1, -1, 9_000_000_000_000, -9_000_000_000_000, -5, None], pa.duration("s")),
             "dur_ms": pa.array([0, 1, -1, 9 * 10 ** 15, -5500, 86_400_000, None], pa.duration("ms")),
             "dur_us": pa.array([0, 1, -1, I64[1], I64[0], -5_500_000, None], pa.duration("us")),
             "dur_ns": pa.array([0, 1, -1, I64[1], I64[0], -5_500_000_001, None], pa.duration("ns"))}),
         pg_counts={"truncated_nanoseconds": 5}, delta_counts={"truncated_nanoseconds": 5})
    case("duration_overflow", "duration[s] of 10^14 s: more microseconds than int64 holds", table({
        "dur_s_overflow": pa.array([1, 10 ** 14], pa.duration("s"))}),
        postgres=fails("dur_s_overflow"), delta=fails("dur_s_overflow"))

    int96 = [us(1, 1, 1), us(1000, 6, 15, 12, 0, 0, 500000), us(1582, 10, 4, 23, 59, 59, 999999),
             us(1677, 9, 21), us(1677, 9, 21, 0, 12, 43, 145223), us(1677, 9, 20),
             -1, 0, us(2262, 4, 11, 23, 47, 16, 854776), us(2262, 4, 12), us(3000, 1, 1),
             us(9999, 12, 31, 23, 59, 59, 999999), None]
    case("int96", "INT96 timestamps as Spark/Hive/Impala write them (no ARROW:schema): 0001-01-01, "
         "1677-09-21 and earlier, 2262-04-12 and later, 9999-12-31 23:59:59.999999", table({
             "ts96": pa.array(int96, pa.timestamp("us"))}),
         write={"use_deprecated_int96_timestamps": True, "store_schema": False})
    case("int96_arrow_hint", "the same INT96 values with pyarrow's ARROW:schema (timestamp[us])", table({
        "ts96": pa.array(int96, pa.timestamp("us"))}),
        write={"use_deprecated_int96_timestamps": True})
    int96ns = [1, -1, us(2000, 1, 1, 0, 0, 0, 123456) * 1000 + 789, I64[0] + 1, I64[1],
               us(2020, 1, 1) * 1000, None]
    far = [us(1, 1, 1), us(9999, 12, 31, 23, 59, 59, 999999), None]
    case("int96_nested", "INT96 timestamps inside a map (values), a struct and a list, beside a top-level "
         "INT96 column after them, as Spark writes map<string,timestamp> (no ARROW:schema)", table({
             "attrs": pa.array([[("a", far[0]), ("b", None)], None, [("c", far[1])]],
                               pa.map_(pa.string(), pa.timestamp("us"))),
             "st": pa.array([{"t": far[0]}, {"t": None}, None], pa.struct([("t", pa.timestamp("us"))])),
             "lt": pa.array([[far[1], None], [], None], pa.list_(pa.timestamp("us"))),
             "updated_at": pa.array(far, pa.timestamp("us"))}),
         write={"use_deprecated_int96_timestamps": True, "store_schema": False},
         delta=fails("attrs", "timestamp without time zone inside a map"))
    case("int96_nanos", "INT96 with sub-microsecond nanoseconds (5 values); the reference is read "
         "at ns and floored to µs", table({"ts96": pa.array(int96ns, pa.timestamp("ns"))}),
         write={"use_deprecated_int96_timestamps": True, "store_schema": False},
         reference={"int96_unit": "ns"},
         pg_counts={"truncated_nanoseconds": 5}, delta_counts={"truncated_nanoseconds": 5})


def twos(d: Decimal, scale: int) -> bytes:
    """The unscaled value of d as minimal big-endian two's complement."""
    with localcontext(Context(prec=100)):
        n = int(d.scaleb(scale))
    return n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)


def verify_decimal_int(path):
    md = pq.ParquetFile(path).metadata
    got = {md.schema.column(i).name: md.schema.column(i).physical_type for i in range(md.num_columns)}
    assert got["d_9_9"] == "INT32" and got["d_18_6"] == "INT64" and got["d_19_2"] == "FIXED_LEN_BYTE_ARRAY", got


# ---------------------------------------------------------------- nested

def nested_cases():
    case("list_int", "list<int32>: null list, empty list, [null], nulls among values, extremes; "
         "list<int64 not null>", table({
             "li": pa.array([None, [], [None], [1, None, 3], [I32[0], I32[1]], [0] * 20, [None, None]], pa.list_(pa.int32())),
             "li64": pa.array([[1, 2], None, [], [I64[0], I64[1]], [0], [5], [7]],
                              pa.list_(pa.field("element", pa.int64(), nullable=False)))}))
    ls_vals = [None, [], [None], ["", "ü", "😀"], ["a" * 50, None, "x"], ['"', "\\", ",", "{", "}", "NULL", " "], ["a b"]]
    case("list_string", "list<string> and list<large_string> with characters that need quoting "
         "in PostgreSQL array text", table({
             "ls": pa.array(ls_vals, pa.list_(pa.string())),
             "lls": pa.array(ls_vals, pa.list_(pa.large_string()))}))
    case("list_numeric", "lists of bool, int8, uint8/16/32/64, float16, decimal128, decimal256 "
         "(p>38 and p<=38)", table({
             "lb": pa.array([None, [], [None], [True, False, None]], pa.list_(pa.bool_())),
             "li8": pa.array([None, [], [None], [I8[0], I8[1], None]], pa.list_(pa.int8())),
             "lu8": pa.array([None, [], [None], [0, U8, None]], pa.list_(pa.uint8())),
             "lu16": pa.array([None, [], [None], [0, U16, None]], pa.list_(pa.uint16())),
             "lu32": pa.array([None, [], [None], [0, U32, None]], pa.list_(pa.uint32())),
             "lu64": pa.array([None, [], [None], [0, U64, None]], pa.list_(pa.uint64())),
             "lf16": list_of(floats(16, [None, 1.5, NAN, -0.0, B(0x0001), B(0x7BFF)]), [None, 0, 1, 5]),
             "ldec": pa.array([None, [], [None], [dec(10, 2, "max"), dec(10, 2, "min"), dec(10, 2, "zero"), None]],
                              pa.list_(pa.decimal128(10, 2))),
             "ldec256": pa.array([None, [], [None], [dec(40, 2, "max"), dec(40, 2, "-eps"), None]],
                                 pa.list_(pa.decimal256(40, 2))),
             "ldec256n": pa.array([None, [], [None], [dec(20, 2, "max"), dec(20, 2, "-eps"), None]],
                                  pa.list_(pa.decimal256(20, 2)))}))
    dts = pa.array([-1, 1_500, 2_000, None, -1], pa.timestamp("ns")).dictionary_encode()
    case("dictionary_timestamps", "dictionary<int32, timestamp[ns]> with digits below a microsecond (two "
         "-1 ns twice and 1.5 µs lose them): rounded down and counted per row", table({
             "dts": dts, "dtsz": pa.array([-1, 1_500, 2_000, None, -1], pa.timestamp("ns", tz="UTC")).dictionary_encode()}),
         pg_counts={"truncated_nanoseconds": 6}, delta_counts={"truncated_nanoseconds": 6})
    lf_vals = [0.0, -0.0, NAN, INF, -INF, None, 1.5]
    case("list_floats_special", "list<float32> and list<float64> holding NaN, ±Inf, -0.0, "
         "subnormals, ±max, null elements (arrays keep them exactly)", table({
             "lf32": list_of(floats(32, lf_vals + [B(0x00000001), B(0x7F7FFFFF), B(0xFF7FFFFF)]), [None, 0, 7, 3]),
             "lf64": list_of(floats(64, lf_vals + [B(0x1), B(0x7FEFFFFFFFFFFFFF), B(0xFFEFFFFFFFFFFFFF)]), [None, 0, 7, 3])}))
    ns = us(2000, 1, 1, 0, 0, 0, 123456) * 1000 + 789
    case("list_temporal", "lists of date32, date64, timestamp[us], timestamp[ms, UTC], timestamp[ns] "
         "(sub-µs: 2), time64[us], time64[ns] (sub-µs: 2), duration[us], duration[ns] (sub-µs: 2)", table({
             "ld": pa.array([None, [], [None], [days(1, 1, 1), days(9999, 12, 31), None]], pa.list_(pa.date32())),
             "ld64": pa.array([None, [], [None], [days(1, 1, 1) * 86_400_000, 0, None]], pa.list_(pa.date64())),
             "lts": pa.array([None, [], [None], [us(1, 1, 1), us(9999, 12, 31, 23, 59, 59, 999999), None]],
                             pa.list_(pa.timestamp("us"))),
             "ltsz": pa.array([None, [], [None], [us(1, 1, 1) // 1000, -1, None]], pa.list_(pa.timestamp("ms", "UTC"))),
             "ltsn": pa.array([None, [], [None], [ns, -1, 0, None]], pa.list_(pa.timestamp("ns"))),
             "ltm": pa.array([None, [], [None], [0, 86399999999, None]], pa.list_(pa.time64("us"))),
             "ltmn": pa.array([None, [], [None], [1, 86399999999999, 0, None]], pa.list_(pa.time64("ns"))),
             "ldur": pa.array([None, [], [None], [-5_500_000, I64[1], None]], pa.list_(pa.duration("us"))),
             "ldurn": pa.array([None, [], [None], [-5_500_000_001, 3, 0, None]], pa.list_(pa.duration("ns")))}),
         pg_counts={"truncated_nanoseconds": 6}, delta_counts={"truncated_nanoseconds": 4})
    case("list_binary", "lists of binary (invalid UTF-8), fixed_size_binary(3), large_binary, "
         "dictionary<int32,string>", table({
             "lbin": pa.array([None, [], [None], [b"", b"\xff\x00", None]], pa.list_(pa.binary())),
             "lfix": pa.array([None, [], [None], [b"\0\0\0", b"\xff\xfe\xfd", None]], pa.list_(pa.binary(3))),
             "llbin": pa.array([None, [], [None], [b"\xc3\x28", None]], pa.list_(pa.large_binary())),
             "ldict": pa.array([None, [], [None], ["a", "b", "a", None]],
                               pa.list_(pa.dictionary(pa.int32(), pa.string())))}))
    case("list_of_list", "list<list<int32>> and list<list<list<string>>> with nulls and empties "
         "at every level", table({
             "ll": pa.array([None, [], [None], [[]], [[1, None], [], None], [[I32[0]], [I32[1], 0]]],
                            pa.list_(pa.list_(pa.int32()))),
             "lll": pa.array([None, [[["a"]]], [[[], None, [None, ""]]], [], [None], [[None], []]],
                             pa.list_(pa.list_(pa.list_(pa.string()))))}))
    st = pa.struct([("a", pa.int32()), ("b", pa.string()), ("c", pa.float64())])
    case("list_of_struct", "list<struct<a int32, b string, c float64>>: null list, empty, null "
         "struct, struct of nulls, NaN and -0.0 inside (2 special floats)", table({
             "los": list_of(struct_of({"a": pa.array([None, 1, None, 2, 3], pa.int32()),
                                       "b": pa.array([None, "x", None, None, "😀"]),
                                       "c": floats(64, [None, 1.5, None, NAN, -0.0])}, null_rows={2}),
                            [None, 0, 1, 1, 3], pa.list_(st))}),
         pg_counts={"json_special_floats": 2})
    case("struct_basic", "struct<a int32, b string, c bool, d float64 NOT NULL>; struct<a, b>: "
         "null struct vs struct whose fields are all null", table({
             "s": struct_of({"a": pa.array([None, None, 1, -1, None], pa.int32()),
                             "b": pa.array([None, None, "x", "", "ü"]),
                             "c": pa.array([None, None, True, False, None]),
                             "d": floats(64, [0.0, 0.0, 1.5, -2.25, 1e300])}, null_rows={0},
                            typ=[pa.field("a", pa.int32()), pa.field("b", pa.string()), pa.field("c", pa.bool_()),
                                 pa.field("d", pa.float64(), nullable=False)]),
             "s2": struct_of({"a": pa.array([None, None, 1, None, 2], pa.int32()),
                              "b": pa.array([None, None, "x", "y", None])}, null_rows={0, 3})}))
    inner_w = pa.struct([("v", pa.int32())])
    inner_y = pa.struct([("z", pa.string()), ("w", inner_w)])
    case("struct_nested", "struct<x int64, y struct<z string, w struct<v int32>>> with a null at "
         "every level", table({
             "s": pa.array([None, {"x": None, "y": None}, {"x": 1, "y": {"z": None, "w": None}},
                            {"x": 2, "y": {"z": "a", "w": {"v": None}}}, {"x": I64[0], "y": {"z": "b", "w": {"v": 7}}}],
                           pa.struct([("x", pa.int64()), ("y", inner_y)]))}))
    case("struct_special_floats", "struct<f16, f32, f64> over every special float: NaN, ±Inf, "
         "-0.0 (12 in jsonb), subnormals, ±max; one null struct", table({
             "s": struct_of({"f16": floats(16, F16), "f32": floats(32, F32), "f64": floats(64, F64)}, null_rows={15})}),
         pg_counts={"json_special_floats": 12})
    dkinds = ["max", "min", "zero", "eps", "-eps", None]
    case("struct_decimals", "decimals inside a struct: JSON numbers with exactly the scale's "
         "digits", table({
             "s": struct_of({
                 "d_9_2": dec_column(9, 2, kinds=dkinds + ["mid"]),
                 "d_38_10": dec_column(38, 10, kinds=dkinds + ["mid"]),
                 "d_40_5": dec_column(40, 5, kinds=dkinds + ["mid"]),
                 "d_5_0": dec_column(5, 0, kinds=dkinds + ["mid"])}, null_rows={6})}))
    t_ns = us(2000, 2, 29, 12, 34, 56, 789012) * 1000 + 345
    case("struct_temporal", "dates, timestamps of every unit (sub-µs digits: 8 values in ns timestamps and durations), times "
         "and durations of every unit inside a struct; one null struct", table({
             "s": struct_of({
                 "d": pa.array([days(1, 1, 1), days(9999, 12, 31), -1, None, 0], pa.date32()),
                 "d64": pa.array([0, days(9999, 12, 31) * 86_400_000, None, -86_400_000, 0], pa.date64()),
                 "ts_s": pa.array([us(1, 1, 1) // 10 ** 6, us(9999, 12, 31, 23, 59, 59) // 10 ** 6, -1, None, 0], pa.timestamp("s")),
                 "ts_ms_utc": pa.array([us(1, 1, 1) // 1000, -1, 1, None, 0], pa.timestamp("ms", "UTC")),
                 "ts_us": pa.array([us(9999, 12, 31, 23, 59, 59, 999999), -1, 1, None, 0], pa.timestamp("us")),
                 "ts_ns": pa.array([t_ns, -1, I64[1], None, 0], pa.timestamp("ns")),
                 "ts_ns_tokyo": pa.array([t_ns, I64[0], 1000, None, 0], pa.timestamp("ns", "Asia/Tokyo")),
                 "t_s": pa.array([0, 86399, None, 1, 0], pa.time32("s")),
                 "t_ms": pa.array([0, 86399999, None, 1, 0], pa.time32("ms")),
                 "t_us": pa.array([0, 86399999999, None, 1, 0], pa.time64("us")),
                 "t_ns": pa.array([0, 86399999999999, None, 1, 0], pa.time64("ns")),
                 "dur_s": pa.array([0, -5, 86400, None, 0], pa.duration("s")),
                 "dur_ms": pa.array([-5500, 1, -1, None, 0], pa.duration("ms")),
                 "dur_us": pa.array([-5_500_000, I64[1], -1, None, 0], pa.duration("us")),
                 "dur_ns": pa.array([-5_500_000_001, 1, -500, None, 0], pa.duration("ns")),
             }, null_rows={4})}),
         delta_counts={"truncated_nanoseconds": 8})
    case("struct_binary_strings", "binary (invalid UTF-8), large_binary, fixed_size_binary(3), "
         "string and large_string with escapes inside a struct", table({
             "s": struct_of({
                 "b": pa.array([b"", b"\xff\x00\xc3\x28", None, b"abc"]),
                 "lb": pa.array([b"\x80", None, b"", b"\x00"], pa.large_binary()),
                 "fb": pa.array([b"\0\0\0", b"\xff\xfe\xfd", None, b"xyz"], pa.binary(3)),
                 "str": pa.array(['"quoted" \\ /', "\n\t\r\x01\x1f", "😀 \u2028", None]),
                 "lstr": pa.array(["", None, "ñ", "\ufeff"], pa.large_string())})}))
    case("struct_ints", "every integer width at its extremes inside a struct (uint64 max as an "
         "exact JSON number) plus a bool", table({
             "s": struct_of({
                 "i8": pa.array([I8[0], I8[1], 0, None], pa.int8()), "i16": pa.array([I16[0], I16[1], 0, None], pa.int16()),
                 "i32": pa.array([I32[0], I32[1], 0, None], pa.int32()), "i64": pa.array([I64[0], I64[1], 0, None], pa.int64()),
                 "u8": pa.array([0, U8, 1, None], pa.uint8()), "u16": pa.array([0, U16, 1, None], pa.uint16()),
                 "u32": pa.array([0, U32, 1, None], pa.uint32()), "u64": pa.array([0, U64, 1, None], pa.uint64()),
                 "b": pa.array([True, False, None, True])})}))

    # maps
    case("map_string_int", "map<string,int32>: null map, empty map, {k1: 2, k2: null}, empty key, "
         "emoji key, extremes", table({
             "m": pa.array([None, [], [("k1", 2), ("k2", None)], [("", 0)], [("😀", I32[0]), ("a b", I32[1])],
                            [("NULL", None)]], pa.map_(pa.string(), pa.int32()))}))
    case("map_int_string", "map<int32,string> and map<int64,string> (non-string keys; JSON keys "
         "are the digits)", table({
             "m": pa.array([None, [], [(1, "a"), (-1, None)], [(I32[0], ""), (I32[1], "😀")]], pa.map_(pa.int32(), pa.string())),
             "m64": pa.array([[(I64[0], "min")], None, [(I64[1], None), (0, "zero")], []], pa.map_(pa.int64(), pa.string()))}))
    case("map_string_list", "map<string, list<int32>>: null list value, empty list, null element", table({
        "m": pa.array([None, [], [("a", None), ("b", []), ("c", [None, 1])], [("d", [I32[0], I32[1]])]],
                      pa.map_(pa.string(), pa.list_(pa.int32())))}))
    case("map_in_struct", "struct<m map<string,int32>, x int32>", table({
        "s": pa.array([None, {"m": None, "x": None}, {"m": [], "x": 1}, {"m": [("k", None), ("j", 5)], "x": 2}],
                      pa.struct([("m", pa.map_(pa.string(), pa.int32())), ("x", pa.int32())]))}))
    case("map_in_list", "list<map<string,int32>>", table({
        "l": pa.array([None, [], [None], [[], [("a", 1)], None, [("b", None)]]],
                      pa.list_(pa.map_(pa.string(), pa.int32())))}))
    case("map_float_values", "map<string,float32> and map<string,float64> with NaN, ±Inf, -0.0 "
         "values (8 special floats in jsonb)", table({
             "m32": pa.MapArray.from_arrays(pa.array([0, 0, 5, 6], pa.int32()),
                                            pa.array(["nan", "inf", "-inf", "-0", "sub", "max"]),
                                            floats(32, [NAN, INF, -INF, -0.0, B(0x00000001), B(0x7F7FFFFF)])),
             "m64": pa.MapArray.from_arrays(pa.array([0, 4, 4, 6], pa.int32()),
                                            pa.array(["nan", "inf", "-inf", "-0", "sub", "max"]),
                                            floats(64, [NAN, INF, -INF, -0.0, B(0x1), B(0x7FEFFFFFFFFFFFFF)]))}),
         pg_counts={"json_special_floats": 8})
    case("map_other_keys", "maps keyed by bool, date32, decimal(5,2), binary and timestamp[ms, UTC] "
         "(JSON keys: the key's JSON form without quotes)", table({
             "mb": pa.array([[(True, 1), (False, None)], None], pa.map_(pa.bool_(), pa.int32())),
             "md": pa.array([[(days(1, 1, 1), "y1"), (days(9999, 12, 31), "y9999")], []], pa.map_(pa.date32(), pa.string())),
             "mdec": pa.array([[(Decimal("1.50"), 1), (Decimal("-999.99"), 2)], None], pa.map_(pa.decimal128(5, 2), pa.int32())),
             "mbin": pa.array([[(b"\xff\x00", 1)], [(b"", 2)]], pa.map_(pa.binary(), pa.int32())),
             "mtsz": pa.array([[(us(2024, 2, 29, 1, 2, 3, 4000) // 1000, 1)], None], pa.map_(pa.timestamp("ms", "UTC"), pa.int32()))}))
    case("map_timestamp_ntz", "timestamps without a zone inside maps (key and value): delta-rs "
         "does not turn on the timestampNtz feature for them", table({
             "mts_key": pa.array([[(us(2024, 2, 29, 1, 2, 3, 4000) // 1000, 1)], None], pa.map_(pa.timestamp("ms"), pa.int32())),
             "mts_value": pa.array([[("a", us(1, 1, 1))], []], pa.map_(pa.string(), pa.timestamp("us")))}),
         delta=fails("mts_key"))
    case("map_duplicate_keys", "a key repeated within one map (Arrow allows it): jsonb keeps the "
         "last value and the repeats are counted (4); Delta keeps every entry", table({
             "m": pa.array([[("a", 1), ("a", 2)], [("b", None), ("c", 3), ("b", 4), ("b", None)], None],
                           pa.map_(pa.string(), pa.int32())),
             "mi": pa.array([[(1, "x")], [], [(7, "p"), (7, "q")]], pa.map_(pa.int64(), pa.string()))}),
         pg_counts={"json_duplicate_map_keys": 4})

    # list flavours
    case("list_large", "large_list<int64> (restored from the hint)", table({
        "l": pa.array([None, [], [None], [I64[0], I64[1], None]], pa.large_list(pa.int64()))}))
    case("list_fixed_size", "fixed_size_list<int32, 2> (restored from the hint)", table({
        "l": pa.array([None, [1, None], [I32[0], I32[1]], [None, None]], pa.list_(pa.int32(), 2))}))
    case("list_view", "list_view<int32> (written as a list, restored as list_view from the hint)", table({
        "l": pa.array([None, [], [None], [1, 2, 3]], pa.list_view(pa.int32()))}))
    case("list_nonnullable", "required list field, list<int32 not null>, struct with required "
         "fields inside a list", table({
             "req_list": pa.array([[1], [], [2, None], [3]], pa.list_(pa.int32())),
             "ne": pa.array([[1, 2], None, [], [3]], pa.list_(pa.field("element", pa.int32(), nullable=False))),
             "ls": pa.array([[{"a": 1, "b": "x"}], [], None, [{"a": 2, "b": None}]],
                            pa.list_(pa.field("element", pa.struct([pa.field("a", pa.int32(), nullable=False),
                                                                    pa.field("b", pa.string())]), nullable=False)))},
        {"req_list": pa.field("req_list", pa.list_(pa.int32()), nullable=False)}))


# ---------------------------------------------------------------- encodings, pages, codecs

def rng(seed):
    return random.Random(seed)


def mixed_table(n=40, seed=1) -> pa.Table:
    r = rng(seed)
    words = ["", "alpha", "beta", "gamma", "ñandú", "😀", "日本", "x" * 40]
    return table({
        "i32": pa.array([None if i % 7 == 3 else r.randint(*I32) for i in range(n)], pa.int32()),
        "i64": pa.array([[I64[0], I64[1], 0][i % 3] if i % 5 == 0 else r.randint(-10 ** 12, 10 ** 12) for i in range(n)], pa.int64()),
        "i8": pa.array([r.randint(*I8) for _ in range(n)], pa.int8()),
        "u64": pa.array([U64 - r.randint(0, 3) if i % 4 == 0 else r.randint(0, 1000) for i in range(n)], pa.uint64()),
        "f32": floats(32, [[NAN, -0.0, INF, None][i % 4] if i % 9 == 0 else r.uniform(-1e6, 1e6) for i in range(n)]),
        "f64": floats(64, [[NAN, -0.0, -INF, None][i % 4] if i % 8 == 0 else r.uniform(-1e9, 1e9) for i in range(n)]),
        "s": pa.array([None if i % 6 == 5 else r.choice(words) for i in range(n)]),
        "ls": pa.array([r.choice(words) * 2 for _ in range(n)], pa.large_string()),
        "bin": pa.array([None if i % 5 == 4 else bytes(r.randrange(256) for _ in range(r.randint(0, 6))) for i in range(n)]),
        "fb": pa.array([bytes(r.randrange(256) for _ in range(3)) for _ in range(n)], pa.binary(3)),
        "flag": pa.array([None if i % 11 == 10 else r.random() < 0.5 for i in range(n)]),
        "li": pa.array([None if i % 8 == 7 else [None if r.random() < 0.2 else r.randint(-100, 100)
                                                   for _ in range(r.randint(0, 4))] for i in range(n)], pa.list_(pa.int32())),
        "st": pa.array([None if i % 9 == 8 else {"a": r.randint(0, 9), "b": r.choice(words)} for i in range(n)],
                       pa.struct([("a", pa.int32()), ("b", pa.string())])),
        "dec": pa.array([Decimal(r.randint(-10 ** 10 + 1, 10 ** 10 - 1)).scaleb(-2) for _ in range(n)], pa.decimal128(10, 2)),
        "ts": pa.array([us(1, 1, 1) if i == 0 else r.randint(0, us(2100, 1, 1)) for i in range(n)], pa.timestamp("us", "UTC")),
        "d": pa.array([r.randint(days(1, 1, 1), days(9999, 12, 31)) for _ in range(n)], pa.date32()),
    })


def encoding_tables():
    n = 70
    r = rng(7)
    prefixes = ["customer/2024/", "customer/2025/", "order/", ""]

    def strs(seed):
        q = rng(seed)
        return [None if i % 10 == 9 else q.choice(prefixes) + str(q.randint(0, 10 ** q.randint(0, 8))) + q.choice(["", "ü", "😀"])
                for i in range(n)]
    ints = {
        "i8": pa.array([[I8[0], I8[1]][i % 2] if i % 3 == 0 else r.randint(*I8) for i in range(n)], pa.int8()),
        "i16": pa.array([r.randint(*I16) for _ in range(n)], pa.int16()),
        "i32": pa.array([[I32[0], I32[1]][i % 2] if i % 2 == 0 else None if i % 7 == 1 else i for i in range(n)], pa.int32()),
        "i64": pa.array([[I64[0], I64[1]][i % 2] if i < 10 else r.randint(*I64) if i < 40 else 10 ** 15 + i for i in range(n)], pa.int64()),
        "u32": pa.array([U32 if i % 4 == 0 else i for i in range(n)], pa.uint32()),
        "u64": pa.array([U64 if i % 4 == 0 else (1 << 63) + i for i in range(n)], pa.uint64()),
        "d": pa.array([days(1, 1, 1) if i % 5 == 0 else days(9999, 12, 31) if i % 5 == 1 else i for i in range(n)], pa.date32()),
        "ts": pa.array([us(1, 1, 1) if i % 3 == 0 else us(2024, 1, 1) + i for i in range(n)], pa.timestamp("us")),
        "t": pa.array([(i * 1_234_567_891) % 86_400_000_000 for i in range(n)], pa.time64("us")),
        "li": pa.array([None if i % 6 == 0 else [I64[0], i, I64[1]][: i % 4] for i in range(n)], pa.list_(pa.int64())),
    }
    bytes_cols = {
        "s": pa.array(strs(1)),
        "ls": pa.array(strs(2), pa.large_string()),
        "b": pa.array([None if i % 9 == 0 else (b"\xff\x00prefix" + bytes([i])) * (i % 3) for i in range(n)]),
        "lst": pa.array([None if i % 7 == 0 else strs(i)[: i % 4] for i in range(n)], pa.list_(pa.string())),
    }
    dba_cols = dict(bytes_cols)
    dba_cols["fb"] = pa.array([b"key" + bytes([i % 256, 0]) for i in range(n)], pa.binary(5))
    dba_cols["dec"] = pa.array([Decimal(r.randint(-10 ** 19, 10 ** 19)).scaleb(-4) for _ in range(n)], pa.decimal128(20, 4))
    lf_lengths = [None if i % 7 == 0 else 0 if i % 7 == 1 else 2 for i in range(n)]
    bss = {
        "f16": floats(16, [F16[i % len(F16)] for i in range(n)]),
        "f32": floats(32, [F32[i % len(F32)] for i in range(n)]),
        "f64": floats(64, [F64[i % len(F64)] for i in range(n)]),
        "i32": pa.array([[I32[0], I32[1], None][i % 3] if i % 4 == 0 else r.randint(*I32) for i in range(n)], pa.int32()),
        "i64": pa.array([[I64[0], I64[1]][i % 2] if i % 4 == 0 else r.randint(*I64) for i in range(n)], pa.int64()),
        "fb": pa.array([bytes([i, 255 - i, 0]) for i in range(n)], pa.binary(3)),
        "dec": pa.array([Decimal(r.randint(-10 ** 12 + 1, 10 ** 12 - 1)).scaleb(-3) for _ in range(n)], pa.decimal128(12, 3)),
        "lf": list_of(floats(64, [F64[j % len(F64)] for j in range(sum(n_ or 0 for n_ in lf_lengths))]), lf_lengths),
    }
    bools = {
        "b1": pa.array([None if i % 13 == 0 else (i // 10) % 2 == 0 for i in range(n)]),
        "b2": pa.array([i % 2 == 0 for i in range(n)]),
        "b3": pa.array([True] * n),
        "lb": pa.array([None if i % 5 == 0 else [True, None, False][: i % 4] for i in range(n)], pa.list_(pa.bool_())),
    }
    return {
        "delta_binary_packed": (ints, {k: "DELTA_BINARY_PACKED" for k in ["row_id", "i8", "i16", "i32", "i64", "u32", "u64", "d", "ts", "t", "li.list.element"]}),
        "delta_length_byte_array": (bytes_cols, {k: "DELTA_LENGTH_BYTE_ARRAY" for k in ["s", "ls", "b", "lst.list.element"]}),
        "delta_byte_array": (dba_cols, {k: "DELTA_BYTE_ARRAY" for k in ["s", "ls", "b", "lst.list.element", "fb", "dec"]}),
        "byte_stream_split": (bss, {k: "BYTE_STREAM_SPLIT" for k in ["f16", "f32", "f64", "i32", "i64", "fb", "dec", "lf.list.element"]}),
        "rle_bool": (bools, {k: "RLE" for k in ["b1", "b2", "b3", "lb.list.element"]}),
    }


def page_cases():
    for version in ("1.0", "2.0"):
        v = version[0]
        for codec in ["NONE", "SNAPPY", "GZIP", "BROTLI", "LZ4", "ZSTD"]:
            case(f"codec_{codec.lower()}_v{v}", f"40 rows of ints, uint64, floats with NaN/±Inf/-0.0, "
                 f"strings, binary, bool, list, struct, decimal, timestamp, date; compression {codec}"
                 f"{' (pyarrow lz4 = LZ4_RAW)' if codec == 'LZ4' else ''}, data page v{version}",
                 mixed_table(seed=len(codec) * 7 + int(v)),
                 write={"compression": codec, "data_page_version": version})
        case(f"enc_plain_v{v}", f"every column PLAIN (no dictionary), data page v{version}", mixed_table(n=50, seed=11),
             write={"use_dictionary": False, "column_encoding": "PLAIN", "data_page_version": version},
             verify=verify_encodings({"i32": "PLAIN", "s": "PLAIN", "flag": "PLAIN"}, {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}))
        case(f"enc_dict_v{v}", f"dictionary encoding on every column type, data page v{version}",
             mixed_table(n=50, seed=12).slice(0, 50),
             write={"use_dictionary": True, "data_page_version": version},
             verify=verify_encodings({"i32": "RLE_DICTIONARY", "s": "RLE_DICTIONARY", "fb": "RLE_DICTIONARY", "f64": "RLE_DICTIONARY"}))
        for enc, (cols, encmap) in encoding_tables().items():
            label = "RLE (booleans)" if enc == "rle_bool" else enc.upper()
            case(f"enc_{enc}_v{v}", f"{label} on {', '.join(encmap)}, data page v{version}", table(cols),
                 write={"use_dictionary": False, "column_encoding": encmap, "data_page_version": version},
                 verify=verify_encodings({k.split(".")[0]: enc.upper().replace("RLE_BOOL", "RLE") for k in encmap}))
        r = rng(3)
        n = 300
        case(f"multi_page_v{v}", f"{n} rows in several data pages per column (data_page_size=256, "
             f"write_batch_size=10), lists and strings across page boundaries, data page v{version}", table({
                 "i64": pa.array([r.randint(*I64) for _ in range(n)], pa.int64()),
                 "s": pa.array([None if i % 13 == 0 else "s" * r.randint(0, 40) for i in range(n)]),
                 "li": pa.array([None if i % 11 == 0 else list(range(r.randint(0, 12))) for i in range(n)], pa.list_(pa.int32())),
                 "st": pa.array([{"a": i, "b": str(i)} for i in range(n)], pa.struct([("a", pa.int32()), ("b", pa.string())]))}),
             write={"use_dictionary": False, "data_page_size": 256, "write_batch_size": 10, "data_page_version": version},
             verify=verify_pages(min_pages=5))
    case("multi_row_group", "50 rows in row groups of 7, 7, 7, 1, 20, 8 rows", mixed_table(n=50, seed=5),
         row_groups=[7, 7, 7, 1, 20, 8])
    case("empty_row_group", "row groups of 5, 0 and 5 rows", mixed_table(n=10, seed=6), row_groups=[5, 0, 5])
    case("empty_file", "no rows at all (one empty row group)", mixed_table(n=0, seed=6))
    case("page_index", "column and offset indexes (write_page_index) with max_rows_per_page=5",
         mixed_table(n=60, seed=8), write={"write_page_index": True, "max_rows_per_page": 5, "data_page_version": "2.0"},
         verify=verify_pages(min_pages=10))
    strs = [f"distinct-value-{i:05d}-{'ü' * (i % 5)}" for i in range(300)]
    case("dict_fallback", "a dictionary that overflows dictionary_pagesize_limit: dictionary pages "
         "then PLAIN pages in one column chunk", table({"s": pa.array(strs), "i": pa.array(range(300), pa.int64())}),
         write={"dictionary_pagesize_limit": 512, "data_page_size": 512, "write_batch_size": 20},
         verify=verify_fallback("s"))
    case("format_version_1_0", "Parquet format version 1.0 (PLAIN_DICTIONARY; uint32 written as "
         "int64, so it reads back as int64)", table({
             "u32": pa.array([0, U32, None, 7], pa.uint32()), "u8": pa.array([0, U8, None, 1], pa.uint8()),
             "s": pa.array(["a", None, "b", "a"]), "i": pa.array([1, 2, 1, None], pa.int64())}),
         write={"version": "1.0"}, verify=verify_encodings({"s": "PLAIN_DICTIONARY"}))
    case("no_statistics", "write_statistics=False", mixed_table(n=30, seed=9), write={"write_statistics": False})
    case("bloom_filter", "bloom filters on i64 and s", mixed_table(n=30, seed=10),
         write={"bloom_filter_options": {"i64": {"ndv": 30, "fpp": 0.05}, "s": {"ndv": 30, "fpp": 0.05}}})


def verify_encodings(want: dict, forbidden=()):
    def run(path):
        md = pq.ParquetFile(path).metadata
        for rg in range(md.num_row_groups):
            for i in range(md.num_columns):
                col = md.row_group(rg).column(i)
                top = col.path_in_schema.split(".")[0]
                encs = set(col.encodings)
                if top in want:
                    assert want[top] in encs, (path, col.path_in_schema, encs, want[top])
                assert not (encs & set(forbidden)), (path, col.path_in_schema, encs)
    return run


def data_pages(path) -> dict:
    """column path -> the encodings of its data pages, in order (by walking the page headers)."""
    with open(path, "rb") as f:
        data = f.read()
    md = pq.ParquetFile(path).metadata
    out = {}
    for rg in range(md.num_row_groups):
        for i in range(md.num_columns):
            col = md.row_group(rg).column(i)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            end = start + col.total_compressed_size
            pos, pages = start, []
            while pos < end:
                header, pos = tc.decode_struct(data, pos)
                pos += header[3]  # compressed_page_size
                if header[1] == 0:  # DATA_PAGE: DataPageHeader.encoding
                    pages.append(header[5][2])
                elif header[1] == 3:  # DATA_PAGE_V2: DataPageHeaderV2.encoding
                    pages.append(header[8][4])
            out[col.path_in_schema] = out.get(col.path_in_schema, []) + pages
    return out


def count_pages(path) -> dict:
    return {k: len(v) for k, v in data_pages(path).items()}


def verify_fallback(col):
    def run(path):
        encs = data_pages(path)[col]
        assert encs[0] == 8 and 0 in encs, encs  # RLE_DICTIONARY pages, then PLAIN ones
    return run


def verify_pages(min_pages):
    def run(path):
        pages = count_pages(path)
        assert max(pages.values()) >= min_pages, pages
    return run


# ---------------------------------------------------------------- legacy layouts (footer rewrites)

def schema_index(meta, name: bytes):
    for i, el in enumerate(meta[tc.FMD.schema]):
        if el.get(tc.SE.name) == name:
            return i
    raise KeyError(name)


def rename_paths(meta, old_prefix, new_prefix):
    for rg in meta[tc.FMD.row_groups]:
        for cc in rg[tc.RG.columns]:
            md = cc[tc.CC.meta_data]
            path = list(md[tc.CMD.path_in_schema])
            if path[:len(old_prefix)] == old_prefix:
                md[tc.CMD.path_in_schema] = tc.List(tc.T_BINARY, new_prefix + path[len(old_prefix):])


def rewrite_two_level(col: str):
    """optional group col (LIST) { repeated group list { required T element } }
       -> optional group col (LIST) { repeated T array }   (T primitive or group)"""
    def run(path):
        body, meta = tc.read_footer(path)
        schema = meta[tc.FMD.schema]
        i = schema_index(meta, col.encode())
        lst, el = schema[i + 1], schema[i + 2]
        assert lst[tc.SE.name] == b"list" and lst[tc.SE.repetition_type] == tc.Rep.REPEATED
        assert el[tc.SE.name] == b"element" and el[tc.SE.repetition_type] == tc.Rep.REQUIRED
        el[tc.SE.name] = b"array"
        el[tc.SE.repetition_type] = tc.Rep.REPEATED
        del schema[i + 1]
        rename_paths(meta, [col.encode(), b"list", b"element"], [col.encode(), b"array"])
        tc.write_with_footer(path, body, meta)
    return run


def rewrite_unannotated_repeated(col: str):
    """required group col (LIST) { repeated group list { required T element } }
       -> repeated T col   (T primitive or group)"""
    def run(path):
        body, meta = tc.read_footer(path)
        schema = meta[tc.FMD.schema]
        i = schema_index(meta, col.encode())
        top, lst, el = schema[i], schema[i + 1], schema[i + 2]
        assert top[tc.SE.repetition_type] == tc.Rep.REQUIRED and lst[tc.SE.name] == b"list"
        assert el[tc.SE.repetition_type] == tc.Rep.REQUIRED
        el[tc.SE.name] = col.encode()
        el[tc.SE.repetition_type] = tc.Rep.REPEATED
        del schema[i:i + 2]
        rename_paths(meta, [col.encode(), b"list", b"element"], [col.encode()])
        tc.write_with_footer(path, body, meta)
    return run


def rewrite_legacy_map(col: str):
    """optional group col (MAP) { repeated group key_value { key; value } }, LogicalType set
       -> optional group col (MAP) { repeated group map (MAP_KEY_VALUE) { key; value } },
          converted types only, as parquet-mr 1.x wrote maps."""
    def run(path):
        body, meta = tc.read_footer(path)
        schema = meta[tc.FMD.schema]
        i = schema_index(meta, col.encode())
        top, kv = schema[i], schema[i + 1]
        assert kv[tc.SE.name] == b"key_value" and kv[tc.SE.repetition_type] == tc.Rep.REPEATED
        kv[tc.SE.name] = b"map"
        kv.set(tc.SE.converted_type, tc.T_I32, tc.Conv.MAP_KEY_VALUE)
        for el in schema[i:i + 4]:
            el.pop(tc.SE.logicalType, None)
        assert top[tc.SE.converted_type] == tc.Conv.MAP
        rename_paths(meta, [col.encode(), b"key_value"], [col.encode(), b"map"])
        tc.write_with_footer(path, body, meta)
    return run


def rewrite_decimal_byte_array(path, cols: dict):
    body, meta = tc.read_footer(path)
    for name, (p, s) in cols.items():
        el = meta[tc.FMD.schema][schema_index(meta, name.encode())]
        assert el[tc.SE.type] == tc.PT.BYTE_ARRAY and tc.SE.converted_type not in el
        el.set(tc.SE.converted_type, tc.T_I32, tc.Conv.DECIMAL)
        el.set(tc.SE.scale, tc.T_I32, s)
        el.set(tc.SE.precision, tc.T_I32, p)
        lt, dt = tc.Struct(), tc.Struct()
        dt.set(1, tc.T_I32, s)
        dt.set(2, tc.T_I32, p)
        lt.set(tc.LT.DECIMAL, tc.T_STRUCT, dt)
        el.set(tc.SE.logicalType, tc.T_STRUCT, lt)
        for rg in meta[tc.FMD.row_groups]:
            for cc in rg[tc.RG.columns]:
                md = cc[tc.CC.meta_data]
                if list(md[tc.CMD.path_in_schema]) == [name.encode()]:
                    md.pop(tc.CMD.statistics, None)  # binary min/max would be wrong for decimals
    tc.write_with_footer(path, body, meta)


def expect_schema(*fragments):
    def run(path):
        text = str(pq.ParquetFile(path).schema).replace(" field_id=-1", "")
        for frag in fragments:
            assert frag in text, (path, frag, text)
    return run


def verify_legacy_map(col):
    def run(path):
        _, meta = tc.read_footer(path)
        schema = meta[tc.FMD.schema]
        i = schema_index(meta, col.encode())
        assert schema[i + 1][tc.SE.name] == b"map", schema[i + 1]
        assert schema[i + 1][tc.SE.converted_type] == tc.Conv.MAP_KEY_VALUE
        assert all(tc.SE.logicalType not in el for el in schema[i:i + 4])
        expect_schema("optional group m (Map) {\n    repeated group map (Map) {\n"
                      "      required binary key (String);")(path)
    return run


def legacy_cases():
    case("legacy_list_2level", "two-level list: optional group a (LIST) { repeated int32 array; } "
         "(footer rewritten from a 3-level list of required elements)", table({
             "a": pa.array([None, [], [1, 2, 3], [I32[0], I32[1]], [0]], pa.list_(pa.field("element", pa.int32(), nullable=False)))}),
         write={"store_schema": False}, post=rewrite_two_level("a"),
         verify=expect_schema("repeated int32 array"))
    case("legacy_list_2level_struct", "two-level list of a group: optional group a (LIST) { repeated "
         "group array { required int32 x; optional binary y (STRING); } }", table({
             "a": pa.array([None, [], [{"x": 1, "y": "p"}, {"x": 2, "y": None}], [{"x": I32[0], "y": "😀"}]],
                           pa.list_(pa.field("element", pa.struct([pa.field("x", pa.int32(), nullable=False),
                                                                    pa.field("y", pa.string())]), nullable=False)))}),
         write={"store_schema": False}, post=rewrite_two_level("a"),
         verify=expect_schema("repeated group array"))
    case("legacy_repeated_primitive", "an unannotated repeated primitive at top level: repeated "
         "int32 a; (a list of required elements that is never null)", table({
             "a": pa.array([[], [1], [2, 3], [I32[0], I32[1], 0]], pa.list_(pa.field("element", pa.int32(), nullable=False)))},
             {"a": pa.field("a", pa.list_(pa.field("element", pa.int32(), nullable=False)), nullable=False)}),
         write={"store_schema": False}, post=rewrite_unannotated_repeated("a"),
         verify=expect_schema("repeated int32 a;"))
    gt = pa.list_(pa.field("element", pa.struct([pa.field("x", pa.int32(), nullable=False), pa.field("y", pa.string())]),
                           nullable=False))
    case("legacy_repeated_group", "an unannotated repeated group at top level: repeated group a "
         "{ required int32 x; optional binary y (STRING); }", table({
             "a": pa.array([[], [{"x": 1, "y": None}], [{"x": 2, "y": "b"}, {"x": 3, "y": ""}]], gt)},
             {"a": pa.field("a", gt, nullable=False)}),
         write={"store_schema": False}, post=rewrite_unannotated_repeated("a"),
         verify=expect_schema("repeated group a"))
    case("legacy_map_key_value", "a legacy map: optional group m (MAP) { repeated group map "
         "(MAP_KEY_VALUE) { required binary key (UTF8); optional int32 value; } }, no LogicalType", table({
             "m": pa.array([None, [], [("k1", 2), ("k2", None)], [("😀", I32[1])]], pa.map_(pa.string(), pa.int32()))}),
         write={"store_schema": False}, post=rewrite_legacy_map("m"),
         verify=verify_legacy_map("m"))


# ---------------------------------------------------------------- malformed files

def set_footer_rows(path):
    body, meta = tc.read_footer(path)
    assert meta[tc.FMD.num_rows] == 6
    meta[tc.FMD.num_rows] = 0
    tc.write_with_footer(path, body, meta)


def set_rowgroup_rows(path):
    body, meta = tc.read_footer(path)
    rg = meta[tc.FMD.row_groups][0]
    assert rg[tc.RG.num_rows] == 6
    rg[tc.RG.num_rows] = 3
    tc.write_with_footer(path, body, meta)


def flip_last_data_byte(path):
    md = pq.ParquetFile(path).metadata
    col = md.row_group(0).column(1)
    assert col.path_in_schema == "v" and not col.has_dictionary_page and col.compression == "UNCOMPRESSED"
    pos = col.data_page_offset + col.total_compressed_size - 1
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ 0x01]))


def int96_far_future(path):
    """Set the Julian day of the second INT96 value (2025-03-23T10:00:00) to 0x7fffffff
    (around the year 5.8 million): past what microseconds (i64) hold."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    nanos = (10 * 3600) * 10**9
    julian = 2440588 + days(2025, 3, 23)
    value = nanos.to_bytes(8, "little") + julian.to_bytes(4, "little")
    at = data.find(value)
    assert at > 0 and data.find(value, at + 1) < 0, "the INT96 value is in the file once"
    data[at + 8:at + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(data)


def verify_crc(corrupt: bool):
    def run(path):
        if corrupt:
            pq.read_table(path)  # without verification it reads (a wrong value)
            try:
                pq.read_table(path, page_checksum_verification=True)
            except OSError as e:
                assert "CRC" in str(e) or "checksum" in str(e).lower(), e
            else:
                raise AssertionError("pyarrow verified a corrupt page checksum")
        else:
            pq.read_table(path, page_checksum_verification=True)
    return run


def malformed_cases():
    six = lambda: table({"v": pa.array([10, 20, None, 40, 50, 60], pa.int64()),  # noqa: E731
                         "s": pa.array(["a", "b", "c", None, "e", "f"])})
    case("footer_rows_zero", "a valid 6-row file whose FileMetaData.num_rows says 0 (the row "
         "group says 6)", six(), post=set_footer_rows,
         postgres={"outcome": "exact", "counted": {"footer_row_count_mismatch": 1}},
         delta={"outcome": "exact", "counted": {"footer_row_count_mismatch": 1}})
    case("rowgroup_rows_mismatch", "RowGroup.num_rows says 3, its column chunks hold 6 values of "
         "non-repeated columns", six(), post=set_rowgroup_rows,
         postgres=fails("part-0.parquet", "row group"), delta=fails("part-0.parquet", "row group"))
    crc_write = {"write_page_checksum": True, "compression": "NONE", "use_dictionary": False}
    case("corrupt_page_crc", "page checksums written, then one byte of column v's data page "
         "flipped (the last byte of the chunk): the CRC no longer matches", six(), write=crc_write,
         post=flip_last_data_byte, verify=verify_crc(True),
         postgres=fails("part-0.parquet", "checksum"), delta=fails("part-0.parquet", "checksum"))
    case("crc_ok", "page checksums written, nothing corrupted", six(), write=crc_write, verify=verify_crc(False))
    far = table({"ts96": pa.array([us(2000, 1, 1), us(2025, 3, 23, 10), None], pa.timestamp("us"))})
    case("int96_overflow", "an INT96 value whose Julian day (0x7fffffff, around the year 5.8 million) is past "
         "what microseconds hold: no destination can store it", far,
         write={"use_deprecated_int96_timestamps": True, "store_schema": False, "compression": "NONE",
                "use_dictionary": False, "write_statistics": False},
         post=int96_far_future, postgres=fails("ts96", "part-0.parquet", "INT96"),
         delta=fails("ts96", "part-0.parquet", "INT96"))


# ---------------------------------------------------------------- column names

LONG_NAME = "a_column_name_that_is_far_longer_than_the_sixty_three_bytes_pg_allowed"


def name_cases():
    names = ["order id", "a,b", "x;y", "(paren)", "tab\there", "eq=ual", "brace{", "تاریخ"]
    case("column_names_special", "column names Delta allows only with column mapping: "
         + ", ".join(json.dumps(n, ensure_ascii=False) for n in names),
         table({n: pa.array([i, None, -i]) if i % 2 else pa.array([n, None, ""]) for i, n in enumerate(names)}))
    case("column_names_more", "more names: a dot, mixed case, a double quote, a trailing space, a "
         "leading digit, and struct fields with a space and a dot", table({
             "dot.ted": pa.array([1, 2]), "MixedCase": pa.array(["a", "b"]), 'quo"te': pa.array([True, None]),
             "trailing ": pa.array([1.5, None]), "1st": pa.array([None, "x"]),
             "st": pa.array([{"inner field": 1, "x.y": "z"}, None], pa.struct([("inner field", pa.int64()), ("x.y", pa.string())]))}))
    assert len(LONG_NAME) == 70, len(LONG_NAME)
    case("column_name_long", f"a 70-character column name ({LONG_NAME})",
         table({LONG_NAME: pa.array([1, None, 3], pa.int64())}),
         postgres=fails(LONG_NAME[:20], "63"))


# ============================================================================ writing

def write_case(c, outdir):
    folder = os.path.join(outdir, c["name"])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "part-0.parquet")
    tbl = c["table"]
    if c["row_groups"]:
        write = dict(c["write"])
        with pq.ParquetWriter(path, tbl.schema, **write) as w:
            pos = 0
            for n in c["row_groups"]:
                w.write_table(tbl.slice(pos, n), row_group_size=max(n, 1))
                pos += n
        assert pos == tbl.num_rows
        md = pq.ParquetFile(path).metadata
        assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == c["row_groups"]
    else:
        pq.write_table(tbl, path, **c["write"])
    if c["post"]:
        c["post"](path)
    if c["verify"]:
        c["verify"](path)
    return path


def expectation(c, dest, ref):
    explicit = c[dest]
    hand = c["pg_counts" if dest == "postgres" else "delta_counts"]
    if explicit is not None and explicit["outcome"] == "fails":
        return explicit
    computed = check.table_changes(ref, dest)
    want = dict(explicit.get("counted", {})) if explicit else {}
    expected = {**want}
    for k, v in computed.items():
        expected[k] = expected.get(k, 0) + v
    declared = {**want, **hand}
    if expected != declared:
        raise AssertionError(f"{c['name']} {dest}: counts from the data {expected} != declared {declared}")
    out = {"outcome": "exact"}
    if expected:
        out["counted"] = expected
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    scalar_cases()
    nested_cases()
    page_cases()
    legacy_cases()
    malformed_cases()
    name_cases()
    manifest = []
    for c in CASES:
        shutil.rmtree(os.path.join(outdir, c["name"]), ignore_errors=True)
        path = write_case(c, outdir)
        readable = not (c["postgres"] and c["postgres"]["outcome"] == "fails"
                        and c["delta"] and c["delta"]["outcome"] == "fails")
        entry = {"name": c["name"], "path": f"{c['name']}/", "description": c["description"]}
        if readable:
            ref = check.read_reference(path, c)
            if c["name"] not in ("footer_rows_zero",):
                assert ref.num_rows == c["table"].num_rows, (c["name"], ref.num_rows)
            entry["postgres"] = expectation(c, "postgres", ref)
            entry["delta"] = expectation(c, "delta", ref)
        else:
            entry["postgres"], entry["delta"] = c["postgres"], c["delta"]
        if c["reference"]:
            entry["reference"] = c["reference"]
        manifest.append(entry)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"cases": manifest}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(manifest)} cases to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
