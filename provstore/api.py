"""The public :class:`Store`: the store with the operations that live in outer layers.

:class:`provstore.store.Store` reads and writes objects and their index; checks (verify, diff)
and exchange (bundles) are built on top of it and cannot be imported by it.  This subclass
gathers them into the one object :func:`open_store` returns, so a user holds one handle::

    with open_store() as store:
        report = store.verify("3fa9c1")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from provstore import store
from provstore.config import resolve
from provstore.core.contracts import (
    all_of,
    is_digest_ref,
    is_optional_str,
    is_path,
    is_paths,
    is_refs,
    requires,
)
from provstore.core.errors import PathError

if TYPE_CHECKING:
    from provstore.checks.envdiff import EnvDiff
    from provstore.checks.report import Report
    from provstore.checks.status import StatusReport
    from provstore.checks.why import Why
    from provstore.exchange.transfer import ExportResult, ImportResult

__all__ = ["Store", "open_store"]


class Store(store.Store):
    """A provstore store behind one database URL: query, verify, diff, export and import.

    The operations of the outer layers are imported when first used, so opening a store (or
    starting a tracked process) does not pay for modules it may never need.
    """

    @requires(
        lambda self, refs, fileobj, *, compress=True, sign=None: all_of(
            is_refs(refs, "refs"), is_optional_str(sign, "sign", empty=False)
        )
    )
    def export_bundle(
        self,
        refs: Sequence[str | bytes],
        fileobj: BinaryIO | str | os.PathLike[str],
        *,
        compress: bool = True,
        sign: str | None = None,
    ) -> ExportResult:
        """Write the full closure of ``refs`` as a bundle, to a binary file object or a path.

        A path is written under a temporary name and put in place when complete; an existing
        file there is kept (:class:`OutputExistsError`).  ``sign`` names an ed25519 private
        key file: the bundle is then signed with it.
        """
        if isinstance(fileobj, (str, os.PathLike)):
            from provstore.exchange.formats import ExportOptions, export_to_path

            options = ExportOptions(compress=compress, sign=sign)
            return export_to_path(self, refs, os.fspath(fileobj), options=options)
        from provstore.exchange.transfer import export_bundle

        key = None
        if sign is not None:
            from provstore.exchange.signing import load_private_key

            key = load_private_key(sign)
        return export_bundle(self, refs, fileobj, compress=compress, sign=key)

    def import_bundle(
        self,
        fileobj: BinaryIO | str | os.PathLike[str],
        *,
        on_progress: Callable[[int], None] | None = None,
        trusted_keys: Sequence[str] = (),
    ) -> ImportResult:
        """Check and import a bundle in one transaction; a rejected one changes nothing.

        ``fileobj`` is a binary file object or a path.  With ``trusted_keys`` (public key
        files, or directories of ``*.pub`` files) the bundle must carry a valid signature by
        one of those keys.
        """
        if isinstance(fileobj, (str, os.PathLike)):
            path = os.fspath(fileobj)
            try:
                source = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise PathError(path, exc.strerror or "cannot be opened") from exc
            with source:
                return self.import_bundle(
                    source, on_progress=on_progress, trusted_keys=trusted_keys
                )
        from provstore.exchange.transfer import import_bundle

        trusted = None
        if trusted_keys:
            from provstore.exchange.signing import load_trusted_keys

            trusted = load_trusted_keys(list(trusted_keys))
        return import_bundle(self, fileobj, on_progress=on_progress, trusted=trusted)

    @requires(
        lambda self, a, b=None, *, used=False: all_of(
            is_digest_ref(a, "a"), True if b is None else is_digest_ref(b, "b")
        )
    )
    def diff(self, a: str | bytes, b: str | bytes | None = None, *, used: bool = False) -> EnvDiff:
        """Differences between the environments behind ``a`` and ``b`` (default: this one).

        ``used`` limits the packages to those the run behind ``a`` imported.
        """
        from provstore.checks.verify import diff_refs

        return diff_refs(self, a, b, used=used)

    @requires(lambda self, path: is_path(path))
    def why(self, path: str) -> Why:
        """What made the file at ``path``: its products, run, inputs and environment."""
        from provstore.checks.why import why

        return why(self, os.fspath(path))

    @requires(lambda self, paths=(".",): is_paths(paths))
    def status(self, paths: Sequence[str] = (".",)) -> StatusReport:
        """Every file under ``paths``: recorded, modified or untracked (stat-cached hashing)."""
        from provstore.checks.status import status

        return status(self, [os.fspath(p) for p in paths])

    @requires(
        lambda self, ref, *, path=None, rerun=False, recursive=False, environment=True, **_: (
            all_of(is_digest_ref(ref), is_optional_str(path, "path", empty=False))
        )
    )
    def verify(
        self,
        ref: str | bytes,
        *,
        path: str | None = None,
        rerun: bool = False,
        recursive: bool = False,
        environment: bool = True,
        strict: bool = False,
    ) -> Report:
        """Integrity, file content, environment and (with ``rerun``) reproduction checks.

        ``recursive`` also checks the recorded files of every ancestor on this machine.
        An installed distribution the run did not import that changed is a note, unless
        ``strict``.  When the object came as a root of signed bundles, a last check says who
        signed them.
        """
        from provstore.checks.verify import verify
        from provstore.exchange.signing import check_signed

        report = verify(
            self,
            ref,
            path=path,
            rerun=rerun,
            recursive=recursive,
            environment=environment,
            strict=strict,
        )
        signed = check_signed(self, report.digest)
        return report if signed is None else report.adding(signed)


@requires(lambda url=None, *, create=True: is_optional_str(url, "url", empty=False))
def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at ``url`` or the configured one, creating it if needed.

    ``create=False`` only opens an existing store and never changes it (a SQLite file is
    opened read-only): :class:`provstore.NoStoreError` when there is none at the URL.
    """
    return Store(resolve(url).url, create=create)
