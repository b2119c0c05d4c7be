"""tracker(): environments, runs and products recorded end to end, across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from provstore import Store, open_store, tracker
from provstore.core.errors import EncodingError, PathError, UnknownDigestError


def run_python(code: str, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """Run code in a fresh interpreter; return its stdout (fails the test on a non-zero exit)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SEED_QUICK_START = """
from provstore import tracker

def process_data():
    return list(range(10))

# Track a data product execution
with tracker() as t:
    # Your data processing code here
    data = process_data()

    # Register the data product
    product_id = t.register_data_product(
        name="analysis_results",
        version="1.0.0",
        metadata={"format": "parquet", "rows": len(data)}
    )
print(product_id)
"""


def test_seed_quick_start_works_and_persists(tmp_path):
    product_id = run_python(SEED_QUICK_START, cwd=str(tmp_path)).strip()
    assert len(product_id) == 64
    found = run_python(
        f"""
        from provstore import open_store
        store = open_store()
        by_name = store.find_products(name="analysis_results")
        by_digest = store.get("{product_id[:10]}")
        print(by_name[0].hex, by_digest.obj.metadata["rows"], store.url)
        """,
        cwd=str(tmp_path),
    ).split()
    assert found[0] == product_id
    assert found[1] == "10"
    assert found[2].endswith("/provstore/provstore.db")  # the default, persistent file


ENV_DIGEST = """
from provstore import tracker
with tracker() as t:
    print(t.environment)
"""


def test_environment_shared_across_processes(backend_url):
    env = {"PROVSTORE_URL": backend_url, "OMP_NUM_THREADS": "4"}
    first = run_python(ENV_DIGEST, env).strip()
    second = run_python(ENV_DIGEST, env).strip()
    unrelated = run_python(ENV_DIGEST, {**env, "SOME_UNRELATED_VARIABLE": "x"}).strip()
    other = run_python(ENV_DIGEST, {**env, "OMP_NUM_THREADS": "8"}).strip()
    assert first == second == unrelated
    assert other != first
    with Store(backend_url) as store:
        stats = store.stats()["objects"]
        assert stats["environment"] == 2
        assert stats["run"] == 4
        assert stats["libraryset"] == 1
        assert stats["importset"] == 1  # the four runs imported the same (nothing)


WRITER = """
import random, sys
from provstore import tracker
worker = int(sys.argv[1])
rng = random.Random(worker)
with tracker() as t:
    made = []
    for i in range(150):
        parents = rng.sample(made, min(len(made), rng.randint(1, 2))) if made else []
        made.append(t.register_data_product(
            name=f"w{worker}-p{i}", version="1", metadata={"i": i}, parents=parents))
        if i % 50 == 0:
            t.flush()
    print(t.environment)
"""


@pytest.mark.slow
def test_sixteen_concurrent_writers(backend_url, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PROVSTORE_URL": backend_url}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(n)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(16)
    ]  # fmt: skip
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    for _, err, code in results:
        assert code == 0, err
        assert err == ""
    assert len({out.strip() for out, _, _ in results}) == 1
    with Store(backend_url) as store:
        stats = store.stats()["objects"]
        assert stats["product"] == 16 * 150
        assert stats["environment"] == 1
        assert stats["run"] == 16 and stats["runend"] == 16
        for worker in (0, 7, 15):
            assert len(store.find_products(name=f"w{worker}-p149")) == 1


SECRETS = {
    "GITHUB_TOKEN": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "BUILD_NOTE": "key AKIAIOSFODNN7EXAMPLQ in use",
    "DATABASE_URL": "postgresql://bob:hunter2sekrit@db.example/x",
    "MY_SERVICE_PASSWORD": "correct-horse-battery-staple",
    "PYTHONSECRETTHING": "xoxb-123456789012-abcdefghijkl",
}
SECRET_VALUES = ["A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "AKIAIOSFODNN7EXAMPLQ", "hunter2sekrit",
                 "correct-horse-battery-staple", "abcdefghijkl"]  # fmt: skip

SECRET_RUN = """
import sys
from provstore import tracker
with tracker(name="secrets") as t:
    t.register_data_product(name="p", metadata={"note": "fine"})
    raise SystemExit(0)
"""


