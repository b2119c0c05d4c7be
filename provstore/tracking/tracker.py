"""``tracker()``: record a run, the products it makes and the inputs it uses.

Entering captures the environment and the run and stores them in one transaction.  Products
are sealed at once (so their digests are known immediately) and written in batches: when
:data:`FLUSH_EVERY` are waiting, when the last write is older than :data:`FLUSH_AFTER`
seconds, on :meth:`Tracker.flush` and at exit.  A product registered after a quiet spell is
therefore written immediately; a burst of thousands costs one transaction per batch.

An exception inside the block ends the run as ``failed`` (products registered before it stay
recorded) and is re-raised; ``sys.exit(0)`` (or ``sys.exit()``) is a success, any other exit
status a failure with that exit code.

With a spool directory (``tracker(spool=DIR)``, ``PROVSTORE_SPOOL`` or ``[tool.provstore]
spool``) nothing touches a database: the run is written as one bundle into the directory, for
``provstore import --spool DIR`` to ingest later.  Parents must then be full digests.

On an existing SQLite store of the current schema the tracker writes (and makes its common
reads) through :mod:`provstore.db.sqlite_direct`, so a short tracked process does not pay for
importing SQLAlchemy; any other store, and any read that path does not answer (a digest
prefix, ``t.store``), opens the full :class:`~provstore.api.Store`.

A process started by ``provstore run`` finds the run's digest in ``PROVSTORE_RUN`` and joins
that run (when its environment is the same) instead of recording a run of its own: in the
store, or in spool mode through the spool (:mod:`provstore.tracking.joining`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from provstore.capture import imports as imported
from provstore.capture.hashcache import FileHasher
from provstore.capture.probes import cuda_runtimes
from provstore.capture.redact import Secrets
from provstore.capture.snapshot import (
    EnvironmentCapture,
    RunCapture,
    capture_environment,
    capture_run,
    redactor_for,
)
from provstore.config import JOIN_VARIABLE, Settings, check_probes, resolve
from provstore.core.contracts import (
    Verdict,
    all_of,
    is_mapping,
    is_optional_str,
    is_path,
    is_refs,
    requires,
)
from provstore.core.digests import DIGEST_SIZE, full_digest, parse_ref, to_hex
from provstore.core.errors import EncodingError, UnknownDigestError, UsageError
from provstore.core.objects import (
    Environment,
    ImportSet,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
    seal,
    seal_unchecked,
)
from provstore.db import sqlite_direct, sqlite_pipe

if TYPE_CHECKING:
    from provstore.api import Store
    from provstore.tracking.lineage_events import LineageEmitter
    from provstore.tracking.spool import SpoolWriter

__all__ = ["FLUSH_AFTER", "FLUSH_EVERY", "IMPORTS_VARIABLE", "Tracker", "tracker"]

IMPORTS_VARIABLE = "PROVSTORE_RUN_IMPORTS"
"""Set by ``provstore run`` for its command: a directory where each ``tracker()`` that joins
the run leaves the distributions it imported, for the run's end."""

FLUSH_EVERY = 50_000
"""A bound on products held in memory; in a burst, the time (:data:`FLUSH_AFTER`) decides.

A transaction per 0.5 s rather than per 5,000 products: 300,000 products in one block on
SQLite went from 10,400-11,300 to 17,700-18,100 products/s (the commits and the pages they
rewrite are shared by more rows), and no more is at risk in a crash than before (what was
registered in the last half second)."""
FLUSH_AFTER = 0.5
PIPE_FROM = 2_048
"""The fewest products a tracker on a SQLite store hands its writer process
(:mod:`provstore.db.sqlite_pipe`) at once, in a burst (see :data:`PIPE_START`): it registers
on while the writer writes, and sends a batch (of at least as many) whenever the writer is
idle, and at least every :data:`FLUSH_AFTER`.  A process that registers fewer at a time
writes them itself (a writer takes 40-60 ms to start, about as long as writing 2,048)."""
PIPE_START = 512
"""Products pending at once from which a tracker starts its writer process (a burst).

Before :data:`PIPE_FROM`: the writer is then ready when there is a batch to give it (started
at 2,048, the first 10,000 products were durable ~6% later: 54.1k against 57.3k products/s,
medians of six blocks).  A block that ends before the writer is ready writes its products
itself, and a writer given nothing is stopped at once."""
_BURST_CHECK = 256  # pending products between looks at the writer (and pieces of a batch made)
_METADATA_ADVICE = (
    "Metadata may hold only None, bool, int (64-bit), finite float, str, bytes, lists/tuples "
    "and maps with str keys; convert other values (e.g. datetime.isoformat(), "
    "int(numpy_value)) first."
)

