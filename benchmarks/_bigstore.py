"""Big stores for the lookup and lineage benchmarks, built fast and shared between them.

A store holds a DAG of ``n`` products (product ``i`` has 1-3 parents among the ~50 before it,
four products share each name) and optionally a pure chain.  Products are sealed directly and
written with :meth:`provstore.store.Store.put` in batches of :data:`BATCH` (one transaction
each, the library's own write path), not through ``tracker()`` one product at a time.

Generation is deterministic and incremental (asking for more extends the store), so
``b_lookup`` and ``b_lineage`` share one build per backend: 10k products at small scale, 1M at
full scale; the lineage benchmark adds the chain.  Up to :data:`SHARE_SEALED` products the
sealed objects are kept and put into every backend; beyond that they are sealed again per
backend (same bytes).  After a build, PostgreSQL and MariaDB get ``ANALYZE`` (what autovacuum and
InnoDB's statistics recalculation would have done by then).  Server backends use a scratch
database of their own (``<base>_bigstore``), dropped when the process ends.

Also here: statement timeouts, so a query that explodes is cancelled and reported instead of
holding the suite for minutes.
"""

from __future__ import annotations

import atexit
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from benchmarks.harness import Context

BATCH = 5_000  # products per Store.put transaction
WINDOW = 50  # parents are drawn among this many previous products
SHARE_SEALED = 60_000  # up to this many products, sealed batches are reused across backends
SCRATCH = "bigstore"  # the store: <base>_bigstore on a server
TIMEOUT_ERRORS = ("interrupted", "statement timeout", "canceling statement", "max_statement_time")

_STORES: dict[tuple[int, str], BigStore] = {}
_PLANS: dict[int, Plan] = {}
_SCRATCH: set[str] = set()


@dataclass
class Plan:
    """The products every backend gets, generated once per context and extended on demand."""

    seed: int
    dag: list[bytes] = field(default_factory=list)  # product digests, DAG order
    dag_parents: list[tuple[int, ...]] = field(default_factory=list)  # parent indexes
    dag_names: list[str] = field(default_factory=list)
    chain: list[bytes] = field(default_factory=list)
    base: list[Any] = field(default_factory=list)  # library set, environment, variables
    env: Any = None  # the Environment object (for match_environment)
    sealed: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.base, self.env = _base_objects()

    def dag_batch(self, k: int) -> list[Any]:
        """Sealed objects of DAG batch ``k``: its run, then products ``k*BATCH ...``."""
        cached = self.sealed.get(("dag", k))
        if cached is not None:
            return cached
        run = _run_object(self.base[1].digest, self.base[2].digest, k)
        items = [run]
        rng = self.rng
        assert rng is not None
        for i in range(k * BATCH, (k + 1) * BATCH):
            if i < len(self.dag):
                picks = self.dag_parents[i]
            else:
                n = min(i, rng.randint(1, 3))
                picks = tuple(rng.sample(range(max(0, i - WINDOW), i), n)) if n else ()
            name = f"dataset/part-{i // 4:07d}.parquet"
            item = _product(name, str(i % 4 + 1), i, run.digest, tuple(self.dag[j] for j in picks))
            if i == len(self.dag):
                self.dag.append(item.digest)
                self.dag_parents.append(picks)
                self.dag_names.append(name)
            items.append(item)
        if (k + 1) * BATCH <= SHARE_SEALED:
            self.sealed[("dag", k)] = items
        return items

    def chain_batch(self, k: int) -> list[Any]:
        """Sealed objects of chain batch ``k`` (steps ``k*BATCH ...``, each the next's parent)."""
        cached = self.sealed.get(("chain", k))
        if cached is not None:
            return cached
        run = _run_object(self.base[1].digest, self.base[2].digest, 1_000_000 + k)
        items = [run]
        for j in range(k * BATCH, (k + 1) * BATCH):
            parents = (self.chain[j - 1],) if j else ()
            item = _product(f"chain/step-{j:07d}", "1", -1 - j, run.digest, parents)
            if j == len(self.chain):
                self.chain.append(item.digest)
            items.append(item)
        if (k + 1) * BATCH <= SHARE_SEALED:
            self.sealed[("chain", k)] = items
        return items


