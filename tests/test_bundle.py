"""Bundles: round trips between backends, idempotence, and rejection that changes nothing."""

from __future__ import annotations

import io
import os
import random
import signal
import struct
import subprocess
import time
import zlib

import blake3
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provstore import Store, tracker
from provstore.checks.verify import verify
from provstore.core.digests import frame
from provstore.core.errors import BundleError, OutputExistsError, PathError
from provstore.core.objects import LibrarySet, Product, seal
from provstore.db import layout, schema
from provstore.exchange.bundle import MAGIC, BundleReader, Limits, write_bundle


def _record(url: str, tmp_path, depth: int = 3) -> str:
    data = tmp_path / "input.csv"
    data.write_text("a,b\n1,2\n")
    with tracker(url, name="bundle-source") as t:
        parent = t.use(data)
        for i in range(depth):
            parent = t.register_data_product(name=f"step{i}", version="1", metadata={"i": i},
                                             parents=[parent])  # fmt: skip
    return parent


def _snapshot(url: str) -> dict[str, set]:
    """Every table's rows, with digests for the ids each store gives in its own order."""
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        o = schema.objects.c
        names = {i: bytes(d) for i, d in conn.execute(sa.select(o.id, o.digest))}
        for table in schema.metadata.sorted_tables:
            refs = layout.REFS.get(table.name, (0,) if table is schema.objects else ())
            rows = set()
            for row in conn.execute(table.select()):
                values = [bytes(v) if isinstance(v, memoryview) else v for v in row]
                for i in refs:
                    values[i] = None if values[i] is None else names[values[i]]
                rows.add(tuple(values))
            out[table.name] = rows
    engine.dispose()
    return out


def _export(url: str, ref: str) -> bytes:
    buf = io.BytesIO()
    with Store(url) as store:
        store.export_bundle([ref], buf)
    return buf.getvalue()


def test_round_trip_across_backends(backend_url, tmp_path):
    sqlite_url = f"sqlite:///{tmp_path}/source.db"
    product = _record(sqlite_url, tmp_path)
    bundle = _export(sqlite_url, product)
    with Store(backend_url) as target:
        result = target.import_bundle(io.BytesIO(bundle))
    assert result.roots == (product,)
    with Store(backend_url) as target, Store(sqlite_url) as source:
        theirs = set(source.lineage(product).depths)
        assert set(target.lineage(product).depths) == theirs
        assert target.get(product).obj == source.get(product).obj
        assert target.environment_of(product).digest == source.environment_of(product).digest
        report = verify(target, product, environment=False)
        assert [c.status for c in report.checks if c.name == "integrity"] == ["ok"]
        again = target.import_bundle(io.BytesIO(bundle))
        assert again.added == 0 and again.present == result.added + result.present


def test_bundles_go_to_and_come_from_paths(tmp_path):
    source_url, target_url = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    product = _record(source_url, tmp_path)
    path = tmp_path / "out.psb"
    with Store(source_url) as source:
        written = source.export_bundle([product], path)
        assert path.read_bytes() == _export(source_url, product)
        with pytest.raises(OutputExistsError):
            source.export_bundle([product], str(path))  # an existing file is kept
    with Store(target_url) as target:
        result = target.import_bundle(str(path))
        assert result.roots == (product,) and result.added == written.objects
        with pytest.raises(PathError, match="No such file"):
            target.import_bundle(tmp_path / "missing.psb")


def test_sites_converge(backend_url, tmp_path):
    sqlite_url = f"sqlite:///{tmp_path}/site-a.db"
    a_product = _record(sqlite_url, tmp_path)
    b_product = _record(backend_url, tmp_path, 2)
    to_b = _export(sqlite_url, a_product)
    to_a = _export(backend_url, b_product)
    with Store(backend_url) as b:
        b.import_bundle(io.BytesIO(to_b))
    with Store(sqlite_url) as a:
        a.import_bundle(io.BytesIO(to_a))
    assert _snapshot(sqlite_url)["objects"] == _snapshot(backend_url)["objects"]


@pytest.fixture
def bundle_and_target(sqlite_url, tmp_path):
    product = _record(sqlite_url, tmp_path)
    bundle = _export(sqlite_url, product)
    target = f"sqlite:///{tmp_path}/target.db"
    Store(target).close()
    return bundle, target


def _rejected_and_unchanged(target: str, payload: bytes) -> None:
    before = _snapshot(target)
    with Store(target) as store, pytest.raises(BundleError):
        store.import_bundle(io.BytesIO(payload))
    assert _snapshot(target) == before


def test_every_sampled_byte_flip_is_rejected(bundle_and_target):
    bundle, target = bundle_and_target
    rng = random.Random(7)
    offsets = sorted(
        set(rng.sample(range(len(bundle)), min(len(bundle), 150))) | {0, 8, len(bundle) - 1}
    )
    for offset in offsets:
        damaged = bytearray(bundle)
        damaged[offset] ^= 1 << rng.randrange(8)
        if _inert(bundle, bytes(damaged)):
            continue  # a padding bit deflate ignores: the bundle still says exactly the same
        _rejected_and_unchanged(target, bytes(damaged))


