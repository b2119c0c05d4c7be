"""fsck on every backend: corrupt objects, dangling references and a drifting index."""

from __future__ import annotations

from dataclasses import dataclass

import blake3
import msgpack
import pytest
import sqlalchemy as sa

from provstore import Store, tracker
from provstore.checks import fsck as fsck_module
from provstore.checks.fsck import FsckReport, Problem, fsck
from provstore.core.digests import frame, from_hex
from provstore.db import schema

HEALTHY_KINDS = {
    "environment": 1,
    "importset": 1,  # what the run imported
    "libraryset": 1,
    "product": 4,
    "run": 1,
    "runend": 1,
    "variables": 1,
}
SMALL_BATCH = 3  # several pages even for this small store


@dataclass(frozen=True)
class Built:
    environment: str
    run: str
    raw: str
    a: str
    b: str
    file: str


@pytest.fixture
def built(backend_url, tmp_path) -> Built:
    data = tmp_path / "in.csv"
    data.write_text("a,b\n1,2\n")
    out = tmp_path / "out.bin"
    out.write_bytes(b"x" * 100)
    with tracker(backend_url, git=False) as t:
        raw = t.use(data)
        a = t.register_data_product("a", "1", {"rows": 1}, parents=[raw])
        b = t.register_data_product("b", "2", parents=[a, raw])
        file = t.track(out, parents=[b])
    return Built(t.environment, t.run, raw, a, b, file)


@pytest.fixture
def store(backend_url, built):
    with Store(backend_url) as opened:
        yield opened


def run_fsck(store: Store, batch: int = SMALL_BATCH) -> FsckReport:
    return fsck(store, batch=batch)


def execute(store: Store, statement) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def id_of(store: Store, digest_hex: str) -> int:
    """The index's id for a digest (referred to or stored), interning it when it has none."""
    o = schema.objects
    with store.engine.begin() as conn:
        found = conn.execute(sa.select(o.c.id).where(o.c.digest == from_hex(digest_hex)))
        ident = found.scalar()
        if ident is None:
            conn.execute(o.insert().values(digest=from_hex(digest_hex)))
            ident = conn.execute(
                sa.select(o.c.id).where(o.c.digest == from_hex(digest_hex))
            ).scalar_one()
    return int(ident)


def forget(store: Store, digest_hex: str) -> None:
    """Lose an object's bytes: its digest stays, as for one referred to but never stored."""
    o = schema.objects
    execute(
        store,
        o.update()
        .where(o.c.digest == from_hex(digest_hex))
        .values(kind=None, size=None, data=None),
    )


def data_of(store: Store, digest_hex: str) -> bytes:
    o = schema.objects
    with store.engine.connect() as conn:
        return bytes(
            conn.execute(sa.select(o.c.data).where(o.c.digest == from_hex(digest_hex))).scalar()
        )


def insert_object(store: Store, kind: str, data: bytes) -> str:
    digest = blake3.blake3(data).digest()
    execute(
        store, schema.objects.insert().values(digest=digest, kind=kind, size=len(data), data=data)
    )
    return digest.hex()


def index_problems(report: FsckReport) -> list[Problem]:
    return [p for p in report.problems if p.kind == "index"]


