"""Admission: the fast check never accepts what ``load`` refuses, and derives the same rows."""

from __future__ import annotations

import math

import blake3
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provstore.core.admission import admit, typed_references
from provstore.core.digests import frame
from provstore.core.errors import CorruptObjectError
from provstore.core.objects import (
    KINDS,
    CodeState,
    CondaSet,
    Environment,
    ImportSet,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
    Signature,
    Variables,
    load,
    refusal,
    seal,
)
from provstore.db import layout

D1, D2, D3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def _examples() -> list[Sealed]:
    """Every kind, versioned kinds at each version, products with and without optional fields."""
    objects = [
        LibrarySet((("click", "8.1.0"), ("numpy", "2.0.0"))),
        ImportSet((("numpy", "2.0.0"),)),
        CondaSet((("mkl", "2024.0", "h1_0", "conda-forge"),), (("bad.json", "unreadable"),)),
        Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "glibc", D1,
                    {"OMP_NUM_THREADS": "4", "LANG": b"\xff"}, ("PYTHONSECRET",)),
        Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "", D1, {}, (), conda=D2,
                    gpu={"driver": "535.1", "models": ["A100"]}, container={"image": "x"}),
        Variables({"HOME": "/root", "TOKEN": "<redacted>"}, ("TOKEN",)),
        Run(D1, D2, "node1", "alice", ("python", "x.py"), "/work", "/usr/bin/python", 42,
            1_700_000_000_000_000_000, CodeState("/work", "ab" * 20, "main", True, D3), "nightly"),
        Run(D1, D2, "h", "u", (), "/", "/py", 0, -5, None, None, ("make",),
            job={"id": "77", "array_id": "3", "scheduler": "slurm"}, gpu={"visible": "0"}),
        Run(D1, D2, "h", "u", (), "/", "/py", 0, 5, None, None, job={"id": "1"}),
        RunEnd(D1, "failed", 1_700_000_000_000_000_001, "ValueError: x", None, (D2,)),
        RunEnd(D1, "succeeded", 9, None, 0, (), imported=D3, cuda={"torch": "12.1"}),
        Product("results", "1.0.0", {"rows": 10, "f": 1.5, "nested": {"a": [1, {"b": None}]}},
                D1, 123, "/out/r.parquet", D2, (D1, D3)),
        Product("bare", None, {}, None, None, None, None, ()),
        Signature((D1,), D2, 6, "ed25519", bytes(32), "lab", 7, bytes(64)),
    ]  # fmt: skip
    return [seal(obj) for obj in objects]


def _load_view(digest: bytes, data: bytes) -> tuple | None:
    """What ``load`` (and the refusal rule) make of framed bytes: rows and references, or None."""
    try:
        item = load(digest, data)
    except CorruptObjectError:
        return None
    if refusal(item.obj, len(data)) is not None:
        return None
    return item.kind, list(layout.ROWS[item.kind](item)), list(item.obj.typed_references())


def _admit_view(digest: bytes, data: bytes) -> tuple | None:
    found = admit(data)
    if found is None:
        return None
    kind, _, body = found
    return kind, layout.body_rows(kind, digest, body), typed_references(kind, body)


def _agrees(data: bytes) -> None:
    """``admit`` accepts only what ``load`` accepts, and then says the same things of it."""
    digest = blake3.blake3(data).digest()
    admitted = _admit_view(digest, data)
    if admitted is not None:
        assert _load_view(digest, data) == admitted


def test_every_kind_is_admitted_as_load_reads_it():
    assert {item.kind for item in _examples()} == set(KINDS), "add an example of the new kind"
    for item in _examples():
        assert _admit_view(item.digest, item.data) is not None, item.kind
        assert _admit_view(item.digest, item.data) == _load_view(item.digest, item.data)


def _framed(kind: str, body: bytes, version: int = 1) -> bytes:
    return frame(kind, version, body)


