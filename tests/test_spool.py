"""Spool mode: runs written as bundles where no database is reachable, ingested later."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from provstore import Store, tracker
from provstore.core.errors import UsageError
from provstore.tracking.spool import STALE_AFTER, SUFFIX, ingest


def _bundles(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))


def test_spooled_run_is_ingested_once(tmp_path, sqlite_url):
    spool = tmp_path / "spool"
    with tracker(spool=str(spool), name="node-job") as t:
        a = t.register_data_product(name="a")
        b = t.register_data_product(name="b", parents=[a])
        with pytest.raises(UsageError, match="full digest"):
            t.register_data_product(name="c", parents=[a[:10]])
        with pytest.raises(UsageError, match="spool mode"):
            t.store  # noqa: B018
    assert _bundles(spool) == [t.run + SUFFIX]
    assert not [n for n in os.listdir(spool) if n.endswith(".tmp")]
    with Store(sqlite_url) as store:
        report = ingest(store, str(spool))
        assert report.ingested == [t.run + SUFFIX] and not report.rejected
        assert store.get(b).obj.parents == (bytes.fromhex(a),)
        [summary] = store.runs()
        assert summary.name == "node-job" and summary.status == "succeeded"
        again = ingest(store, str(spool))
        assert again.ingested == []
    assert _bundles(spool) == [] and _bundles(spool / "ingested") == [t.run + SUFFIX]


def test_a_failed_run_is_still_spooled(tmp_path, sqlite_url):
    spool = tmp_path / "spool"
    with pytest.raises(RuntimeError):
        with tracker(spool=str(spool)) as t:
            kept = t.register_data_product(name="kept")
            raise RuntimeError("job died")
    with Store(sqlite_url) as store:
        ingest(store, str(spool))
        assert store.get(kept).obj.name == "kept"
        assert store.runs()[0].status == "failed"


def test_rejected_bundle_is_set_aside_with_its_reason(tmp_path, sqlite_url):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / ("0" * 64 + SUFFIX)).write_bytes(b"not a bundle")
    env = {**os.environ, "PROVSTORE_URL": sqlite_url}
    provstore = os.path.join(os.path.dirname(sys.executable), "provstore")
    proc = subprocess.run([provstore, "import", "--spool", str(spool)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1
    assert "bad magic" in proc.stderr
    assert _bundles(spool) == []
    reason = (spool / "rejected" / ("0" * 64 + SUFFIX + ".reason")).read_text()
    assert "bad magic" in reason


KILLED = """
import os, sys
from provstore import tracker
with tracker(spool=sys.argv[1], git=False) as t:
    t.register_data_product(name="never-published")
    os._exit(9)  # killed: no __exit__, no cleanup
"""


def _temps(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(".") and n.endswith(".tmp"))


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_killed_writers_unfinished_bundle_is_removed_once_stale(tmp_path, sqlite_url):
    spool = tmp_path / "spool"
    done = subprocess.run([sys.executable, "-c", KILLED, str(spool)], capture_output=True)
    assert done.returncode == 9
    [temp] = _temps(spool)
    with Store(sqlite_url) as store:
        fresh = ingest(store, str(spool))  # it may be a live writer's: kept
        assert fresh.stale == [] and _temps(spool) == [temp]
        _age(spool / temp, STALE_AFTER + 60)
        assert ingest(store, str(spool), stale_after=None).stale == []
        assert ingest(store, str(spool)).stale == [temp]
    assert _temps(spool) == [] and _bundles(spool) == []


def test_import_spool_removes_stale_unfinished_bundles(tmp_path, sqlite_url, script):
    spool = tmp_path / "spool"
    subprocess.run([sys.executable, "-c", KILLED, str(spool)], capture_output=True)
    [temp] = _temps(spool)
    _age(spool / temp, 3 * 3600)
    kept = script(sqlite_url, "import", "--spool", str(spool))
    assert kept.returncode == 0 and _temps(spool) == [temp]
    gone = script(sqlite_url, "import", "--spool", str(spool), "--stale-hours", "2")
    assert gone.returncode == 0 and "removed 1 stale unfinished bundles" in gone.stdout
    assert _temps(spool) == []


def test_a_live_writer_whose_file_was_taken_for_stale_loses_nothing(tmp_path, sqlite_url):
    spool = tmp_path / "spool"
    with tracker(spool=str(spool), git=False) as t:
        a = t.register_data_product(name="a")
        [temp] = _temps(spool)
        _age(spool / temp, STALE_AFTER + 60)
        with Store(sqlite_url) as store:
            assert ingest(store, str(spool)).stale == [temp]
        b = t.register_data_product(name="b", parents=[a])
    assert _temps(spool) == [] and _bundles(spool) == [t.run + SUFFIX]
    with Store(sqlite_url) as store:
        assert ingest(store, str(spool)).ingested == [t.run + SUFFIX]
        assert store.get(b).obj.parents == (bytes.fromhex(a),)
        assert store.runs()[0].status == "succeeded"


JOB = """
import sys
from provstore import tracker
with tracker(spool=sys.argv[1], name=f"job-{sys.argv[2]}") as t:
    first = t.register_data_product(name=f"job{sys.argv[2]}-0")
    for i in range(1, 40):
        t.register_data_product(name=f"job{sys.argv[2]}-{i}", parents=[first])
