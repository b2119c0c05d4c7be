r"""Bundles: a product's provenance in one file, moved between sites and checked on the way in.

Format (version 1; version 2 is a signed bundle)::

    magic  b"\x89PSB\r\n\x1a\n"                      8 bytes
    header version u8, codec u8 (0 none, 1 zlib), root count u32 (big-endian)
    roots  root count x 32-byte digests
    body   (compressed with the codec) records, then an end marker and a trailer:
           record  = size u32 | digest 32 bytes | framed object bytes (size bytes)
           end     = 0xFFFFFFFF
           trailer = record count u64 | BLAKE3 of header, roots and every record
    (version 2 only, still in the body) signatures:
           count u32, then per signature: size u32 | framed signature object

A signature (:class:`~provstore.core.objects.Signature`) signs the roots, the record count and
the trailer's checksum, which covers everything before it; it cannot be among the records it
signs, so it follows them.

Objects appear after every object they refer to, so an importer checks each reference as it
goes, holding nothing but the current batch.  An import happens in one transaction: each
object is re-hashed and strictly decoded, each reference must resolve (earlier in the bundle or
already in the store), the trailer must match, and only then is anything committed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import blake3

from provstore.core.digests import DIGEST_SIZE, hash_framed, to_hex
from provstore.core.errors import BundleError, CorruptObjectError
from provstore.core.objects import MAX_OBJECT_SIZE, Sealed, load

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BundleReader",
    "BundleWriter",
    "Limits",
    "write_bundle",
]

MAGIC = b"\x89PSB\r\n\x1a\n"
FORMAT_VERSION = 1
SIGNED_VERSION = 2
MAX_SIGNATURES = 16
_MAX_SIGNATURE_SIZE = 4096
CODEC_NONE, CODEC_ZLIB = 0, 1
_HEAD = struct.Struct(">8sBBI")
_SIZE = struct.Struct(">I")
_TRAILER = struct.Struct(">Q32s")
_END = 0xFFFFFFFF
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds an importer enforces before it allocates or reads anything bigger."""

    max_object: int = MAX_OBJECT_SIZE
    max_objects: int = 100_000_000
    max_total: int = 1 << 40
    max_roots: int = 100_000


class _Sink:
    """Write bytes through an optional zlib stream while hashing the uncompressed content."""

    def __init__(self, fileobj: BinaryIO, codec: int) -> None:
        self._file = fileobj
        self._zip = zlib.compressobj(6) if codec == CODEC_ZLIB else None
        self.hasher = blake3.blake3()

    def write(self, data: bytes, *, hashed: bool = True) -> None:
        if hashed:
            self.hasher.update(data)
        self._file.write(self._zip.compress(data) if self._zip else data)

    def close(self) -> None:
        if self._zip:
            self._file.write(self._zip.flush())


Signer = Callable[[Sequence[bytes], bytes, int], Sealed]
"""Makes a signature object from a bundle's roots, checksum and record count."""