def _inert(bundle: bytes, damaged: bytes) -> bool:
    """Whether a flip fell in the compressed body's padding bits (decoded body unchanged)."""
    start = 14 + 32 * int.from_bytes(bundle[10:14], "big")  # magic, header, roots
    if bundle[:start] != damaged[:start] or bundle[9] != 1:  # not the zlib-compressed body
        return False
    try:
        return zlib.decompress(damaged[start:]) == zlib.decompress(bundle[start:])
    except zlib.error:
        return False


def test_a_flip_in_the_body_is_inert_only_when_it_decodes_the_same(bundle_and_target):
    bundle, _ = bundle_and_target
    start = 14 + 32 * int.from_bytes(bundle[10:14], "big")
    assert zlib.decompress(bundle[start:])  # the layout _inert assumes
    flipped = bytearray(bundle)
    flipped[start + 20] ^= 0x10
    assert not _inert(bundle, bytes(flipped))


def test_every_sampled_truncation_is_rejected(bundle_and_target):
    bundle, target = bundle_and_target
    for cut in sorted(
        {0, 1, 7, 8, 13, len(bundle) - 1, *random.Random(3).sample(range(len(bundle)), 60)}
    ):
        _rejected_and_unchanged(target, bundle[:cut])
    _rejected_and_unchanged(target, bundle + b"\x00")


@given(st.binary(max_size=300))
@settings(max_examples=60, deadline=None)
def test_garbage_is_rejected(garbage):
    with pytest.raises(BundleError):
        reader = BundleReader(io.BytesIO(garbage))
        list(reader.objects())
    with pytest.raises(BundleError):
        reader = BundleReader(io.BytesIO(MAGIC + garbage))
        list(reader.objects())


def _craft(objects, roots=None, compress=False) -> bytes:
    buf = io.BytesIO()
    objects = list(objects)
    write_bundle(buf, roots if roots is not None else [objects[-1][0]], objects, compress=compress)
    return buf.getvalue()


def test_crafted_bad_objects_are_rejected_naming_them(bundle_and_target):
    _, target = bundle_and_target
    good = seal(LibrarySet((("a", "1"),)))
    # bytes that do not match the digest the record claims
    wrong = _craft([(good.digest, good.data.replace(b"a", b"b"))])
    with Store(target) as store, pytest.raises(BundleError, match="do not hash") as info:
        store.import_bundle(io.BytesIO(wrong))
    assert info.value.digest == good.hex
    # a correctly hashed but non-canonical body (unsorted map)
    body = b"\x82\xa1b\x01\xa1a\x02"
    data = frame("libraryset", 1, body)
    digest = blake3.blake3(data).digest()
    with Store(target) as store, pytest.raises(BundleError, match="invalid object") as info:
        store.import_bundle(io.BytesIO(_craft([(digest, data)])))
    assert info.value.digest == digest.hex()
    # a product whose parent is neither in the bundle nor in the store
    orphan = seal(Product("orphan", None, {}, None, None, None, None, (b"\x07" * 32,)))
    with Store(target) as store, pytest.raises(BundleError, match="neither earlier") as info:
        store.import_bundle(io.BytesIO(_craft([(orphan.digest, orphan.data)])))
    assert info.value.digest == orphan.hex
    # a root that is not in the bundle
    with Store(target) as store, pytest.raises(BundleError, match="root"):
        store.import_bundle(io.BytesIO(_craft([(good.digest, good.data)], roots=[b"\x01" * 32])))


@pytest.mark.parametrize("compress", [False, True])
def test_hostile_sizes_and_nesting_are_bounded(bundle_and_target, compress):
    _, target = bundle_and_target
    huge_array = frame("libraryset", 1, b"\xdd\xff\xff\xff\xff")  # array of 2**32 - 1 elements
    deep = frame("libraryset", 1, b"\x91" * 100_000 + b"\xc0")  # nesting 100,000 deep
    for data in (huge_array, deep):
        digest = blake3.blake3(data).digest()
        start = time.perf_counter()
        with Store(target) as store, pytest.raises(BundleError):
            store.import_bundle(io.BytesIO(_craft([(digest, data)], compress=compress)))
        assert time.perf_counter() - start < 30  # bounded, not a wall-clock benchmark
    # a record that claims more bytes than the limit is refused before reading them
    claim = MAGIC + struct.pack(">BBI", 1, 0, 0) + struct.pack(">I", 0xFFFFFFF0) + b"\x07" * 32
    with pytest.raises(BundleError, match="at most 1,048,576 bytes.*" + "07" * 32):
        list(BundleReader(io.BytesIO(claim), Limits(max_object=1 << 20)).objects())
    # a zip bomb: a few KB that inflate to gigabytes never get inflated beyond one record
    bomb_body = struct.pack(">I", 0xFFFFFFF0) + b"\x00" * (1 << 24)
    import zlib

    bomb = MAGIC + struct.pack(">BBI", 1, 1, 0) + zlib.compress(bomb_body, 9)
    with pytest.raises(BundleError, match="at most"):
        list(BundleReader(io.BytesIO(bomb), Limits(max_object=1 << 20)).objects())


