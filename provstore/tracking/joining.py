"""One spooled run written by several processes: ``provstore run`` and the trackers it starts.

With a database, a ``tracker()`` started by ``provstore run`` finds the run in the store and
writes its products there.  In spool mode there is no store to find it in, so ``provstore
run`` (the *host*) leaves the run's head (the run and the objects it refers to) in a hidden
join directory of the spool, ``.<run>.join/head.psb``.  A ``tracker()`` that finds the run
there, with its own environment (a *guest*), writes a bundle of its own into that directory:
the head first, so that the bundle stands alone, then what it records, never the run's end.

Before it ends the run, the host copies the guests' bundles into its own (learning which files
they recorded), so a run is one bundle again.  A guest bundle the host cannot take in (the host
failed, or the guest outlived it) is moved into the spool as a bundle of its own: objects are
content-addressed, so a run spread over two bundles, or an object in both, imports as one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

from provstore.core.digests import full_digest, to_hex
from provstore.core.errors import BundleError, CorruptObjectError
from provstore.core.objects import Product, Run, RunEnd, Sealed, load
from provstore.exchange.bundle import BundleReader, write_bundle
from provstore.tracking.spool import SUFFIX, SpoolWriter

__all__ = ["GuestWriter", "HostWriter", "guest_writer", "join_directory"]

HEAD = "head" + SUFFIX


def join_directory(spool: str, run: bytes) -> str:
    """Where the processes writing ``run`` meet (hidden: ingest does not look inside)."""
    return os.path.join(spool, f".{to_hex(run)}.join")


class HostWriter(SpoolWriter):
    """The bundle of a run that guests may join (written by ``provstore run``)."""

    def __init__(self, spool: str, run: bytes, head: list[Sealed]) -> None:
        super().__init__(spool, run)
        self.spool = spool
        self.directory = join_directory(spool, run)
        self._head = {item.digest for item in head}
        self._taken: list[str] = []
        try:
            self.put(head)
            os.makedirs(self.directory, exist_ok=True)
            temp = os.path.join(self.directory, "." + HEAD + ".tmp")
            with open(temp, "wb") as handle:
                write_bundle(handle, [run], ((item.digest, item.data) for item in head))
            os.replace(temp, os.path.join(self.directory, HEAD))
        except BaseException:
            self.discard()
            raise

    def take_guests(self) -> dict[str, bytes]:
        """Copy the guest bundles published so far into this one.

        Returns the files the guests recorded: recorded path -> product digest.
        """
        recorded: dict[str, bytes] = {}
        for name in self._guest_bundles():
            if name in self._taken:
                continue
            path = os.path.join(self.directory, name)
            try:
                for item in _objects(path):
                    self._take(item, recorded)
            except FileNotFoundError:
                continue  # the guest moved it to the spool itself
            except (BundleError, CorruptObjectError):
                _move_out(path, self.spool)  # left for ingest, which rejects it with a reason
                continue
            self._taken.append(name)
        return recorded

    def _take(self, item: Sealed, recorded: dict[str, bytes]) -> None:
        obj = item.obj
        if item.digest in self._head or isinstance(obj, RunEnd):
            return  # the host alone ends the run
        self.put([item])
        if isinstance(obj, Product) and obj.run == self.run and obj.path is not None:
            recorded[obj.path] = item.digest

    def publish(self) -> str:
        """Close the door to new guests, take in the last ones, then publish the run."""
        self._close_door()
        self.take_guests()
        path = super().publish()
        for name in self._taken:
            _unlink(os.path.join(self.directory, name))
        _rmdir(self.directory)
        return path

    def discard(self) -> None:
        """Drop this bundle; guest bundles go to the spool, each a whole bundle of its own."""
        super().discard()
        self._close_door()
        for name in self._guest_bundles():
            _move_out(os.path.join(self.directory, name), self.spool)
        _rmdir(self.directory)

    def _close_door(self) -> None:
        _unlink(os.path.join(self.directory, HEAD))

    def _guest_bundles(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(SUFFIX) and n != HEAD)


class GuestWriter(SpoolWriter):
    """The bundle of a process that joined a spooled run."""

    def __init__(self, spool: str, run: bytes, head: list[Sealed]) -> None:
        name = f"{to_hex(run)}-{secrets.token_hex(8)}{SUFFIX}"
        super().__init__(join_directory(spool, run), run, name=name)
        self.spool = spool
        self.put(head)

    def publish(self) -> str:
        """Publish into the join directory; into the spool when the host has finished."""
        path = super().publish()
        directory = os.path.dirname(path)
        if os.path.exists(os.path.join(directory, HEAD)):
            return path  # the host takes it in before it ends the run
        moved = _move_out(path, self.spool)
        _rmdir(directory)
        return moved


def guest_writer(spool: str, run_ref: str, environment: bytes) -> GuestWriter | None:
    """A bundle joining the run ``run_ref`` (hex) in ``spool``, or None when it cannot.

    A run can be joined while its host is writing it, by a process with the same environment.
    """
    run = full_digest(run_ref)
    if run is None:
        return None
    try:
        head = list(_objects(os.path.join(join_directory(spool, run), HEAD)))
    except (OSError, BundleError, CorruptObjectError):
        return None
    found = next((item for item in head if item.digest == run), None)
    if found is None or not isinstance(found.obj, Run) or found.obj.environment != environment:
        return None
    return GuestWriter(spool, run, head)


def _objects(path: str) -> Iterator[Sealed]:
    """The objects of a bundle file, each verified (its trailer is checked at the end)."""
    with open(path, "rb") as handle:
        for _, digest, data in BundleReader(handle).objects():
            yield load(digest, data, hashed=True)


def _move_out(path: str, spool: str) -> str:
    target = os.path.join(spool, os.path.basename(path))
    try:
        os.replace(path, target)
    except FileNotFoundError:
        pass  # the host took it in meanwhile
    return target


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # a guest is still writing; it moves its bundle out and removes the directory
