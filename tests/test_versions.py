"""Object format versions and schema 3: old objects keep their digests, old stores upgrade.

Fields added in a later version are optional: an object without them is framed with the
version it always had (same bytes, same digest), one with them with the newer version, which
an older reader refuses by its frame.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from provstore import CorruptObjectError, Store, tracker
from provstore.checks.fsck import fsck
from provstore.cli.main import main
from provstore.core import encoding
from provstore.core.digests import frame, hash_framed
from provstore.core.objects import Environment, Run, RunEnd, load, seal
from provstore.db import layout, schema

LIBS = bytes(32)


def _env(**extra: object) -> Environment:
    return Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "glibc 2.36", LIBS,
                       {"LANG": "C"}, (), **extra)  # type: ignore[arg-type]  # fmt: skip


# Pinned: the digest provstore gave this environment before version 2 existed.
OLD_ENVIRONMENT_DIGEST = "06386a3fb66b888515c7b61499400b7f6225049b43765d220df35ab9699823e3"


def test_an_environment_without_new_facts_keeps_its_version_1_bytes():
    sealed = seal(_env())
    assert sealed.data.startswith(b"environment 1 ")
    assert b"gpu" not in sealed.data and b"conda" not in sealed.data
    assert sealed.hex == OLD_ENVIRONMENT_DIGEST


def test_new_facts_make_a_version_2_object():
    sealed = seal(_env(gpu={"vendor": "nvidia", "driver": "535.104.05"}))
    assert sealed.data.startswith(b"environment 2 ")
    assert load(sealed.digest, sealed.data).obj == sealed.obj


def _framed(kind: str, version: int, body: dict[str, object]) -> tuple[bytes, bytes]:
    data = frame(kind, version, encoding.canonical(body))
    return hash_framed(data), data


def test_a_version_2_frame_must_carry_a_new_field():
    digest, data = _framed("environment", 2, _env().body())
    with pytest.raises(CorruptObjectError, match="holds none of its new fields"):
        load(digest, data)


def test_a_version_1_frame_may_not_carry_a_new_field():
    body = {**_env().body(), "gpu": {"driver": "1"}}
    digest, data = _framed("environment", 1, body)
    with pytest.raises(CorruptObjectError, match="version 1 needs the fields"):
        load(digest, data)


def test_a_newer_version_is_refused_clearly():
    digest, data = _framed("environment", 3, {**_env().body(), "gpu": {"driver": "1"}})
    with pytest.raises(CorruptObjectError, match="version 3 is not supported.*newer provstore"):
        load(digest, data)


def test_a_null_new_field_is_not_canonical():
    body = {**_env().body(), "gpu": None, "container": {"runtime": "docker"}}
    digest, data = _framed("environment", 2, body)
    with pytest.raises(CorruptObjectError, match="wrong type"):
        load(digest, data)


text = st.text(max_size=12)
facts = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(text, st.lists(text, max_size=3), st.dictionaries(text, text, max_size=3)),
    max_size=4,
)


@given(gpu=st.one_of(st.none(), facts), container=st.one_of(st.none(), facts))
def test_facts_round_trip(gpu, container):
    sealed = seal(_env(gpu=gpu, container=container))
    again = load(sealed.digest, sealed.data).obj
    assert again == sealed.obj
    assert isinstance(again, Environment) and again.gpu == gpu and again.container == container
    new = gpu is not None or container is not None
    assert sealed.data.startswith(b"environment 2 " if new else b"environment 1 ")


def test_run_and_end_fields_are_optional_too():
    run = Run(LIBS, LIBS, "h", "u", ("x",), "/", "/py", 1, 2, None, None)
    assert seal(run).data.startswith(b"run 1 ")
    with_job = Run(LIBS, LIBS, "h", "u", ("x",), "/", "/py", 1, 2, None, None,
                   job={"scheduler": "slurm", "id": "7"})  # fmt: skip
    assert seal(with_job).data.startswith(b"run 2 ")
    end = RunEnd(LIBS, "succeeded", 3, None, 0, ())
    assert seal(end).data.startswith(b"runend 1 ")
    assert seal(RunEnd(LIBS, "succeeded", 3, None, 0, (), imported=LIBS)).data.startswith(
        b"runend 2 "
    )


# -- schema 3 -----------------------------------------------------------------------------------


def _make_version_2(url: str) -> None:
    """What schema 2 left: the runs table without the job columns."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        on = " ON runs" if conn.dialect.name == "mysql" else ""
        for index in ("ix_runs_job", "ix_runs_job_array"):
            conn.execute(sa.text(f"DROP INDEX {index}{on}"))
        for column in ("job", "job_array"):
            conn.execute(sa.text(f"ALTER TABLE runs DROP COLUMN {column}"))
        conn.execute(schema.meta.update().values(value="2"))
    engine.dispose()


