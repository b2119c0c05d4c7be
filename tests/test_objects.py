"""Object kinds: sealing, loading, strict bodies, golden digests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provstore.core.errors import CorruptObjectError
from provstore.core.objects import (
    CodeState,
    Environment,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Variables,
    load,
    seal,
)

D1, D2, D3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def _examples():
    return [
        LibrarySet((("click", "8.1.0"), ("numpy", "2.0.0"))),
        Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "glibc 2.36", D1,
                    {"OMP_NUM_THREADS": "4", "LANG": b"\xff"}, ("PYTHONSECRET",)),
        Variables({"HOME": "/root", "GITHUB_TOKEN": "<redacted>"}, ("GITHUB_TOKEN",)),
        Run(D1, D2, "node1", "alice", ("python", "x.py"), "/work", "/usr/bin/python", 42,
            1_700_000_000_000_000_000, CodeState("/work", "ab" * 20, "main", True, D3), "nightly"),
        RunEnd(D1, "failed", 1_700_000_000_000_000_001, "ValueError: x", None, (D2,)),
        Product("results", "1.0.0", {"rows": 10, "format": "parquet"}, D1, 123, "/out/r.parquet",
                D2, (D1, D3)),
    ]  # fmt: skip


@pytest.mark.parametrize("obj", _examples(), ids=lambda o: o.KIND)
def test_seal_load_round_trip(obj):
    item = seal(obj)
    again = load(item.digest, item.data)
    assert again.obj == obj
    assert again.digest == item.digest
    assert seal(again.obj).data == item.data


def test_golden_product_digest():
    item = seal(Product("results", "1.0.0", {"rows": 10}, D1, 123, "/out/r", D2, (D3,)))
    assert item.data.startswith(b"product 1 ")
    # The body is the canonical map of exactly these fields, written out by hand below.
    assert item.data == GOLDEN_PRODUCT
    assert item.hex == "d017cb91728169f7b19fe55911f3b90f5a306dae99ef1b6034d87391c940d33f"


GOLDEN_PRODUCT = (
    b"product 1 185\x00\x88\xa7content\xc4 "
    + D1
    + b"\xa8metadata\x81\xa4rows\n\xa4name\xa7results"
    b"\xa7parents\x91\xc4 "
    + D3
    + b"\xa4path\xa6/out/r\xa3run\xc4 "
    + D2
    + b"\xa4size{\xa7version\xa51.0.0"
)


def test_equality_is_by_content():
    a = Product("n", None, {"x": [1, 2]}, None, None, None, None, ())
    b = Product("n", None, {"x": (1, 2)}, None, None, None, None, ())
    assert a == b and hash(a) == hash(b)
    assert a != Product("n", None, {"x": [2, 1]}, None, None, None, None, ())


def test_tampered_bytes_rejected():
    item = seal(_examples()[0])
    bad = item.data[:-1] + bytes([item.data[-1] ^ 1])
    with pytest.raises(CorruptObjectError, match="do not hash"):
        load(item.digest, bad)


@pytest.mark.parametrize(
    "body",
    [
        b"\x81\xadDistributions\x90",  # wrong field name
        b"\x82\xaddistributions\x90\xa1x\x01",  # extra field
        b"\x81\xaddistributions\x91\x91\xa1a",  # pair with one element
    ],
)
def test_wrong_body_rejected(body):
    from provstore.core.digests import frame, hash_framed

    data = frame("libraryset", 1, body)
    with pytest.raises(CorruptObjectError):
        load(hash_framed(data), data)


def test_unknown_kind_and_version_rejected():
    from provstore.core.digests import frame, hash_framed

    for data in (
        frame("gadget", 1, b"\x80"),
        frame("libraryset", 2, b"\x81\xaddistributions\x90"),
    ):
        with pytest.raises(CorruptObjectError):
            load(hash_framed(data), data)


@given(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20),
    st.dictionaries(
        st.text(st.characters(codec="utf-8"), max_size=5),
        st.integers() | st.text(st.characters(codec="utf-8"), max_size=5),
        max_size=5,
    ),
    st.lists(st.binary(min_size=32, max_size=32), max_size=4),
)
def test_product_round_trip(name, metadata, parents):
    metadata = {
        k: v for k, v in metadata.items() if not isinstance(v, int) or -(2**63) <= v < 2**64
    }
    obj = Product(name, None, metadata, None, None, None, None, tuple(sorted(set(parents))))
    item = seal(obj)
    assert load(item.digest, item.data).obj == obj


def test_references():
    run = _examples()[3]
    assert run.references() == (D1, D2)
    product = _examples()[5]
    assert set(product.references()) == {D2, D1, D3}


def test_checks_name_every_field():
    from dataclasses import fields

    from provstore.core.objects import KINDS

    for cls in KINDS.values():
        assert set(cls._CHECKS) == {f.name for f in fields(cls)}, cls.KIND