def _product_body(**change) -> dict:
    body = {
        "content": None, "metadata": {}, "name": "n", "parents": [], "path": None, "run": None,
        "size": None, "version": None,
    }  # fmt: skip
    body.update(change)
    return body


@pytest.mark.parametrize(
    "data",
    [
        # keys out of canonical order
        _framed("product", msgpack.packb(dict(reversed(_product_body().items())))),
        # a nested map out of order, a NaN, a float32, a non-minimal int, a duplicate key
        _framed("product", msgpack.packb(_product_body(metadata={"b": 1, "a": 2}))),
        _framed("product", msgpack.packb(_product_body(metadata={"x": math.nan}))),
        _framed(
            "product", msgpack.packb(_product_body(metadata={"x": 1.5}), use_single_float=True)
        ),
        _framed(
            "product",
            msgpack.packb(_product_body(size=None)).replace(
                b"\xa4size\xc0", b"\xa4size\xcd\x00\x05"
            ),
        ),
        _framed("product", b"\x89" + msgpack.packb(_product_body())[1:] + b"\xa4size\xc0"),
        # a missing field, an extra field, a wrong type, a NUL in an indexed text field
        _framed(
            "product", msgpack.packb({k: v for k, v in _product_body().items() if k != "run"})
        ),
        _framed("product", msgpack.packb({**_product_body(), "zzz": 1})),
        _framed("product", msgpack.packb(_product_body(parents=[b"short"]))),
        _framed("product", msgpack.packb(_product_body(name="a\x00b"))),
        # a frame that lies about the size, an unknown kind, a version from the future
        _framed("product", msgpack.packb(_product_body()))[:-1],
        _framed("widget", msgpack.packb(_product_body())),
        _framed("product", msgpack.packb(_product_body()), version=2),
        # an added field at version 1, a version-2 run without a version-2 field
        _framed("run", msgpack.packb({"job": {"id": "1"}}), version=1),
    ],
)
def test_what_load_refuses_is_not_admitted(data):
    assert admit(data) is None
    assert _load_view(blake3.blake3(data).digest(), data) is None


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_objects_are_admitted_only_when_load_accepts_them(data):
    item = data.draw(st.sampled_from(_examples()))
    raw = bytearray(item.data)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    _agrees(bytes(raw))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.sampled_from([D1, D2, "succeeded", "failed", "ed25519"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bodies_are_admitted_only_when_load_accepts_them(data):
    kind = data.draw(st.sampled_from(sorted(KINDS)))
    cls = KINDS[kind]
    fields = list(cls._CHECKS)
    names = data.draw(
        st.lists(st.sampled_from([*fields, "extra"]), unique=True, max_size=len(fields) + 1)
    )
    body = {name: data.draw(_values) for name in names}
    if data.draw(st.booleans()):
        body = dict(sorted(body.items()))
    version = data.draw(st.integers(1, cls.VERSION + 1))
    _agrees(frame(kind, version, msgpack.packb(body, use_bin_type=True)))


@given(st.sampled_from(range(14)), st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_objects_with_fields_replaced_agree(which, data):
    """Valid bodies with one field swapped for an arbitrary value: same decision as load."""
    item = _examples()[which]
    kind, version, body = admit(item.data)
    name = data.draw(st.sampled_from(sorted(body)))
    body[name] = data.draw(_values)
    _agrees(frame(kind, version, msgpack.packb(body, use_bin_type=True)))


@pytest.mark.parametrize("name", sorted(Product._CHECKS))
def test_every_product_field_is_checked_as_load_checks_it(name):
    """Products take a path of their own: each field, given a value of every type."""
    _, version, body = admit(_examples()[11].data)
    odd = [None, True, -1, 0, 1.5, math.inf, "", "a\x00", "x", b"", D1, [], [D1], [D1, "x"], {},
           {"b": 1, "a": 2}, {"a": [1, {"x": math.nan}]}]  # fmt: skip
    for value in odd:
        _agrees(frame("product", version, msgpack.packb({**body, name: value}, use_bin_type=True)))
