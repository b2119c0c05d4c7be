"""Every error provstore raises, under one root.

::

    ProvstoreError                   exit_code 1 unless a subclass says otherwise
    ├── UsageError                   exit_code 2: the caller asked for something impossible
    │   ├── InvalidDigestError       text that is not a digest or a long enough prefix
    │   ├── UnknownDigestError       no object has that digest or prefix
    │   ├── AmbiguousDigestError     a prefix that names several objects
    │   ├── UnknownReferenceError    a name or a file's bytes that no product has
    │   ├── WrongKindError           an object of another kind than the one asked for
    │   ├── PathError                a named file that does not exist, cannot be read or is
    │   │   │                        not a regular file
    │   │   ├── FileChangedError     a file that changed while it was read
    │   │   └── OutputExistsError    a file to write that exists (replacing it not asked for)
    │   ├── ConfigError              a setting that cannot be used
    │   └── NoStoreError             no store at a URL a read-only command was given
    ├── EncodingError                a value with no canonical encoding (bad metadata)
    ├── CorruptObjectError           stored bytes that do not match their digest or format
    ├── StoreError                   the database cannot be used as a store
    │   ├── SchemaVersionError       written by another provstore schema version
    │   ├── UnsupportedStoreError    e.g. SQLite on a network file system
    │   ├── StoreFullError           the disk (or the database's size limit) is full
    │   └── ReadOnlyStoreError       a store that cannot be written (read-only media)
    ├── CheckFailed                  a verification found a problem
    │   └── BundleError              a bundle that cannot be imported (nothing was written)
    └── InvariantError               provstore's own code broke a guarantee (a bug)

Each class carries its data as attributes and a message that says what to do.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

__all__ = [
    "AmbiguousDigestError",
    "BundleError",
    "CheckFailed",
    "ConfigError",
    "CorruptObjectError",
    "EncodingError",
    "FileChangedError",
    "InvalidDigestError",
    "InvariantError",
    "NoStoreError",
    "OutputExistsError",
    "PathError",
    "ProvstoreError",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "StoreError",
    "StoreFullError",
    "UnknownDigestError",
    "UnknownReferenceError",
    "UnsupportedStoreError",
    "UsageError",
    "WrongKindError",
    "from_os_error",
]


class ProvstoreError(Exception):
    """Root of every provstore error; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(ProvstoreError):
    """The request cannot be served as asked (CLI exit code 2)."""

    exit_code = 2


class InvalidDigestError(UsageError, ValueError):
    """Text that is neither a 64-character hex digest nor a hex prefix of at least 6."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        super().__init__(
            f"{text!r} is not a digest: {reason}. "
            "Give the 64-character hex digest or a unique prefix of at least 6 hex characters."
        )


class UnknownDigestError(UsageError, LookupError):
    """No stored object has this digest or prefix."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"no object matches {text!r} in this store. Check the store URL (--url / "
            "PROVSTORE_URL); `provstore products` lists products and `provstore log` runs."
        )


class UnknownReferenceError(UsageError, LookupError):
    """A ``name:`` reference or a file whose bytes no stored product has."""

    def __init__(self, text: str, message: str) -> None:
        self.text = text
        super().__init__(message)


class AmbiguousDigestError(UsageError, LookupError):
    """A prefix that matches more than one object; ``candidates`` lists them (hex)."""

    def __init__(self, text: str, candidates: Sequence[str]) -> None:
        self.text = text
        self.candidates = tuple(candidates)
        listing = "\n  ".join(self.candidates)
        super().__init__(
            f"prefix {text!r} is ambiguous; it matches:\n  {listing}\nGive more characters."
        )


class WrongKindError(UsageError):
    """An object exists but is not of the kind the operation needs."""

    def __init__(self, digest_hex: str, kind: str, expected: Sequence[str]) -> None:
        self.digest = digest_hex
        self.kind = kind
        self.expected = tuple(expected)
        super().__init__(
            f"{digest_hex} is a {kind}, but this needs a {' or '.join(self.expected)}."
        )


class PathError(UsageError, OSError):
    """A file named by the caller that does not exist or cannot be read (or written)."""

    def __init__(self, path: str, reason: str, *, action: str = "read") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot {action} {path!r}: {reason}")


class OutputExistsError(PathError, FileExistsError):
    """A file to write already exists, and replacing it was not asked for."""

    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            "it exists; give --force (overwrite=True) to replace it, or another name",
            action="write",
        )


class FileChangedError(PathError):
    """A file whose size or times changed while it was read: its bytes were not one state."""

    def __init__(self, path: str, change: str) -> None:
        super().__init__(path, f"it changed while it was read ({change})")
        self.change = change
        self.args = (
            f"{path!r} changed while it was read ({change}); what was read is no one state "
            "of the file, so it was not used. Try again once nothing writes to it.",
        )


