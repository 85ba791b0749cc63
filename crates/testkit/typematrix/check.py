#!/usr/bin/env python3
"""Compare what Weir loaded from the type-matrix Parquet files with pyarrow's own reading.

    python3 check.py --manifest OUT/manifest.json --data OUT \
        --pg-url postgres://... --pg-schema matrix \
        --lake /path/to/lake --delta-schema matrix [--case NAME]...

For every case whose expectation for a destination is `exact`, the reference is
`pq.read_table(OUT/<case>/part-0.parquet, coerce_int96_timestamp_unit="us")`, and:
  PostgreSQL  <pg-schema>.<case>, read with psycopg 3 in binary (raw integers for dates,
              timestamps, times and intervals; float bits; jsonb as its text);
  Delta       <lake>/<delta-schema>/<case>, read twice: with Python `deltalake`
              (to_pyarrow_table) and with DuckDB's delta extension (delta_scan).
Column types are checked too (PostgreSQL's format_type, the Delta log's schema).
Every mismatch is one line; exit 1 if there was any, 0 otherwise.

This module also holds the mapping rules (types, value conversions, renderings, the
counts Weir reports in audit.details); gen.py imports them to write the manifest.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import struct
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq

# ============================================================================ values
# Canonical Python values, read from pyarrow arrays or database rows. Temporal values are
# normalised to nanoseconds (Python ints, so no range limit and no datetime involved).


@dataclass(frozen=True)
class Flt:
    """A float by its bits; NaN equals NaN (any payload), -0.0 differs from 0.0."""
    width: int  # 16, 32, 64
    bits: int

    def value(self) -> float:
        fmt = {16: "<e", 32: "<f", 64: "<d"}[self.width]
        return struct.unpack(fmt, self.bits.to_bytes(self.width // 8, "little"))[0]

    def is_nan(self) -> bool:
        e, m = FLOAT_LAYOUT[self.width]
        exp = (self.bits >> m) & ((1 << e) - 1)
        return exp == (1 << e) - 1 and self.bits & ((1 << m) - 1) != 0

    def __eq__(self, other):
        if not isinstance(other, Flt) or other.width != self.width:
            return False
        if self.is_nan() or other.is_nan():
            return self.is_nan() and other.is_nan()
        return self.bits == other.bits

    def __hash__(self):
        return hash((self.width, "nan" if self.is_nan() else self.bits))

    def __repr__(self):
        return f"f{self.width}({self.value()!r} 0x{self.bits:0{self.width // 4}x})"


FLOAT_LAYOUT = {16: (5, 10), 32: (8, 23), 64: (11, 52)}  # exponent bits, mantissa bits


@dataclass(frozen=True)
class Date:
    days: int  # since 1970-01-01

    def __repr__(self):
        return f"date({render_date(self.days)})"


@dataclass(frozen=True)
class Ts:
    ns: int  # since 1970-01-01T00:00:00 (UTC when tz)
    tz: bool

    def __repr__(self):
        return f"ts({render_timestamp(self.ns, 'ns', self.tz)})"


@dataclass(frozen=True)
class Tm:
    ns: int  # since midnight

    def __repr__(self):
        return f"time({render_time(self.ns, 'ns')})"


@dataclass(frozen=True)
class Dur:
    ns: int

    def __repr__(self):
        return f"duration({self.ns}ns)"


@dataclass(frozen=True)
class Iv:
    """A PostgreSQL interval as stored: months, days, microseconds."""
    months: int
    days: int
    us: int


@dataclass(frozen=True)
class JsonText:
    """A json/jsonb value as PostgreSQL prints it."""
    text: str

    def __repr__(self):
        return f"json({self.text})"


UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def same(a, b) -> bool:
    """Exact equality: same Python type all the way down (True is not 1, Decimal('1.0')
    is not Decimal('1.00')), floats by bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, Decimal):
        if a.is_nan() or b.is_nan():
            return a.is_nan() and b.is_nan()
        return a == b and a.as_tuple().exponent == b.as_tuple().exponent
    return a == b


# ============================================================================ arrow types

def unwrap(t: pa.DataType) -> pa.DataType:
    """Extension types as their storage (except arrow.json, kept), dictionaries as values."""
    while True:
        if isinstance(t, pa.BaseExtensionType) and t.extension_name != "arrow.json":
            t = t.storage_type
        elif pa.types.is_dictionary(t):
            t = t.value_type
        else:
            return t


def is_json_ext(t) -> bool:
    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"


def is_listlike(t) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t))


def is_nested(t) -> bool:
    t = unwrap(t)
    return is_listlike(t) or pa.types.is_struct(t) or pa.types.is_map(t)


def is_string(t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def is_binary(t) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
            or pa.types.is_fixed_size_binary(t))


