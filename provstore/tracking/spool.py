"""Spool mode: for compute nodes that cannot reach the database.

``tracker()`` with a spool directory writes each run as one bundle there: into a hidden
temporary file (``.<random>.tmp``), renamed to ``<run digest>.psb`` only when complete, so a
reader never sees a partial bundle.  :func:`ingest` imports every complete bundle (each in its
own transaction) and only after the commit moves it to ``ingested/``; a rejected bundle goes to
``rejected/`` with the reason beside it.  Ingesting while jobs still write, or from two places
at once, is safe: imports are idempotent and a bundle that vanished meanwhile is skipped.

A writer killed before it finished leaves its temporary file behind; :func:`ingest` removes
those not written to for :data:`STALE_AFTER` seconds.  A slow writer whose file was taken for
a dead one's loses nothing: it still holds the bytes, and writes them anew when it publishes.
A full disk is a :class:`~provstore.core.errors.StoreFullError`, and the unfinished file is
removed.

A run may be written by more than one process (``provstore run`` and a ``tracker()`` inside
the command it runs): :mod:`provstore.tracking.joining` gathers their bundles into one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, ConfigError, ProvstoreError, from_os_error
from provstore.core.objects import Sealed
from provstore.exchange.bundle import BundleWriter
from provstore.exchange.transfer import import_bundle
from provstore.store import Store

__all__ = ["STALE_AFTER", "SUFFIX", "TEMP_SUFFIX", "IngestReport", "SpoolWriter", "ingest"]

SUFFIX = ".psb"
TEMP_SUFFIX = ".tmp"
STALE_AFTER = 24 * 3600.0
"""Seconds after its last write that an unfinished bundle counts as a dead writer's."""


class SpoolWriter:
    """One run's bundle, written as objects arrive and published atomically at the end."""

    def __init__(self, directory: str, run: bytes, *, name: str | None = None) -> None:
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self._temp = tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=directory)
        except OSError as exc:
            raise _spool_error(exc, f"the spool directory {directory!r}") from None
        self.directory = directory
        self.run = run
        self.path = os.path.join(directory, name or to_hex(run) + SUFFIX)
        # w+b: the bytes can be read back if an ingest removes the file as stale meanwhile
        self._file: BinaryIO = os.fdopen(fd, "w+b")
        try:
            with self._writing():
                os.fchmod(fd, 0o666 & ~_umask())  # readable by an ingester as the umask allows
                self._writer = BundleWriter(self._file, [run])
        except BaseException:
            self.discard()
            raise

    def put(self, items: list[Sealed]) -> None:
        """Append objects (each after those it refers to)."""
        with self._writing():
            for item in items:
                self._writer.add(item.digest, item.data)

    def publish(self) -> str:
        """Finish the bundle, make it durable and give it its final name."""
        with self._writing():
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            if os.fstat(self._file.fileno()).st_nlink == 0:
                self._relink()  # an ingest took it for a dead writer's file
            try:
                os.replace(self._temp, self.path)
            except FileNotFoundError:
                self._relink()
                os.replace(self._temp, self.path)
            self._file.close()
        return self.path

    def discard(self) -> None:
        """Drop an unfinished bundle."""
        try:
            self._file.close()
        except OSError:
            pass  # what could not be written (a full disk) is dropped with the file
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass

    def _relink(self) -> None:
        """Write the bundle again under a new temporary name (its old one was removed)."""
        fd, temp = tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=self.directory)
        with os.fdopen(fd, "wb") as copy:
            os.fchmod(fd, 0o666 & ~_umask())
            self._file.seek(0)
            shutil.copyfileobj(self._file, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        self._temp = temp

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or read-only media as provstore's error, not a bare ``OSError``."""
        try:
            yield
        except OSError as exc:
            raise _spool_error(exc, f"the spool file {self._temp!r}") from None


def _spool_error(exc: OSError, where: str) -> ProvstoreError:
    found = from_os_error(exc, where)
    if found is not None:
        return found
    return ConfigError(f"cannot write {where}: {exc.strerror or exc}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass(slots=True)
class IngestReport:
    """What :func:`ingest` did."""

    ingested: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    added: int = 0
    present: int = 0
    stale: list[str] = field(default_factory=list)
    """Unfinished bundles removed: not written to for ``stale_after`` seconds."""


def ingest(
    store: Store,
    directory: str,
    *,
    delete: bool = False,
    on_bundle: Callable[[str], None] | None = None,
    stale_after: float | None = STALE_AFTER,
) -> IngestReport:
    """Import every complete bundle in ``directory``; move each away only after its commit.

    Unfinished bundles not written to for ``stale_after`` seconds are a killed writer's and
    are removed (None keeps them).  A writer still alive after that loses nothing: it writes
    its bundle anew when it publishes.
    """
    report = IngestReport()
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"cannot read spool directory {directory!r}: {exc}") from None
    if stale_after is not None:
        report.stale = _remove_stale(directory, names, stale_after)
    names = [n for n in names if n.endswith(SUFFIX)]
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as handle:
                result = import_bundle(store, handle)
        except FileNotFoundError:
            continue  # another ingester took it
        except BundleError as exc:
            report.rejected[name] = str(exc)
            _move(path, directory, "rejected", note=str(exc))
            continue
        report.ingested.append(name)
        report.added += result.added
        report.present += result.present
        if delete:
            _unlink(path)
        else:
            _move(path, directory, "ingested")
        if on_bundle:
            on_bundle(name)
    return report


def _remove_stale(directory: str, names: list[str], stale_after: float) -> list[str]:
    """Remove the unfinished bundles nobody wrote to for ``stale_after`` seconds."""
    removed = []
    cutoff = time.time() - stale_after
    for name in names:
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_mtime < cutoff:
                os.unlink(path)
                removed.append(name)
        except FileNotFoundError:
            continue  # published or removed meanwhile
    return removed


def _move(path: str, directory: str, sub: str, note: str | None = None) -> None:
    target_dir = os.path.join(directory, sub)
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, os.path.basename(path))
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return
    if note is not None:
        with open(target + ".reason", "w", encoding="utf-8") as handle:
            handle.write(note + "\n")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