class BundleWriter:
    """Write a bundle incrementally: roots first, objects (dependencies first), then close.

    With ``signer`` the bundle is a signed one (version 2): closing appends its signature.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        roots: Sequence[bytes],
        *,
        compress: bool = True,
        signer: Signer | None = None,
    ):
        codec = CODEC_ZLIB if compress else CODEC_NONE
        version = FORMAT_VERSION if signer is None else SIGNED_VERSION
        head = _HEAD.pack(MAGIC, version, codec, len(roots)) + b"".join(roots)
        fileobj.write(head)
        self._sink = _Sink(fileobj, codec)
        self._sink.hasher.update(head)
        self._roots = list(roots)
        self._signer = signer
        self.count = 0
        self.checksum = b""

    def add(self, digest: bytes, data: bytes) -> None:
        """Append one object."""
        self._sink.write(_SIZE.pack(len(data)) + digest + data)
        self.count += 1

    def close(self) -> int:
        """Write the end marker and trailer; returns the number of objects."""
        self._sink.write(_SIZE.pack(_END), hashed=False)
        self.checksum = self._sink.hasher.digest()
        self._sink.write(_TRAILER.pack(self.count, self.checksum), hashed=False)
        if self._signer is not None:
            signature = self._signer(self._roots, self.checksum, self.count)
            block = _SIZE.pack(1) + _SIZE.pack(len(signature.data)) + signature.data
            self._sink.write(block, hashed=False)
        self._sink.close()
        return self.count


def write_bundle(
    fileobj: BinaryIO,
    roots: Sequence[bytes],
    objects: Iterable[tuple[bytes, bytes]],
    *,
    compress: bool = True,
    signer: Signer | None = None,
) -> int:
    """Write roots and ``(digest, framed bytes)`` objects (dependencies first); returns count."""
    writer = BundleWriter(fileobj, roots, compress=compress, signer=signer)
    for digest, data in objects:
        writer.add(digest, data)
    return writer.close()


class _Source:
    """Exact reads from the body, decompressing in bounded steps (no zip bombs).

    What is decompressed but not yet read is ``data[pos:]``: a record is sliced out of it
    (and hashed through a view), not copied out of a buffer that shifts after every read.
    """

    def __init__(self, fileobj: BinaryIO, codec: int) -> None:
        self._file = fileobj
        self._zip = zlib.decompressobj() if codec == CODEC_ZLIB else None
        self.data = b""
        self.pos = 0
        self._eof = False
        self.hasher: blake3.blake3 | None = None
        """Gets what is read (``data[mark:pos]``) before it is dropped, or at :meth:`flush`."""
        self._mark = 0

    def flush(self) -> None:
        """Hash what was read since the last flush (with a hasher)."""
        if self.hasher is not None and self._mark < self.pos:
            self.hasher.update(memoryview(self.data)[self._mark : self.pos])
        self._mark = self.pos

    def ensure(self, size: int) -> None:
        """Make ``size`` bytes available at ``data[pos:]``, or raise (truncated)."""
        have = len(self.data) - self.pos
        if have >= size:
            return
        self.flush()
        self._mark = 0
        parts = [self.data[self.pos :]]
        while have < size and not self._eof:
            more = self._more(max(size - have, _CHUNK))
            parts.append(more)
            have += len(more)
        self.data = b"".join(parts)
        self.pos = 0
        if have < size:
            raise BundleError("the bundle is truncated")

    def read(self, size: int) -> bytes:
        self.ensure(size)
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def _more(self, want: int) -> bytes:
        """At most ``want`` more bytes of the body (``b""`` at its end)."""
        if self._zip is None:
            raw = self._file.read(want)
            self._eof = not raw
            return raw
        pending = self._zip.unconsumed_tail
        if not pending:
            pending = self._file.read(_CHUNK)
            if not pending:
                self._eof = True
                return b""
        try:
            out = self._zip.decompress(pending, want)
        except zlib.error as exc:
            raise BundleError(f"the compressed body is damaged ({exc})") from None
        if self._zip.eof and not self._zip.unconsumed_tail:
            self._eof = True
        return out

    def trailing_problem(self) -> str | None:
        """Why the bundle does not end right after what was read (None when it does)."""
        extra = "unexpected bytes after the end of the bundle"
        if self.pos < len(self.data):
            return extra
        if self._zip is not None:
            while not self._zip.eof:  # the compressed stream must end right after the trailer
                if self._more(_CHUNK):
                    return extra
                if self._eof and not self._zip.eof:
                    return "the bundle is truncated (its compressed body is incomplete)"
            if self._zip.unused_data:
                return extra
        if self._file.read(1):
            return extra
        return None


class BundleReader:
    """Read and check a bundle: header on creation, then :meth:`objects`, then the trailer."""

    def __init__(self, fileobj: BinaryIO, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        head = fileobj.read(_HEAD.size)
        if len(head) < _HEAD.size or not head.startswith(MAGIC):
            raise BundleError("not a provstore bundle (bad magic)")
        _, version, codec, nroots = _HEAD.unpack(head)
        if version not in (FORMAT_VERSION, SIGNED_VERSION):
            raise BundleError(
                f"bundle format version {version} is not supported (this reads 1 and 2)"
            )
        self.version = version
        if codec not in (CODEC_NONE, CODEC_ZLIB):
            raise BundleError(f"unknown compression codec {codec}")
        if nroots > self.limits.max_roots:
            raise BundleError(f"{nroots} roots exceed the limit of {self.limits.max_roots}")
        raw_roots = fileobj.read(nroots * DIGEST_SIZE)
        if len(raw_roots) != nroots * DIGEST_SIZE:
            raise BundleError("the bundle is truncated (in its list of roots)")
        self.roots = [raw_roots[i : i + DIGEST_SIZE] for i in range(0, len(raw_roots), 32)]
        self._hasher = blake3.blake3(head + raw_roots)
        self._source = _Source(fileobj, codec)
        self.count = 0
        self.total = 0
        self.checksum = b""
        self.signatures: list[Sealed] = []
        """The signatures of a signed bundle, read (and decoded) after the trailer."""

    def objects(self) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield ``(index, digest, data)`` with the digest checked; then check the trailer.

        The records' bytes go to the bundle's checksum a stretch at a time (when the
        decompressed data they sit in is replaced, and at the end), not one call per record.
        """
        limits, source = self.limits, self._source
        head = _SIZE.size + DIGEST_SIZE
        check = blake3.blake3()  # one hasher, reset for each object's bytes
        source.hasher = self._hasher
        while True:
            source.ensure(_SIZE.size)
            (size,) = _SIZE.unpack_from(source.data, source.pos)
            if size == _END:
                source.flush()
                source.hasher = None  # the end marker and the trailer are not checksummed
                source.pos += _SIZE.size
                break
            source.ensure(head)  # the digest is read first, so a refusal can name it
            if size > limits.max_object:
                digest = source.data[source.pos + _SIZE.size : source.pos + head]
                raise BundleError(
                    f"it claims {size:,} bytes; an object may be at most {limits.max_object:,} "
                    "bytes",
                    to_hex(digest),
                    self.count,
                )
            self.total += size
            if self.count >= limits.max_objects or self.total > limits.max_total:
                raise BundleError("the bundle exceeds the object count or size limit")
            source.ensure(head + size)
            body, start = source.data, source.pos
            end = start + head + size
            source.pos = end
            digest = body[start + _SIZE.size : start + head]
            data = body[start + head : end]
            check.reset()
            check.update(data)
            if check.digest() != digest:
                raise BundleError(
                    "object bytes do not hash to their digest", to_hex(digest), self.count
                )
            yield self.count, digest, data
            self.count += 1
        self._check_trailer()

    def _check_trailer(self) -> None:
        count, checksum = _TRAILER.unpack(self._source.read(_TRAILER.size))
        if count != self.count:
            raise BundleError(f"the trailer says {count} objects but {self.count} were read")
        if checksum != self._hasher.digest():
            raise BundleError("the bundle checksum does not match its contents (tampered?)")
        self.checksum = checksum
        if self.version == SIGNED_VERSION:
            self.signatures = self._read_signatures()
        problem = self._source.trailing_problem()
        if problem is not None:
            raise BundleError(problem)

    def _read_signatures(self) -> list[Sealed]:
        """The signature objects after the trailer: decoded, of kind signature, bounded."""
        (count,) = _SIZE.unpack(self._source.read(_SIZE.size))
        if count > MAX_SIGNATURES:
            raise BundleError(f"{count} signatures exceed the limit of {MAX_SIGNATURES}")
        found: list[Sealed] = []
        for _ in range(count):
            (size,) = _SIZE.unpack(self._source.read(_SIZE.size))
            if size > _MAX_SIGNATURE_SIZE:
                raise BundleError(f"a signature of {size:,} bytes is too large to be one")
            data = self._source.read(size)
            digest = hash_framed(data)
            try:
                item = load(digest, data, hashed=True)
            except CorruptObjectError as exc:
                raise BundleError(f"invalid signature: {exc.reason}", to_hex(digest)) from None
            if item.kind != "signature":
                raise BundleError(f"a {item.kind} where a signature belongs", to_hex(digest))
            found.append(item)
        return found