def is_wide_decimal(t) -> bool:
    """decimal256 (or any decimal) with precision > 38: text/string in both destinations."""
    return pa.types.is_decimal(t) and t.precision > 38


def pg_array_element(t):
    """For a top-level list of a scalar type: the element type; else None."""
    t = unwrap(t)
    if is_listlike(t) and not is_nested(t.value_type):
        return t.value_type
    return None


# ============================================================================ canonical values from arrow

def canon(arr) -> list:
    """An arrow array (or chunked array) -> a list of canonical Python values."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if isinstance(t, pa.BaseExtensionType):
        return canon(arr.storage)
    if pa.types.is_dictionary(t):
        return canon(arr.dictionary_decode())
    n = len(arr)
    if pa.types.is_null(t):
        return [None] * n
    valid = [bool(x) for x in arr.is_valid().to_pylist()] if arr.null_count else [True] * n
    if pa.types.is_floating(t):
        width = t.bit_width
        bits = arr.view({16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[width]).to_pylist()
        return [Flt(width, b) if b is not None else None for b in bits]
    if pa.types.is_timestamp(t):
        f, tz = UNIT_NS[t.unit], t.tz is not None
        return [Ts(v * f, tz) if v is not None else None for v in arr.view(pa.int64()).to_pylist()]
    if pa.types.is_date32(t):
        return [Date(v) if v is not None else None for v in arr.view(pa.int32()).to_pylist()]
    if pa.types.is_date64(t):
        return [Date(v // 86_400_000) if v is not None else None for v in arr.view(pa.int64()).to_pylist()]
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        f = UNIT_NS[t.unit]
        ints = arr.view(pa.int32() if pa.types.is_time32(t) else pa.int64()).to_pylist()
        return [Tm(v * f) if v is not None else None for v in ints]
    if pa.types.is_duration(t):
        f = UNIT_NS[t.unit]
        return [Dur(v * f) if v is not None else None for v in arr.view(pa.int64()).to_pylist()]
    if is_listlike(t) or pa.types.is_map(t):
        out = []
        for i in range(n):
            if not valid[i]:
                out.append(None)
                continue
            sub = arr[i].values
            if pa.types.is_map(t):
                keys, vals = (canon(c) for c in sub.flatten())
                out.append([(k, v) for k, v in zip(keys, vals)])
            else:
                out.append(canon(sub))
        return out
    if pa.types.is_struct(t):
        children = [canon(c) for c in arr.flatten()]
        return [tuple(c[i] for c in children) if valid[i] else None for i in range(n)]
    if (pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
            or is_string(t) or is_binary(t)):
        return arr.to_pylist()
    raise TypeError(f"no canonical form for {t}")


# ============================================================================ renderings

def civil_from_days(z: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 -> proleptic Gregorian (year, month, day). H. Hinnant's algorithm."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def render_date(days: int) -> str:
    y, m, d = civil_from_days(days)
    return f"{y:04d}-{m:02d}-{d:02d}"


def _fraction(frac_ns: int, unit: str) -> str:
    digits = UNIT_DIGITS[unit]
    if digits == 0:
        return ""
    return "." + f"{frac_ns // UNIT_NS[unit]:0{digits}d}"


def render_timestamp(ns: int, unit: str, tz: bool) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    days, sod = divmod(secs, 86400)
    h, rem = divmod(sod, 3600)
    mi, s = divmod(rem, 60)
    return f"{render_date(days)}T{h:02d}:{mi:02d}:{s:02d}{_fraction(frac, unit)}{'Z' if tz else ''}"


def render_time(ns: int, unit: str) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    h, rem = divmod(secs, 3600)
    mi, s = divmod(rem, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}{_fraction(frac, unit)}"


def render_duration(ns: int, unit: str) -> str:
    sign = "-" if ns < 0 else ""
    secs, frac = divmod(abs(ns), 1_000_000_000)
    return f"PT{sign}{secs}{_fraction(frac, unit)}S"


def render_decimal(d: Decimal, scale: int) -> str:
    """Exactly `scale` fractional digits, no exponent."""
    with localcontext(Context(prec=200)):
        q = d.quantize(Decimal(1).scaleb(-scale)) if scale > 0 else d.quantize(Decimal(1))
    if q != d:
        raise ValueError(f"{d} has more than {scale} fractional digits")
    return format(q, "f")


def render_bytea(b: bytes) -> str:
    return "\\x" + b.hex()


def floor_us(ns: int) -> int:
    """Truncate toward negative infinity to whole microseconds (in ns)."""
    return (ns // 1000) * 1000


# ============================================================================ exact float conversion

def fraction_to_float_bits(x: Fraction, width: int) -> int:
    """The float of `width` bits nearest to x (ties to even), as IEEE bits."""
    ebits, mbits = FLOAT_LAYOUT[width]
    sign = 0
    if x < 0:
        sign, x = 1, -x
    signbit = sign << (ebits + mbits)
    if x == 0:
        return signbit
    bias = (1 << (ebits - 1)) - 1
    num, den = x.numerator, x.denominator
    e = num.bit_length() - den.bit_length()  # 2^e <= x < 2^(e+1), maybe off by one
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    e = max(e, 1 - bias)  # subnormals share the smallest exponent
    shift = mbits - e  # x * 2^shift -> integer mantissa
    sn, sd = (num << shift, den) if shift >= 0 else (num, den << -shift)
    q, r = divmod(sn, sd)
    if 2 * r > sd or (2 * r == sd and q & 1):
        q += 1
    if q >= 1 << (mbits + 1):
        q >>= 1
        e += 1
    if e > bias:
        return signbit | (((1 << ebits) - 1) << mbits)  # infinity
    if q < 1 << mbits:
        return signbit | q  # subnormal
    return signbit | ((e + bias) << mbits) | (q - (1 << mbits))


def text_to_float_bits(text: str, width: int) -> int:
    return fraction_to_float_bits(Fraction(Decimal(text)), width)


def f16_to_f32(f: Flt) -> Flt:
    v = struct.unpack("<e", f.bits.to_bytes(2, "little"))[0]
    return Flt(32, int.from_bytes(struct.pack("<f", v), "little"))


def float_special(f: Flt) -> str | None:
    """NaN / ±Infinity / -0.0 as Weir's JSON strings, or None for an ordinary number."""
    e, m = FLOAT_LAYOUT[f.width]
    exp_all = ((1 << e) - 1) << m
    sign = 1 << (e + m)
    if f.is_nan():
        return "NaN"
    if f.bits & ~sign == exp_all:
        return "-Infinity" if f.bits & sign else "Infinity"
    if f.bits == sign:
        return "-0.0"
    return None


