"""Hostile input: bundles and objects that would forge or strand facts.

Every case is refused with a one-line reason naming the object, and the store's tables are
byte for byte what they were, on every backend; the same objects put into a store by hand
(bypassing import) are flagged by ``fsck``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from provstore import BundleError, EncodingError, Store, WrongKindError, tracker
from provstore.checks.fsck import fsck
from provstore.core import encoding
from provstore.core.digests import frame, hash_framed
from provstore.core.objects import (
    MAX_OBJECT_SIZE,
    Environment,
    Product,
    Run,
    RunEnd,
    Sealed,
    seal,
)
from provstore.db import schema
from provstore.exchange.bundle import BundleWriter


@dataclass(frozen=True)
class Recorded:
    """What a tracked run left in the store."""

    run: bytes
    end: bytes
    product: bytes
    environment: bytes
    variables: bytes
    libraryset: bytes


@pytest.fixture
def recorded(backend_url: str) -> Recorded:
    with tracker(backend_url, git=False) as t:
        product = t.register_data_product("made", "1", {"rows": 3})
    with Store(backend_url) as store:
        run = store.get(t.run, kind="run")
        [end] = store.run_ends([run.digest])
        env = store.get(t.environment, kind="environment")
        assert isinstance(run.obj, Run) and isinstance(env.obj, Environment)
        return Recorded(
            run.digest, end, bytes.fromhex(product), env.digest, run.obj.variables,
            env.obj.libraryset,
        )  # fmt: skip


def _forged(obj: object) -> Sealed:
    """Seal without any of seal's checks: bytes a hostile site could send."""
    body = encoding.canonical(obj.body())  # type: ignore[attr-defined]
    data = frame(obj.KIND, obj.frame_version, body)  # type: ignore[attr-defined]
    return Sealed(hash_framed(data), obj.KIND, data, obj)  # type: ignore[attr-defined,arg-type]


def _product(name: str = "p", run: bytes | None = None, parents: tuple[bytes, ...] = (),
             metadata: dict | None = None) -> Product:  # fmt: skip
    return Product(name, "1", metadata or {}, None, None, None, run, parents)


def _run(env: bytes, variables: bytes) -> Run:
    return Run(env, variables, "host", "user", ("x.py",), "/w", "/py", 1, 7, None, None)


# Each case: the objects of a hostile bundle (last one is the root) built from what is stored.
Case = Callable[[Recorded], list[Sealed]]


def _run_of_a_product(r: Recorded) -> list[Sealed]:
    source = _forged(_product("source"))
    return [source, _forged(_product("made", run=source.digest))]


def _parent_that_is_a_run(r: Recorded) -> list[Sealed]:
    return [_forged(_product("child", parents=(r.run,)))]


def _libraryset_that_is_a_run(r: Recorded) -> list[Sealed]:
    env = Environment("cpython", "3.11", "Linux", "6", "x86_64", "", r.run, {}, ())
    return [_forged(env)]


def _end_of_a_product(r: Recorded) -> list[Sealed]:
    return [_forged(RunEnd(r.product, "succeeded", 9, None, 0, ()))]


def _environment_that_is_a_product(r: Recorded) -> list[Sealed]:
    source = _forged(_product("source"))
    return [source, _forged(_run(source.digest, r.variables))]


def _second_end(r: Recorded) -> list[Sealed]:
    return [_forged(RunEnd(r.run, "failed", 10, "forged", 1, ()))]


def _nul_in_a_name(r: Recorded) -> list[Sealed]:
    return [_forged(_product("bad\x00name"))]


def _oversized(r: Recorded) -> list[Sealed]:
    return [_forged(_product("huge", metadata={"blob": b"\x01" * (MAX_OBJECT_SIZE + 1)}))]


CASES: dict[str, tuple[Case, str]] = {
    "product run names a product": (_run_of_a_product, "is a product, but a product's run"),
    "parent names a run": (_parent_that_is_a_run, "is a run, but a product's parents"),
    "libraryset names a run": (_libraryset_that_is_a_run, "is a run, but a environment's"),
    "run end names a product": (_end_of_a_product, "is a product, but a runend's run"),
    "run environment names a product": (_environment_that_is_a_product, "is a product, but"),
    "forged second end": (_second_end, "a run ends once"),
    "NUL in a name": (_nul_in_a_name, "NUL character"),
    "oversized object": (_oversized, "bytes"),
}


