"""Every format a closure can be exported in, and export/import to and from files.

:data:`EXPORT_FORMATS` is the one list ``provstore export --format`` offers: a new format is
one :class:`ExportFormat` entry whose ``write`` takes the store, the roots, a binary file and
whether to compress.  The writers import their modules when called, so listing the formats
costs nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from provstore.core.errors import from_os_error

if TYPE_CHECKING:
    from provstore.exchange.transfer import ExportResult, ImportResult
    from provstore.store import Store

__all__ = ["EXPORT_FORMATS", "ExportFormat", "export_to_path", "import_from_path"]

Refs = Sequence[str | bytes]


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """A named way to write a closure: what ``--help`` says of it and the function that does."""

    name: str
    help: str
    write: Callable[[Store, Refs, BinaryIO, bool], ExportResult]


def _write_bundle(store: Store, refs: Refs, fileobj: BinaryIO, compress: bool) -> ExportResult:
    from provstore.exchange.transfer import export_bundle

    return export_bundle(store, refs, fileobj, compress=compress)


def _write_prov_json(store: Store, refs: Refs, fileobj: BinaryIO, compress: bool) -> ExportResult:
    """The closure as one W3C PROV-JSON document (``compress`` does not apply)."""
    import json

    from provstore.checks.walk import closure
    from provstore.core.digests import to_hex
    from provstore.exchange.prov import to_prov_json
    from provstore.exchange.transfer import ExportResult

    roots = [store.resolve(ref) for ref in refs]
    found = closure(store, roots).found
    text = json.dumps(to_prov_json(found), indent=2, sort_keys=True) + "\n"
    fileobj.write(text.encode("utf-8"))
    return ExportResult(tuple(to_hex(r) for r in roots), len(found))


EXPORT_FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("bundle", "a provstore bundle (imports anywhere)", _write_bundle),
        ExportFormat("prov-json", "W3C PROV-JSON, for other tools", _write_prov_json),
    )
}


def export_to_path(
    store: Store, refs: Refs, path: str, *, fmt: str = "bundle", compress: bool = True
) -> ExportResult:
    """Export to a file, written under a temporary name and renamed when complete ('-': stdout)."""
    write = EXPORT_FORMATS[fmt].write
    where = "standard output" if path == "-" else repr(path)
    try:
        if path == "-":
            result = write(store, refs, sys.stdout.buffer, compress)
            sys.stdout.buffer.flush()
            return result
        fd, temp = tempfile.mkstemp(
            prefix=".provstore-export-", dir=os.path.dirname(os.path.abspath(path))
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                result = write(store, refs, handle, compress)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as exc:
        error = from_os_error(exc, f"the export to {where}")
        if error is None:
            raise
        raise error from None
    return result


def import_from_path(
    store: Store, path: str, *, on_progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import a bundle file ('-': standard input)."""
    from provstore.exchange.transfer import import_bundle

    if path == "-":
        return import_bundle(store, sys.stdin.buffer, on_progress=on_progress)
    with open(path, "rb") as handle:
        return import_bundle(store, handle, on_progress=on_progress)
