"""The shared fixtures in conftest.py do what they promise."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

if TYPE_CHECKING:
    from conftest import IsolatedEnv


@contextmanager
def connected(url: str) -> Iterator[Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def schema_objects(engine: Engine) -> list[str]:
    inspector = sa.inspect(engine)
    return sorted(inspector.get_table_names()) + sorted(inspector.get_view_names())


def test_a_test_may_leave_tables_behind(backend_url: str) -> None:
    # Runs before the emptiness test below, on every backend, so that test also proves the
    # fixture drops what an earlier test left: tables linked by a foreign key, data, a view.
    metadata = sa.MetaData()
    parent = sa.Table("leftover_parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "leftover_child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey("leftover_parent.id"), nullable=False),
    )
    with connected(backend_url) as engine:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(parent.insert().values(id=1))
            connection.execute(child.insert().values(id=1, parent_id=1))
            connection.execute(
                sa.text("CREATE VIEW leftover_view AS SELECT parent_id FROM leftover_child")
            )
        assert schema_objects(engine) == ["leftover_child", "leftover_parent", "leftover_view"]


def test_backend_database_is_empty(backend_url: str, tmp_path: Path) -> None:
    url = make_url(backend_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        assert Path(url.database).parent == tmp_path
    with connected(backend_url) as engine:
        assert schema_objects(engine) == []


def test_server_url_is_an_empty_server_database(server_url: str) -> None:
    assert make_url(server_url).get_backend_name() in {"postgresql", "mysql"}
    with connected(server_url) as engine:
        assert schema_objects(engine) == []


def test_sqlite_url_is_a_new_file_under_tmp_path(sqlite_url: str, tmp_path: Path) -> None:
    url = make_url(sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database is not None
    path = Path(url.database)
    assert path.is_absolute()
    assert path.parent == tmp_path
    assert not path.exists()


def test_isolated_env_points_away_from_the_real_store(
    isolated_env: IsolatedEnv, tmp_path: Path
) -> None:
    assert os.environ["XDG_DATA_HOME"] == str(isolated_env.data_home)
    assert os.environ["XDG_CACHE_HOME"] == str(isolated_env.cache_home)
    assert isolated_env.data_home.is_dir()
    assert isolated_env.data_home.parent == tmp_path
    assert isolated_env.cache_home.parent == tmp_path
    assert "PROVSTORE_URL" not in os.environ
    assert "PROVSTORE_SPOOL" not in os.environ