def test_secrets_never_reach_the_database(backend_url, tmp_path):
    run_python(SECRET_RUN, {"PROVSTORE_URL": backend_url, **SECRETS})
    failing = (
        "from provstore import tracker\nwith tracker() as t:\n    raise ValueError('token ghp_"
        "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 leaked')\n"
    )
    env = {**os.environ, "PROVSTORE_URL": backend_url}
    proc = subprocess.run([sys.executable, "-c", failing], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "ValueError" in proc.stderr
    everything = _dump_database(backend_url)
    assert b"<redacted>" in everything
    for secret in SECRET_VALUES:
        assert secret.encode() not in everything, secret
    assert b"bob" in everything  # the URL's user and host stay; only the password goes


def _dump_database(url: str) -> bytes:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        Store(url).close()
        return b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    chunks = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    chunks.append(
                        bytes(value)
                        if isinstance(value, (bytes, memoryview))
                        else str(value).encode()
                    )
    engine.dispose()
    return b"\n".join(chunks)


def test_failure_is_recorded_and_reraised(sqlite_url):
    with pytest.raises(RuntimeError, match="boom"):
        with tracker(sqlite_url) as t:
            kept = t.register_data_product(name="before", version="1")
            raise RuntimeError("boom")
    with Store(sqlite_url) as store:
        assert store.get(kept).obj.name == "before"
        [summary] = store.runs()
        assert summary.status == "failed" and summary.products == 1


def test_error_text_is_scrubbed_of_every_known_secret(sqlite_url, monkeypatch):
    # Neither secret has a recognisable shape: only knowing the values finds them.
    monkeypatch.setenv("LDAP_BIND_PW", "plain-env-secret-1")
    monkeypatch.setattr(sys, "argv", ["job.py", "--pw", "plain-argv-secret-2"])
    with pytest.raises(RuntimeError):
        with tracker(sqlite_url, git=False) as t:
            raise RuntimeError("bind failed: plain-env-secret-1 / plain-argv-secret-2 / ok")
    with Store(sqlite_url) as store:
        [end] = store.run_ends([bytes.fromhex(t.run)])
        error = store.get(end).obj.error
    assert error == "RuntimeError: bind failed: <redacted> / <redacted> / ok"


@pytest.mark.parametrize(
    ("code", "status", "exit_code", "error"),
    [
        (0, "succeeded", 0, None),
        (None, "succeeded", 0, None),
        (3, "failed", 3, "SystemExit: 3"),
        ("bye", "failed", 1, "SystemExit: bye"),
    ],
)
def test_sys_exit_ends_the_run_with_its_status(sqlite_url, code, status, exit_code, error):
    """``sys.exit(0)`` is a success (exit status 0), any other status a failure."""
    with pytest.raises(SystemExit):
        with tracker(sqlite_url) as t:
            t.register_data_product(name="made")
            sys.exit(code)
    with Store(sqlite_url) as store:
        [summary] = store.runs()
        assert (summary.status, summary.products) == (status, 1)
        [end] = store.run_ends([bytes.fromhex(t.run)])
        recorded = store.get(end).obj
        assert (recorded.exit_code, recorded.error) == (exit_code, error)


def test_unencodable_metadata_is_refused_before_storing(sqlite_url):
    class Thing:
        pass

    with tracker(sqlite_url) as t:
        with pytest.raises(EncodingError, match=r"cannot encode metadata\['when'\]"):
            t.register_data_product(name="bad", metadata={"when": Thing()})
        with pytest.raises(EncodingError):
            t.register_data_product(name="bad", metadata={"x": float("nan")})
    with Store(sqlite_url) as store:
        assert store.find_products(name="bad") == []
        assert store.stats()["objects"]["product"] == 0


def test_files_inputs_and_parents(sqlite_url, tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\n1,2\n")
    out = tmp_path / "out.bin"
    with tracker(sqlite_url) as t:
        source = t.use(raw)
        assert t.use(str(raw)) == source  # same content: same product
        out.write_bytes(b"\x00" * 1000)
        made = t.track(out, parents=[source])
        again = t.use(out)  # an output read back is the product itself
        assert again == made
        with pytest.raises(PathError):
            t.track(tmp_path / "missing.bin")
        with pytest.raises(UnknownDigestError):
            t.register_data_product(name="orphan", parents=["ab" * 32])
    with open_store(sqlite_url) as store:
        product = store.get(made).obj
        assert product.size == 1000 and product.path == str(out)
        assert product.parents == (bytes.fromhex(source),)
        assert store.get(source).obj.run is None
        lineage = store.lineage(made)
        assert set(lineage.depths) == {bytes.fromhex(made), bytes.fromhex(source)}
    with tracker(sqlite_url) as t2:
        assert t2.use(raw) == source  # known from an earlier run


def test_only_regular_files_become_products(sqlite_url, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    specials = [
        fifo,
        *(p for p in ("/dev/zero", "/dev/null", "/proc/self/status") if os.path.exists(p)),
    ]
    with tracker(sqlite_url) as t:
        for path in specials:
            with pytest.raises(PathError, match="not a regular file"):
                t.track(path)
            with pytest.raises(PathError, match="not a regular file"):
                t.use(path)
    with Store(sqlite_url) as store:
        assert store.stats()["objects"]["product"] == 0


def test_use_prefers_the_product_recorded_at_the_same_path(backend_url, tmp_path):
    header = "station,temperature\n"  # two header-only tables: the same bytes
    a, b, c = (tmp_path / name for name in ("a.csv", "b.csv", "c.csv"))
    a.write_text(header)
    with tracker(backend_url, name="make-a") as t:
        made_a = t.track(a)
    b.write_text(header)
    with tracker(backend_url, name="make-b") as t:
        made_b = t.track(b)
    c.write_text(header)
    with tracker(backend_url) as t:
        assert t.use(a) == made_a  # recorded at this path, though not the newest
        assert t.use(b) == made_b
        assert t.use(c) == made_b  # nothing recorded at this path: the newest with the bytes
    with tracker(backend_url) as t:
        mine = t.track(c)  # this run's own product is the newest with these bytes ...
        assert t.use(a) == made_a  # ... but a.csv's product was recorded at a.csv
        assert t.use(c) == mine
    with tracker(backend_url) as t:
        assert t.use(c) == mine  # a later run finds it in the store


def test_thousands_of_products_in_one_block(sqlite_url):
    with tracker(sqlite_url) as t:
        first = t.register_data_product(name="p0")
        digests = [first] + [
            t.register_data_product(name=f"p{i}", parents=[first]) for i in range(1, 12_001)
        ]
    with Store(sqlite_url) as store:
        assert store.stats()["objects"]["product"] == 12_001
        assert store.stats()["parent_links"] == 12_000
        assert store.get(digests[-1]).obj.name == "p12000"
        assert len(store.lineage(first, "descendants").depths) == 12_001


def test_tracker_outside_with_is_a_clear_error():
    from provstore.core.errors import UsageError

    t = tracker("sqlite:////nonexistent-dir-never/x.db")
    with pytest.raises(UsageError, match="not active"):
        t.register_data_product(name="x")


def test_non_utf8_environment_values_are_kept_losslessly(sqlite_url, tmp_path):
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    env[b"PROVSTORE_URL"] = sqlite_url.encode()
    env.update({b"LC_WEIRD": b"caf\xe9\xff", b"ODD": b"\xfe"})
    proc = subprocess.run(
        [sys.executable, "-c", "from provstore import tracker\nwith tracker() as t: print(t.run)"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Store(sqlite_url) as store:
        run = store.get(proc.stdout.strip()).obj
        variables = store.get(run.variables).obj.variables
        environment = store.get(run.environment).obj
    assert variables["ODD"] == b"\xfe"
    assert environment.variables["LC_WEIRD"] == b"caf\xe9\xff"


# Products sealed by provstore before registration built their bodies in key order (main at
# 59db49f): the same fields must keep these digests.
_RUN = bytes(range(32))
_P1, _P2 = bytes(range(32, 64)), bytes(range(64, 96))
_PINNED = [
    (("p0", "1", {"i": 0}, ()),
     "1ac12e214043f3cff08f641b291340e7b3e8d71b4c590073ca0b77d3950ae0fa"),
    (("p1", None, {}, (_P1,)),
     "535cbc8e0005473fd9f099c754f0642cf64b4401b0fd4cdadf2b840aa790e1e8"),
    (
        ("results", "2.0", {"b": [1, 2.5, None], "a": {"z": b"\x00", "y": True}, "é": "ü"},
         (_P1, _P2)),
        "bcb8588c4b28d9e52cff537d8f8a81f40cfeb5b9237aa6464b5d39e5de369281",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "pinned"), _PINNED)
def test_products_keep_their_pinned_digests(fields, pinned):
    from provstore.core.objects import Product, seal, seal_unchecked

    name, version, metadata, parents = fields
    product = Product(name, version, metadata, None, None, None, _RUN, parents)
    assert seal(product).hex == seal_unchecked(product).hex == pinned


def test_registered_products_are_sealed_as_their_fields_encode(backend_url):
    """Through ``tracker()``: the stored bytes are the frame of an independent encoding."""
    import msgpack

    from provstore.core.digests import frame, hash_framed

    metadata = {"b": [1, 2.5, None], "a": {"z": b"\x00", "y": True}, "é": "ü"}
    with tracker(backend_url, git=False) as t:
        first = t.register_data_product("p0", "1", {"i": 0})
        second = t.register_data_product("p1", parents=[first])
        third = t.register_data_product(
            "results", "2.0", metadata, parents=[second, first, bytes.fromhex(first), first]
        )
        run = bytes.fromhex(t.run)
    made = [
        (first, "p0", "1", {"i": 0}, []),
        (second, "p1", None, {}, [first]),
        (third, "results", "2.0", metadata, sorted([first, second])),
    ]
    with Store(backend_url) as store:
        for digest, name, version, meta, parents in made:
            body = {
                "content": None,
                "metadata": {k: meta[k] for k in sorted(meta)},
                "name": name,
                "parents": [bytes.fromhex(p) for p in parents],
                "path": None,
                "run": run,
                "size": None,
                "version": version,
            }
            if "a" in meta:
                body["metadata"]["a"] = {"y": True, "z": b"\x00"}
            data = frame("product", 1, msgpack.packb(body, use_bin_type=True))
            assert hash_framed(data).hex() == digest
            assert store.get(digest).data == data