def test_a_version_2_store_is_upgraded_and_keeps_verifying(backend_url, monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    data = tmp_path / "out.txt"
    data.write_text("result\n")
    with tracker(backend_url, git=False) as t:
        product = t.track(str(data))
    _make_version_2(backend_url)
    runner = CliRunner()
    refused = runner.invoke(main, ["--url", backend_url, "log"])  # reading never upgrades
    assert refused.exit_code != 0 and "schema" in refused.stderr.lower(), refused.stderr
    with Store(backend_url):  # opening for writing upgrades
        pass
    engine = sa.create_engine(backend_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.meta.c.value)).scalar() == str(schema.SCHEMA_VERSION)
    engine.dispose()
    verified = runner.invoke(main, ["--url", backend_url, "verify", product])
    assert verified.exit_code == 0, verified.output
    found = runner.invoke(main, ["--url", backend_url, "log", "--job", "4711", "--json"])
    assert [row["run"] for row in json.loads(found.stdout)] == [t.run]


# -- schema 4 -----------------------------------------------------------------------------------

_V3 = sa.MetaData()


def _d() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary(32).with_variant(sa.types.BINARY(32), "mysql", "mariadb")


_V3_TABLES = {
    "objects": sa.Table(
        "objects", _V3,
        sa.Column("digest", _d(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(sa.LargeBinary(2**32 - 1), "mysql",
                                                        "mariadb"), nullable=False),
    ),
    "products": sa.Table(
        "products", _V3,
        sa.Column("digest", _d(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255)),
        sa.Column("content", _d()),
        sa.Column("size", sa.BigInteger),
        sa.Column("run", _d()),
        sa.Column("path", sa.String(255)),
    ),
    "product_parents": sa.Table(
        "product_parents", _V3,
        sa.Column("child", _d(), primary_key=True),
        sa.Column("parent", _d(), primary_key=True),
    ),
    "runs": sa.Table(
        "runs", _V3,
        sa.Column("digest", _d(), primary_key=True),
        sa.Column("environment", _d(), nullable=False),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("job", sa.String(255)),
        sa.Column("job_array", sa.String(255)),
    ),
    "run_ends": sa.Table(
        "run_ends", _V3,
        sa.Column("digest", _d(), primary_key=True),
        sa.Column("run", _d(), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("finished_ns", sa.BigInteger, nullable=False),
    ),
}  # fmt: skip
"""Schema 3's tables as it laid them out: every table keyed by 32-byte digests."""


def _make_version_3(url: str) -> None:
    """Lay a store out again as schema 3 did: its objects, and index rows keyed by digest."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        o = schema.objects.c
        stored = conn.execute(
            sa.select(o.digest, o.kind, o.size, o.data).where(o.data.is_not(None))
        ).all()
        schema.metadata.drop_all(conn, tables=[t for t in schema.metadata.sorted_tables
                                               if t is not schema.meta])  # fmt: skip
        _V3.create_all(conn)
        objects = [(bytes(d), k, s, bytes(b)) for d, k, s, b in stored]
        rows: dict[str, list[tuple[object, ...]]] = {name: [] for name in layout.INDEX_TABLE_NAMES}
        for digest, _, _, data in objects:
            for name, row in layout.ROWS[load(digest, data).kind](load(digest, data)):
                rows[name].append(row)
        for name, table in _V3_TABLES.items():
            values = objects if name == "objects" else rows[name]
            if values:
                conn.execute(
                    table.insert(), [dict(zip(table.c.keys(), v, strict=True)) for v in values]
                )
        conn.execute(schema.meta.update().values(value="3"))
    engine.dispose()


def test_a_version_3_store_is_refused_for_reading_then_upgraded(backend_url, tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a\n")
    with tracker(backend_url, git=False) as t:
        a = t.track(str(first))
        second.write_text("b\n")
        b = t.register_data_product("b", "1", {"k": 1}, parents=[a])
    _make_version_3(backend_url)
    runner = CliRunner()
    refused = runner.invoke(main, ["--url", backend_url, "log"])  # never misread
    assert refused.exit_code != 0 and "schema" in refused.stderr.lower(), refused.stderr
    with Store(backend_url) as store:  # opening for writing upgrades
        assert store.get(b).obj.parents == (bytes.fromhex(a),)
        lineage = store.lineage(b, direction="ancestors")
        assert set(lineage.depths) == {bytes.fromhex(a), bytes.fromhex(b)}
        assert [p.hex for p in store.products_of_run(bytes.fromhex(t.run))] != []
        assert fsck(store).ok
    engine = sa.create_engine(backend_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.meta.c.value)).scalar() == "4"
        columns = {c["name"] for c in sa.inspect(conn).get_columns("products")}
        assert "id" in columns and "digest" not in columns
    engine.dispose()
    verified = runner.invoke(main, ["--url", backend_url, "verify", b])
    assert verified.exit_code == 0, verified.output