# ============================================================================ the mapping: PostgreSQL

def pg_type(t) -> str:
    """The PostgreSQL column type (format_type form) Weir creates for arrow type t."""
    if is_json_ext(t):
        return "jsonb"
    u = unwrap(t)
    if is_listlike(u):
        if is_nested(u.value_type):
            return "jsonb"
        return pg_type(u.value_type) + "[]"
    if pa.types.is_struct(u) or pa.types.is_map(u):
        return "jsonb"
    if pa.types.is_boolean(u):
        return "boolean"
    if u in (pa.int8(), pa.int16(), pa.uint8()):
        return "smallint"
    if u in (pa.int32(), pa.uint16()):
        return "integer"
    if u in (pa.int64(), pa.uint32()):
        return "bigint"
    if u == pa.uint64():
        return "numeric(20,0)"
    if u in (pa.float16(), pa.float32()):
        return "real"
    if u == pa.float64():
        return "double precision"
    if pa.types.is_decimal(u):
        return "text" if u.precision > 38 else f"numeric({u.precision},{u.scale})"
    if pa.types.is_date(u):
        return "date"
    if pa.types.is_timestamp(u):
        return "timestamp with time zone" if u.tz is not None else "timestamp without time zone"
    if pa.types.is_time(u):
        return "time without time zone"
    if pa.types.is_duration(u):
        return "interval"
    if is_string(u) or pa.types.is_null(u):
        return "text"
    if is_binary(u):
        return "bytea"
    raise TypeError(f"no PostgreSQL mapping for {t}")


def pg_normalise_type(name: str) -> str:
    # timestamp(6) / time(6) are the same types with the default precision spelled out.
    return re.sub(r"\b(timestamp|time)\(6\)", r"\1", name)


