"""A spooled run written by several processes: the host takes the guests' bundles in."""

from __future__ import annotations

import os
import time

from provstore import Store, tracker
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Variables, seal
from provstore.tracking.joining import HostWriter, guest_writer, join_directory
from provstore.tracking.spool import SUFFIX, ingest


def _head(system: str = "Linux"):
    ls = seal(LibrarySet((("click", "8.1.0"),)))
    env = seal(Environment("cpython", "3.11", system, "6", "x86_64", "glibc", ls.digest, {}, ()))
    var = seal(Variables({"A": "1"}, ()))
    run = seal(Run(env.digest, var.digest, "h", "u", ("x",), "/", "/py", 1, time.time_ns(), None,
                   None, ("x",)))  # fmt: skip
    return [ls, env, var, run]


def _product(run, path):
    return seal(Product(os.path.basename(path), None, {}, os.urandom(32), 1, path, run, ()))


def _end(run):
    return seal(RunEnd(run, "succeeded", time.time_ns(), None, 0, ()))


def _ingested(spool, url):
    with Store(url) as store:
        report = ingest(store, str(spool))
        assert not report.rejected
        return report, store.runs(), store.stats()["objects"]["product"]


def test_the_host_takes_the_guests_bundles_into_its_own(tmp_path, sqlite_url):
    spool = str(tmp_path / "spool")
    head = _head()
    run = head[-1]
    host = HostWriter(spool, run.digest, head)
    guests = [guest_writer(spool, run.hex, head[1].digest) for _ in range(2)]
    made = [_product(run.digest, f"/data/{n}.csv") for n in range(2)]
    for guest, product in zip(guests, made, strict=True):
        guest.put([product])
        guest.publish()
    assert host.take_guests() == {p.obj.path: p.digest for p in made}
    host.put([_end(run.digest)])
    host.publish()
    assert os.listdir(spool) == [run.hex + SUFFIX]
    report, [summary], products = _ingested(spool, sqlite_url)
    assert report.ingested == [run.hex + SUFFIX]
    assert summary.status == "succeeded" and products == 2


def test_a_guest_that_outlives_its_host_publishes_into_the_spool(tmp_path, sqlite_url):
    spool = str(tmp_path / "spool")
    head = _head()
    run = head[-1]
    host = HostWriter(spool, run.digest, head)
    guest = guest_writer(spool, run.hex, head[1].digest)
    host.put([_end(run.digest)])
    host.publish()
    assert guest_writer(spool, run.hex, head[1].digest) is None  # the run is closed
    guest.put([_product(run.digest, "/data/late.csv")])
    guest.publish()
    assert not os.path.exists(join_directory(spool, run.digest))
    assert len([n for n in os.listdir(spool) if n.endswith(SUFFIX)]) == 2
    report, [summary], products = _ingested(spool, sqlite_url)
    assert len(report.ingested) == 2 and summary.status == "succeeded" and products == 1


def test_a_failed_host_leaves_the_guests_bundles_whole(tmp_path, sqlite_url):
    spool = str(tmp_path / "spool")
    head = _head()
    run = head[-1]
    host = HostWriter(spool, run.digest, head)
    guest = guest_writer(spool, run.hex, head[1].digest)
    guest.put([_product(run.digest, "/data/kept.csv")])
    guest.publish()
    host.discard()
    assert not os.path.exists(join_directory(spool, run.digest))
    [bundle] = os.listdir(spool)
    assert bundle.startswith(run.hex) and bundle != run.hex + SUFFIX
    _, [summary], products = _ingested(spool, sqlite_url)
    assert summary.digest == run.digest and summary.status is None and products == 1


def test_a_run_is_joined_only_with_the_same_environment(tmp_path):
    spool = str(tmp_path / "spool")
    head = _head()
    run = head[-1]
    HostWriter(spool, run.digest, head)
    other = _head(system="Darwin")[1]
    assert guest_writer(spool, run.hex, other.digest) is None
    assert guest_writer(spool, "0" * 64, head[1].digest) is None
    assert guest_writer(spool, run.hex[:12], head[1].digest) is None


def test_a_tracker_with_no_run_to_join_records_its_own(tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    monkeypatch.setenv("PROVSTORE_RUN", "ab" * 32)
    with tracker(spool=str(spool)) as t:
        t.register_data_product(name="alone")
    assert not t.joined and os.listdir(spool) == [t.run + SUFFIX]
