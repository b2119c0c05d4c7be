"""Canonical encoding: golden bytes, determinism, round trips, strict decoding."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provstore.core.encoding import MAX_DEPTH, decode, encode
from provstore.core.errors import EncodingError

# Golden vectors: worked out by hand from the msgpack spec, so a change in the encoding fails.
GOLDEN = [
    ({"b": 1, "a": [True, None]}, "82a16192c3c0a16201"),
    # keys ordered by UTF-8 bytes: "Z" < "a" < "aa" < "z" < "é"
    ({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5}, "85a15a03a16105a2616104a17a02a2c3a901"),
    (
        [1.5, -1, 255, 256, 2**32, -(2**63), b"\x00", ""],
        "98cb3ff8000000000000ffccffcd0100cf0000000100000000d38000000000000000c40100a0",
    ),
    ((1, 2), "920102"),  # tuples are arrays
    (0, "00"),
    (127, "7f"),
    (-32, "e0"),
    (-33, "d0df"),
    ("", "a0"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), GOLDEN)
def test_golden_vectors(value, hex_bytes):
    assert encode(value).hex() == hex_bytes
    assert encode(decode(bytes.fromhex(hex_bytes))) == bytes.fromhex(hex_bytes)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


@given(values)
def test_round_trip(value):
    data = encode(value)
    assert encode(decode(data)) == data
    assert decode(data) == _listify(value)


@given(st.dictionaries(st.text(max_size=6), scalars, max_size=12), st.randoms())
def test_independent_of_insertion_order(mapping, rnd):
    items = list(mapping.items())
    rnd.shuffle(items)
    assert encode(dict(items)) == encode(mapping)


@given(values)
def test_deterministic(value):
    assert encode(value) == encode(value)


@given(st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 9), min_size=2, max_size=8))
def test_unsorted_map_rejected(mapping):
    keys = sorted(mapping)
    packer = msgpack.Packer(use_bin_type=True)
    unsorted = packer.pack({k: mapping[k] for k in reversed(keys)})
    with pytest.raises(EncodingError, match="canonical"):
        decode(unsorted)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("82a16101a16102"),  # duplicate key "a"
        bytes.fromhex("cc05"),  # 5 as uint8 instead of a fixint
        bytes.fromhex("d10001"),  # 1 as int16
        bytes.fromhex("ca3fc00000"),  # float32 1.5
        bytes.fromhex("d6ff00000000"),  # msgpack timestamp ext
        bytes.fromhex("c70101"),  # truncated ext
        bytes.fromhex("a2c328"),  # invalid UTF-8 in a str
        bytes.fromhex("0000"),  # trailing bytes
        b"",
        bytes.fromhex("81c00a"),  # nil map key
        bytes.fromhex("d9026162"),  # str8 used for a 2-char string
    ],
)
def test_non_canonical_bytes_rejected(data):
    with pytest.raises(EncodingError):
        decode(data)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": {1: 2}}, "value['a'][1]"),
        ({"a": [math.nan]}, "value['a'][0]"),
        ({"a": [math.inf]}, "value['a'][0]"),
        ({"x": [2**64]}, "value['x'][0]"),
        ({"t": (1, {2, 3})}, "value['t'][1]"),
        ({"s": "\ud800"}, "value['s']"),
        ({"d": __import__("datetime").date(2020, 1, 1)}, "value['d']"),
    ],
)
def test_unencodable_values_name_the_bad_part(value, where):
    with pytest.raises(EncodingError) as info:
        encode(value)
    assert info.value.where == where


def test_nesting_is_bounded():
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(EncodingError, match="nested deeper"):
        encode(deep)


def _listify(value):
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value
