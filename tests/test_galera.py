"""provstore on a three-node MariaDB Galera cluster: many writers, a node killed, racing DDL.

Needs the cluster ``scripts/start-galera.sh`` starts (nodes on 127.0.0.1:3307-3309); without
it these tests skip, and fail under ``CI=true`` (``.ci/run`` starts it for their stage).
``PROVSTORE_TEST_GALERA_URL`` names another cluster: a multi-host URL, one host per node.
Each test works in a database of its own, named after ``PROVSTORE_TEST_MYSQL_URL``'s.

Writers are separate processes (a tracker each, one durable flush per product); writer ``w``
lists node ``w mod 3`` first, so the writers are spread over the nodes and fail over to the
others.  Afterwards every node is read on its own: its row counts, a digest of its objects
table, every product the writers were told was stored, and ``fsck``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from provstore import Store
from provstore.checks.fsck import fsck
from provstore.db import schema
from provstore.db.urls import multi_host, split_host

pytestmark = [pytest.mark.galera, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "start-galera.sh"
DEFAULT_URL = "mysql+pymysql://provstore@127.0.0.1:3307,127.0.0.1:3308,127.0.0.1:3309/"
GALERA_DIR = Path(os.environ.get("PROVSTORE_GALERA_DIR", "/tmp/provstore-galera"))
WRITERS = 16
PER_WRITER = 12  # products per writer and phase (two phases: own products, then children)
SYNC_SECONDS = 240

_CHILD = r"""
import json, os, sys, time, traceback
from provstore import tracker

# mode "parents": a second phase with parents from the next writer; "steady": until "stop"
url, ctl, mode = sys.argv[1], sys.argv[5], sys.argv[6]
writer, writers, n = (int(arg) for arg in sys.argv[2:5])
result = {"writer": writer, "errors": [], "stored": {}}

def publish(name, data):
    with open(os.path.join(ctl, name + ".tmp"), "w") as handle:
        json.dump(data, handle)
    os.replace(os.path.join(ctl, name + ".tmp"), os.path.join(ctl, name))

def wait_for(name, seconds=180):
    path = os.path.join(ctl, name)
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(name)
        time.sleep(0.02)
    with open(path) as handle:
        return json.load(handle)