def pg_value(t, v):
    """Expected value of a non-JSON PostgreSQL column (scalar or array) for source value v."""
    if v is None:
        return None
    if is_json_ext(t):
        return JsonText(v)
    u = unwrap(t)
    if is_listlike(u):
        return [pg_value(u.value_type, x) for x in v]
    if u == pa.uint64():
        return Decimal(v)
    if pa.types.is_floating(u):
        return f16_to_f32(v) if u.bit_width == 16 else v
    if is_wide_decimal(u):
        return render_decimal(v, u.scale)
    if pa.types.is_timestamp(u):
        return Ts(floor_us(v.ns), u.tz is not None)
    if pa.types.is_time(u):
        return Tm(floor_us(v.ns))
    if pa.types.is_duration(u):
        return Iv(0, 0, v.ns // 1000)
    return v  # bool, ints, decimals (Decimal with the column's scale), str, bytes, Date


def pg_is_json(t) -> bool:
    return pg_type(t) == "jsonb" and not is_json_ext(t)


# ---- JSON (struct, map, nested lists) in jsonb

class JNum(str):
    """A JSON number, kept as its text."""


class JObj(dict):
    duplicates: list


def _pairs(pairs):
    o = JObj()
    o.duplicates = []
    for k, v in pairs:
        if k in o:
            o.duplicates.append(k)
        o[k] = v
    return o


def parse_json(text: str):
    def bad_constant(c):
        raise ValueError(f"JSON constant {c} is not JSON")
    return json.loads(text, parse_float=JNum, parse_int=JNum, parse_constant=bad_constant,
                      object_pairs_hook=_pairs)


def json_scalar(t, v):
    """The JSON value Weir writes for scalar source value v of type t (numbers as JNum text)."""
    if v is None:
        return None
    if is_json_ext(t):
        return v  # a JSON string holding the text (not embedded)
    u = unwrap(t)
    if pa.types.is_boolean(u):
        return v
    if pa.types.is_integer(u):
        return JNum(str(v))
    if pa.types.is_floating(u):
        return float_special(v) or v  # a Flt: compared by converting the number text
    if pa.types.is_decimal(u):
        return JNum(render_decimal(v, u.scale))
    if is_string(u):
        return v
    if is_binary(u):
        return render_bytea(v)
    if pa.types.is_date(u):
        return render_date(v.days)
    if pa.types.is_timestamp(u):
        return render_timestamp(v.ns, u.unit, u.tz is not None)
    if pa.types.is_time(u):
        return render_time(v.ns, u.unit)
    if pa.types.is_duration(u):
        return render_duration(v.ns, u.unit)
    if pa.types.is_null(u):
        return None
    raise TypeError(f"no JSON form for {t}")


def json_key(t, k) -> str:
    """A map key as a JSON object key: strings as-is, other scalars as their JSON form
    without quotes."""
    j = json_scalar(t, k)
    if isinstance(j, Flt):
        raise TypeError("float map keys have no defined JSON key form")
    if isinstance(j, bool):
        return "true" if j else "false"
    return str(j)


def compare_json(t, v, j, path="$"):
    """Mismatches (strings) between source value v (type t) and parsed JSON j."""
    u = unwrap(t) if not is_json_ext(t) else t
    if v is None:
        return [] if j is None else [f"{path}: expected null, got {json_repr(j)}"]
    if not is_json_ext(u) and is_listlike(u):
        if not isinstance(j, list):
            return [f"{path}: expected an array, got {json_repr(j)}"]
        if len(j) != len(v):
            return [f"{path}: expected {len(v)} elements, got {len(j)}: {json_repr(j)}"]
        out = []
        for i, (x, y) in enumerate(zip(v, j)):
            out += compare_json(u.value_type, x, y, f"{path}[{i}]")
        return out
    if not is_json_ext(u) and pa.types.is_struct(u):
        if not isinstance(j, dict):
            return [f"{path}: expected an object, got {json_repr(j)}"]
        names = [u.field(i).name for i in range(u.num_fields)]
        out = []
        if sorted(j.keys()) != sorted(names) or j.duplicates:
            out.append(f"{path}: expected keys {names}, got {list(j.keys())}")
        for i, name in enumerate(names):
            if name in j:
                out += compare_json(u.field(i).type, v[i], j[name], f"{path}.{name}")
        return out
    if not is_json_ext(u) and pa.types.is_map(u):
        if not isinstance(j, dict):
            return [f"{path}: expected an object, got {json_repr(j)}"]
        last = {}  # a key repeated within one map: the last entry wins (and is counted)
        for k, val in v:
            last[json_key(u.key_type, k)] = val
        out = []
        if sorted(j.keys()) != sorted(last) or j.duplicates:
            out.append(f"{path}: expected keys {list(last)}, got {list(j.keys())}")
        for key, val in last.items():
            if key in j:
                out += compare_json(u.item_type, val, j[key], f"{path}[{key!r}]")
        return out
    want = json_scalar(t, v)
    if isinstance(want, Flt):
        if isinstance(j, JNum):
            try:
                got = Flt(want.width, text_to_float_bits(j, want.width))
            except Exception:  # noqa: BLE001 - not a number text
                got = None
            if got == want:
                return []
            return [f"{path}: expected {want!r}, got number {j} (= {got!r})"]
        return [f"{path}: expected the number {want!r}, got {json_repr(j)}"]
    if type(want) is not type(j) or want != j:
        return [f"{path}: expected {json_repr(want)}, got {json_repr(j)}"]
    return []


def json_repr(j) -> str:
    if isinstance(j, JNum):
        return str(j)
    if isinstance(j, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json_repr(v)}" for k, v in j.items()) + "}"
    if isinstance(j, list):
        return "[" + ", ".join(json_repr(x) for x in j) + "]"
    return json.dumps(j, ensure_ascii=False)


# ============================================================================ the mapping: Delta

