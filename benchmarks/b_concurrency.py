"""Concurrent writers: many processes, one store, a durable write per product.

For every backend and every writer count, that many separate processes each open a
``tracker(url, git=False)`` block on a fresh store, signal that they are ready and wait for a
start file; once all are ready the start file appears and each registers its products with
``t.flush()`` after every one (so every registration is a committed write), timing
register+flush with ``time.perf_counter`` (CLOCK_MONOTONIC on Linux: one clock for all
processes).  The processes are started once and reused from level to level (see
:class:`Pool`): only the timed loop matters, and a Python start costs ~0.5 s of CPU.

Reported per level: total products/s over the common window (from the last writer's first
registration to the first writer's last: the span in which all of them are writing), p50/p99
registration latency, and errors -- exceptions inside the children, non-zero exits, and what
the store check afterwards finds (every product stored exactly once, one environment, one run
and one run end per writer).  The baseline is the single writer measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Row, child_env, empty_scratch, percentile

DESCRIPTION = "1..128 writer processes, one flush per product: products/s, latency, errors"
NAME = "concurrency"
SCRATCH = "b_concurrency"  # the store: <base>_b_concurrency on a server
LEVEL_SECONDS = 12.0  # full scale: aim every level at about this long
SMALL_PER_WRITER = 100  # ~200 asked; halved to keep --scale small inside its time budget
READY_TIMEOUT = 900.0

_CHILD = r"""
import json, os, sys, time, traceback
ctl, writer, phase = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
clock = time.perf_counter
from provstore import tracker

def at(name):
    return os.path.join(ctl, name)

def publish(name, data):
    with open(at(name + ".tmp"), "w") as handle:
        json.dump(data, handle)
    os.replace(at(name + ".tmp"), at(name))

def write(url, n, ready, go):
    res = {"writer": writer, "errors": [], "lat": [], "ends": [], "digests": []}
    try:
        with tracker(url, git=False, name=f"concurrency-{writer}") as t:
            res["opened"] = True
            open(ready, "w").close()
            while not os.path.exists(go):
                time.sleep(0.005)
            res["start"] = clock()
            for i in range(n):
                t0 = clock()
                try:
                    digest = t.register_data_product(f"w{writer}-p{i}", "1", {"w": writer, "i": i})
                    t.flush()
                except Exception as exc:
                    res["errors"].append(f"{type(exc).__name__}: {exc}"[:500])
                    continue
                t1 = clock()
                res["lat"].append(t1 - t0)
                res["ends"].append(t1)
                res["digests"].append(digest)
            res["end"] = clock()
    except Exception as exc:
        at_ = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(at_.filename)}:{at_.lineno}"
        res["errors"].append(f"{type(exc).__name__}: {exc} [{where}]"[:600])
    return res

while True:  # one phase after another until the stop file appears
    plan = at(f"plan-{phase}.json")
    while not os.path.exists(plan):
        if os.path.exists(at("stop")):
            sys.exit(0)
        time.sleep(0.05)
    with open(plan) as handle:
        p = json.load(handle)
    if writer < p["writers"]:
        url = p["urls"][writer] if p.get("urls") else p["url"]  # a URL per writer: b_galera
        res = write(url, p["n"], at(f"ready-{phase}-{writer}"), at(f"go-{phase}"))
        publish(f"out-{phase}-{writer}.json", res)
    phase += 1