def register(t, name, **kw):
    try:
        digest = t.register_data_product(name, "1", {"w": writer}, **kw)
        t.flush()
    except Exception as exc:
        result["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:400])
        return None
    result["stored"][name] = digest  # flush returned: the product is durable
    return digest

try:
    with tracker(url, git=False, name=f"galera-{writer}") as t:
        publish(f"ready-{writer}", True)
        wait_for("go")
        mine = [register(t, f"w{writer}-a{i}") for i in range(n)]
        publish(f"made-{writer}", mine)
        if mode == "parents":
            theirs = wait_for(f"made-{(writer + 1) % writers}")
            for i, parent in enumerate(theirs):
                register(t, f"w{writer}-b{i}", parents=[parent] if parent else [])
        else:
            while not os.path.exists(os.path.join(ctl, "stop")):
                register(t, f"w{writer}-s{len(result['stored'])}")
except Exception as exc:
    result["errors"].append("".join(traceback.format_exception_only(type(exc), exc))[:600])
publish(f"result-{writer}", result)
"""


# --- the cluster --------------------------------------------------------------------------------


def _base_url() -> str:
    return os.environ.get("PROVSTORE_TEST_GALERA_URL") or DEFAULT_URL


def _nodes() -> list[tuple[str, int | None]]:
    query = make_url(multi_host(_base_url())).query.get("host", ())
    tokens = (query,) if isinstance(query, str) else tuple(query)
    return [split_host(token) for token in tokens]


def _database_name() -> str:
    mysql = os.environ.get("PROVSTORE_TEST_MYSQL_URL", "mysql://root@127.0.0.1/test")
    return f"{make_url(mysql).database or 'test'}_galera"


def _prefix() -> str:
    """The base URL up to its host list (scheme and user)."""
    text = _base_url()
    scheme, _, rest = text.partition("://")
    user = rest.split("@", 1)[0] + "@" if "@" in rest.split("/", 1)[0] else ""
    return f"{scheme}://{user}"


def node_url(node: int, database: str) -> str:
    """One node alone, reading after the cluster's earlier commits (``wsrep_sync_wait``)."""
    host, port = _nodes()[node]
    where = f"{host}:{port}" if port else host
    return f"{_prefix()}{where}/{database}?init_command=SET+SESSION+wsrep_sync_wait%3D1"


def cluster_url(first: int, database: str) -> str:
    """Every node, ``first`` listed first: the writer's own node, then the others to fail to."""
    nodes = _nodes()
    order = nodes[first:] + nodes[:first]
    hosts = ",".join(f"{h}:{p}" if p else h for h, p in order)
    return f"{_prefix()}{hosts}/{database}"


def _admin(node: int, database: str | None = None) -> sa.Engine:
    """SQLAlchemy alone on one node, autocommit, reading after the cluster's earlier commits."""
    host, port = _nodes()[node]
    url = make_url(f"{_prefix()}node/").set(
        drivername="mysql+pymysql", host=host, port=port, database=database
    )
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", _sync_wait)
    return engine


def _sync_wait(dbapi_conn, _record) -> None:
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET SESSION wsrep_sync_wait = 1")


def _state(node: int) -> tuple[int, str] | None:
    engine = _admin(node)
    try:
        with engine.connect() as conn:
            rows = dict(
                conn.exec_driver_sql(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN "
                    "('wsrep_cluster_size', 'wsrep_local_state_comment')"
                ).all()
            )
        return int(rows["wsrep_cluster_size"]), str(rows["wsrep_local_state_comment"])
    except (sa.exc.DBAPIError, KeyError, ValueError):
        return None
    finally:
        engine.dispose()


def _all_synced() -> bool:
    return all(_state(node) == (3, "Synced") for node in range(3))


def _wait_synced(seconds: float = SYNC_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not _all_synced():
        if time.monotonic() > deadline:
            states = [_state(node) for node in range(3)]
            pytest.fail(f"the cluster did not get back to 3 synced nodes: {states}")
        time.sleep(1)


@pytest.fixture(scope="module")
def cluster() -> None:
    """The running cluster, or a skip (a failure under CI=true) saying how to start it."""
    if len(_nodes()) != 3:
        pytest.fail(f"PROVSTORE_TEST_GALERA_URL must name three nodes: {_base_url()}")
    if not _all_synced():
        message = (
            f"no three-node Galera cluster at {_base_url()} (start one with "
            "bash scripts/start-galera.sh)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} [CI=true: the Galera tests are required]", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def database(cluster: None) -> str:
    """An empty database on the cluster (DDL runs on every node)."""
    name = _database_name()
    _create_database(name)
    return name


def _create_database(name: str) -> None:
    """Drop and create ``name`` through node 1; return once every node has it."""
    engine = _admin(0)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
    finally:
        engine.dispose()
    for node in range(3):  # the other nodes apply the DDL a moment later
        engine = _admin(node)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)
                ).one()
        finally:
            engine.dispose()


# --- writers and checks -------------------------------------------------------------------------


def run_writers(
    database: str, ctl: Path, writers: int, per_writer: int, mode: str, during=None
) -> list[dict]:
    """Start the writers, let them go together, run ``during()`` meanwhile; their results."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                cluster_url(w % 3, database),
                str(w),
                str(writers),
                str(per_writer),
                str(ctl),
                mode,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for w in range(writers)
    ]
    try:
        deadline = time.monotonic() + 180
        while not all((ctl / f"ready-{w}").exists() for w in range(writers)):
            assert all(p.poll() is None for p in procs), _outputs(procs)
            assert time.monotonic() < deadline, "the writers did not open their trackers"
            time.sleep(0.05)
        (ctl / "go").write_text("true")
        if during is not None:
            during()
        outputs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), outputs
    return [json.loads((ctl / f"result-{w}").read_text()) for w in range(writers)]


def _outputs(procs: list[subprocess.Popen]) -> str:
    return "\n".join(p.communicate()[0] for p in procs if p.poll() is not None)


def node_summary(node: int, database: str) -> dict:
    """One node's row counts, a digest of its objects table, its product names and digests."""
    engine = _admin(node, database)
    try:
        with engine.connect() as conn:
            counts = {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                for table in schema.metadata.sorted_tables
            }
            digest = hashlib.sha256()
            for row in conn.execute(
                sa.select(schema.objects.c.digest, schema.objects.c.kind, schema.objects.c.data)
                .where(schema.objects.c.data.is_not(None))
                .order_by(schema.objects.c.digest)
            ):
                digest.update(bytes(row.digest) + row.kind.encode() + bytes(row.data))
            products = conn.execute(
                sa.select(schema.products.c.name, schema.objects.c.digest).select_from(
                    schema.products.join(
                        schema.objects, schema.objects.c.id == schema.products.c.id
                    )
                )
            ).all()
            environments = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.objects)
                .where(schema.objects.c.kind == "environment")
            ).scalar()
    finally:
        engine.dispose()
    return {
        "counts": counts,
        "objects_sha256": digest.hexdigest(),
        "products": [(name, bytes(d).hex()) for name, d in products],
        "environments": environments,
    }


def check_converged(database: str, results: list[dict]) -> dict:
    """Every node holds every stored product once, the same rows, and passes fsck."""
    stored = {name: digest for r in results for name, digest in r["stored"].items()}
    summaries = [node_summary(node, database) for node in range(3)]
    report = {"stored_by_writers": len(stored)}
    for node, summary in enumerate(summaries):
        names = [name for name, _ in summary["products"]]
        present = dict(summary["products"])
        lost = sorted(set(stored) - set(present))
        duplicated = len(names) - len(set(names))
        wrong = sorted(
            name for name in stored if name in present and present[name] != stored[name]
        )
        report[f"node{node + 1}"] = {
            "products": len(names), "objects": summary["counts"]["objects"],
            "lost": len(lost), "duplicated": duplicated,
            "objects_sha256": summary["objects_sha256"][:16],
        }  # fmt: skip
        assert not lost, f"node {node + 1} lost {lost[:5]}"
        assert duplicated == 0 and not wrong, f"node {node + 1}: {duplicated} twice, {wrong[:5]}"
        assert summary["environments"] == 1, "one environment for writers on one machine"
    assert all(s["counts"] == summaries[0]["counts"] for s in summaries), [
        s["counts"] for s in summaries
    ]
    assert len({s["objects_sha256"] for s in summaries}) == 1, "the nodes' objects differ"
    for node in range(3):
        with Store(node_url(node, database), create=False) as store:
            found = fsck(store)
            assert found.ok, (node + 1, found.problems[:5])
    return report