def test_cli_import_twice_and_reject_exit_codes(bundle_and_target, tmp_path, script):
    bundle, target = bundle_and_target
    path = tmp_path / "b.psb"
    path.write_bytes(bundle)
    env = {**os.environ, "PROVSTORE_URL": target}
    run = lambda *a: subprocess.run([script.path, *a], capture_output=True, text=True, env=env)  # noqa: E731
    first = run("import", str(path), "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count('"added"') == 1
    second = run("import", str(path), "--json")
    assert second.returncode == 0 and '"added": 0' in second.stdout
    path.write_bytes(bundle[:-5])
    truncated = run("import", str(path))
    assert truncated.returncode == 1 and "truncated" in truncated.stderr
    assert run("import", str(tmp_path / "none.psb")).returncode == 2
    path.write_bytes(os.urandom(200))
    assert run("import", str(path)).returncode == 1
    path.write_bytes(b"")
    assert run("import", str(path)).returncode == 1


def test_cli_export_round_trip(sqlite_url, tmp_path, script):
    product = _record(sqlite_url, tmp_path)
    out = tmp_path / "x.psb"
    env = {**os.environ, "PROVSTORE_URL": sqlite_url}
    proc = subprocess.run([script.path, "export", product[:12], "-o", str(out)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    other = f"sqlite:///{tmp_path}/other.db"
    with Store(other) as store:
        assert store.import_bundle(out.open("rb")).roots == (product,)
        assert store.get(product).obj.name == "step2"


def test_sigkill_mid_import_leaves_store_unchanged(tmp_path, script):
    source = f"sqlite:///{tmp_path}/source.db"
    with tracker(source) as t:
        for i in range(3000):
            t.register_data_product(name=f"p{i}", metadata={"i": i})
        root = t.run
    bundle = _export(source, root)
    target = f"sqlite:///{tmp_path}/target.db"
    Store(target).close()
    before = _snapshot(target)
    env = {**os.environ, "PROVSTORE_URL": target}
    proc = subprocess.Popen([script.path, "import", "-"], stdin=subprocess.PIPE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdin.write(bundle[: len(bundle) // 2])
    proc.stdin.flush()
    time.sleep(2.0)  # the importer has consumed the first half and waits for more, mid-transaction
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _snapshot(target) == before
    retry = subprocess.run(
        [script.path, "import", "-"], input=bundle, env=env, capture_output=True
    )
    assert retry.returncode == 0, retry.stderr
    with Store(target) as store:
        assert store.stats()["objects"]["product"] == 3000


def test_cli_export_prov_json_is_valid_prov(sqlite_url, tmp_path, script):
    import json

    from prov.model import ProvDocument

    product = _record(sqlite_url, tmp_path)
    out = tmp_path / "x.prov.json"
    proc = script(sqlite_url, "export", product, "--format", "prov-json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    document = ProvDocument.deserialize(content=out.read_text(), format="json")
    identifiers = {
        str(record.identifier) for record in document.get_records() if record.identifier
    }
    assert f"provstore:{product}" in identifiers
    assert json.loads(out.read_text())["wasDerivedFrom"]


def test_references_are_checked_beyond_the_remembered_window(sqlite_url, monkeypatch):
    """Small batches and a tiny memory of imported digests: lookups must cover the rest."""
    from provstore.exchange import transfer

    monkeypatch.setattr(transfer, "_BATCH", 3)
    monkeypatch.setattr(transfer, "_KNOWN", 4)
    first = seal(Product("p0", None, {}, None, None, None, None, ()))
    chain = [first]
    for i in range(1, 30):  # each product names the first one and its predecessor
        parents = tuple(sorted({first.digest, chain[-1].digest}))
        chain.append(seal(Product(f"p{i}", None, {}, None, None, None, None, parents)))
    records = [(item.digest, item.data) for item in chain]
    with Store(sqlite_url) as store:
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[chain[-1].digest])))
        assert (result.added, result.present) == (30, 0)
        assert len(store.lineage(chain[-1].hex).depths) == 30
    # late in the bundle, long after the window moved on, a reference to nothing
    phantom = (b"\x09" * 32,)
    bad = seal(Product("bad", None, {}, None, None, None, None, (first.digest, *phantom)))
    records = [*records[:20], (bad.digest, bad.data), *records[20:]]
    with Store(sqlite_url.replace("store.db", "other.db")) as store:
        with pytest.raises(BundleError, match="neither earlier") as info:
            store.import_bundle(io.BytesIO(_craft(records, roots=[chain[-1].digest])))
        assert info.value.digest == bad.hex
        assert store.stats()["objects"]["product"] == 0


# -- staged imports: checks that run in the database, on every backend -------------------------


def _env_and_run() -> list:
    from provstore.core.objects import Environment, Run, Variables

    libs = seal(LibrarySet((("a", "1"),)))
    env = seal(Environment("cpython", "3.11", "Linux", "6", "x86_64", "", libs.digest, {}, ()))
    variables = seal(Variables({}, ()))
    run = seal(Run(env.digest, variables.digest, "h", "u", ("x",), "/", "/py", 1, 5, None, None))
    return [libs, env, variables, run]


def _small_window(monkeypatch) -> None:
    """Batches of two and a memory of two digests: references are checked by the database."""
    from provstore.exchange import transfer

    monkeypatch.setattr(transfer, "_BATCH", 2)
    monkeypatch.setattr(transfer, "_KNOWN", 2)


def _in_chunks(monkeypatch, size: int | None) -> None:
    """Imports on every backend pipelined a chunk of ``size`` objects at a time (None: not)."""
    from provstore.db import dialects

    for dialect in {type(d) for d in dialects.DIALECTS.values()}:
        monkeypatch.setattr(dialect, "import_chunk", size)


def _rejects(url: str, items: list, reason: str, named) -> None:
    before = _snapshot(url)
    records = [(item.digest, item.data) for item in items]
    with Store(url) as store, pytest.raises(BundleError, match=reason) as info:
        store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
    assert info.value.digest == named.hex
    assert _snapshot(url) == before


@pytest.mark.parametrize("chunk", [None, 3], ids=["at-once", "in-chunks"])
def test_staged_references_are_checked_in_bundle_order(backend_url, monkeypatch, chunk):
    _small_window(monkeypatch)
    _in_chunks(monkeypatch, chunk)
    Store(backend_url).close()
    head = _env_and_run()
    run = head[-1]
    fillers = [seal(Product(f"f{i}", None, {}, None, None, None, None, ())) for i in range(6)]
    later = seal(Product("later", None, {}, None, None, None, None, ()))
    early = seal(Product("early", None, {}, None, None, None, None, (later.digest,)))
    # a reference to an object that comes later in the bundle is not earlier in it
    _rejects(backend_url, [*head, early, *fillers, later], "neither earlier", early)
    # a reference, far beyond the remembered window, to an earlier object of the wrong kind
    wrong = seal(Product("wrong", None, {}, None, None, None, None, (run.digest,)))
    _rejects(backend_url, [*head, *fillers, wrong], "is a run, but a product's parents", wrong)
    # a bad reference staged early is named before a damaged object met later
    phantom = seal(Product("phantom", None, {}, None, None, None, None, (b"\x05" * 32,)))
    damaged = seal(Product("damaged", None, {}, None, None, None, None, ()))
    records = [(i.digest, i.data) for i in [*head, phantom, *fillers]]
    records.append((damaged.digest, damaged.data.replace(b"damaged", b"damagex")))
    with Store(backend_url) as store, pytest.raises(BundleError, match="neither earlier") as info:
        store.import_bundle(io.BytesIO(_craft(records, roots=[damaged.digest])))
    assert info.value.digest == phantom.hex
    # a reference to a stored object of the wrong kind (judged by its bytes, on the server)
    records = [(i.digest, i.data) for i in head]
    with Store(backend_url) as store:
        store.import_bundle(io.BytesIO(_craft(records, roots=[run.digest])))
    _rejects(backend_url, [*fillers, wrong], "is a run, but a product's parents", wrong)
    # the same bundles, put right, import whole
    good = seal(Product("good", None, {}, None, None, None, run.digest, (fillers[0].digest,)))
    records = [(i.digest, i.data) for i in [*head, *fillers, later, early, good]]
    with Store(backend_url) as store:
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[good.digest])))
        assert (result.added, result.present) == (len(records) - len(head), len(head))
        again = store.import_bundle(io.BytesIO(_craft(records, roots=[good.digest])))
        assert (again.added, again.present) == (0, len(records))
        assert store.lineage(early.hex).depths == {early.digest: 0, later.digest: 1}


def test_a_second_end_in_the_same_bundle_is_refused(backend_url, monkeypatch):
    from provstore.core.objects import RunEnd

    _small_window(monkeypatch)
    Store(backend_url).close()
    head = _env_and_run()
    run = head[-1].digest
    first = seal(RunEnd(run, "succeeded", 9, None, 0, ()))
    second = seal(RunEnd(run, "failed", 10, "again", 1, ()))
    fillers = [seal(Product(f"f{i}", None, {}, None, None, None, run, ())) for i in range(4)]
    _rejects(backend_url, [*head, first, *fillers, second], "a run ends once", second)


def test_text_the_bulk_load_must_escape_arrives_intact(backend_url):
    """Tabs, newlines, backslashes and ``\\N`` in text (PostgreSQL's COPY format)."""
    odd = ["tab\there", "line\nbreak\r", "back\\slash", "\\N", "", "é \\t ✓"]
    items = [
        seal(Product(name, f"v{name}", {}, None, None, f"/p/{name}", None, ())) for name in odd
    ]
    records = [(item.digest, item.data) for item in items]
    with Store(backend_url) as store:
        store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
        for name, item in zip(odd, items, strict=True):
            assert [p.digest for p in store.find_products(name=name)] == [item.digest]
    rows = _snapshot(backend_url)["products"]
    assert {(r[1], r[2], r[6]) for r in rows} == {(n, f"v{n}", f"/p/{n}") for n in odd}


def test_a_large_import_rebuilds_sqlite_indexes_as_they_were(sqlite_url, tmp_path, monkeypatch):
    """An import at least the store's size drops and rebuilds the plain secondary indexes."""
    from provstore.db import dialects

    monkeypatch.setattr(dialects, "_REBUILD_FROM", 1)
    _small_window(monkeypatch)  # more than one batch: the staged path
    source = _record(sqlite_url.replace("store.db", "source.db"), tmp_path, depth=5)
    payload = _export(sqlite_url.replace("store.db", "source.db"), source)
    Store(sqlite_url).close()
    engine = sa.create_engine(sqlite_url)

    def indexes() -> set:
        with engine.connect() as conn:
            query = "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
            return set(conn.exec_driver_sql(query).all())

    before = indexes()
    assert any("WHERE" in (sql or "") for _, _, sql in before)  # partial ones among them
    with Store(sqlite_url) as store:
        assert store.import_bundle(io.BytesIO(payload)).added > 0
        assert len(store.lineage(source).depths) == 6  # the input and five steps
        assert [p.hex for p in store.find_products(name="step4")] == [source]
    assert indexes() == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    engine.dispose()


_fields = st.tuples(
    st.integers(-(2**63), 2**63 - 1),
    st.none() | st.binary(max_size=40),
    st.none()
    | st.text(  # COPY's special characters often, among any others
        st.sampled_from("\\\t\n\rN.") | st.characters(blacklist_characters="\x00", codec="utf-8"),
        max_size=20,
    ),
)


@given(rows=st.lists(_fields, max_size=30))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_rows_loaded_for_staging_come_back_as_they_were(server_url, rows):
    """What a staging table is loaded with (at once, or from a spool) arrives intact: text
    with COPY's escapes in it, bytes, NULLs, negative numbers."""
    found, _ = _loaded(server_url, rows, at_once=True)
    assert sorted(found, key=repr) == sorted(rows * 2, key=repr)


def test_a_spool_loads_intact_over_a_connection_not_speaking_utf8(server_url):
    """Spooled COPY text is UTF-8 bytes; a connection in another encoding gets it as text."""
    if not server_url.startswith("postgresql"):
        pytest.skip("spools are PostgreSQL's")
    rows = [(1, b"\x00\\N", "caf\u00e9\tna\u00efve\\N"), (2, None, None), (-3, b"", "")]
    found, encoding = _loaded(
        server_url, rows, at_once=False, connect_args={"client_encoding": "latin1"}
    )
    assert encoding == "LATIN1"
    assert sorted(found, key=repr) == sorted(rows, key=repr)


def _loaded(url: str, rows: list, *, at_once: bool, connect_args: dict | None = None):
    """``rows`` loaded into a scratch table (first at once, if asked, then from a spool) as
    read back, and the connection's encoding."""
    from provstore.db import dialects

    table = sa.Table(
        "h_load_check",
        sa.MetaData(),
        sa.Column("n", sa.BigInteger),
        sa.Column("b", sa.LargeBinary),
        sa.Column("t", sa.Text),
    )
    engine = sa.create_engine(url, connect_args=connect_args or {})
    try:
        with engine.begin() as conn:
            encoding = getattr(conn.connection.driver_connection, "encoding", None)
            table.drop(conn, checkfirst=True)
            table.create(conn)
            dialect = dialects.of(conn)
            if at_once:
                dialect.append_stage(conn, table.name, ["n", "b", "t"], rows)
            spool = dialect.new_spool()
            dialect.spool_rows(spool, rows)
            dialect.load_stage(conn, table.name, ["n", "b", "t"], spool)
            dialect.close_spool(spool)
            found = [
                (n, None if b is None else bytes(b), t)
                for n, b, t in conn.execute(sa.select(table))
            ]
            table.drop(conn)
    finally:
        engine.dispose()
    return found, encoding


@pytest.mark.parametrize("count", [3, 4, 7])
def test_bundles_at_the_batch_boundary_import_whole(backend_url, monkeypatch, count):
    """One full batch goes the direct way, one object more the staged way: same result."""
    from provstore.exchange import transfer

    monkeypatch.setattr(transfer, "_BATCH", 3)
    chain = [seal(Product("c0", None, {}, None, None, None, None, ()))]
    for i in range(1, count):
        chain.append(seal(Product(f"c{i}", None, {}, None, None, None, None, (chain[-1].digest,))))
    records = [(item.digest, item.data) for item in chain]
    with Store(backend_url) as store:
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[chain[-1].digest])))
        assert (result.added, result.present) == (count, 0)
        assert store.lineage(chain[-1].hex).depths[chain[0].digest] == count - 1


