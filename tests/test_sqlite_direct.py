"""A tracker on an existing SQLite store writes through sqlite3 alone (db/sqlite_direct.py):
the same rows as the SQLAlchemy path, the same refusals, and no SQLAlchemy import."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provstore import Store, tracker
from provstore.checks.fsck import fsck
from provstore.core.errors import SchemaVersionError, StoreError, UnsupportedStoreError
from provstore.db import dialects, index, layout, schema, sqlite_direct


def _rows(path: str) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("objects", *layout.INDEX_TABLE_NAMES)
        }
    finally:
        conn.close()


def test_layout_is_the_sqlalchemy_schema():
    tables = {table.name: table for table in schema.metadata.tables.values()}
    for name, columns in layout.COLUMNS.items():
        assert tuple(c.name for c in tables[name].columns) == columns, name
        assert layout.KEY_WIDTH[name] == len(tables[name].primary_key.columns), name
        key = tuple(c.name for c in tables[name].primary_key.columns)
        assert columns[: layout.KEY_WIDTH[name]] == key, name
    assert layout.INDEX_TABLE_NAMES == tuple(t.name for t in index.INDEX_TABLES)
    assert schema.SCHEMA_VERSION == layout.SCHEMA_VERSION


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               min_size=1, max_size=30))  # fmt: skip
def test_a_plain_file_url_names_the_file_sqlalchemy_would_open(tail):
    for url in (f"sqlite:///{tail}", f"sqlite:////tmp/{tail}", f"sqlite+pysqlite:///{tail}"):
        path = sqlite_direct.plain_file(url)
        if path is not None:
            assert path == dialects.parse_url(url).database, url


def test_urls_left_to_the_full_dialect():
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro",
                "sqlite:///file:/x.db?uri=true", "sqlite:///a%20b.db",
                "postgresql://u@h/db", "mysql+pymysql://u@h/db", "results"):  # fmt: skip
        assert sqlite_direct.plain_file(url) is None, url
    assert sqlite_direct.plain_file("./store.db") == os.path.abspath("store.db")


def _track(url: str, tmp_path, name: str) -> tuple[str, str]:
    out = tmp_path / f"{name}.bin"
    out.write_bytes(name.encode() * 100)
    with tracker(url, name=name, git=False) as t:
        raw = t.use(str(out))  # a read the direct path answers itself
        product = t.register_data_product(name, "1", {"n": 1}, path=out, parents=[raw])
        t.flush()
        t.register_data_product(f"{name}-child", parents=[product[:12]])  # opens the full store
    return t.run, product


def test_direct_writes_match_the_sqlalchemy_path(tmp_path, monkeypatch):
    direct_url = f"sqlite:///{tmp_path}/direct.db"
    full_url = f"sqlite:///{tmp_path}/full.db"
    for url in (direct_url, full_url):
        Store(url).close()  # both exist: the direct path may take the first
    opened = []
    real_open = sqlite_direct.open_writer
    monkeypatch.setattr(sqlite_direct, "open_writer", lambda u: opened.append(u) or real_open(u))
    _track(direct_url, tmp_path, "a")
    monkeypatch.setattr(sqlite_direct, "open_writer", lambda u: opened.append(u) and None)
    _track(full_url, tmp_path, "a")
    assert opened == [direct_url, full_url, full_url]  # asked again once the full store opened
    direct, full = _rows(f"{tmp_path}/direct.db"), _rows(f"{tmp_path}/full.db")
    # the runs differ (start times); everything else the two paths wrote has the same shape
    for table in direct:
        assert len(direct[table]) == len(full[table]) > 0, table
    conn = sqlite3.connect(f"{tmp_path}/direct.db")
    (end,) = conn.execute(
        "SELECT o.digest FROM run_ends e JOIN objects o ON o.id = e.id"
    ).fetchone()
    conn.close()
    with Store(direct_url) as store:
        assert fsck(store).ok
        assert store.get(end).obj.status == "succeeded"


def test_a_store_the_tracker_creates_is_then_written_directly(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    with tracker(url, git=False) as t:
        assert t._direct is not None and t._store is not None  # the full store created it
        digest = t.register_data_product("p", "1", {"k": 1})
    with Store(url) as store:
        assert store.get(digest).obj.name == "p"
        assert fsck(store).ok


def test_a_tracked_process_on_an_existing_store_does_not_import_sqlalchemy(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    Store(url).close()
    code = textwrap.dedent(f"""
        import sys
        from provstore import tracker
        with tracker({url!r}, git=False) as t:
            digest = t.register_data_product("p", "1", {{"k": 1}})
        print(digest, "sqlalchemy" in sys.modules, "pygments" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    digest, sqlalchemy_loaded, pygments_loaded = proc.stdout.split()
    assert (sqlalchemy_loaded, pygments_loaded) == ("False", "False")
    with Store(url) as store:
        assert store.get(digest).obj.name == "p"


def test_the_direct_reads_are_the_sqlalchemy_statements():
    from sqlalchemy.dialects import sqlite

    from provstore.db import queries
    from provstore.store import _PAGE

    def compiled(statement):
        done = statement.compile(dialect=sqlite.dialect())
        return " ".join(str(done).split()), list(done.positiontup)

    assert compiled(queries.DATA_BY_DIGEST) == (sqlite_direct.DATA_BY_DIGEST, ["digest"])
    assert compiled(queries.products_with_content()) == (
        sqlite_direct.PRODUCTS_WITH_CONTENT,
        ["content", "limit", "offset"],
    )
    assert sqlite_direct.PAGE == _PAGE


def test_a_tracked_process_that_reads_inputs_by_digest_stays_direct(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    data = tmp_path / "raw.csv"
    data.write_text("a,b\n1,2\n")
    with tracker(url, git=False) as first:
        raw = first.use(str(data))
        made = first.register_data_product("clean", path=None, parents=[raw])
    code = textwrap.dedent(f"""
        import sys
        from provstore import tracker
        with tracker({url!r}, git=False) as t:
            again = t.use({str(data)!r})
            t.register_data_product("report", parents=[again, {made!r}])
        print(again, "sqlalchemy" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [raw, "False"]  # the recorded input, found again


def test_another_schema_version_goes_to_the_full_store(sqlite_url):
    Store(sqlite_url).close()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE provstore_meta SET value = '99' WHERE key = 'schema_version'")
    assert sqlite_direct.open_writer(sqlite_url) is None
    with pytest.raises(SchemaVersionError, match="99"):
        with tracker(sqlite_url, git=False):
            pass


def test_a_missing_store_is_created_by_the_full_store(sqlite_url):
    assert sqlite_direct.open_writer(sqlite_url) is None
    with tracker(sqlite_url, git=False) as t:
        t.register_data_product("p")
    writer = sqlite_direct.open_writer(sqlite_url)
    assert writer is not None
    writer.close()


def test_network_file_system_refused_on_the_direct_path(sqlite_url, monkeypatch):
    Store(sqlite_url).close()
    monkeypatch.setattr(sqlite_direct, "filesystem_type", lambda directory: "nfs4")
    with pytest.raises(UnsupportedStoreError, match="PostgreSQL"):
        with tracker(sqlite_url, git=False):
            pass


def test_a_failed_batch_keeps_nothing_and_is_a_store_error(sqlite_url):
    Store(sqlite_url).close()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # a trigger that refuses one product's row
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON products WHEN NEW.name = 'bad' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END")  # fmt: skip
    before = _rows(path)
    with pytest.raises(StoreError, match="refused by a test trigger"):
        with tracker(sqlite_url, git=False) as t:
            t.register_data_product("good")
            t.register_data_product("bad")
            t.flush()
    after = _rows(path)
    names = [row[1] for row in after["products"]]
    assert "good" not in names and "bad" not in names  # the batch held both: neither kept
    assert len(after["runs"]) == len(before["runs"]) + 1  # the run itself was written at entry


def test_error_kinds():
    assert sqlite_direct.error_kind("database or disk is full") == "full"
    assert sqlite_direct.error_kind("attempt to write a readonly database") == "read-only"
    assert sqlite_direct.error_kind("database is locked") == "busy"
    assert sqlite_direct.error_kind("no such table: x") is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 30), st.sets(st.integers(0, 30), max_size=3)),
                         min_size=1, max_size=12), min_size=1, max_size=4))  # fmt: skip
def test_ids_the_insert_gave_are_the_ids_stored(tmp_path_factory, batches):
    """New rows' ids are taken from the insert, others looked up: the index says the same."""
    from provstore.core.objects import Product, seal

    def product(i: int, parents: set[int]):
        refs = tuple(sorted(seal(Product(f"p{j}", None, {}, None, None, None, None, ())).digest
                            for j in parents))  # fmt: skip
        return seal(Product(f"p{i}", None, {}, None, None, None, None, refs if i > 30 else ()))

    url = f"sqlite:///{tmp_path_factory.mktemp('ids')}/s.db"
    Store(url).close()
    writer = sqlite_direct.open_writer(url)
    expected = {}
    for batch in batches:  # products p0..p30 without parents; p31.. name some of them
        items = [product(i + 31 if parents else i, parents) for i, parents in batch]
        writer.put(items)
        expected.update({item.digest: set(item.obj.parents) for item in items})
    writer.close()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    stored = {}
    for digest, parent in conn.execute(
        "SELECT c.digest, p.digest FROM products x JOIN objects c ON c.id = x.id "
        "LEFT JOIN product_parents l ON l.child = x.id LEFT JOIN objects p ON p.id = l.parent"
    ):
        stored.setdefault(bytes(digest), set()).update([bytes(parent)] if parent else [])
    conn.close()
    assert stored == expected
    if set().union(*expected.values()) <= expected.keys():  # else fsck names the missing
        with Store(url) as store:
            assert fsck(store).ok


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 30), st.sets(st.integers(0, 40), max_size=3)),
                         min_size=1, max_size=12), min_size=1, max_size=4))  # fmt: skip
def test_packed_batches_store_the_rows_the_sqlalchemy_path_does(tmp_path_factory, batches):
    """Rows and ids alike: the direct writer's batches (columns, ids a column at a time) and
    ``Store.put``'s (rows, ids a row at a time), with parents in the batch, in an earlier
    one, never stored, objects twice and stored again."""
    from provstore.core.objects import Product, seal

    def product(i: int, parents: set[int]):
        refs = tuple(sorted(seal(Product(f"p{j}", None, {}, None, None, None, None, ())).digest
                            for j in parents))  # fmt: skip
        return seal(Product(f"p{i}", None, {}, None, None, None, None, refs if i > 30 else ()))

    where = tmp_path_factory.mktemp("same")
    direct_url, full_url = f"sqlite:///{where}/direct.db", f"sqlite:///{where}/full.db"
    Store(direct_url).close()
    writer = sqlite_direct.open_writer(direct_url)
    with Store(full_url) as store:
        for batch in batches:
            items = [product(i + 31 if parents else i, parents) for i, parents in batch]
            writer.put(items)
            store.put(items)
    writer.close()
    assert _rows(f"{where}/direct.db") == _rows(f"{where}/full.db")