"""


# -- the writer pool ---------------------------------------------------------------------------


class Pool:
    """Writer processes started once and reused level after level (process start is ~0.5 s).

    A level is a phase: the parent publishes ``plan-K.json`` (URL, writers, products each);
    the first ``writers`` children open a tracker, touch ``ready-K-W`` and wait for ``go-K``;
    each then publishes ``out-K-W.json``.  A child that died is replaced before the next phase.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctl = Path(tempfile.mkdtemp(prefix="concurrency-", dir=ctx.work))
        self.env = child_env(ctx.work / "cache")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.phase = 0

    def _spawn(self, writer: int) -> None:
        log = open(self.ctl / f"log-{writer}.txt", "ab")  # noqa: SIM115 - the child owns it
        argv = [sys.executable, "-c", _CHILD, str(self.ctl), str(writer), str(self.phase)]
        try:
            self.procs[writer] = subprocess.Popen(
                argv, env=self.env, cwd=str(self.ctl), stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()

    def _died(self, writer: int) -> str | None:
        code = self.procs[writer].poll()
        if code is None:
            return None
        del self.procs[writer]
        tail = (self.ctl / f"log-{writer}.txt").read_text(errors="replace")[-400:]
        return f"writer {writer} exited with {code}: {tail.strip()}"

    def _wait(self, pending: set[int], done: Callable[[int], bool], seconds: float,
              errors: list[str]) -> set[int]:  # fmt: skip
        """Poll until each writer in ``pending`` is ``done`` or has died (an error), for at
        most ``seconds``; returns the writers still pending."""
        deadline = time.monotonic() + seconds
        while pending and time.monotonic() < deadline:
            for w in list(pending):
                if done(w):
                    pending.discard(w)
                elif (death := self._died(w)) is not None:
                    errors.append(death)
                    pending.discard(w)
            time.sleep(0.01)
        return pending

    def level(self, url: str, writers: int, per_writer: int, timeout: float,
              urls: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """Run one level; returns the summary (rates, latencies, errors, store check).

        ``urls``: writer ``w`` writes through ``urls[w]`` (the same store reached through
        different servers, as a cluster's nodes); ``url`` is the store checked afterwards.
        """
        for w in range(writers):
            if w not in self.procs:
                self._spawn(w)
        k, ctl = self.phase, self.ctl
        plan = ctl / f"plan-{k}.json"
        planned = {"url": url, "writers": writers, "n": per_writer, "urls": urls}
        plan.with_suffix(".tmp").write_text(json.dumps(planned))
        plan.with_suffix(".tmp").replace(plan)
        self.phase += 1
        errors: list[str] = []

        def finished(w: int) -> bool:
            return (ctl / f"out-{k}-{w}.json").exists()

        def ready(w: int) -> bool:
            return (ctl / f"ready-{k}-{w}").exists() or finished(w)

        pending = self._wait(set(range(writers)), ready, READY_TIMEOUT, errors)
        if pending:
            errors.append(f"{len(pending)} writers not ready after {READY_TIMEOUT:.0f} s")
        (ctl / f"go-{k}").touch()
        running = {w for w in range(writers) if w in self.procs}
        pending = self._wait(running, finished, timeout, errors)
        for w in sorted(pending):  # did not finish in time: end them (our own children)
            self.procs.pop(w).kill()
            errors.append(f"writer {w} killed after {timeout:.0f} s")
        results = []
        for w in range(writers):
            path = ctl / f"out-{k}-{w}.json"
            if path.exists():
                res = json.loads(path.read_text())
                errors.extend(f"writer {w}: {e}" for e in res["errors"])
                results.append(res)
        return summarize(url, writers, per_writer, results, errors, timed_out=bool(pending))

    def close(self) -> None:
        (self.ctl / "stop").touch()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def summarize(url: str, writers: int, per_writer: int, results: list[dict[str, Any]],
              errors: list[str], timed_out: bool) -> dict[str, Any]:  # fmt: skip
    lat = [x for r in results for x in r["lat"]]
    ends = sorted(x for r in results for x in r["ends"])
    started = [r["start"] for r in results if "start" in r]
    finished = [r["end"] for r in results if "end" in r]
    out: dict[str, Any] = {"writers": writers, "per_writer": per_writer, "done": len(lat),
                           "errors": errors, "timed_out": timed_out}  # fmt: skip
    if not lat or not started or not finished:
        out.update(rate=None, p50=None, p99=None, window=0.0, span=0.0)
        out["check"] = check_store(url, results)
        errors.extend(out["check"]["problems"])
        return out
    lo, hi = max(started), min(finished)
    span = max(finished) - min(started)
    in_window = sum(1 for t in ends if lo < t <= hi)
    if hi - lo > 0.2 * span and in_window >= 10:
        rate, window = in_window / (hi - lo), hi - lo
    else:  # writers hardly overlapped (e.g. one finished before the last began): whole span
        rate, window = len(lat) / span, span
    out.update(rate=rate, window=window, span=span, total_rate=len(lat) / span,
               p50=percentile(lat, 50) * 1e3, p99=percentile(lat, 99) * 1e3)  # fmt: skip
    out["check"] = check_store(url, results)
    errors.extend(out["check"]["problems"])
    return out


def check_store(url: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every product a writer reported is stored exactly once; one environment; one run and
    one run end per writer whose tracker opened (a writer that failed to open one is already
    counted as an error)."""
    from sqlalchemy import func, select

    from provstore.db import schema
    from provstore.store import Store

    reported = [d for r in results for d in r["digests"]]
    problems = []
    store = Store(url)
    try:
        p = schema.products
        with store.engine.connect() as conn:
            rows, names = conn.execute(
                select(func.count(), func.count(func.distinct(p.c.name)))
            ).one()
            o = schema.objects
            named = select(o.c.digest).select_from(p.join(o, o.c.id == p.c.id))
            stored = {bytes(d).hex() for d in conn.execute(named).scalars()}
        kinds = store.stats()["objects"]
    finally:
        store.close()
    unique = set(reported)
    if len(unique) != len(reported):
        problems.append(f"{len(reported) - len(unique)} digests reported twice")
    missing = unique - stored
    if missing:
        problems.append(f"{len(missing)} registered products missing from the store")
    if rows != len(unique) or names != rows or kinds["product"] != rows:
        problems.append(f"store holds {rows} product rows / {names} names / "
                        f"{kinds['product']} product objects, expected {len(unique)}")  # fmt: skip
    if kinds["environment"] != 1:
        problems.append(f"{kinds['environment']} environments stored, expected 1")
    opened = sum(1 for r in results if r.get("opened"))  # writers whose tracker was entered
    if kinds["run"] != opened or kinds["runend"] != opened:
        problems.append(f"{kinds['run']} runs / {kinds['runend']} run ends, expected {opened}")
    return {"products": rows, "expected": len(unique), "environments": kinds["environment"],
            "runs": kinds["run"], "problems": problems}  # fmt: skip


# -- the benchmark -----------------------------------------------------------------------------


def _pg_max_connections(url: str) -> int | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SHOW max_connections").scalar())
    except Exception:  # noqa: BLE001 - only used in a note
        return None
    finally:
        engine.dispose()


def _plan(ctx: Context) -> list[tuple[str, int]]:
    """(backend, writers) in running order: every 128-writer level last, SQLite's very last."""
    if ctx.small:
        return [(b, w) for b in ctx.backends for w in (1, 4)]
    first = [(b, w) for b in ctx.backends for w in (1, 8, 32)]
    last = [(b, 128) for b in ctx.backends if b != "sqlite"]
    return first + last + [("sqlite", 128)]  # SQLite at 128: reported if it completes


def run(ctx: Context) -> list[Row]:
    rows: list[tuple[int, int, list[Row]]] = []
    pool = Pool(ctx)
    used: dict[str, str] = {}
    base: dict[str, dict[str, Any]] = {}
    rate_guess: dict[str, float] = {}
    plan = _plan(ctx)
    try:
        for backend, writers in plan:
            url = ctx.scratch_url(backend, SCRATCH)
            used[backend] = url
            if not ctx.small and backend not in rate_guess:
                # calibrate the per-writer counts with a short single-writer run
                calib = pool.level(url, 1, 300, timeout=600)
                rate_guess[backend] = calib["rate"] or 100.0
                url = ctx.scratch_url(backend, SCRATCH)
            per_writer = ctx.pick(
                SMALL_PER_WRITER,
                max(50, math.ceil(rate_guess.get(backend, 0.0) * LEVEL_SECONDS / writers)),
            )
            optional = backend == "sqlite" and writers == 128
            timeout = ctx.pick(300.0, 900.0 if optional else 1800.0)
            res = pool.level(url, writers, per_writer, timeout)
            if res["rate"]:
                rate_guess[backend] = res["rate"]
            if writers == 1:
                base[backend] = res
            first_multi = writers == min(w for b, w in plan if b == backend and w > 1)
            rows.append((list(ctx.backends).index(backend), writers,
                         _rows(ctx, backend, res, base.get(backend), first_multi)))  # fmt: skip
    finally:
        pool.close()
        for url in used.values():
            empty_scratch(url)
    return [row for _, _, level in sorted(rows, key=lambda r: r[:2]) for row in level]


def _rows(ctx: Context, backend: str, res: dict[str, Any], base: dict[str, Any] | None,
          first_multi: bool) -> list[Row]:  # fmt: skip
    writers, label = res["writers"], "1 writer"
    who = f"{writers} writer{'s' if writers > 1 else ''}"
    b_rate = base["rate"] if base else None
    target, met = "", None
    if backend == "postgresql" and first_multi:
        target = "≥ 1-writer rate (2 cores)"
        met = bool(res["rate"] and b_rate and res["rate"] >= b_rate)
    check = res["check"]
    note = (f"{writers}×{res['per_writer']} products, window {res['window']:.1f} s of "
            f"{res['span']:.1f} s; stored {check['products']}/{check['expected']}, "
            f"{check['environments']} environment(s)")  # fmt: skip
    if backend == "postgresql":
        limit = _pg_max_connections(ctx.backends[backend])
        note += f"; server max_connections={limit}" if limit else ""
    if res["timed_out"]:
        note = "did not complete in time; " + note
    return result_rows(NAME, who, res, backend, base, label, b_rate, target, met, note)


def result_rows(
    name: str,
    who: str,
    res: dict[str, Any],
    backend: str,
    base: dict[str, Any] | None,
    label: str,
    rate_baseline: float | None,
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> list[Row]:
    """Throughput, p50, p99 and errors of one set of writers, beside ``base`` when given."""
    errs = res["errors"]
    return [
        Row(name, f"{who}: products/s (flush each)", res["rate"], "/s", backend,
            rate_baseline, label, target, met, note),
        Row(name, f"{who}: p50 register+flush", res["p50"], "ms", backend,
            base["p50"] if base else None, label),
        Row(name, f"{who}: p99 register+flush", res["p99"], "ms", backend,
            base["p99"] if base else None, label),
        Row(name, f"{who}: errors", float(len(errs)), "errors", backend,
            target="0 errors", met=not errs,
            note=f"first: {errs[0][:300]}" if errs else "store check passed"),
    ]  # fmt: skip