@pytest.mark.parametrize("batch", [100, 2], ids=["direct", "staged"])
def test_a_reference_to_a_later_object_in_the_same_batch_is_refused(backend_url, monkeypatch,
                                                                     batch):  # fmt: skip
    """Within one batch too, an object may only name objects before it (or stored ones)."""
    from provstore.exchange import transfer

    monkeypatch.setattr(transfer, "_BATCH", batch)
    Store(backend_url).close()
    later = seal(Product("later", None, {}, None, None, None, None, ()))
    early = seal(Product("early", None, {}, None, None, None, None, (later.digest,)))
    filler = seal(Product("filler", None, {}, None, None, None, None, ()))
    _rejects(backend_url, [early, later, filler], "neither earlier", early)
    with Store(backend_url) as store:  # once the later one is stored, the order is no problem
        store.import_bundle(io.BytesIO(_craft([(later.digest, later.data)])))
        records = [(i.digest, i.data) for i in (early, later, filler)]
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[early.digest])))
        assert (result.added, result.present) == (2, 1)


@pytest.mark.parametrize("chunk", [None, 3], ids=["at-once", "in-chunks"])
def test_references_to_objects_referred_to_before_are_checked_in_bundle_order(
    backend_url, monkeypatch, chunk
):
    """A digest the store holds without its object (a parent not stored yet) gets its object
    from the bundle under its old id: a reference to it is still judged by bundle order, and
    the order put right fills it in."""
    _small_window(monkeypatch)
    _in_chunks(monkeypatch, chunk)
    later = seal(Product("later", None, {}, None, None, None, None, ()))
    child = seal(Product("child", None, {}, None, None, None, None, (later.digest,)))
    with Store(backend_url) as store:
        store.put([child])  # names ``later``, which the store does not hold
        assert store.stats()["objects"]["product"] == 1
    early = seal(Product("early", None, {}, None, None, None, None, (later.digest,)))
    fillers = [seal(Product(f"f{i}", None, {}, None, None, None, None, ())) for i in range(4)]
    _rejects(backend_url, [*fillers, early, later], "neither earlier", early)
    records = [(i.digest, i.data) for i in [*fillers, later, early]]
    with Store(backend_url) as store:
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[early.digest])))
        assert (result.added, result.present) == (len(records), 0)
        assert store.lineage(child.hex).depths == {child.digest: 0, later.digest: 1}