class ConfigError(UsageError):
    """A configuration value (URL, pyproject setting, pattern) that cannot be used."""


class NoStoreError(UsageError):
    """A command that only reads found no store at the URL, and created none."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"there is no provstore store at {url}: {reason}. Nothing was created. Check the "
            "URL (--url / PROVSTORE_URL); a store is made by the first run recorded into it."
        )


class EncodingError(ProvstoreError, ValueError):
    """A value that has no canonical encoding; ``where`` is its path inside the value.

    ``advice`` says what to do instead (the tracker gives advice on metadata).
    """

    def __init__(self, where: str, reason: str, advice: str | None = None) -> None:
        self.where = where
        self.reason = reason
        self.advice = advice
        super().__init__(
            f"cannot encode {where}: {reason}. "
            + (
                advice
                or "provstore encodes only None, bool, int (64-bit), finite float, valid "
                "Unicode str, bytes, lists/tuples and maps with str keys."
            )
        )


class CorruptObjectError(ProvstoreError):
    """Stored bytes that are not the canonical object their digest names."""

    def __init__(self, digest_hex: str, reason: str) -> None:
        self.digest = digest_hex
        self.reason = reason
        super().__init__(
            f"object {digest_hex} is corrupt: {reason}. "
            "Run `provstore fsck` to list every damaged object; restore it from a bundle "
            "or another site."
        )


class StoreError(ProvstoreError):
    """The database behind the URL cannot be used as a provstore store."""


class SchemaVersionError(StoreError):
    """The store was written with a schema version this provstore cannot read."""

    def __init__(self, found: str, supported: int, *, upgradable: bool = False) -> None:
        self.found = found
        self.supported = supported
        if upgradable:
            message = (
                f"this store has schema version {found}; this provstore reads version "
                f"{supported} and upgrades the store when it next writes to it (say "
                "`provstore reindex`). Commands that only read never change a store."
            )
        elif not found.isdigit():
            message = (
                f"this store's schema version record reads {found!r}, which is not a schema "
                "version any provstore writes: provstore cannot read this database. Open "
                "another store."
            )
        elif int(found) < supported:
            message = (
                f"this store has schema version {found}, older than version {supported} "
                "that this provstore reads, and this provstore cannot convert it. Read it "
                "with the provstore release that wrote it, or record into a new store."
            )
        else:
            message = (
                f"this store has schema version {found}, but this provstore reads version "
                f"{supported}. Upgrade provstore (`pip install -U provstore`) or open another "
                "store."
            )
        super().__init__(message)


class UnsupportedStoreError(StoreError):
    """A store location provstore refuses, such as SQLite on a network file system."""


class StoreFullError(StoreError):
    """No room to write: the disk, a quota or the database's own size limit is full.

    A write to a store is one transaction, rolled back whole; a spool or export file is
    removed unfinished.
    """

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(
            f"no room left to write {where} ({detail}). Free some space (or raise the "
            "limit) and run again."
        )


class ReadOnlyStoreError(StoreError):
    """A write to a store that can only be read (a read-only file, mount or URL)."""

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(
            f"cannot write to {where}: it is read-only ({detail}). Commands that only read "
            "(log, show, verify, ...) work on it; record into a writable store."
        )


def from_os_error(exc: OSError, where: str) -> ProvstoreError | None:
    """The provstore error for an ``OSError`` met writing ``where``, or None.

    A full disk (or quota, or file size limit) and read-only media have errors of their own;
    any other ``OSError`` is left as it is (None).
    """
    detail = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFullError(where, detail)
    if exc.errno == errno.EROFS:
        return ReadOnlyStoreError(where, detail)
    return None


class CheckFailed(ProvstoreError):
    """A verification ran and found a problem (CLI exit code 1)."""


class BundleError(CheckFailed):
    """A bundle was rejected; the store is unchanged.  ``digest`` is the first bad object."""

    def __init__(self, problem: str, digest: str | None = None, index: int | None = None) -> None:
        self.problem = problem
        self.digest = digest
        self.index = index
        where = ""
        if digest is not None:
            where = f" (object #{index}, {digest})" if index is not None else f" ({digest})"
        super().__init__(f"bundle rejected: {problem}{where}; nothing was imported")


class InvariantError(ProvstoreError):
    """A post-condition of provstore's own code failed: a bug in provstore, not in the input."""

    def __init__(self, broken: str = "") -> None:
        self.broken = broken
        super().__init__(
            f"provstore broke one of its own guarantees: {broken or 'a post-condition failed'}. "
            "This is a bug in provstore; please report it with this message. Nothing was "
            "written by the failing call."
        )