def delta_type(t, top=True):
    """The Delta schema type (as in the log's schemaString) for arrow type t."""
    if is_json_ext(t):
        return "string"
    u = unwrap(t)
    if is_listlike(u):
        return {"type": "array", "elementType": delta_type(u.value_type, False), "containsNull": True}
    if pa.types.is_map(u):
        return {"type": "map", "keyType": delta_type(u.key_type, False),
                "valueType": delta_type(u.item_type, False), "valueContainsNull": True}
    if pa.types.is_struct(u):
        return {"type": "struct", "fields": [
            {"name": u.field(i).name, "type": delta_type(u.field(i).type, False), "nullable": True}
            for i in range(u.num_fields)]}
    simple = {
        pa.bool_(): "boolean", pa.int8(): "byte", pa.int16(): "short", pa.int32(): "integer",
        pa.int64(): "long", pa.uint8(): "short", pa.uint16(): "integer", pa.uint32(): "long",
        pa.uint64(): "decimal(20,0)", pa.float16(): "float", pa.float32(): "float",
        pa.float64(): "double", pa.date32(): "date", pa.date64(): "date", pa.null(): "string",
    }
    if u in simple:
        return simple[u]
    if pa.types.is_decimal(u):
        return "string" if u.precision > 38 else f"decimal({u.precision},{u.scale})"
    if pa.types.is_timestamp(u):
        return "timestamp" if u.tz is not None else "timestamp_ntz"
    if pa.types.is_time(u) or is_string(u):
        return "string"
    if pa.types.is_duration(u):
        return "long"
    if is_binary(u):
        return "binary"
    raise TypeError(f"no Delta mapping for {t}")


def strip_delta_type(dt):
    """A Delta schema type from the log, reduced to what delta_type() states (names,
    types, nullability; no metadata such as column-mapping ids)."""
    if isinstance(dt, str):
        return dt
    kind = dt["type"]
    if kind == "array":
        return {"type": "array", "elementType": strip_delta_type(dt["elementType"]),
                "containsNull": dt["containsNull"]}
    if kind == "map":
        return {"type": "map", "keyType": strip_delta_type(dt["keyType"]),
                "valueType": strip_delta_type(dt["valueType"]),
                "valueContainsNull": dt["valueContainsNull"]}
    if kind == "struct":
        return {"type": "struct", "fields": [
            {"name": f["name"], "type": strip_delta_type(f["type"]), "nullable": f["nullable"]}
            for f in dt["fields"]]}
    return dt


def delta_value(t, v):
    """Expected canonical value read back from the Delta table for source value v."""
    if v is None:
        return None
    if is_json_ext(t):
        return v
    u = unwrap(t)
    if is_listlike(u):
        return [delta_value(u.value_type, x) for x in v]
    if pa.types.is_map(u):
        return [(delta_value(u.key_type, k), delta_value(u.item_type, x)) for k, x in v]
    if pa.types.is_struct(u):
        return tuple(delta_value(u.field(i).type, x) for i, x in enumerate(v))
    if u == pa.uint64():
        return Decimal(v)
    if pa.types.is_floating(u):
        return f16_to_f32(v) if u.bit_width == 16 else v
    if is_wide_decimal(u):
        return render_decimal(v, u.scale)
    if pa.types.is_timestamp(u):
        return Ts(floor_us(v.ns), u.tz is not None)
    if pa.types.is_time(u):
        return render_time(v.ns, u.unit)
    if pa.types.is_duration(u):
        return v.ns // 1000
    return v


# ============================================================================ what Weir counts

def count_changes(t, values, dest: str) -> Counter:
    """audit.details counts for one source column (type t, canonical values) loaded into
    `dest` ('postgres' or 'delta')."""
    c = Counter()
    if dest == "postgres":
        if pg_is_json(t):
            for v in values:
                _count_json(t, v, c)
        else:
            et = pg_array_element(t)
            for v in values:
                if v is None:
                    continue
                for x in (v if et is not None else [v]):
                    _count_pg_scalar(et if et is not None else t, x, c)
    else:
        for v in values:
            _count_delta(t, v, c)
    return c


def _subus(v) -> bool:
    return v is not None and v.ns % 1000 != 0


def _count_pg_scalar(t, v, c):
    u = unwrap(t)
    if (pa.types.is_timestamp(u) or pa.types.is_time(u) or pa.types.is_duration(u)) and _subus(v):
        c["truncated_nanoseconds"] += 1


def _count_json(t, v, c):
    if v is None:
        return
    u = unwrap(t) if not is_json_ext(t) else t
    if is_json_ext(u):
        return
    if is_listlike(u):
        for x in v:
            _count_json(u.value_type, x, c)
    elif pa.types.is_map(u):
        seen = set()
        for k, x in v:
            key = json_key(u.key_type, k)
            if key in seen:
                c["json_duplicate_map_keys"] += 1
            seen.add(key)
            _count_json(u.item_type, x, c)
    elif pa.types.is_struct(u):
        for i, x in enumerate(v):
            _count_json(u.field(i).type, x, c)
    elif pa.types.is_floating(u) and float_special(v):
        c["json_special_floats"] += 1