@pytest.mark.parametrize("chunk", [None, 3], ids=["at-once", "in-chunks"])
def test_a_parent_whose_kind_column_is_wrong_is_judged_by_its_bytes(backend_url, monkeypatch,
                                                                     chunk):  # fmt: skip
    """Parents are checked as their links are published; a link held back because the stored
    parent's ``kind`` column disagrees is published once its bytes say it is a product."""
    _small_window(monkeypatch)
    _in_chunks(monkeypatch, chunk)
    parent = seal(Product("parent", None, {}, None, None, None, None, ()))
    with Store(backend_url) as store:
        store.import_bundle(io.BytesIO(_craft([(parent.digest, parent.data)])))
        with store.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE objects SET kind = 'run' WHERE digest = :d"), {"d": parent.digest}
            )
    fillers = [seal(Product(f"f{i}", None, {}, None, None, None, None, ())) for i in range(4)]
    child = seal(Product("child", None, {}, None, None, None, None, (parent.digest,)))
    records = [(i.digest, i.data) for i in [*fillers, child]]
    with Store(backend_url) as store:
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[child.digest])))
        assert (result.added, result.present) == (len(records), 0)
        with store.engine.connect() as conn:
            links = conn.execute(
                sa.text(
                    "SELECT p.digest FROM product_parents l JOIN objects c ON c.id = l.child "
                    "JOIN objects p ON p.id = l.parent WHERE c.digest = :d"
                ),
                {"d": child.digest},
            ).all()
        assert [bytes(link[0]) for link in links] == [parent.digest]