# -- a healthy store ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, SMALL_BATCH, 2000])
def test_healthy_store_is_ok(store, batch):
    calls: list[int] = []
    report = fsck(store, batch=batch, on_progress=calls.append)
    assert report.ok, report.problems
    assert report.problems == ()
    assert report.objects == 10
    assert report.by_kind == HEALTHY_KINDS
    assert sum(calls) == 10
    assert len(calls) == -(-10 // batch)
    assert all(n <= batch for n in calls)


def test_empty_store_is_ok(backend_url):
    with Store(backend_url) as store:
        report = fsck(store)
    assert report.ok and report.objects == 0 and report.by_kind == {}


def test_batch_must_be_positive(store):
    with pytest.raises(ValueError):
        fsck(store, batch=0)


# -- objects -----------------------------------------------------------------------------------


def test_flipped_byte_is_reported_for_that_object_only(store, built):
    flipped = bytearray(data_of(store, built.a))
    flipped[-1] ^= 0x01
    o = schema.objects
    execute(store, o.update().where(o.c.digest == from_hex(built.a)).values(data=bytes(flipped)))
    report = run_fsck(store)
    assert not report.ok
    assert [(p.digest, p.kind) for p in report.problems] == [(built.a, "corrupt")]
    assert "do not hash" in report.problems[0].message
    assert report.objects == 10 and report.by_kind == HEALTHY_KINDS


def test_validly_hashed_but_non_canonical_objects_are_reported(store, built):
    body = store.get(built.a).obj.body()
    unsorted = msgpack.packb(dict(reversed(list(body.items()))), use_bin_type=True)
    non_canonical = insert_object(store, "product", frame("product", 1, unsorted))
    garbage = insert_object(store, "product", frame("product", 1, b"\xc1"))
    unknown = insert_object(store, "product", frame("gadget", 1, b"\x80"))
    no_frame = insert_object(store, "product", b"just some bytes")
    report = run_fsck(store)
    bad = {non_canonical, garbage, unknown, no_frame}
    assert {(p.digest, p.kind) for p in report.problems} == {(d, "corrupt") for d in bad}
    messages = {p.digest: p.message for p in report.problems}
    assert "gadget" in messages[unknown]
    assert report.objects == 14


def test_kind_and_size_columns_must_match_the_bytes(store, built):
    o = schema.objects
    execute(store, o.update().where(o.c.digest == from_hex(built.a)).values(kind="run"))
    execute(store, o.update().where(o.c.digest == from_hex(built.b)).values(size=1))
    report = run_fsck(store)
    found = {(p.digest, p.kind) for p in report.problems}
    assert found == {(built.a, "column"), (built.b, "column")}
    assert report.by_kind == HEALTHY_KINDS  # counted by what the bytes say


def test_missing_reference_names_the_missing_digest(store, built):
    forget(store, built.environment)
    report = run_fsck(store)
    assert [(p.digest, p.kind) for p in report.problems] == [(built.run, "reference")]
    assert built.environment in report.problems[0].message
    assert report.objects == 9


def test_missing_parent_is_reported_by_each_child(store, built):
    forget(store, built.raw)
    report = run_fsck(store)
    refs = {p.digest for p in report.problems if p.kind == "reference"}
    # a and b name raw as a parent; the run's end names it as an input
    assert built.a in refs and built.b in refs and len(refs) == 3
    assert all(built.raw in p.message for p in report.problems if p.kind == "reference")


# -- the index ---------------------------------------------------------------------------------


def test_deleted_index_row_is_reported(store, built):
    p = schema.products
    execute(store, p.delete().where(p.c.id == id_of(store, built.b)))
    report = run_fsck(store)
    problems = index_problems(report)
    assert [(q.digest, q.kind) for q in problems] == [(built.b, "index"), ("", "index")]
    assert "products" in problems[0].message and "lacks" in problems[0].message
    assert "products: 1 missing, 0 extra" in problems[1].message


def test_extra_index_rows_are_reported_wherever_their_key_falls(store, built):
    edges = schema.product_parents
    low, high = "00" * 32, "ff" * 32
    for child, parent in [(built.a, built.file), (low, built.a), (high, built.a)]:
        execute(
            store, edges.insert().values(child=id_of(store, child), parent=id_of(store, parent))
        )
    report = run_fsck(store)
    listed = {q.digest for q in index_problems(report) if q.digest}
    assert listed == {built.a, low, high}
    assert all("product_parents" in q.message for q in report.problems)
    assert "product_parents: 0 missing, 3 extra" in report.problems[-1].message
    assert built.file in next(q.message for q in report.problems if q.digest == built.a)


def test_index_row_that_differs_from_its_object_is_reported(store, built):
    p = schema.products
    execute(store, p.update().where(p.c.id == id_of(store, built.a)).values(name="z", size=5))
    report = run_fsck(store)
    problems = index_problems(report)
    assert [q.digest for q in problems] == [built.a, ""]
    assert "columns name, size" in problems[0].message
    assert "1 differing" in problems[1].message


def test_corrupt_objects_index_rows_are_not_checked(store, built):
    flipped = bytearray(data_of(store, built.b))
    flipped[-1] ^= 0x01
    o, p = schema.objects, schema.products
    execute(store, o.update().where(o.c.digest == from_hex(built.b)).values(data=bytes(flipped)))
    execute(store, p.update().where(p.c.id == id_of(store, built.b)).values(name="other"))
    report = run_fsck(store)
    assert [(q.digest, q.kind) for q in report.problems] == [(built.b, "corrupt")]


def test_index_problems_are_listed_up_to_a_limit_then_summed(store, built, monkeypatch):
    monkeypatch.setattr(fsck_module, "LISTED_PER_TABLE", 2)
    execute(store, schema.products.delete())
    problems = index_problems(run_fsck(store))
    assert len([q for q in problems if q.digest]) == 2
    assert "products: 4 missing" in problems[-1].message


def test_reindex_clears_index_problems_but_not_object_problems(store, built):
    p, edges = schema.products, schema.product_parents
    forget(store, built.environment)
    execute(store, p.delete().where(p.c.id == id_of(store, built.b)))
    execute(
        store, edges.insert().values(child=id_of(store, built.a), parent=id_of(store, built.file))
    )
    before = run_fsck(store)
    assert {q.kind for q in before.problems} == {"reference", "index"}
    store.reindex()
    after = run_fsck(store)
    assert [(q.digest, q.kind) for q in after.problems] == [(built.run, "reference")]


def test_index_of_vanished_objects_is_all_extra(store, monkeypatch):
    monkeypatch.setattr(fsck_module, "LISTED_PER_TABLE", 2)
    o = schema.objects
    execute(store, o.update().values(kind=None, size=None, data=None))  # every object lost
    report = run_fsck(store)
    assert report.objects == 0 and report.by_kind == {}
    listed = [q for q in report.problems if q.digest]
    assert len(listed) == 2 + 2 + 1 + 1  # products, product_parents (capped), runs, run_ends
    summaries = [q.message for q in report.problems if not q.digest]
    assert any("products: 0 missing, 4 extra" in m for m in summaries)
    assert any("product_parents: 0 missing, 4 extra" in m for m in summaries)
    assert any("run_ends: 0 missing, 1 extra" in m for m in summaries)
