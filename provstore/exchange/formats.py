"""Every format a closure can be exported in, and export/import to and from files.

:data:`EXPORT_FORMATS` is the one list ``provstore export --format`` offers: a new format is
one :class:`ExportFormat` entry whose ``write`` takes the store, the roots, a binary file and
the :class:`ExportOptions`; a format that can also write a directory (RO-Crate) gives
``write_dir``.  The writers import their modules when called, so listing the formats costs
nothing (and their optional dependencies are needed only by those who use them).
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

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportOptions",
    "export_to_path",
    "import_from_path",
]

Refs = Sequence[str | bytes]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What a format may be asked besides the roots; each format uses those that apply.

    ``compress`` and ``sign`` (a private key file) are the bundle's; ``namespace`` is the
    OpenLineage job namespace; ``with_files`` puts the recorded files into an RO-Crate.
    """

    compress: bool = True
    sign: str | None = None
    namespace: str = "provstore"
    with_files: bool = False


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """A named way to write a closure: what ``--help`` says of it and the function that does.

    ``write_dir``, when given, writes the format as a directory (used unless the output
    name ends in ``.zip``); ``options`` names the :class:`ExportOptions` it honours.
    """

    name: str
    help: str
    write: Callable[[Store, Refs, BinaryIO, ExportOptions], ExportResult]
    write_dir: Callable[[Store, Refs, str, ExportOptions], ExportResult] | None = None
    options: tuple[str, ...] = ()


def _write_bundle(
    store: Store, refs: Refs, fileobj: BinaryIO, options: ExportOptions
) -> ExportResult:
    from provstore.exchange.transfer import export_bundle

    key = None
    if options.sign is not None:
        from provstore.exchange.signing import load_private_key

        key = load_private_key(options.sign)
    return export_bundle(store, refs, fileobj, compress=options.compress, sign=key)


def _write_prov_json(
    store: Store, refs: Refs, fileobj: BinaryIO, options: ExportOptions
) -> ExportResult:
    """The closure as one W3C PROV-JSON document."""
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


def _write_openlineage(
    store: Store, refs: Refs, fileobj: BinaryIO, options: ExportOptions
) -> ExportResult:
    from provstore.exchange.openlineage import write_events

    return write_events(store, refs, fileobj, namespace=options.namespace)


def _write_ro_crate_zip(
    store: Store, refs: Refs, fileobj: BinaryIO, options: ExportOptions
) -> ExportResult:
    from provstore.exchange.rocrate import write_zip

    return write_zip(store, refs, fileobj, with_files=options.with_files)


def _write_ro_crate_dir(
    store: Store, refs: Refs, path: str, options: ExportOptions
) -> ExportResult:
    from provstore.exchange.rocrate import write_directory

    return write_directory(store, refs, path, with_files=options.with_files)


EXPORT_FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat(
            "bundle", "a provstore bundle (imports anywhere)", _write_bundle,
            options=("compress", "sign"),
        ),
        ExportFormat("prov-json", "W3C PROV-JSON, for other tools", _write_prov_json),
        ExportFormat(
            "openlineage",
            "OpenLineage 2-0-2 run events, one JSON object a line (Marquez, Airflow, ...)",
            _write_openlineage,
            options=("namespace",),
        ),
        ExportFormat(
            "ro-crate",
            "a Workflow Run RO-Crate (Process Run Crate): a directory, or a .zip file",
            _write_ro_crate_zip,
            _write_ro_crate_dir,
            options=("with_files",),
        ),
    )
}  # fmt: skip


def export_to_path(
    store: Store,
    refs: Refs,
    path: str,
    *,
    fmt: str = "bundle",
    compress: bool = True,
    overwrite: bool = False,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export to a file ('-': standard output), put in place under its name once complete.

    An existing file is kept (:exc:`OutputExistsError`) unless ``overwrite``, also one that
    appears while the export runs.  The file's permissions are the user's, as for any file
    they write: created ``0666`` less the umask (or as the directory's default ACL says).
    A format with ``write_dir`` writes a directory unless ``path`` ends in ``.zip``.
    """
    options = options or ExportOptions(compress=compress)
    chosen = EXPORT_FORMATS[fmt]
    if chosen.write_dir is not None and path != "-" and not path.lower().endswith(".zip"):
        return _export_directory(chosen.write_dir, store, refs, path, options, overwrite)

    def write(store: Store, refs: Refs, fileobj: BinaryIO, _compress: bool) -> ExportResult:
        return chosen.write(store, refs, fileobj, options)

    compress = options.compress
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


def _export_directory(
    write_dir: Callable[[Store, Refs, str, ExportOptions], ExportResult],
    store: Store,
    refs: Refs,
    path: str,
    options: ExportOptions,
    overwrite: bool,
) -> ExportResult:
    """Write a directory beside ``path``, then rename it into place once complete."""
    import shutil
    import tempfile

    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        temp = tempfile.mkdtemp(prefix=".provstore-export-", dir=parent)
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc), action="write") from None
    try:
        result = write_dir(store, refs, temp, options)
        os.chmod(temp, 0o777 & ~_umask())
        if os.path.lexists(path):  # overwrite: asked for
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    store: Store,
    path: str,
    *,
    on_progress: Callable[[int], None] | None = None,
    trusted_keys: Sequence[str] = (),
) -> ImportResult:
    """Import a bundle file ('-': standard input).

    With ``trusted_keys`` (public key files or directories of ``*.pub`` files) the bundle
    must carry a valid signature by one of those keys.
    """
    from provstore.exchange.transfer import import_bundle

    trusted = None
    if trusted_keys:
        from provstore.exchange.signing import load_trusted_keys

        trusted = load_trusted_keys(trusted_keys)
    if path == "-":
        return import_bundle(store, sys.stdin.buffer, on_progress=on_progress, trusted=trusted)
    with open(path, "rb") as handle:
        return import_bundle(store, handle, on_progress=on_progress, trusted=trusted)