def _chain(count: int) -> list:
    items = [seal(Product("c0", None, {}, None, None, None, None, ()))]
    for i in range(1, count):
        parents = (items[-1].digest,)
        items.append(seal(Product(f"c{i}", "1", {"i": i}, None, i, f"/c/{i}", None, parents)))
    return items


@pytest.mark.parametrize("damage", ["bytes", "digest", "non-minimal int", "unsorted map"])
def test_a_bad_object_late_in_a_staged_import_publishes_nothing(backend_url, monkeypatch,
                                                                 damage):  # fmt: skip
    """Every object is verified, also deep in a bundle of many batches: none is published."""
    _small_window(monkeypatch)
    Store(backend_url).close()
    items = _chain(9)
    records = [(item.digest, item.data) for item in items]
    digest, data = records[7]
    if damage == "bytes":  # the record's digest no longer matches its bytes
        data = data.replace(b"c7", b"c8")
    elif damage == "digest":  # the bytes are fine, the digest is another object's
        digest = items[1].digest
    else:  # hashed right, but not the canonical encoding
        body = data[data.index(b"\x00") + 1 :]
        if damage == "non-minimal int":
            body = body.replace(b"\xa4size\x07", b"\xa4size\xcc\x07")
        else:
            body = b"\x88" + body[1:].replace(b"\xa4size\x07", b"") + b"\xa4size\x07"
        data = frame("product", 1, body)
        digest = blake3.blake3(data).digest()
    records[7] = (digest, data)
    before = _snapshot(backend_url)
    with Store(backend_url) as store, pytest.raises(BundleError) as info:
        store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
    assert info.value.digest == digest.hex() and info.value.index == 7
    assert _snapshot(backend_url) == before


