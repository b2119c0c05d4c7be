"""Every error provstore raises, under one root.

::

    ProvstoreError                   exit_code 1 unless a subclass says otherwise
    ├── UsageError                   exit_code 2: the caller asked for something impossible
    │   ├── InvalidDigestError       text that is not a digest or a long enough prefix
    │   ├── UnknownDigestError       no object has that digest or prefix
    │   ├── AmbiguousDigestError     a prefix that names several objects
    │   ├── UnknownReferenceError    a name or a file's bytes that no product has
    │   ├── WrongKindError           an object of another kind than the one asked for
    │   ├── PathError                a named file that does not exist or cannot be read
    │   │   └── OutputExistsError    a file to write that exists (replacing it not asked for)
    │   └── ConfigError              a setting that cannot be used
    ├── EncodingError                a value with no canonical encoding (bad metadata)
    ├── CorruptObjectError           stored bytes that do not match their digest or format
    ├── StoreError                   the database cannot be used as a store
    │   ├── SchemaVersionError       written by another provstore schema version
    │   └── UnsupportedStoreError    e.g. SQLite on a network file system
    ├── CheckFailed                  a verification found a problem
    │   └── BundleError              a bundle that cannot be imported (nothing was written)
    └── InvariantError               provstore's own code broke a guarantee (a bug)

Each class carries its data as attributes and a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AmbiguousDigestError",
    "BundleError",
    "CheckFailed",
    "ConfigError",
    "CorruptObjectError",
    "EncodingError",
    "InvalidDigestError",
    "InvariantError",
    "OutputExistsError",
    "PathError",
    "ProvstoreError",
    "SchemaVersionError",
    "StoreError",
    "UnknownDigestError",
    "UnknownReferenceError",
    "UnsupportedStoreError",
    "UsageError",
    "WrongKindError",
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


class ConfigError(UsageError):
    """A configuration value (URL, pyproject setting, pattern) that cannot be used."""


class EncodingError(ProvstoreError, ValueError):
    """A value that has no canonical encoding; ``where`` is its path inside the value."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(
            f"cannot encode {where}: {reason}. Metadata may hold only None, bool, int "
            "(64-bit), finite float, str, bytes, lists/tuples and maps with str keys; "
            "convert other values (e.g. datetime.isoformat(), int(numpy_value)) first."
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

    def __init__(self, found: str, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"this store has schema version {found}, but this provstore reads version "
            f"{supported}. Upgrade provstore (`pip install -U provstore`) or open another store."
        )


class UnsupportedStoreError(StoreError):
    """A store location provstore refuses, such as SQLite on a network file system."""


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
