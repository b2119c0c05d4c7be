"""Bundles: import and export throughput, peak memory against bundle size, bytes per object.

Bundles of N objects (a library set, environment, variables and run, then products with 1-2
parents) are written uncompressed and zlib-compressed without a store; every import and export
runs in a fresh process that reports objects/s and its memory (RSS after its imports and
``Store()`` as the baseline, ``ru_maxrss`` at the end as the peak): see
:mod:`benchmarks._bundles`.  The floor is raw ``sqlite3``: the same ``objects`` rows, same DDL
and pragmas, ``executemany`` in sorted batches, one transaction.  Server backends import the
zlib bundle into a scratch database of their own.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._bundles import build_bundles, export_child, import_child
from benchmarks.harness import Context, Row, child_env, raw_sqlite

DESCRIPTION = "bundle import/export objects/s, peak RSS vs bundle size, bytes/object"
NAME = "bundle"
SCRATCH = "b_bundle"  # server imports: <base>_b_bundle
IMPORT_TARGET = 20_000.0
RSS_FACTOR, RSS_SLACK_MIB = 1.5, 50.0
RAW = "raw sqlite3 executemany"
RAW_BATCH = 2000


# -- the raw sqlite3 floor --------------------------------------------------------------------


def _raw_records(path: str) -> Iterator[tuple[bytes, bytes]]:
    """``(digest, data)`` from an uncompressed bundle, no checks (the floor's input)."""
    size_of = struct.Struct(">I").unpack
    with open(path, "rb") as f:
        _magic, _version, codec, nroots = struct.unpack(">8sBBI", f.read(14))
        if codec != 0:
            raise ValueError("the raw floor reads uncompressed bundles")
        f.read(32 * nroots)
        read = f.read
        while True:
            (size,) = size_of(read(4))
            if size == 0xFFFFFFFF:
                return
            digest = read(32)
            yield digest, read(size)


def raw_floor(bundle: str, like: str, dst: str) -> float:
    """Objects/s writing a bundle's ``objects`` rows with plain ``sqlite3``.

    provstore's DDL and pragmas, batches of :data:`RAW_BATCH` rows sorted by digest, one
    transaction.  Rows are prepared (and sorted) outside the timed region; only the
    ``executemany`` calls, the ``BEGIN`` and the ``COMMIT`` are timed.
    """
    conn, inserts = raw_sqlite(dst, like, ["objects"])
    insert, clock = inserts["objects"], time.perf_counter
    batch: list[tuple[Any, ...]] = []
    objects = 0

    def timed(sql: str, rows: list[tuple[Any, ...]] | None = None) -> float:
        t0 = clock()
        if rows is None:
            conn.execute(sql)
        else:
            conn.executemany(sql, rows)
        return clock() - t0

    spent = timed("BEGIN IMMEDIATE")
    for digest, data in _raw_records(bundle):
        kind = data[: data.index(b" ")].decode("ascii")
        batch.append((None, digest, kind, len(data), data))  # the id: the next rowid
        objects += 1
        if len(batch) >= RAW_BATCH:
            batch.sort()
            spent += timed(insert, batch)
            batch.clear()
    batch.sort()
    spent += timed(insert, batch) + timed("COMMIT")
    stored = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
    conn.close()
    if stored != objects:
        raise RuntimeError(f"raw floor stored {stored} objects, not {objects}")
    return objects / spent


# -- one bundle size --------------------------------------------------------------------------


def _unlink_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _one_size(ctx: Context, work: Path, n: int, servers: bool, export: bool) -> dict[str, Any]:
    """Build, import (zlib; uncompressed too at full scale), raw floor, export, servers."""
    env = child_env(ctx.work / "bundle-cache")
    out: dict[str, Any] = {"n": n}
    build = out["build"] = build_bundles(work, n, ctx.seed)
    variants = ctx.pick(("zlib",), ("zlib", "none"))
    dbs = {v: work / f"import-{n}-{v}.db" for v in variants}
    for variant, db in dbs.items():
        out[f"import_{variant}"] = import_child(f"sqlite:///{db}", build["paths"][variant], n, env)
    raw_db = work / f"raw-{n}.db"
    out["raw"] = raw_floor(build["paths"]["none"], str(dbs["zlib"]), str(raw_db))
    _unlink_db(raw_db)
    exported = work / f"export-{n}.psb.z"
    if export:
        result = export_child(f"sqlite:///{dbs['zlib']}", build["root"], str(exported), env)
        if result["objects"] != n:
            raise RuntimeError(f"export wrote {result['objects']} objects, not {n}")
        out["export"] = result
    out["server"] = {}
    for backend in (b for b in ctx.backends if b != "sqlite") if servers else ():
        with ctx.scratch(backend, SCRATCH) as url:
            out["server"][backend] = import_child(url, build["paths"]["zlib"], n, env)
    for db in dbs.values():
        _unlink_db(db)
    for path in (*build["paths"].values(), str(exported)):
        Path(path).unlink(missing_ok=True)
    return out


# -- rows -------------------------------------------------------------------------------------


def _mib(result: dict[str, Any], key: str) -> str:
    value = result.get(key)
    return "?" if value is None else f"{value:.0f}"


def _import_row(n: int, variant: str, res: dict[str, Any], raw: float | None,
                backend: str = "sqlite") -> Row:  # fmt: skip
    rate = res["objects_per_s"]
    note = (f"{res['seconds']:.2f} s (this process's CPU {res['cpu_seconds']:.2f} s); "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB "
            f"(+{res['growth_mib']:.0f} over {res['baseline_rss_mib']:.0f})")  # fmt: skip
    return Row(NAME, f"import {n:,} objects ({variant})", rate, "objects/s", backend,
               raw, RAW if raw is not None else "", f"≥ {IMPORT_TARGET:,.0f}/s",
               rate >= IMPORT_TARGET, note)  # fmt: skip


def _size_rows(n: int, res: dict[str, Any]) -> list[Row]:
    """Imports (with their peak memory), export and bytes per object of one bundle size."""
    raw = res["raw"]
    rows = []
    if "import_none" in res:
        rows.append(_import_row(n, "uncompressed", res["import_none"], raw))
    rows.append(_import_row(n, "zlib", res["import_zlib"], raw))
    imp = res["import_zlib"]
    high = imp.get("sqlite_highwater_mib")
    rows.append(Row(
        NAME, f"import {n:,} objects (zlib): peak RSS", imp["peak_rss_mib"], "MiB",
        "sqlite", imp["baseline_rss_mib"], "RSS after imports + Store()",
        note=(f"growth {imp['growth_mib']:.0f} MiB"
              + (f", SQLite heap high-water {high:.0f} MiB" if high is not None else "")
              + (f"; uncompressed import peak {res['import_none']['peak_rss_mib']:.0f} MiB"
                 if "import_none" in res else "")),
    ))  # fmt: skip
    exp = res.get("export")
    if exp:
        rows.append(Row(
            NAME, f"export {n:,} objects (zlib)", exp["objects_per_s"], "objects/s",
            "sqlite", note=(f"{exp['seconds']:.2f} s ({exp['graph_seconds']:.2f} s "
                            f"closure+order); peak RSS {exp['peak_rss_mib']:.0f} MiB"),
        ))  # fmt: skip
    build = res["build"]
    rows.append(Row(
        NAME, f"bundle bytes/object ({n:,}, zlib)", build["bytes"]["zlib"] / n, "B",
        "", build["bytes"]["none"] / n, "uncompressed",
        note=f"compression ratio {build['compression_ratio']:.2f}",
    ))  # fmt: skip
    for backend, imp_s in res["server"].items():
        rows.append(_import_row(n, "zlib", imp_s, None, backend))
    return rows


def _peak_rows(peaks: dict[int, dict[str, Any]]) -> list[Row]:
    """The zlib imports' peak RSS of the largest bundle against a middle and the smallest."""
    rows = []
    small, large = min(peaks), max(peaks)
    lo, hi = peaks[small]["peak_rss_mib"], peaks[large]["peak_rss_mib"]
    middle = sorted(peaks)[1:-1]
    if middle:  # once SQLite's page cache is full, does anything else still grow?
        m = middle[-1]
        mid = peaks[m]["peak_rss_mib"]
        rows.append(Row(
            NAME, f"peak RSS {large:,} vs {m:,} objects (zlib import)", hi, "MiB",
            "sqlite", mid, f"{m:,} objects", f"≤ {RSS_FACTOR}× or +{RSS_SLACK_MIB:.0f} MiB",
            hi <= max(mid * RSS_FACTOR, mid + RSS_SLACK_MIB),
            note=f"{large // m}× the objects; growth over baseline "
                 f"{peaks[m]['growth_mib']:.0f} → {peaks[large]['growth_mib']:.0f} MiB",
        ))  # fmt: skip
    rows.append(Row(
        NAME, f"peak RSS {large:,} vs {small:,} objects (zlib import)", hi, "MiB", "sqlite",
        lo, f"{small:,} objects", f"≤ {RSS_FACTOR}× or +{RSS_SLACK_MIB:.0f} MiB",
        hi <= max(lo * RSS_FACTOR, lo + RSS_SLACK_MIB),
        note=(f"growth over baseline {peaks[small]['growth_mib']:.0f} → "
              f"{peaks[large]['growth_mib']:.0f} MiB, of which SQLite's heap (page cache, "
              f"capped by cache_size = 64 MiB) {_mib(peaks[small], 'sqlite_highwater_mib')} → "
              f"{_mib(peaks[large], 'sqlite_highwater_mib')} MiB"),
    ))  # fmt: skip
    return rows


def run(ctx: Context) -> list[Row]:
    sizes: list[int] = ctx.pick([2_000, 10_000], [10_000, 100_000, 1_000_000])
    work = Path(tempfile.mkdtemp(prefix="bundle-", dir=ctx.work))
    rows: list[Row] = []
    peaks: dict[int, dict[str, Any]] = {}
    try:
        for n in sizes:
            # full scale: everything at every size; small: server imports at the smallest
            # size only, export at the largest only
            res = _one_size(ctx, work, n, servers=not ctx.small or n == sizes[0],
                            export=not ctx.small or n == sizes[-1])  # fmt: skip
            rows += _size_rows(n, res)
            peaks[n] = res["import_zlib"]
        rows += _peak_rows(peaks)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