_names = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=12)
_meta = st.dictionaries(
    st.text(max_size=5),
    st.one_of(
        st.none(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        _names,
        st.binary(max_size=8),
    ),  # fmt: skip
    max_size=4,
)


@given(st.lists(st.tuples(_names, st.none() | _names, _meta), min_size=1, max_size=12),
       st.booleans())  # fmt: skip
@settings(max_examples=25, deadline=None)
def test_any_products_round_trip_and_import_once(tmp_path_factory, specs, compress):
    """Exported products come back identical, in a bundle of many batches or one."""
    items: list = []
    for name, version, metadata in specs:
        parents = tuple(sorted({items[-1].digest} if items else set()))
        items.append(seal(Product(name, version, metadata, None, None, None, None, parents)))
    records = [(item.digest, item.data) for item in items]
    bundle = _craft(records, roots=[items[-1].digest], compress=compress)
    url = f"sqlite:///{tmp_path_factory.mktemp('rt')}/store.db"
    from provstore.exchange import transfer

    for batch in (2, 2000):  # the staged path, then the direct one (importing again)
        old, transfer._BATCH = transfer._BATCH, batch
        try:
            with Store(url) as store:
                result = store.import_bundle(io.BytesIO(bundle))
        finally:
            transfer._BATCH = old
        unique = len({item.digest for item in items})
        assert result.added == (unique if batch == 2 else 0)
    with Store(url) as store:
        for item in items:
            assert store.get(item.hex).data == item.data


@pytest.mark.parametrize("chunk", [None, 3], ids=["at-once", "in-chunks"])
@pytest.mark.parametrize("held", ["nothing", "some", "twice"])
def test_a_staged_import_indexes_as_writing_its_objects_does(backend_url, tmp_path,
                                                              monkeypatch, held,
                                                              chunk):  # fmt: skip
    """All new (ids reserved for the import, in bundle order), or some stored and one only
    referred to, or one object twice in the bundle (ids from the database, or reserved ids
    left unused): the index is the one writing the objects gives.  Imported at once, or a
    chunk of objects at a time (each with ids of its own, still in bundle order)."""
    _small_window(monkeypatch)
    _in_chunks(monkeypatch, chunk)
    head = _env_and_run()
    items = [*head]
    for i in range(9):
        parents = tuple(sorted({items[-1].digest, items[4 + i // 2].digest})) if i else ()
        product = Product(f"p{i}", "1", {"i": i}, None, i, f"/p/{i}", head[-1].digest, parents)
        items.append(seal(product))
    outside = seal(Product("outside", None, {}, None, None, None, None, (items[10].digest,)))
    before = [*items[6:8], outside] if held == "some" else []
    expected = f"sqlite:///{tmp_path.as_posix()}/expected.db"
    with Store(expected) as store:
        store.put(before)
        store.put(items)
    records = [(item.digest, item.data) for item in items]
    if held == "twice":
        records.insert(9, records[6])
    with Store(backend_url) as store:
        store.put(before)
        result = store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
        present = {"nothing": 0, "some": 2, "twice": 1}[held]
        assert (result.added, result.present) == (len(records) - present, present)
    assert _snapshot(backend_url) == _snapshot(expected)
    if held == "nothing" and not backend_url.startswith("mysql"):  # ids in bundle order
        engine = sa.create_engine(backend_url)
        with engine.connect() as conn:
            o = schema.objects.c
            stored = [bytes(d) for d in conn.execute(sa.select(o.digest).order_by(o.id)).scalars()]
        engine.dispose()
        assert stored == [item.digest for item in items]


# -- pipelined imports: chunks published in one transaction while the next is decoded ----------


def _publishing(monkeypatch) -> list[int]:
    """How many objects each chunk an import published added, as it goes."""
    from provstore.exchange import transfer

    added: list[int] = []
    real = transfer._publish_spool

    def counted(conn, spool):
        added.append(real(conn, spool))
        return added[-1]

    monkeypatch.setattr(transfer, "_publish_spool", counted)
    return added


def _no_import_thread() -> bool:
    import threading

    return not any(t.name == "provstore-import" for t in threading.enumerate())


@pytest.mark.parametrize("damage", ["corrupt", "dangling"])
def test_a_bad_object_in_a_late_chunk_rolls_back_the_chunks_published(backend_url,
                                                                       monkeypatch,
                                                                       damage):  # fmt: skip
    """Chunks before the bad object are published (in the transaction), then all undone."""
    _small_window(monkeypatch)
    _in_chunks(monkeypatch, 4)
    added = _publishing(monkeypatch)
    Store(backend_url).close()
    items = _chain(14)
    records = [(item.digest, item.data) for item in items]
    if damage == "corrupt":
        digest, data = records[12]
        records[12] = (digest, data.replace(b"c12", b"c13"))
    else:
        items[12] = seal(Product("bad", None, {}, None, None, None, None, (b"\x07" * 32,)))
        records[12] = (items[12].digest, items[12].data)
    before = _snapshot(backend_url)
    with Store(backend_url) as store, pytest.raises(BundleError) as info:
        store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
    assert info.value.index == 12 and info.value.digest == records[12][0].hex()
    assert added[:3] == [4, 4, 4]  # three chunks were in the database before the bad one
    assert _snapshot(backend_url) == before
    assert _no_import_thread()


def test_an_error_in_the_decoding_thread_is_raised_and_publishes_nothing(backend_url,
                                                                         monkeypatch):  # fmt: skip
    from provstore.exchange import transfer

    _small_window(monkeypatch)
    _in_chunks(monkeypatch, 4)
    added = _publishing(monkeypatch)
    real, calls = transfer._stage_batch, []

    def failing(stage, batch, known):
        calls.append(len(batch))
        if len(calls) == 5:
            raise MemoryError("no room to decode")
        return real(stage, batch, known)

    monkeypatch.setattr(transfer, "_stage_batch", failing)
    Store(backend_url).close()
    items = _chain(14)
    before = _snapshot(backend_url)
    records = [(item.digest, item.data) for item in items]
    with Store(backend_url) as store, pytest.raises(MemoryError, match="no room"):
        store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
    assert added == [4, 4]  # the chunks before the failure were published, then undone
    assert _snapshot(backend_url) == before
    assert _no_import_thread()


def test_an_error_publishing_a_chunk_stops_the_decoding_thread(backend_url, monkeypatch):
    import threading

    from provstore.exchange import transfer

    _small_window(monkeypatch)
    _in_chunks(monkeypatch, 2)
    monkeypatch.setattr(transfer, "_SPOOLS", 1)  # the thread waits for room at once
    real, calls = transfer._publish_spool, []

    def failing(conn, spool):
        calls.append(spool)
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT", None, Exception("server went away"))
        return real(conn, spool)

    monkeypatch.setattr(transfer, "_publish_spool", failing)
    staged, stage_batch = [], transfer._stage_batch
    monkeypatch.setattr(
        transfer, "_stage_batch", lambda *args: staged.append(1) or stage_batch(*args)
    )
    Store(backend_url).close()
    items = _chain(30)
    before = _snapshot(backend_url)
    records = [(item.digest, item.data) for item in items]
    raised: list = []

    def run() -> None:
        with Store(backend_url) as store:
            try:
                store.import_bundle(io.BytesIO(_craft(records, roots=[items[-1].digest])))
            except sa.exc.OperationalError as exc:
                raised.append(exc)

    importing = threading.Thread(target=run, daemon=True)  # a thread left waiting fails
    importing.start()
    importing.join(60)
    assert not importing.is_alive()
    assert "went away" in str(raised[0])
    assert len(calls) == 2  # nothing was published after the failure
    assert len(staged) <= 4  # of 15 batches: the thread stopped, a chunk or so ahead
    assert _no_import_thread()
    assert _snapshot(backend_url) == before


def test_ids_reserved_apart_do_not_meet_other_writers(server_url, monkeypatch):
    """A chunk's ids come from one step of the sequence; another writer holding the
    sequence's lock (an open transaction that took an id) makes the import take them one by
    one instead of waiting for it; either way, later writes get ids of their own."""
    import threading

    if not server_url.startswith("postgresql"):
        pytest.skip("ids are reserved on PostgreSQL")
    from provstore.db import dialects

    _small_window(monkeypatch)
    _in_chunks(monkeypatch, 3)
    apart: list = []
    real = dialects.PostgreSQL._reserve_apart
    monkeypatch.setattr(
        dialects.PostgreSQL,
        "_reserve_apart",
        staticmethod(lambda conn, count: apart.append(real(conn, count)) or apart[-1]),
    )
    items = _chain(12)
    records = [(item.digest, item.data) for item in items]
    with Store(server_url) as store:
        store.import_bundle(io.BytesIO(_craft(records[:6], roots=[items[5].digest])))
    assert len(apart) == 2 and None not in apart  # two chunks (of two batches), one step each
    apart.clear()
    engine = sa.create_engine(server_url)
    done: list = []
    with engine.connect() as other, other.begin():
        other.exec_driver_sql("SELECT nextval(pg_get_serial_sequence('objects', 'id'))")

        def rest() -> None:
            with Store(server_url) as store:
                bundle = _craft(records, roots=[items[-1].digest])
                done.append(store.import_bundle(io.BytesIO(bundle)))

        worker = threading.Thread(target=rest)
        worker.start()
        worker.join(60)
        assert done and (done[0].added, done[0].present) == (6, 6)
        assert apart and set(apart) == {None}  # the lock was held: a nextval per id, as before
    lone = seal(Product("lone", None, {}, None, None, None, None, ()))
    with Store(server_url) as store:
        store.put([lone])
    with engine.connect() as conn:
        o = schema.objects.c
        ids = dict(conn.execute(sa.select(o.digest, o.id)).all())
    engine.dispose()
    order = [ids[item.digest] for item in items]
    assert order == sorted(order) and ids[lone.digest] > order[-1]