@dataclass
class BigStore:
    """A store on one backend and how much of the context's :class:`Plan` it holds."""

    backend: str
    url: str
    plan: Plan
    dag_count: int = 0
    chain_count: int = 0
    build_seconds: float = 0.0

    @property
    def dag(self) -> list[bytes]:
        """The DAG products this store holds (a copy: bind it once, not per lookup)."""
        return self.plan.dag[: self.dag_count]

    @property
    def chain(self) -> list[bytes]:
        """The chain this store holds, head first (a copy)."""
        return self.plan.chain[: self.chain_count]

    @property
    def env(self) -> Any:
        return self.plan.env

    def describe(self) -> str:
        chain = f" + chain of {self.chain_count:,}" if self.chain_count else ""
        return f"DAG of {self.dag_count:,}{chain} (built in {self.build_seconds:.0f} s)"


# -- scratch databases -----------------------------------------------------------------------


def _scratch_url(ctx: Context, backend: str) -> str:
    url = ctx.scratch_url(backend, SCRATCH)
    if backend != "sqlite":
        if not _SCRATCH:
            atexit.register(_drop_scratch)
        _SCRATCH.add(url)
    return url


def _drop_scratch() -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    for text in _SCRATCH:
        parsed = make_url(text)
        pg = parsed.get_backend_name() == "postgresql"
        admin = parsed.set(database="postgres" if pg else "")
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            name = parsed.database
            with engine.connect() as conn:  # never wait long: a leftover database is harmless
                if pg:
                    conn.exec_driver_sql("SET lock_timeout = '10s'")
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    conn.exec_driver_sql("SET SESSION lock_wait_timeout = 10")
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        except Exception:  # noqa: BLE001 - a leftover scratch database is harmless
            pass
        finally:
            engine.dispose()


# -- building ----------------------------------------------------------------------------------


def _base_objects() -> tuple[list[Any], Any]:
    from provstore.core.objects import Environment, LibrarySet, Variables, seal

    dists = tuple(sorted((f"pkg{i:03d}", f"1.{i % 7}.{i % 13}") for i in range(300)))
    libs = seal(LibrarySet(dists))
    env_vars = {"LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env_obj = Environment("cpython", "3.11.9", "Linux", "6.1.0", "x86_64", "glibc 2.36",
                          libs.digest, env_vars, ())  # fmt: skip
    env = seal(env_obj)
    variables = seal(Variables({"HOME": "/home/bench", "PATH": "/usr/bin:/bin"}, ()))
    return [libs, env, variables], env_obj


def _run_object(env: bytes, variables: bytes, k: int) -> Any:
    from provstore.core.objects import Run, seal

    started = 1_790_000_000_000_000_000 + k * 1_000_000_000
    return seal(Run(env, variables, "bench-host", "bench", ("bench.py", str(k)), "/work",
                    "/usr/bin/python3", 1000 + k, started, None, f"batch-{k}"))  # fmt: skip


def _product(name: str, version: str, i: int, run: bytes, parents: tuple[bytes, ...]) -> Any:
    from provstore.core.objects import Product, seal

    content = blake3.blake3(i.to_bytes(8, "little", signed=True) + name.encode()).digest()
    meta = {"rows": i * 7 % 100_003, "stage": "transform"}
    size = (i * 4099) % 10_000_000
    return seal(Product(name, version, meta, content, size, f"/data/{name}", run,
                        tuple(sorted(parents))))  # fmt: skip


def _valid(big: BigStore) -> bool:
    """Whether the store still holds what we put (nobody wiped the database)."""
    from provstore.store import Store

    probe = [big.plan.base[1].digest, *big.dag[-1:], *big.chain[-1:]]
    try:
        with Store(big.url) as store:
            return not store.missing(probe)
    except Exception:  # noqa: BLE001 - unusable means rebuild
        return False