ParentRef = str | bytes


def _product_args(
    self: Tracker,
    name: Any,
    version: Any = None,
    metadata: Any = None,
    *,
    path: Any = None,
    parents: Any = (),
) -> Verdict:
    """The arguments of :meth:`Tracker.register_data_product` (and of ``track``).

    The common call (str name and version, a dict, hex parents in a list) is recognised
    first, with no function call per argument: this runs for every product registered.
    """
    if (
        type(name) is str
        and name
        and (version is None or type(version) is str)
        and (metadata is None or type(metadata) is dict)
        and path is None
        and type(parents) in (list, tuple)
        and all(type(parent) is str for parent in parents)
    ):
        return True
    if not isinstance(name, str) or not name:
        return f"a product needs a non-empty str name, not {name!r}"
    return all_of(
        is_optional_str(version, "version"),
        is_mapping(metadata, "metadata"),
        True if path is None else is_path(path),
        is_refs(parents, "parents"),
    )


class Tracker:
    """A run in progress; use it through :func:`tracker`.

    Products are written in batches, one transaction each: half a second after the last
    batch, at 50,000 pending, at :meth:`flush` and at the end of the block (a crash loses at
    most what was registered since the last batch).  On a SQLite store, a burst (512
    products pending at once, on a machine with a core to spare) starts a writer process
    that commits each batch while the block registers the next; :meth:`flush` waits for it,
    and should it fail, the tracker writes the batches it did not confirm itself, raising
    the store's own error if that fails too.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        git: bool = True,
        command: Sequence[str] | None = None,
        guest_imports: str | None = None,
        openlineage: str | None = None,
    ) -> None:
        self._settings = settings
        self._openlineage = openlineage or settings.openlineage_url
        self._lineage: LineageEmitter | None = None  # live OpenLineage events, when configured
        self._lineage_products: dict[bytes, Product] = {}
        self._lineage_run: tuple[Run, Environment, LibrarySet] | None = None
        if self._openlineage:
            from provstore.tracking.lineage_events import check_target

            check_target(self._openlineage)  # a bad setting fails before anything is recorded
        self._name = name
        self._git = git
        self._command = command
        self._guest_imports = guest_imports
        """``provstore run``: the directory its command's trackers leave their imports in."""
        self._joined = False
        self.exit_code: int | None = None
        """Set by ``provstore run`` to the tracked command's exit status (non-zero: failed)."""
        self._store: Store | None = None  # opened on entry, or on the first read
        self._direct: sqlite_direct.DirectWriter | None = None  # SQLite, without SQLAlchemy
        self._pipe: sqlite_pipe.PipedWriter | None = None  # its writer process, in a burst
        self._may_pipe = True
        self._spool: SpoolWriter | None = None  # spool mode: the run's bundle being written
        self._pending: list[Sealed] = []
        self._known: set[bytes] = set()
        self._by_content: dict[bytes, bytes] = {}  # content -> this run's newest product
        self._by_location: dict[tuple[bytes, str], bytes] = {}  # (content, path) -> product
        self._inputs: list[bytes] = []
        self._last_flush = 0.0
        self._hashes: FileHasher | None = None  # opened on the first file hashed
        self._env_digest = b""
        self._run_digest = b""
        self._secrets = Secrets()  # secret values capture met; never stored
        self._versions: dict[str, str] = {}  # the library set: name -> version
        self._modules: set[str] = set()  # every module seen in sys.modules at a flush
        self.openlineage_dropped = 0
        """OpenLineage events lost (dropped, or reported failed by the sender) when the block
        ended; :attr:`openlineage_emitter` has the sender's later reports."""
        self.openlineage_emitter: LineageEmitter | None = None
        """The run's OpenLineage sender (when configured), for its counts."""

    # -- context -----------------------------------------------------------------------------

    def __enter__(self) -> Tracker:
        imported.mark_own_start()  # what entering imports (drivers, ...) is not the run's
        try:
            return self._enter()
        finally:
            imported.mark_own_end()

    def _enter(self) -> Tracker:
        env = capture_environment(self._settings)
        self._env_digest = env.environment.digest
        libs = env.libraryset.obj
        self._versions = libs.versions() if isinstance(libs, LibrarySet) else {}
        if self._settings.spool:
            self._enter_spool(env, self._settings.spool)
            self._last_flush = time.monotonic()
            return self
        # An existing SQLite store is written without SQLAlchemy (whose import would cost a
        # short process more than all the rest); anything else opens the full store.
        self._direct = sqlite_direct.open_writer(self._settings.url)
        try:
            if self._direct is None:
                self._open_store()  # creates, upgrades or refuses the store
                # a SQLite store it created or upgraded is then written as any other
                self._direct = sqlite_direct.open_writer(self._settings.url)
            joined = self._joinable_run()
            if joined is not None:
                self._run_digest, self._joined = joined, True
            else:
                run = self._capture_run(env)
                self._write([*env.objects(), run.variables, run.run])
                self._run_digest = run.run.digest
                self._start_lineage(env, run)
        except BaseException:
            self._close_store()
            raise
        self._last_flush = time.monotonic()
        return self

    def _enter_spool(self, env: EnvironmentCapture, spool: str) -> None:
        """Spool mode: join the run named by ``PROVSTORE_RUN``, or start one of our own.

        A run is joined when its host left it in the spool; a run started by ``provstore
        run`` is left there for the command's trackers to join.
        """
        from provstore.tracking import joining
        from provstore.tracking.spool import SpoolWriter

        ref = os.environ.get(JOIN_VARIABLE)
        if ref and self._command is None:
            guest = joining.guest_writer(spool, ref, self._env_digest)
            if guest is not None:
                self._spool, self._run_digest, self._joined = guest, guest.run, True
                return
        run = self._capture_run(env)
        self._start_lineage(env, run)
        head = [*env.objects(), run.variables, run.run]
        if self._command is not None:
            self._spool = joining.HostWriter(spool, run.run.digest, head)
        else:
            self._spool = writer = SpoolWriter(spool, run.run.digest)
            try:
                writer.put(head)
            except BaseException:
                writer.discard()
                self._spool = None
                raise
        self._run_digest = run.run.digest

    def _start_lineage(self, env: EnvironmentCapture, run: RunCapture) -> None:
        """Start the OpenLineage sender (when configured) and queue the run's START event."""
        if not self._openlineage:
            return
        from provstore.exchange.openlineage import start_event
        from provstore.tracking.lineage_events import LineageEmitter

        assert isinstance(run.run.obj, Run)
        env_obj, libs = env.environment.obj, env.libraryset.obj
        assert isinstance(env_obj, Environment) and isinstance(libs, LibrarySet)
        self._lineage = self.openlineage_emitter = LineageEmitter(self._openlineage)
        namespace = self._settings.openlineage_namespace
        self._lineage.send(start_event(run.run.digest, run.run.obj, namespace, env_obj, libs))
        self._lineage_run = (run.run.obj, env_obj, libs)

    def _end_lineage(self, end: RunEnd | None) -> None:
        """Queue the COMPLETE/FAIL event, give the sender its bounded time, count the losses."""
        emitter, self._lineage = self._lineage, None
        if emitter is None:
            return
        try:
            if end is not None and self._lineage_run is not None:
                from provstore.exchange.openlineage import complete_event

                run, env, libs = self._lineage_run
                products = self._lineage_products
                missing = [d for d in self._inputs if d not in products]
                if missing and self._store is not None:
                    store = self._store
                    found = store.retrying(lambda: store.get_many(missing))
                    products.update((d, i.obj) for d, i in found.items()
                                    if isinstance(i.obj, Product))  # fmt: skip
                inputs = [(d, products[d]) for d in end.inputs if d in products]
                outputs = [(d, p) for d, p in products.items() if p.run == self._run_digest]
                namespace = self._settings.openlineage_namespace
                emitter.send(complete_event(self._run_digest, run, end, namespace, inputs,
                                            outputs, env, libs))  # fmt: skip
        finally:
            emitter.close()
            self.openlineage_dropped = emitter.dropped + emitter.failed

    def _capture_run(self, env: EnvironmentCapture) -> RunCapture:
        run = capture_run(
            env,
            self._settings,
            name=self._name,
            git=self._git,
            command=self._command,
            code_dir=_code_dir(self._command) if self._command else None,
        )
        self._secrets = run.secrets  # in memory only: scrubbed from the error text at exit
        return run

    def _open_store(self) -> Store:
        """The full store (SQLAlchemy): opened on entry, or on the first read of a direct run."""
        if self._store is None:
            from provstore.api import Store
            from provstore.db.dialects import for_url

            # A job on a server backend holds no idle connection between its writes.
            pooled = for_url(self._settings.url).pool_jobs
            self._store = Store(self._settings.url, pooled=pooled)
        return self._store

    def _close_store(self) -> None:
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            pipe.close()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def _joinable_run(self) -> bytes | None:
        """The run named by ``PROVSTORE_RUN`` if it is stored and has this environment."""
        ref = os.environ.get(JOIN_VARIABLE)
        if not ref or self._command is not None:
            return None
        exact = full_digest(ref)
        if exact is not None and self._direct is not None and not os.path.isfile(ref):
            found = self._direct.get(exact)  # the common case, without opening the full store
            if found is not None and isinstance(found.obj, Run):
                return found.digest if found.obj.environment == self._env_digest else None
        store = self._open_store()
        try:
            run = store.retrying(lambda: store.get(ref, kind="run"))
        except UsageError:
            return None
        same_env = isinstance(run.obj, Run) and run.obj.environment == self._env_digest
        return run.digest if same_env else None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._require_active()
        exc_type, exc = self._exit_status(exc_type, exc)
        try:
            self.flush()
            if self._joined:
                self._leave_imports()  # for the process that records the run's end
                if self._spool is not None:  # our part of the run, for its host to take in
                    self._spool.publish()
                    self._spool = None
                return  # the run belongs to the process that started it; it records the end
            error = None
            if exc is not None:
                import traceback

                text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
                error = redactor_for(self._settings).redact_text(text, self._secrets)[0]
            failed = exc is not None or bool(self.exit_code)
            used, cuda = self._used()
            end = RunEnd(
                run=self._run_digest,
                status="failed" if failed else "succeeded",
                finished_ns=time.time_ns(),
                error=error,
                exit_code=self.exit_code,
                inputs=tuple(dict.fromkeys(self._inputs)),
                imported=None if used is None else used.digest,
                cuda=cuda,
            )
            self._write([seal(end)] if used is None else [used, seal(end)])
            if self._spool is not None:
                self._spool.publish()
                self._spool = None
            self._end_lineage(end)
        finally:
            if self._lineage is not None:  # the end was not written: no COMPLETE to send
                self._end_lineage(None)
            if self._spool is not None:
                self._spool.discard()
                self._spool = None
            self._close_store()
            if self._hashes is not None:
                self._hashes.close()
                self._hashes = None

    # -- what the run imported ----------------------------------------------------------------

    def _imported_pairs(self) -> tuple[tuple[str, str], ...]:
        self._modules.update(sys.modules)
        return imported.imported_distributions(self._versions, modules=self._modules)

    def _used(self) -> tuple[Sealed | None, dict[str, str] | None]:
        """What the run imported (None: unknown, or the probe is off) and its CUDA runtimes.

        A ``provstore run`` knows them only from the trackers that joined its run.
        """
        if self._command is not None:
            return self._guests_used()
        cuda = cuda_runtimes() if self._settings.probe("gpu") else None
        if not self._settings.probe("imports"):
            return None, cuda
        try:
            return seal(ImportSet(self._imported_pairs())), cuda
        except Exception:  # a probe never costs the run its end: unknown, then
            return None, cuda

    def _guests_used(self) -> tuple[Sealed | None, dict[str, str] | None]:
        """What the trackers that joined this ``provstore run`` left: imports, CUDA runtimes."""
        folder = self._guest_imports
        try:
            left = sorted(os.listdir(folder)) if folder else []
        except OSError:
            left = []
        if folder is None or not left:
            return None, None  # no tracker joined: what the command imported is unknown
        found: dict[str, str] = {}
        cuda: dict[str, str] = {}
        recorded = False
        for name in left:
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as file:
                    for line in file:
                        first, _, rest = line.rstrip("\n").partition(" ")
                        if first == "!imports":
                            recorded = True
                        elif first == "!cuda":
                            framework, _, version = rest.partition(" ")
                            if framework and version:
                                cuda.setdefault(framework, version)
                        elif first and rest:
                            found.setdefault(first, rest)
            except (OSError, ValueError):
                continue
        imported = None
        if recorded and self._settings.probe("imports"):
            imported = seal(ImportSet(tuple(sorted(found.items()))))
        return imported, (cuda or None) if self._settings.probe("gpu") else None

    def _leave_imports(self) -> None:
        """A joining tracker leaves what it imported, and its CUDA runtimes, for the run's end.

        ``!imports`` says the imports were recorded (an empty list is then "none", not
        "unknown"); ``provstore run`` reads the files when its command has ended.
        """
        folder = os.environ.get(IMPORTS_VARIABLE)
        if not folder or not os.path.isdir(folder):
            return
        lines = []
        if self._settings.probe("imports"):
            lines.append("!imports\n")
            lines += [f"{name} {version}\n" for name, version in self._imported_pairs()]
        if self._settings.probe("gpu"):
            runtimes = cuda_runtimes() or {}
            lines += [f"!cuda {name} {version}\n" for name, version in runtimes.items()]
        target = os.path.join(folder, f"{os.getpid()}-{os.urandom(4).hex()}.txt")
        try:
            with open(target, "w", encoding="utf-8") as file:
                file.write("".join(lines))
        except OSError:
            pass  # the run's end then says less; the run itself is recorded

    def _hash(self, path: str | os.PathLike[str]) -> tuple[bytes, int]:
        """A file's digest and size, through the stat cache ``provstore status`` uses."""
        if self._hashes is None:
            self._hashes = FileHasher()
        return self._hashes.hash(path)

    def _exit_status(
        self, exc_type: type[BaseException] | None, exc: BaseException | None
    ) -> tuple[type[BaseException] | None, BaseException | None]:
        """The exception that fails the run: ``SystemExit`` is an exit status, 0 a success.

        Records the status as the run's exit code (unless ``provstore run`` set one).
        """
        if not isinstance(exc, SystemExit):
            return exc_type, exc
        code = exc.code
        status = 0 if code is None else int(code) if isinstance(code, int) else 1
        if self.exit_code is None:
            self.exit_code = status
        return (None, None) if status == 0 else (exc_type, exc)

    # -- properties --------------------------------------------------------------------------

    @property
    def environment(self) -> str:
        """Hex digest of the captured environment."""
        return to_hex(self._env_digest)

    @property
    def run(self) -> str:
        """Hex digest of this run."""
        return to_hex(self._run_digest)

    @property
    def joined(self) -> bool:
        """Whether this block joined a run started by another process (``provstore run``)."""
        return self._joined

    def recorded_by_guests(self) -> dict[str, str]:
        """Files that processes which joined this run recorded: path -> product digest (hex).

        For ``provstore run``, once its command has ended.  In spool mode the guests' bundles
        are copied into this run's bundle now.
        """
        self._require_active()
        if self._spool is not None:
            from provstore.tracking.joining import HostWriter

            found = self._spool.take_guests() if isinstance(self._spool, HostWriter) else {}
        else:
            store = self.store
            made = store.retrying(lambda: store.products_of_run(self._run_digest))
            found = {
                p.obj.path: p.digest
                for p in made
                if isinstance(p.obj, Product) and p.obj.path and p.digest not in self._known
            }
        return {path: to_hex(digest) for path, digest in found.items()}

    @property
    def store(self) -> Store:
        """The store this run writes to (not in spool mode)."""
        self._require_active()
        if self._spool is not None:
            raise UsageError("in spool mode the tracker writes a bundle, not to a store")
        return self._open_store()

    def _require_active(self) -> None:
        if self._store is None and self._direct is None and self._spool is None:
            raise UsageError("the tracker is not active; use it as `with tracker() as t:`")

    def _write(self, items: list[Sealed]) -> None:
        if self._spool is not None:
            self._spool.put(items)
        elif self._direct is not None:
            self._direct.put(items)
        elif self._store is not None:
            self._store.put(items)

    # -- recording ---------------------------------------------------------------------------

    def register_data_product(
        self,
        name: str,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        parents: Sequence[ParentRef] = (),
    ) -> str:
        """Record a product made by this run; returns its hex digest.

        ``path`` names the file holding its bytes (hashed now, streamed); ``parents`` are
        digests (hex, unique prefix or raw) of the products it was made from.  Wrong argument
        types raise :class:`UsageError` even under ``python -O`` (which turns ``deal``
        contracts off): a product of the wrong shape would fail its whole batch later.
        """
        verdict = _product_args(self, name, version, metadata, path=path, parents=parents)
        if verdict is not True:
            raise UsageError(verdict)
        self._require_active()
        content = size = recorded = None
        if path is not None:
            content, size = self._hash(path)
            recorded = os.path.abspath(os.fspath(path))
        product = Product(
            name,
            version,
            dict(metadata) if metadata is not None else {},
            content,
            size,
            recorded,
            self._run_digest,
            self._parents(parents) if parents else (),
        )
        try:
            # Refuses unencodable metadata before anything is stored.  Unchecked: the
            # contract on this method has checked every field's source already.
            item = seal_unchecked(product)
        except EncodingError as exc:
            where = exc.where.replace("value['metadata']", "metadata", 1)
            advice = _METADATA_ADVICE if where.startswith("metadata") else None
            raise EncodingError(where, exc.reason, advice) from None
        self._add(item)
        return item.hex

    @requires(
        lambda self, path, parents=(), *, name=None, version=None, metadata=None: all_of(
            is_path(path), is_optional_str(name, "name", empty=False)
        )
    )
    def track(
        self,
        path: str | os.PathLike[str],
        parents: Sequence[ParentRef] = (),
        *,
        name: str | None = None,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Record the file at ``path`` as a product (named by its path unless ``name``)."""
        return self.register_data_product(
            name or os.fspath(path), version, metadata, path=path, parents=parents
        )

    @requires(lambda self, path: is_path(path))
    def use(self, path: str | os.PathLike[str]) -> str:
        """Record a file this run reads; returns the product digest that stands for it.

        A product already recorded with the same content is reused: the newest recorded at
        this path, else the newest from any path (two files with the same bytes, say two
        header-only tables, are told apart by where they were recorded).  Otherwise a
        *source* product (no run, no parents) is recorded for the file.
        """
        self._require_active()
        content, size = self._hash(path)
        recorded = os.path.abspath(os.fspath(path))
        digest = self._by_location.get((content, recorded))
        if digest is None:
            digest = self._stored_or_known(content, recorded)
        if digest is None:
            source = Product(
                name=os.fspath(path),
                version=None,
                metadata={},
                content=content,
                size=size,
                path=recorded,
                run=None,
                parents=(),
            )
            item = seal(source)
            self._add(item)
            digest = item.digest
        self._by_location[(content, recorded)] = digest
        self._known.add(digest)
        self._inputs.append(digest)
        return to_hex(digest)

    def _stored_or_known(self, content: bytes, recorded: str) -> bytes | None:
        """The stored product at this path with these bytes, else the newest with them.

        This run's own products are the newest, so they come before stored ones from other
        paths; one query answers both the stored questions.
        """
        found = self._product_for(content, recorded)
        if found is not None and isinstance(found.obj, Product) and found.obj.path == recorded:
            return found.digest
        mine = self._by_content.get(content)
        if mine is not None:
            return mine
        return found.digest if found is not None else None

    def _product_for(self, content: bytes, recorded: str) -> Sealed | None:
        if self._spool is not None:
            return None
        if self._store is None and self._direct is not None:
            return self._direct.product_for(content, recorded)
        store = self._open_store()
        return store.retrying(lambda: store.product_for(content, recorded))

    def flush(self) -> None:
        """Write every pending product now; they are all stored when it returns."""
        self._require_active()
        self._send()
        pipe = self._pipe
        if pipe is not None:
            pipe.wait()
            if not pipe.usable:
                self._send()  # what the writer process did not confirm, written here

    def _send(self) -> None:
        """Write the pending products, or hand them to the writer process when one runs.

        After the writer process failed, the batches it did not confirm come back in front
        of the pending ones and are written here (raising the store's error, and kept
        pending, if that fails too); the pipe is not used again.
        """
        self._modules.update(sys.modules)  # a module dropped later still counts as imported
        pipe = self._pipe
        if pipe is not None and not pipe.usable:
            self._take_back(pipe)
            pipe = None
        if self._pending:
            if pipe is not None and pipe.started() and pipe.put(self._pending):
                self._pending = []
            else:  # no writer, one still starting (written here meanwhile), or one that failed
                if pipe is not None and not pipe.usable:
                    self._take_back(pipe)
                self._write(self._pending)
                self._pending = []
        self._last_flush = time.monotonic()

    def _start_pipe(self) -> None:
        """A writer process for a burst on a SQLite store, when a core is there to run it."""
        self._may_pipe = False  # one attempt per tracker
        direct = self._direct
        if direct is not None and self._spool is None and _spare_core():
            self._pipe = sqlite_pipe.start(direct.path)

    def _take_back(self, pipe: sqlite_pipe.PipedWriter) -> None:
        """Stop using the writer process; its unconfirmed batches go back to pending."""
        self._pipe = None
        back = [item for batch in pipe.unconfirmed() for item in batch]
        pipe.close()
        self._pending = back + self._pending

    def _add(self, item: Sealed) -> None:
        self._pending.append(item)
        self._known.add(item.digest)
        product = item.obj
        if self._lineage is not None and isinstance(product, Product):
            self._lineage_products[item.digest] = product
        if isinstance(product, Product) and product.content is not None:
            self._by_content[product.content] = item.digest
            if product.path is not None:
                self._by_location[(product.content, product.path)] = item.digest
        pending = len(self._pending)
        if not pending % _BURST_CHECK:
            self._burst()
        if pending >= FLUSH_EVERY or time.monotonic() - self._last_flush > FLUSH_AFTER:
            self._send()

    def _burst(self) -> None:
        """In a burst on SQLite: start the writer process, send it a batch whenever it is idle.

        Never fewer than :data:`PIPE_FROM` products a batch: a writer faster than the tracker
        would otherwise get a batch every :data:`_BURST_CHECK` products.
        """
        pipe = self._pipe
        if pipe is None:
            if self._may_pipe and len(self._pending) >= PIPE_START:
                self._start_pipe()
            return
        if len(self._pending) < PIPE_FROM:
            if pipe.usable:
                pipe.stage(self._pending)  # the next batch's rows, while the writer writes
            return
        if pipe.idle():
            self._send()
        elif pipe.usable:
            pipe.stage(self._pending)

    def _parents(self, refs: Sequence[ParentRef]) -> tuple[bytes, ...]:
        """The parents' digests, sorted and without repeats.

        A full hex digest of a product this run knows is taken at once (this runs for every
        parent registered); anything else goes through :meth:`_parent`.
        """
        known, found = self._known, set()
        for ref in refs:
            if type(ref) is str and len(ref) == 2 * DIGEST_SIZE:
                try:
                    exact = bytes.fromhex(ref)
                except ValueError:
                    exact = b""
                if exact in known:  # only 32-byte digests are known: no short parse passes
                    found.add(exact)
                    continue
            found.add(self._parent(ref))
        return tuple(sorted(found))

    def _parent(self, ref: ParentRef) -> bytes:
        if isinstance(ref, bytes) and len(ref) == DIGEST_SIZE and ref in self._known:
            return ref
        exact = ref if isinstance(ref, bytes) and len(ref) == DIGEST_SIZE else None
        if isinstance(ref, str):
            # A full digest skips parse_ref's contract: this runs for every parent registered.
            exact = full_digest(ref) or parse_ref(ref).exact
            if exact is not None and exact in self._known:
                return exact
        if self._spool is not None:  # no database to look in; the import checks it later
            if exact is None:
                raise UsageError(f"in spool mode a parent must be a full digest, not {ref!r}")
            return exact
        direct = self._direct
        if exact is not None and direct is not None and not _is_file(ref):
            found = direct.get(exact)  # the common case, without opening the full store
            if found is not None and found.kind == "product":
                self._known.add(exact)
                return exact
        store = self._open_store()
        try:
            digest = store.retrying(lambda: store.get(ref, kind="product")).digest
        except UnknownDigestError:
            raise UnknownDigestError(ref if isinstance(ref, str) else ref.hex()) from None
        self._known.add(digest)
        return digest


def _is_file(ref: ParentRef) -> bool:
    """Whether a reference names a file (the store resolves it by the file's bytes)."""
    return isinstance(ref, str) and os.path.isfile(ref)


def _code_dir(command: Sequence[str]) -> str:
    """Where a tracked command's code lives: the script it runs, else the cwd.

    Arguments after the program come first (``python clean.py`` names clean.py, not python).
    """
    for arg in [*command[1:], *command[:1]]:
        if os.path.isfile(arg):
            return os.path.dirname(os.path.abspath(arg))
    return os.getcwd()


@requires(
    lambda url=None, *, name=None, git=True, spool=None, probes_off=(), openlineage=None: all_of(
        is_optional_str(url, "url", empty=False),
        is_optional_str(name, "name"),
        True if spool is None else is_path(spool, "spool"),
        is_optional_str(openlineage, "openlineage", empty=False),
    )
)
def tracker(
    url: str | None = None,
    *,
    name: str | None = None,
    git: bool = True,
    spool: str | os.PathLike[str] | None = None,
    probes_off: Sequence[str] = (),
    openlineage: str | None = None,
) -> Tracker:
    """Start tracking a run; use the result in a ``with`` block.

    ``url`` overrides the configured store (``PROVSTORE_URL``, ``[tool.provstore]``, default
    SQLite file); ``name`` labels the run; ``git=False`` skips reading the code's git state;
    ``spool`` (or ``PROVSTORE_SPOOL``) writes the run as a bundle into that directory instead
    of to a database; ``probes_off`` names probes not to run (``imports``, ``conda``,
    ``gpu``, ``container``, ``job``), besides those ``[tool.provstore] probes_off`` names;
    ``openlineage`` (or ``[tool.provstore] openlineage_url``) sends the run's OpenLineage
    events there as it starts and ends (:mod:`provstore.tracking.lineage_events`: never
    blocking the run).
    """
    folder = None if spool is None else os.fspath(spool)
    settings = resolve(url, spool=folder)
    if probes_off:
        if isinstance(probes_off, str):
            raise UsageError("probes_off is a list of probe names, e.g. probes_off=['gpu']")
        check_probes(list(probes_off))
        off = tuple(dict.fromkeys((*settings.probes_off, *probes_off)))
        settings = dataclasses.replace(settings, probes_off=off)
    return Tracker(settings, name=name, git=git, openlineage=openlineage)


def _spare_core() -> bool:
    """Whether a writer process would find a core idle.

    This process may run on two cores or more, and either no other task is running right
    now (Linux: ``/proc/loadavg``, three looks) or the last minute's load leaves a core free.
    On a busy machine the two processes only share the cores there are, and the pipe's own
    work (rows pickled and read back, about 4 µs a product) makes the burst slower, not
    faster.  The load average alone lags: a minute after a busy spell it still says busy.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return False
    running = _running_now()
    if running is not None and running < cores:
        return True
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average here
        load = 0.0
    return load < cores - 0.5


def _running_now() -> int | None:
    """Tasks running on the machine now, this one included (the fewest of three looks)."""
    seen = []
    try:
        for _ in range(3):
            with open("/proc/loadavg", "rb") as f:
                seen.append(int(f.read().split()[3].split(b"/")[0]))
    except (OSError, ValueError, IndexError):
        return None
    return min(seen)
