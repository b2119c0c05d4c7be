"""Spool mode: for compute nodes that cannot reach the database.

``tracker()`` with a spool directory writes each run as one bundle there: into a hidden
temporary file, renamed to ``<run digest>.psb`` only when complete, so a reader never sees a
partial bundle.  :func:`ingest` imports every complete bundle (each in its own transaction)
and only after the commit moves it to ``ingested/``; a rejected bundle goes to ``rejected/``
with the reason beside it.  Ingesting while jobs still write, or from two places at once, is
safe: imports are idempotent and a bundle that vanished meanwhile is skipped.

A run may be written by more than one process (``provstore run`` and a ``tracker()`` inside
the command it runs): :mod:`provstore.tracking.joining` gathers their bundles into one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, ConfigError
from provstore.core.objects import Sealed
from provstore.exchange.bundle import BundleWriter
from provstore.exchange.transfer import import_bundle
from provstore.store import Store

__all__ = ["SUFFIX", "IngestReport", "SpoolWriter", "ingest"]

SUFFIX = ".psb"


class SpoolWriter:
    """One run's bundle, written as objects arrive and published atomically at the end."""

    def __init__(self, directory: str, run: bytes, *, name: str | None = None) -> None:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use spool directory {directory!r}: {exc}") from None
        self.run = run
        self.path = os.path.join(directory, name or to_hex(run) + SUFFIX)
        fd, self._temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
        os.fchmod(fd, 0o666 & ~_umask())  # readable by an ingester as the umask allows
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._writer = BundleWriter(self._file, [run])

    def put(self, items: list[Sealed]) -> None:
        """Append objects (each after those it refers to)."""
        for item in items:
            self._writer.add(item.digest, item.data)

    def publish(self) -> str:
        """Finish the bundle, make it durable and give it its final name."""
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self.path)
        return self.path

    def discard(self) -> None:
        """Drop an unfinished bundle."""
        self._file.close()
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass


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


def ingest(
    store: Store,
    directory: str,
    *,
    delete: bool = False,
    on_bundle: Callable[[str], None] | None = None,
) -> IngestReport:
    """Import every complete bundle in ``directory``; move each away only after its commit."""
    report = IngestReport()
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError as exc:
        raise ConfigError(f"cannot read spool directory {directory!r}: {exc}") from None
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