# --- the tests ----------------------------------------------------------------------------------


def test_sixteen_writers_over_three_nodes_with_parents_from_other_nodes(database, tmp_path):
    """Each writer's second products have parents another writer made on another node."""
    results = run_writers(database, tmp_path, WRITERS, PER_WRITER, "parents")
    errors = [e for r in results for e in r["errors"]]
    assert errors == []
    report = check_converged(database, results)
    assert report["stored_by_writers"] == WRITERS * PER_WRITER * 2
    with Store(node_url(1, database), create=False) as store:
        # a product of writer 0 (node 1) has its parent from writer 1 (node 2)
        child = store.get(results[0]["stored"]["w0-b0"], kind="product")
        assert child.obj.parents == (bytes.fromhex(results[1]["stored"]["w1-a0"]),)
    print("\ngalera 16 writers:", json.dumps(report))


def _pid(node: int) -> int:
    return int((GALERA_DIR / f"node{node}" / "mariadbd.pid").read_text().strip())


def test_kill_a_node_mid_flush_loses_and_doubles_nothing(database, tmp_path):
    """kill -9 node 3 while six writers flush; they carry on; node 3 rejoins and converges."""
    if not (GALERA_DIR / "node3" / "mariadbd.pid").exists():
        pytest.skip(f"node 3's pid file is not under {GALERA_DIR} (a cluster started elsewhere)")
    events: dict[str, object] = {}

    def kill_and_restart() -> None:
        _wait_products(database, 30)
        pid = _pid(3)
        os.kill(pid, signal.SIGKILL)
        events["killed"] = pid
        # the writers that listed node 3 first (2 and 5) carry on through nodes 1 and 2
        _wait_products(database, 20, node=0, names=("w2-%", "w5-%"))
        events["failed_over"] = True
        started = subprocess.run(
            ["bash", str(SCRIPT), "--node", "3"], capture_output=True, text=True, timeout=300
        )
        events["restart"] = started.stdout[-400:] + started.stderr[-400:]
        assert started.returncode == 0, events["restart"]
        _wait_products(database, 30, node=2)  # node 3 takes new writes again
        (tmp_path / "stop").touch()

    results = run_writers(database, tmp_path, 6, 8, "steady", during=kill_and_restart)
    assert "killed" in events and "failed_over" in events
    errors = [e for r in results for e in r["errors"]]
    assert errors == []
    _wait_synced()
    report = check_converged(database, results)
    print("\ngalera kill -9:", json.dumps(report), events["restart"].strip().splitlines()[-1:])


def _wait_products(
    database: str, more: int, node: int = 0, seconds: float = 120, names: tuple[str, ...] = ()
) -> None:
    """Wait until ``node`` holds ``more`` products more than now (named like ``names``)."""

    def count() -> int:
        engine = _admin(node, database)
        deadline = time.monotonic() + 60
        while True:
            try:
                with engine.connect() as conn:
                    query = sa.select(sa.func.count()).select_from(schema.products)
                    if names:
                        name = schema.products.c.name
                        query = query.where(sa.or_(*(name.like(n) for n in names)))
                    return int(conn.execute(query).scalar_one())
            except sa.exc.DBAPIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                engine.dispose()

    target = count() + more
    deadline = time.monotonic() + seconds
    while count() < target:
        assert time.monotonic() < deadline, f"node {node + 1} stopped growing"
        time.sleep(0.2)


def test_two_nodes_create_the_schema_at_the_same_instant(database):
    """GET_LOCK is each node's own: the DDL itself must let both creators succeed."""
    for attempt in range(5):
        if attempt:
            _create_database(database)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def open_store(node: int, barrier=barrier, errors=errors) -> None:
            url = node_url(node, database)
            try:
                barrier.wait()
                Store(url).close()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_store, args=(node,)) for node in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        tables = []
        for node in range(3):
            engine = _admin(node)
            with engine.connect() as conn:
                tables.append(
                    conn.exec_driver_sql(
                        "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema"
                        f".STATISTICS WHERE TABLE_SCHEMA = '{database}' ORDER BY 1, 2, 3"
                    ).all()
                )
                meta = conn.exec_driver_sql(f"SELECT * FROM `{database}`.provstore_meta").all()
            engine.dispose()
            assert meta == [("schema_version", str(schema.SCHEMA_VERSION))]
        assert tables[0] == tables[1] == tables[2]
        assert {row[0] for row in tables[0]} == set(schema.metadata.tables)