"""


@pytest.mark.slow
def test_32_spooling_jobs_with_a_concurrent_ingest(tmp_path, backend_url):
    spool = tmp_path / "spool"
    spool.mkdir()
    script = tmp_path / "job.py"
    script.write_text(JOB)
    jobs = [
        subprocess.Popen([sys.executable, str(script), str(spool), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(32)
    ]  # fmt: skip
    done = threading.Event()
    errors: list[BaseException] = []

    def ingest_loop() -> None:
        try:
            with Store(backend_url) as store:
                while not done.is_set():
                    ingest(store, str(spool))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    ingester = threading.Thread(target=ingest_loop)
    ingester.start()
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err
    done.set()
    ingester.join()
    assert errors == []
    with Store(backend_url) as store:
        final = ingest(store, str(spool))
        assert not final.rejected
        runs = store.runs(limit=100)
        assert len(runs) == 32
        assert sorted(r.name for r in runs) == sorted(f"job-{n}" for n in range(32))
        assert all(r.products == 40 and r.status == "succeeded" for r in runs)
        assert store.stats()["objects"]["product"] == 32 * 40
    assert _bundles(spool) == []
    assert len(_bundles(spool / "ingested")) == 32


DAILY = """
from provstore import tracker
with tracker() as t:
    with open("data/daily.csv", "w") as out:
        out.write("day,value\\n1,2\\n")
    t.register_data_product(name="daily", metadata={"rows": 1}, path="data/daily.csv")
    print(t.run, t.joined)
"""


def test_a_tracker_inside_provstore_run_joins_the_spooled_run(tmp_path, sqlite_url, script):
    spool, work = tmp_path / "spool", tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "in.txt").write_text("input\n")
    (work / "daily.py").write_text(DAILY)
    proc = script(sqlite_url, "run", "-i", "in.txt", "-o", "data/daily.csv", "--",
                  sys.executable, "daily.py", cwd=str(work),
                  env={"PROVSTORE_SPOOL": str(spool)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run, joined = proc.stdout.split()
    assert joined == "True"
    assert _bundles(spool) == [run + SUFFIX]  # the run is one bundle again
    assert os.listdir(spool) == [run + SUFFIX]  # no join directory or temporary file left
    with Store(sqlite_url) as store:
        assert store.runs() == []  # spool mode touched no database
        assert not ingest(store, str(spool)).rejected
        [summary] = store.runs()
        assert summary.digest.hex() == run and summary.status == "succeeded"
        [daily] = store.products_of_run(summary.digest)  # recorded once: the script's product
        assert daily.obj.name == "daily" and daily.obj.metadata == {"rows": 1}
        assert [p.obj.path for p in store.find_products(name="in.txt")] == [str(work / "in.txt")]