def bigstore(ctx: Context, backend: str, dag: int, chain: int = 0,
             log: Callable[[str], None] | None = None) -> BigStore:  # fmt: skip
    """A store on ``backend`` holding at least a DAG of ``dag`` products and a chain of ``chain``.

    Reuses (and extends) the store built earlier in this process for the same context.
    """
    from provstore.store import Store

    plan = _PLANS.get(id(ctx))
    if plan is None:
        plan = _PLANS[id(ctx)] = Plan(ctx.seed)
    key = (id(ctx), backend)
    big = _STORES.get(key)
    if big is not None and not _valid(big):
        big = None
    if big is None:
        big = _STORES[key] = BigStore(backend, _scratch_url(ctx, backend), plan)
    if big.dag_count >= dag and big.chain_count >= chain:
        return big
    started = time.perf_counter()
    with Store(big.url) as store:
        if big.dag_count == 0 and big.chain_count == 0:
            store.put(plan.base)
        for kind, have, want, make in (
            ("dag", big.dag_count, dag, plan.dag_batch),
            ("chain", big.chain_count, chain, plan.chain_batch),
        ):
            for k in range(have // BATCH, -(-want // BATCH)):
                run, *items = make(k)
                low = max(have, k * BATCH) - k * BATCH
                high = min(want, (k + 1) * BATCH) - k * BATCH
                store.put([run, *items[low:high]])  # one transaction per batch
                setattr(big, f"{kind}_count", k * BATCH + high)
                if log is not None and (k + 1) % 20 == 0:
                    log(f"{backend}: {k * BATCH + high:,} {kind} products")
        _analyze(store)
    big.build_seconds += time.perf_counter() - started
    return big


def _analyze(store: Any) -> None:
    """Refresh planner statistics, as autovacuum / InnoDB's auto-recalculation would have by
    the time a real store holds this much (SQLite gathers none unless asked; left as is).

    On PostgreSQL that is ``VACUUM ANALYZE``: since version 13 autovacuum also vacuums tables
    that only grow (``autovacuum_vacuum_insert_threshold``), which marks their pages all
    visible, so index-only scans need not visit the table.  The test server here runs with
    ``autovacuum = off`` (``/etc/postgresql/15/main/conf.d/90-ci.conf``), a test setting.
    """
    name = store.engine.dialect.name
    if name == "sqlite":
        return
    with store.engine.connect() as conn:
        if name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE TABLE objects, products, product_parents, runs")
            conn.commit()


# -- statement timeouts ------------------------------------------------------------------------

_DEADLINE = [math.inf]


def _tripped() -> int:
    return 1 if time.perf_counter() > _DEADLINE[0] else 0


def limit_dbapi(backend: str, dbapi_conn: Any, seconds: float) -> None:
    """Make the server (or SQLite) cancel statements on this connection after ``seconds``.

    SQLite checks the deadline set by :func:`deadline`; the servers use their own timeout.
    """
    if backend == "sqlite":
        dbapi_conn.set_progress_handler(_tripped, 10_000)
        return
    cursor = dbapi_conn.cursor()
    try:
        if backend == "postgresql":
            cursor.execute(f"SET statement_timeout = {max(1, int(seconds * 1000))}")
        else:
            cursor.execute(f"SET SESSION max_statement_time = {seconds:.3f}")
    finally:
        cursor.close()
    if not getattr(dbapi_conn, "autocommit", False) and backend == "postgresql":
        dbapi_conn.commit()  # a SET inside a rolled-back transaction would be undone


def limit_engine(engine: Any, backend: str, seconds: float) -> None:
    """:func:`limit_dbapi` on every connection ``engine`` opens from now on."""
    from sqlalchemy import event

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        limit_dbapi(backend, dbapi_conn, seconds)

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # pooled connections predate the listener


class deadline:  # noqa: N801 - used like a function: ``with deadline(2.0): ...``
    """Arm the SQLite deadline for the statements run inside the block."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> deadline:
        _DEADLINE[0] = time.perf_counter() + self.seconds
        return self

    def __exit__(self, *exc: object) -> None:
        _DEADLINE[0] = math.inf


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement cancelled by :func:`limit_dbapi`."""
    text = str(exc).lower()
    return any(marker in text for marker in TIMEOUT_ERRORS)