def _count_delta(t, v, c):
    if v is None:
        return
    u = unwrap(t) if not is_json_ext(t) else t
    if is_json_ext(u):
        return
    if is_listlike(u):
        for x in v:
            _count_delta(u.value_type, x, c)
    elif pa.types.is_map(u):
        for k, x in v:
            _count_delta(u.key_type, k, c)
            _count_delta(u.item_type, x, c)
    elif pa.types.is_struct(u):
        for i, x in enumerate(v):
            _count_delta(u.field(i).type, x, c)
    elif (pa.types.is_timestamp(u) or pa.types.is_duration(u)) and _subus(v):
        c["truncated_nanoseconds"] += 1


def table_changes(table: pa.Table, dest: str) -> dict:
    total = Counter()
    for name in table.column_names:
        total += count_changes(table.schema.field(name).type, canon(table.column(name)), dest)
    return dict(total)


# ============================================================================ reading

def read_reference(path: str, case: dict | None = None) -> pa.Table:
    unit = ((case or {}).get("reference") or {}).get("int96_unit", "us")
    return pq.read_table(path, coerce_int96_timestamp_unit=unit)  # rows are matched by row_id


def delta_extension_path() -> str:
    """The delta.duckdb_extension file shipped in the duckdb-extension-delta wheel."""
    spec = importlib.util.find_spec("duckdb_extension_delta")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("duckdb-extension-delta is not installed "
                           "(pip install duckdb==1.5.5 duckdb-extension-delta==1.5.5)")
    import duckdb
    found = []
    for base in spec.submodule_search_locations:
        found += glob.glob(os.path.join(base, "extensions", f"v{duckdb.__version__}", "delta.duckdb_extension"))
        found += glob.glob(os.path.join(base, "**", "delta.duckdb_extension"), recursive=True)
    if not found:
        raise RuntimeError("no delta.duckdb_extension inside the duckdb_extension_delta package")
    return found[0]


def pg_connect(url: str):
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    pg_epoch_days = 10957  # 2000-01-01 - 1970-01-01
    pg_epoch_us = pg_epoch_days * 86_400_000_000

    def loader(fn):
        class L(Loader):
            format = Format.BINARY

            def load(self, data):
                return fn(bytes(data))
        return L

    conn = psycopg.connect(url, autocommit=True)
    a = conn.adapters
    a.register_loader("date", loader(lambda b: Date(int.from_bytes(b, "big", signed=True) + pg_epoch_days)))
    a.register_loader("timestamp", loader(
        lambda b: Ts((int.from_bytes(b, "big", signed=True) + pg_epoch_us) * 1000, False)))
    a.register_loader("timestamptz", loader(
        lambda b: Ts((int.from_bytes(b, "big", signed=True) + pg_epoch_us) * 1000, True)))
    a.register_loader("time", loader(lambda b: Tm(int.from_bytes(b, "big", signed=True) * 1000)))
    a.register_loader("interval", loader(lambda b: Iv(
        int.from_bytes(b[12:16], "big", signed=True), int.from_bytes(b[8:12], "big", signed=True),
        int.from_bytes(b[0:8], "big", signed=True))))
    a.register_loader("float4", loader(lambda b: Flt(32, int.from_bytes(b, "big"))))
    a.register_loader("float8", loader(lambda b: Flt(64, int.from_bytes(b, "big"))))
    a.register_loader("jsonb", loader(lambda b: JsonText(b[1:].decode())))
    a.register_loader("json", loader(lambda b: JsonText(b.decode())))
    return conn


