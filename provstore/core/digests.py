r"""Digests: what names an object, how it is written as text, and how a prefix is resolved.

A digest is BLAKE3-256 (32 raw bytes) of an object's *framed* payload::

    b"<kind> <version> <body length>\x00" + body

so the same body stored under two kinds or two schema versions never shares a digest.  Text
form is 64 lowercase hex characters; a lookup may use any unique prefix of at least
:data:`MIN_PREFIX` hex characters.  File contents are hashed without a frame, so a product's
content digest equals what ``b3sum`` prints for the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import NamedTuple

import blake3

from provstore.core.contracts import returns
from provstore.core.errors import InvalidDigestError
from provstore.core.files import RegularFile

__all__ = [
    "DIGEST_SIZE",
    "MIN_PREFIX",
    "HexRange",
    "frame",
    "from_hex",
    "full_digest",
    "hash_file",
    "hash_framed",
    "parse_ref",
    "split_frame",
    "to_hex",
]

DIGEST_SIZE = 32
MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_FRAME = re.compile(rb"([a-z][a-z0-9_]*) (0|[1-9][0-9]*) (0|[1-9][0-9]*)\x00")


def _digest_sized(result: bytes) -> bool | str:
    return len(result) == DIGEST_SIZE or f"a digest of {len(result)} bytes, not {DIGEST_SIZE}"


def to_hex(digest: bytes) -> str:
    """The 64-character lowercase hex text of a raw digest."""
    return digest.hex()


@returns(_digest_sized)
def from_hex(text: str) -> bytes:
    """Parse a full 64-character hex digest (surrounding whitespace and case are forgiven)."""
    ref = parse_ref(text)
    if ref.exact is None:
        raise InvalidDigestError(text, f"need all {2 * DIGEST_SIZE} hex characters")
    return ref.exact


class HexRange(NamedTuple):
    """A parsed digest reference: the full digest, or the byte range a prefix covers."""

    text: str
    exact: bytes | None
    low: bytes
    high: bytes


def _range_holds(result: HexRange) -> bool | str:
    if not (_digest_sized(result.low) is True and _digest_sized(result.high) is True):
        return f"the range of {result.text!r} is not two {DIGEST_SIZE}-byte digests"
    if result.exact is not None and not result.low == result.exact == result.high:
        return f"the exact digest of {result.text!r} is not its whole range"
    if not (result.low <= result.high and result.low.hex().startswith(result.text)):
        return f"the range of {result.text!r} does not start with it"
    return True


def full_digest(text: str) -> bytes | None:
    """The 32 bytes of a full 64-character hex digest, else None (no contract: hot paths)."""
    if len(text) != 2 * DIGEST_SIZE:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == DIGEST_SIZE else None


@returns(_range_holds)
def parse_ref(text: str) -> HexRange:
    """Parse a full digest or a prefix of at least :data:`MIN_PREFIX` hex characters.

    The range is inclusive: every digest starting with the prefix lies in ``[low, high]``.
    """
    raw = full_digest(text)  # the fast path for full digests (parents, lookups)
    if raw is not None:
        return HexRange(text.lower(), raw, raw, raw)
    clean = text.strip().lower()
    if not _HEX.fullmatch(clean):
        raise InvalidDigestError(text, "only the characters 0-9 and a-f may appear")
    if len(clean) > 2 * DIGEST_SIZE:
        raise InvalidDigestError(text, f"longer than {2 * DIGEST_SIZE} characters")
    if len(clean) < MIN_PREFIX:
        raise InvalidDigestError(text, f"shorter than {MIN_PREFIX} characters")
    if len(clean) == 2 * DIGEST_SIZE:
        raw = bytes.fromhex(clean)
        return HexRange(clean, raw, raw, raw)
    pad = 2 * DIGEST_SIZE - len(clean)
    return HexRange(
        clean, None, bytes.fromhex(clean + "0" * pad), bytes.fromhex(clean + "f" * pad)
    )


def frame(kind: str, version: int, body: bytes) -> bytes:
    """The framed payload whose BLAKE3 is the object's digest (and which the store keeps).

    No contract here: this runs once per object on the hot path; :func:`split_frame` checks
    every frame that is read back.
    """
    return b"%s %d %d\x00%s" % (kind.encode("ascii"), version, len(body), body)


def split_frame(data: bytes) -> tuple[str, int, bytes]:
    """Split framed bytes into ``(kind, version, body)``; ValueError if the frame is bad."""
    end = data.find(b"\x00", 0, 64)
    match = _FRAME.fullmatch(data, 0, end + 1) if end >= 0 else None
    if match is None:
        raise ValueError("the object does not start with a valid 'kind version size' frame")
    body = data[end + 1 :]
    if int(match.group(3)) != len(body):
        raise ValueError(f"the frame says {int(match.group(3))} bytes but {len(body)} follow")
    return match.group(1).decode("ascii"), int(match.group(2)), body


def hash_framed(data: bytes) -> bytes:
    """BLAKE3-256 of already framed bytes.

    No contract: this runs for every object sealed; :func:`provstore.core.objects.seal`
    checks the digest's size and that it is this hash.
    """
    return blake3.blake3(data).digest()


_THREADED = 1 << 23  # files this big are hashed by several threads


@returns(
    lambda result: (
        _digest_sized(result[0]) is True
        and result[1] >= 0
        or "a file hash must be a 32-byte digest and a size of at least 0"
    )
)
def hash_file(
    path: str | os.PathLike[str], on_bytes: Callable[[int], None] | None = None
) -> tuple[bytes, int]:
    """BLAKE3-256 of a regular file's bytes, and how many bytes that was.

    Big files are memory-mapped and hashed by several threads; nothing is read whole into
    memory.  A FIFO, a device, a socket, a directory or a pseudo file (``/proc``, ``/sys``)
    raises :class:`PathError`; a file that changes while it is read raises
    :class:`FileChangedError` (see :mod:`provstore.core.files`).  ``on_bytes(n)`` is told of
    each part hashed (at most 64 MiB), for a progress bar.
    """
    name = os.fspath(path)
    with RegularFile(name) as source:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if source.size >= _THREADED else 1)
        for chunk in source.chunks():
            hasher.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
        return hasher.digest(), source.bytes_read