def _bundle(items: list[Sealed], *, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    writer = BundleWriter(buf, [items[-1].digest], compress=compress)
    for item in items:
        writer.add(item.digest, item.data)
    writer.close()
    return buf.getvalue()


def _tables(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in key order, as plain values."""
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(table.select().order_by(*table.primary_key.columns))
            out[table.name] = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows
            ]
    engine.dispose()
    return out


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_bundle_is_rejected_and_nothing_changes(backend_url, recorded, case):
    build, reason = CASES[case]
    items = build(recorded)
    before = _tables(backend_url)
    with Store(backend_url) as store, pytest.raises(BundleError) as caught:
        store.import_bundle(io.BytesIO(_bundle(items)))
    message = str(caught.value)
    assert "\n" not in message and reason in message
    assert items[-1].hex in message or items[0].hex in message  # the object is named
    assert _tables(backend_url) == before


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_bundle_is_rejected_and_nothing_changes(backend_url, recorded, damage):
    payload = bytearray(_bundle([seal(_product("fine"))], compress=False))
    if damage == "flip":
        payload[len(payload) // 2] ^= 0x10
    else:
        del payload[-20:]
    before = _tables(backend_url)
    with Store(backend_url) as store, pytest.raises(BundleError) as caught:
        store.import_bundle(io.BytesIO(bytes(payload)))
    assert "\n" not in str(caught.value)
    assert _tables(backend_url) == before


FSCK_CASES = [case for case in CASES if case not in ("NUL in a name", "oversized object")]


@pytest.mark.parametrize("case", FSCK_CASES, ids=FSCK_CASES)
def test_fsck_flags_hostile_objects_put_by_hand(backend_url, recorded, case):
    build, reason = CASES[case]
    items = build(recorded)
    with Store(backend_url) as store:
        assert fsck(store).ok
        store.put(items)
        report = fsck(store)
    flagged = {p.digest: p for p in report.problems if p.kind in ("reference", "conflict")}
    assert items[-1].hex in flagged, report.problems
    assert reason in flagged[items[-1].hex].message


def test_verify_fails_on_a_wrong_kind_in_the_closure(backend_url, recorded):
    items = _parent_that_is_a_run(recorded)
    with Store(backend_url) as store:
        store.put(items)
        report = store.verify(items[-1].hex, environment=False)
    [integrity] = [c for c in report.checks if c.name == "integrity"]
    assert (
        integrity.status == "failed" and "is a run, but a product's parents" in integrity.message
    )


def test_tracker_refuses_a_parent_that_is_not_a_product(backend_url, recorded):
    with tracker(backend_url, git=False) as t:
        with pytest.raises(WrongKindError, match="is a run, but this needs a product"):
            t.register_data_product("child", parents=[recorded.run.hex()])
        with pytest.raises(WrongKindError):
            t.register_data_product("child", parents=[t.run])


# -- what can be recorded can be moved (item 3), text every backend keeps (item 4) --------------


def test_an_object_too_big_to_move_is_refused_when_registered(backend_url, tmp_path):
    with tracker(backend_url, git=False) as t:
        small = t.register_data_product("small", "1")
        with pytest.raises(EncodingError, match=f"at most {MAX_OBJECT_SIZE:,} bytes"):
            t.register_data_product("huge", "1", {"blob": "x" * (MAX_OBJECT_SIZE + 1)})
        after = t.register_data_product("after", "1")
    with Store(backend_url) as store:
        names = {p.obj.name for p in store.find_products()}  # type: ignore[union-attr]
        assert names == {"small", "after"}
        assert store.runs(1)[0].status == "succeeded"
        buf = io.BytesIO()
        store.export_bundle([small, after], buf)
    target = f"sqlite:///{tmp_path}/target.db"
    with Store(target) as other:
        assert other.import_bundle(io.BytesIO(buf.getvalue())).added > 0


def test_the_largest_object_moves_between_every_backend(backend_url, tmp_path):
    pad = MAX_OBJECT_SIZE - 1000
    with tracker(backend_url, git=False) as t:
        big = t.register_data_product("big", "1", {"blob": b"\x00" * pad})
    buf = io.BytesIO()
    with Store(backend_url) as store:
        store.export_bundle([big], buf)
    target = f"sqlite:///{tmp_path}/target.db"
    with Store(target) as other:
        other.import_bundle(io.BytesIO(buf.getvalue()))
        assert other.get(big).obj.metadata["blob"] == b"\x00" * pad  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["name", "version"])
def test_nul_text_is_refused_when_registered_and_siblings_survive(backend_url, field):
    bad = {"name": "a\x00b"} if field == "name" else {"name": "n", "version": "1\x00"}
    with tracker(backend_url, git=False) as t:
        kept = t.register_data_product("kept", "1")
        with pytest.raises(EncodingError, match="NUL character"):
            t.register_data_product(**bad)
    with Store(backend_url) as store:
        assert [p.hex for p in store.find_products()] == [kept]
        assert store.runs(1)[0].status == "succeeded"


# -- text compares the same everywhere (item 7), counts are exact (item 11) ---------------------


def test_trailing_spaces_are_significant_on_every_backend(backend_url):
    with tracker(backend_url, git=False) as t:
        plain = t.register_data_product("model", "1.0")
        padded = t.register_data_product("model", "1.0 ")
        spaced = t.register_data_product("model ", "1.0")
    with Store(backend_url) as store:
        assert [p.hex for p in store.find_products(name="model", version="1.0")] == [plain]
        assert [p.hex for p in store.find_products(name="model", version="1.0 ")] == [padded]
        assert [p.hex for p in store.find_products(name="model ")] == [spaced]


def test_concurrent_imports_of_one_bundle_count_exactly(backend_url, tmp_path):
    source = f"sqlite:///{tmp_path}/source.db"
    with tracker(source, git=False) as t:
        parent = None
        for i in range(3000):
            parent = t.register_data_product(f"p{i}", "1", parents=[parent] if parent else [])
    buf = io.BytesIO()
    with Store(source) as store:
        total = store.export_bundle([parent], buf).objects
    payload = buf.getvalue()
    Store(backend_url).close()
    results = []
    barrier = threading.Barrier(3)

    def work() -> None:
        with Store(backend_url) as store:
            barrier.wait()
            results.append(store.import_bundle(io.BytesIO(payload)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert sum(r.added for r in results) == total
    assert all(r.added + r.present == total for r in results)


# -- a version-1 store is upgraded in place -----------------------------------------------------


def _make_version_1(url: str, second_end: Sealed) -> None:
    """Turn a fresh store into what schema 1 left: no unique end per run, PAD SPACE on MySQL."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        name = conn.dialect.name
        drop = "DROP INDEX ux_run_ends_run" + (" ON run_ends" if name == "mysql" else "")
        conn.execute(sa.text(drop))
        conn.execute(sa.text("CREATE INDEX ix_run_ends_run ON run_ends (run)"))
        if name == "mysql":
            for table in schema.metadata.sorted_tables:
                conn.execute(sa.text(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET "
                                     "utf8mb4 COLLATE utf8mb4_bin"))  # fmt: skip
        obj = second_end.obj
        conn.execute(schema.objects.insert().values(
            digest=second_end.digest, kind="runend", size=len(second_end.data),
            data=second_end.data))  # fmt: skip
        o = schema.objects.c
        wanted = [second_end.digest, obj.run]  # type: ignore[union-attr]
        ids = {bytes(d): i for d, i in conn.execute(
            sa.select(o.digest, o.id).where(o.digest.in_(wanted)))}  # fmt: skip
        conn.execute(schema.run_ends.insert().values(
            id=ids[second_end.digest], run=ids[obj.run],  # type: ignore[union-attr]
            status=obj.status, finished_ns=obj.finished_ns))  # type: ignore[union-attr]  # fmt: skip
        conn.execute(schema.meta.update().values(value="1"))
    engine.dispose()


def test_a_version_1_store_is_upgraded_in_place(backend_url, recorded):
    [second] = _second_end(recorded)
    _make_version_1(backend_url, second)
    with Store(backend_url) as store:  # opening upgrades
        ends = store.run_ends([recorded.run])
        report = fsck(store)
    # the rebuilt index keeps the end stored first (objects are read back in id order; a real
    # schema 1-3 store gets its ids in digest order when it is upgraded to schema 4)
    assert ends == [recorded.end]
    flagged = [p for p in report.problems if p.kind == "conflict"]
    assert [p.digest for p in flagged] == [second.digest.hex()]
    engine = sa.create_engine(backend_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.meta.c.value)).scalar() == str(schema.SCHEMA_VERSION)
        indexes = {i["name"]: i["unique"] for i in sa.inspect(conn).get_indexes("run_ends")}
        if conn.dialect.name == "mysql":
            collations = (
                conn.execute(
                    sa.text(
                        "SELECT DISTINCT collation_name FROM information_schema.columns WHERE "
                        "table_schema = DATABASE() AND collation_name IS NOT NULL"
                    )
                )
                .scalars()
                .all()
            )
            assert collations == ["utf8mb4_nopad_bin"]
    engine.dispose()
    assert indexes == {"ux_run_ends_run": True} or indexes.get("ux_run_ends_run") == 1


def test_a_spool_bundle_with_nul_text_is_rejected_and_ingest_goes_on(backend_url, tmp_path):
    spool = tmp_path / "spool"
    for name in ("first", "second"):
        with tracker(f"sqlite:///{tmp_path}/x.db", git=False, spool=str(spool)) as t:
            t.register_data_product(name, "1")
    bad = _forged(_product("bad\x00name"))
    (spool / ("0" * 64 + ".psb")).write_bytes(_bundle([bad]))  # sorts first
    from provstore.tracking.spool import ingest

    with Store(backend_url) as store:
        report = ingest(store, str(spool))
        names = {p.obj.name for p in store.find_products()}  # type: ignore[union-attr]
    assert len(report.ingested) == 2 and list(report.rejected) == ["0" * 64 + ".psb"]
    assert "NUL character" in report.rejected["0" * 64 + ".psb"]
    assert names == {"first", "second"}
    assert (spool / "rejected" / ("0" * 64 + ".psb")).exists()


def test_a_read_only_command_on_a_version_1_store_says_how_to_upgrade(backend_url, recorded):
    del recorded
    engine = sa.create_engine(backend_url)
    with engine.begin() as conn:
        conn.execute(schema.meta.update().values(value="1"))
    engine.dispose()
    from provstore import SchemaVersionError
    from provstore.api import open_store

    with pytest.raises(SchemaVersionError, match="upgrades the store when it next writes"):
        open_store(backend_url, create=False)
    with Store(backend_url) as store:  # opening for writing upgrades
        assert store.stats()["objects"]["run"] == 1