def pg_columns(conn, schema: str, table: str):
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""", (schema, table)).fetchall()
    return [(r[0], r[1]) for r in rows]


# ============================================================================ comparing

class Report:
    def __init__(self):
        self.mismatches = 0
        self.values = 0
        self.cases = set()

    def bad(self, case, dest, column, row, expected, actual, note=""):
        self.mismatches += 1
        extra = f" ({note})" if note else ""
        print(f"MISMATCH case={case} dest={dest} column={column!r} row={row} "
              f"expected={expected!r} actual={actual!r}{extra}", flush=True)


def compare_rows(rep: Report, case, dest, ref: pa.Table, actual_cols: dict, actual_ids: list,
                 expect, skip_columns=()):
    """actual_cols: name -> list of canonical values in the order of actual_ids."""
    ref_ids = canon(ref.column("row_id"))
    if None in actual_ids:
        rep.bad(case, dest, "row_id", "*", "no null row_id", f"{actual_ids.count(None)} null row_ids")
        actual_ids = [i if i is not None else object() for i in actual_ids]
    if sorted(ref_ids) != sorted(i for i in actual_ids if isinstance(i, int)) or len(actual_ids) != len(set(actual_ids)):
        rep.bad(case, dest, "row_id", "*", f"{len(ref_ids)} rows {ref_ids[:10]}...",
                f"{len(actual_ids)} rows {sorted(actual_ids)[:10]}...", "row ids differ")
    index = {rid: i for i, rid in enumerate(actual_ids)}
    for name in ref.column_names:
        if name in skip_columns or name not in actual_cols:
            continue
        t = ref.schema.field(name).type
        got = actual_cols[name]
        for rid, v in zip(ref_ids, canon(ref.column(name))):
            if rid not in index:
                continue
            rep.values += 1
            expect(rep, case, dest, name, rid, t, v, got[index[rid]])


def expect_pg(rep, case, dest, name, rid, t, v, got):
    if pg_is_json(t):
        if v is None:
            if got is not None:
                rep.bad(case, dest, name, rid, None, got)
            return
        if not isinstance(got, JsonText):
            rep.bad(case, dest, name, rid, "jsonb", got, "not a json value")
            return
        try:
            j = parse_json(got.text)
        except ValueError as e:
            rep.bad(case, dest, name, rid, "JSON", got.text, f"unparseable: {e}")
            return
        for problem in compare_json(t, v, j):
            rep.bad(case, dest, name, rid, problem, got.text)
        return
    want = pg_value(t, v)
    if not same(want, got):
        rep.bad(case, dest, name, rid, want, got)


def expect_delta(rep, case, dest, name, rid, t, v, got):
    want = delta_value(t, v)
    if not same(want, got):
        rep.bad(case, dest, name, rid, want, got)


def check_columns(rep, case, dest, ref: pa.Table, actual: list[tuple[str, object]], want_type):
    """actual: [(name, type)] in table order. Reports missing/extra/reordered columns and
    type differences; returns the names present in both."""
    names = [n for n, _ in actual if not n.startswith("_weir")]
    types = dict(actual)
    ref_names = ref.column_names
    for n in ref_names:
        if n not in types:
            rep.bad(case, dest, n, "-", "a column", "missing")
    for n in names:
        if n not in ref_names:
            rep.bad(case, dest, n, "-", "no such column", "present")
    common = [n for n in ref_names if n in types]
    if [n for n in names if n in ref_names] != common:
        rep.bad(case, dest, "*", "-", ref_names, names, "column order")
    for n in common:
        want = want_type(ref.schema.field(n).type)
        if want != types[n]:
            rep.bad(case, dest, n, "type", want, types[n])
    return common


def check_pg(rep, conn, case, pg_schema, ref):
    from psycopg import sql
    dest = "postgres"
    cols = pg_columns(conn, pg_schema, case)
    if not cols:
        rep.bad(case, dest, "*", "-", f"table {pg_schema}.{case}", "missing")
        return
    actual = [(n, pg_normalise_type(ty)) for n, ty in cols]
    common = check_columns(rep, case, dest, ref, actual, pg_type)
    if "row_id" not in common:
        rep.bad(case, dest, "row_id", "-", "a row_id column", "missing")
        return
    q = sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in common),
        sql.Identifier(pg_schema), sql.Identifier(case), sql.Identifier("row_id"))
    with conn.cursor(binary=True) as cur:
        cur.execute(q)
        rows = cur.fetchall()
    data = {n: [r[i] for r in rows] for i, n in enumerate(common)}
    compare_rows(rep, case, dest, ref, data, data["row_id"], expect_pg)


def query_builder_table(dt) -> pa.Table:
    from deltalake import QueryBuilder
    return pa.table(QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())


def duck_arrow(result) -> pa.Table:
    to_table = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return to_table()


DELTA_NAME_CHARS = set(" ,;{}()\n\t=")


def needs_column_mapping(field) -> bool:
    """A Delta schema field (from the log) whose name, or a nested field's, has characters
    Delta allows only with column mapping."""
    if set(field["name"]) & DELTA_NAME_CHARS:
        return True
    t = field["type"]
    while isinstance(t, dict):
        if t["type"] == "struct":
            return any(needs_column_mapping(f) for f in t["fields"])
        t = t.get("elementType") or t.get("valueType")
    return False


def check_delta(rep, case, path, ref, duck):
    try:
        from deltalake import DeltaTable
        dt = DeltaTable(path)
    except Exception as e:  # noqa: BLE001
        rep.bad(case, "delta", "*", "-", f"a Delta table at {path}", f"{type(e).__name__}: {e}")
        return
    schema = json.loads(dt.schema().to_json())
    actual_types = [(f["name"], strip_delta_type(f["type"])) for f in schema["fields"]]
    common = check_columns(rep, case, "delta(log schema)", ref, actual_types, delta_type)
    if "row_id" not in common:
        rep.bad(case, "delta", "row_id", "-", "a row_id column", "missing")
        return
    mode = (dt.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
    if any(needs_column_mapping(f) for f in schema["fields"]) and mode not in ("name", "id"):
        rep.bad(case, "delta(log)", "*", "-", "delta.columnMapping.mode = name",
                mode, "column names with ' ,;{}()\\n\\t=' need column mapping")
    if mode in ("name", "id"):
        # DeltaTable.to_pyarrow_table() cannot read column-mapped tables (deltalake 1.6: it
        # raises for the columnMapping reader feature, and returns all NULLs for a protocol
        # (2, 5) table); deltalake's QueryBuilder (delta-rs's DataFusion reader) can.
        readers = [("delta(deltalake QueryBuilder)", lambda: query_builder_table(dt))]
    else:
        readers = [("delta(deltalake)", lambda: dt.to_pyarrow_table())]
    if duck is not None:
        readers.append(("delta(duckdb)", lambda: duck_arrow(duck.execute("SELECT * FROM delta_scan(?)", [path]))))
    for dest, read in readers:
        try:
            table = read()
        except Exception as e:  # noqa: BLE001
            rep.bad(case, dest, "*", "-", "a readable table", f"{type(e).__name__}: {e}")
            continue
        if table.column_names != [n for n, _ in actual_types]:
            rep.bad(case, dest, "*", "-", [n for n, _ in actual_types], table.column_names,
                    "column names as read")
        present = [n for n in common if n in table.column_names]
        data = {n: canon(table.column(n)) for n in present}
        compare_rows(rep, case, dest, ref, data, data["row_id"], expect_delta)


COUNTED_KEYS = ("truncated_nanoseconds", "json_special_floats", "json_duplicate_map_keys",
                "footer_row_count_mismatch")


def check_counts(rep, case, got: dict, dests):
    """The counts of an `exact` expectation against a load's audit.details: every key of
    `counted` exactly, and the other counting keys absent or 0."""
    for dest in dests:
        want = case[dest]
        if want["outcome"] != "exact":
            continue
        counted = want.get("counted", {})
        have = got.get(dest) or {}
        for key in sorted(set(COUNTED_KEYS) | set(counted)):
            if have.get(key, 0) != counted.get(key, 0):
                rep.bad(case["name"], dest, "audit.details", key, counted.get(key, 0), have.get(key, 0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--data", help="the folder gen.py wrote (default: the manifest's folder)")
    ap.add_argument("--pg-url", help="PostgreSQL to check (omit to skip PostgreSQL)")
    ap.add_argument("--pg-schema", default="matrix")
    ap.add_argument("--lake", help="the lake folder (omit to skip Delta)")
    ap.add_argument("--delta-schema", default="matrix")
    ap.add_argument("--no-duckdb", action="store_true", help="read Delta with deltalake only")
    ap.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    ap.add_argument("--details", help="a JSON file {case: {\"postgres\": details, \"delta\": details}} "
                    "holding each load's audit.details; then the counts are checked too")
    args = ap.parse_args(argv)

    with open(args.manifest) as f:
        manifest = json.load(f)
    data = args.data or os.path.dirname(os.path.abspath(args.manifest))
    cases = manifest["cases"]
    if args.case:
        known = {c["name"] for c in cases}
        for n in args.case:
            if n not in known:
                print(f"check.py: no case named {n!r} in the manifest", file=sys.stderr)
                return 2
        cases = [c for c in cases if c["name"] in args.case]

    conn = pg_connect(args.pg_url) if args.pg_url else None
    duck = None
    if args.lake and not args.no_duckdb:
        import duckdb
        duck = duckdb.connect()
        duck.execute(f"LOAD '{delta_extension_path()}'")
        duck.execute("SET TimeZone = 'UTC'")

    details = None
    if args.details:
        with open(args.details) as f:
            details = json.load(f)

    rep = Report()
    for case in cases:
        if details is not None:
            check_counts(rep, case, details.get(case["name"], {}),
                         [d for d, on in (("postgres", conn is not None), ("delta", args.lake is not None)) if on])
        name = case["name"]
        wants_pg = conn is not None and case["postgres"]["outcome"] == "exact"
        wants_delta = args.lake is not None and case["delta"]["outcome"] == "exact"
        if not (wants_pg or wants_delta):
            continue
        ref = read_reference(os.path.join(data, case["path"], "part-0.parquet"), case)
        rep.cases.add(name)
        if wants_pg:
            check_pg(rep, conn, name, args.pg_schema, ref)
        if wants_delta:
            check_delta(rep, name, os.path.join(args.lake, args.delta_schema, name), ref, duck)
    print(f"cases checked: {len(rep.cases)}, values compared: {rep.values}, mismatches: {rep.mismatches}")
    return 1 if rep.mismatches else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: pyarrow's and delta-rs's thread pools can abort while
    # being torn down (as crates/testkit/src/delta.rs notes).
    os._exit(code)
