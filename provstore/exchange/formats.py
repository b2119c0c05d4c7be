"""Every format a closure can be exported in, and export/import to and from files.

:data:`EXPORT_FORMATS` is the one list ``provstore export --format`` offers: a new format is
one :class:`ExportFormat` entry whose ``write`` takes the store, the roots, a binary file and
whether to compress.  The writers import their modules when called, so listing the formats
costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from provstore.core.errors import OutputExistsError, PathError, from_os_error

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
    store: Store,
    refs: Refs,
    path: str,
    *,
    fmt: str = "bundle",
    compress: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export to a file ('-': standard output), put in place under its name once complete.

    An existing file is kept (:exc:`OutputExistsError`) unless ``overwrite``, also one that
    appears while the export runs.  The file's permissions are the user's, as for any file
    they write: created ``0666`` less the umask (or as the directory's default ACL says).
    """
    write = EXPORT_FORMATS[fmt].write
    where = "standard output" if path == "-" else repr(path)
    try:
        if path == "-":
            result = write(store, refs, sys.stdout.buffer, compress)
            sys.stdout.buffer.flush()
            return result
        if not overwrite and os.path.lexists(path):
            raise OutputExistsError(path)
        handle, temp = _create_beside(path)
        try:
            with handle:
                result = write(store, refs, handle, compress)
            _put_in_place(temp, path, overwrite)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    except OSError as exc:
        if isinstance(exc, PathError):  # ours already (PathError is an OSError)
            raise
        error = from_os_error(exc, f"the export to {where}")
        if error is None:
            raise
        raise error from None
    return result


def _create_beside(path: str) -> tuple[BinaryIO, str]:
    """A new, empty file in ``path``'s directory, under a name no one else uses."""
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        temp = os.path.join(directory, f".provstore-export-{secrets.token_hex(8)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise PathError(path, exc.strerror or str(exc), action="write") from None
        return os.fdopen(fd, "wb"), temp


def _put_in_place(temp: str, path: str, overwrite: bool) -> None:
    """Rename ``temp`` to ``path``; without ``overwrite``, only if ``path`` does not exist."""
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)  # fails, atomically, when path exists
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise OutputExistsError(path) from None
        os.replace(temp, path)
        return
    os.unlink(temp)


def import_from_path(
    store: Store, path: str, *, on_progress: Callable[[int], None] | None = None
) -> ImportResult:
    """Import a bundle file ('-': standard input)."""
    from provstore.exchange.transfer import import_bundle

    if path == "-":
        return import_bundle(store, sys.stdin.buffer, on_progress=on_progress)
    with open(path, "rb") as handle:
        return import_bundle(store, handle, on_progress=on_progress)
