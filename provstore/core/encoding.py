"""The canonical msgpack encoding every object body uses.

One value has exactly one encoding:

* maps have ``str`` keys, written in the order of their UTF-8 bytes (which for valid text is
  the order of code points, so Python's ``sorted`` gives it);
* strings are UTF-8 ``str`` (msgpack raw), ``bytes`` are msgpack bin (``use_bin_type``);
* ints in their shortest form (msgpack's packer already picks it), -2**63 .. 2**64-1;
* floats as float64, NaN and infinities rejected;
* lists and tuples both as arrays; no ext types (so no msgpack timestamps: times are
  integer nanoseconds UTC).

Decoding is strict: the decoded value must re-encode to the very same bytes, which rejects
duplicate keys, unsorted maps, non-minimal ints, float32 and anything else msgpack itself
would let through.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from provstore.core.contracts import ensures
from provstore.core.errors import EncodingError

__all__ = [
    "MAX_DEPTH",
    "SCALARS",
    "Value",
    "canonical",
    "canonical_sorted",
    "decode",
    "encode",
    "in_order",
]

Value = Any
"""A value the encoding accepts (None, bool, int, float, str, bytes, list, tuple, dict)."""

MAX_DEPTH = 100
SCALARS = frozenset({str, bytes, int, bool, type(None)})
"""The types a value may be without being checked further (a float must be finite)."""
_packb = msgpack.Packer(use_bin_type=True, use_single_float=False, autoreset=True).pack


class _Refused(Exception):
    """Raised inside the fast pass; :func:`encode` then finds and names the bad part."""


def _plain(value: Value) -> Value:
    """``value`` as decoding gives it back: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _round_trips(value: Value, result: bytes) -> bool | str:
    if decode(result) == _plain(value):
        return True
    return "decoding the canonical bytes does not give the encoded value back"


@ensures(_round_trips)
def encode(value: Value) -> bytes:
    """The canonical bytes of ``value``; :class:`EncodingError` names the first bad part.

    Checked: decoding the bytes gives the value back.  :func:`canonical` is the same without
    that check, for loops that encode thousands of values a second.
    """
    return canonical(value)


def canonical(value: Value) -> bytes:
    """The canonical bytes of ``value``, as :func:`encode` gives them, without its contract."""
    try:
        packed: bytes = _packb(_canon(value, 0))
        return packed
    except (_Refused, TypeError, ValueError, OverflowError, UnicodeError, RecursionError):
        _locate(value, "value", 0)
        raise EncodingError("value", "msgpack refused it") from None


def canonical_sorted(body: dict[str, Value]) -> bytes:
    """:func:`canonical` of a map the caller built with its str keys in order (an object's body).

    Only the values are walked (the map itself is not sorted again): one pass for the
    per-product loop.  A bad value raises the :class:`EncodingError` :func:`canonical` raises.
    """
    try:
        scalars = SCALARS
        out = {k: v if type(v) in scalars else _canon(v, 1) for k, v in body.items()}
        packed: bytes = _packb(out)
        return packed
    except (_Refused, TypeError, ValueError, OverflowError, UnicodeError, RecursionError):
        return canonical(body)  # names the bad part


def decode(data: bytes) -> Value:
    """Decode canonical bytes; anything that would not re-encode identically is refused."""
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, timestamp=0)
    except Exception as exc:  # msgpack raises a zoo of types for malformed input
        raise EncodingError(
            "bytes", f"is not valid msgpack ({type(exc).__name__}: {exc})"
        ) from None
    if in_order(value, 0):  # the common case: no copy, just pack and compare
        if _packb(value) == data:
            return value
        raise EncodingError("bytes", "is not in canonical form (re-encoding gives other bytes)")
    try:
        again = canonical(value)
    except EncodingError as exc:
        raise EncodingError(
            "bytes", f"holds a value with no canonical form: {exc.reason}"
        ) from None
    if again != data:
        raise EncodingError("bytes", "is not in canonical form (re-encoding gives other bytes)")
    return value


def in_order(value: Value, depth: int) -> bool:
    """Whether a decoded value is canonical as it stands: maps in key order, types allowed.

    Then packing it as it is gives its canonical bytes (msgpack keeps a map's order).
    ``depth``: how deep ``value`` sits in the value decoded (nesting is bounded).
    """
    kind = type(value)
    if kind in SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if kind is list:
        return all(type(item) in SCALARS or in_order(item, depth + 1) for item in value)
    if kind is dict:
        previous = None
        for key, item in value.items():
            if type(key) is not str or (previous is not None and key <= previous):
                return False
            previous = key
            if type(item) not in SCALARS and not in_order(item, depth + 1):
                return False
        return True
    return False


def _canon(value: Value, depth: int) -> Value:
    """Sort every map and check every type; lists of plain scalars pass through untouched."""
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Refused
        return value
    if depth >= MAX_DEPTH:
        raise _Refused
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in SCALARS:
                return [_canon(item, depth + 1) for item in value]
        return value
    if kind is dict:
        out = {}
        for key in sorted(value):  # TypeError (caught by encode) if keys are not comparable
            if type(key) is not str:
                raise _Refused
            item = value[key]
            out[key] = item if type(item) in SCALARS else _canon(item, depth + 1)
        return out
    raise _Refused


def _locate(value: Value, where: str, depth: int) -> None:
    """Walk ``value`` slowly to raise an :class:`EncodingError` that names the bad part."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise EncodingError(where, f"nested deeper than {MAX_DEPTH} levels")
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise EncodingError(
                    f"{where}[{key!r}]", f"map keys must be str, not {type(key).__name__}"
                )
            _locate(key, f"{where} key {key!r}", depth + 1)
            _locate(item, f"{where}[{key!r}]", depth + 1)
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            _locate(item, f"{where}[{index}]", depth + 1)
    elif kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EncodingError(where, "the text is not valid Unicode (lone surrogate)") from None
    elif kind is int:
        if not -(2**63) <= value < 2**64:
            raise EncodingError(where, "the int does not fit in 64 bits")
    elif kind is float:
        if not math.isfinite(value):
            raise EncodingError(where, f"the float {value!r} has no canonical form")
    elif kind not in SCALARS:
        raise EncodingError(where, f"{kind.__module__}.{kind.__qualname__} is not encodable")
