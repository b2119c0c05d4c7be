"""Digests: framing, hex, prefixes and file hashing."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provstore.core.digests import (
    frame,
    from_hex,
    hash_file,
    hash_framed,
    parse_ref,
    split_frame,
    to_hex,
)
from provstore.core.errors import InvalidDigestError


def test_golden_frame_and_digest():
    data = frame("product", 1, b"\x80")
    assert data == b"product 1 1\x00\x80"
    assert to_hex(hash_framed(data)) == (
        "479f8706e50025f03f87500bae6f9cfb8b5cff610ecceb8a5f4024dd886cdfe1"
    )
    # Same body, another kind: another digest.
    assert to_hex(hash_framed(frame("run", 1, b"\x80"))) == (
        "acafc9e41c1df5cad910c3c7a0c0ed95cef82b6572da57448db2c2e6474f0c3a"
    )


@given(st.sampled_from(["product", "run", "environment"]), st.integers(0, 5), st.binary())
def test_frame_splits_back(kind, version, body):
    assert split_frame(frame(kind, version, body)) == (kind, version, body)


@pytest.mark.parametrize(
    "data",
    [
        b"product 1 2\x00\x80",
        b"product 01 1\x00\x80",
        b"Product 1 1\x00\x80",
        b"product 1 1\x80",
        b"",
    ],
)
def test_bad_frames_rejected(data):
    with pytest.raises(ValueError):
        split_frame(data)


@given(st.binary(min_size=32, max_size=32))
def test_hex_round_trip(raw):
    assert from_hex(to_hex(raw)) == raw
    assert from_hex(to_hex(raw).upper()) == raw


def test_prefix_ranges():
    ref = parse_ref("abcdef1")
    assert ref.exact is None
    assert ref.low == bytes.fromhex("abcdef10" + "00" * 28)
    assert ref.high == bytes.fromhex("abcdef1f" + "ff" * 28)


@pytest.mark.parametrize("text", ["abc", "xyzxyzxyz", "a" * 65, "", "12345g"])
def test_bad_refs(text):
    with pytest.raises(InvalidDigestError):
        parse_ref(text)


def test_from_hex_needs_the_whole_digest():
    with pytest.raises(InvalidDigestError):
        from_hex("abcdef")


def test_hash_file_matches_blake3(tmp_path):
    for size in (0, 1, 1024 * 1024 + 7):
        path = tmp_path / f"f{size}"
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        path.write_bytes(payload)
        assert hash_file(path) == (blake3.blake3(payload).digest(), size)


def test_hash_file_with_progress_matches(tmp_path, monkeypatch):
    import provstore.core.files as files

    monkeypatch.setattr(files, "CHUNK", 1 << 20)
    payload = bytes(range(251)) * 15_000  # ~3.6 MiB: four chunks
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    seen: list[int] = []
    assert hash_file(path, seen.append) == (blake3.blake3(payload).digest(), len(payload))
    assert sum(seen) == len(payload) and len(seen) == 4
