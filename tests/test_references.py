"""Starting from what the user holds: a file, name:NAME[@VERSION] or a digest, on every
entry point; why, status and products; log and show for runs."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from provstore import (
    PathError,
    ProductFilter,
    RunFilter,
    Store,
    UnknownDigestError,
    UnknownReferenceError,
    tracker,
)
from provstore.capture.hashcache import FileHasher
from provstore.cli.main import main


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def pipeline(backend_url, tmp_path, monkeypatch):
    """raw.csv -> clean.csv -> model.json (two runs), plus an identical copy of raw elsewhere."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    raw, clean, model = tmp_path / "data/raw.csv", tmp_path / "clean.csv", tmp_path / "model.json"
    raw.write_text("a,b\n1,2\n")
    clean.write_text("a,b\n1,2\n")  # same bytes as raw: the path decides between them
    with tracker(backend_url, name="prepare", git=False) as t:
        raw_id = t.use(raw)
        clean_id = t.track(clean, parents=[raw_id], name="clean", version="1")
    model.write_text('{"w": 1}\n')
    with tracker(backend_url, name="train", git=False) as t:
        model_id = t.register_data_product("model", "1.0", {"acc": 0.9}, path=model,
                                           parents=[clean_id])  # fmt: skip
        train_run = t.run
    return {"url": backend_url, "raw": raw_id, "clean": clean_id, "model": model_id,
            "train": train_run, "dir": tmp_path}  # fmt: skip


def test_every_reference_form_resolves(pipeline):
    with Store(pipeline["url"]) as store:
        assert store.resolve("model.json").hex() == pipeline["model"]
        assert store.resolve("name:model").hex() == pipeline["model"]
        assert store.resolve("name:model@1.0").hex() == pipeline["model"]
        assert store.resolve(pipeline["model"][:10]).hex() == pipeline["model"]
        # two products have these bytes: the one recorded at this path wins
        assert store.resolve("clean.csv").hex() == pipeline["clean"]
        assert store.resolve("data/raw.csv").hex() == pipeline["raw"]
        assert {d.hex() for d in store.resolve_all("clean.csv")} == {
            pipeline["clean"], pipeline["raw"]}  # fmt: skip
        assert store.get("name:clean@1").hex == pipeline["clean"]
        assert [d.hex() for d in store.lineage("model.json")][0] == pipeline["model"]


def test_unknown_references_say_what_was_tried(pipeline):
    with Store(pipeline["url"]) as store:
        with pytest.raises(UnknownReferenceError, match=r"provstore products --name 'modle\*'"):
            store.resolve("name:modle")
        with pytest.raises(UnknownReferenceError, match="no product has the bytes of"):
            (pipeline["dir"] / "new.txt").write_text("never recorded")
            store.resolve("new.txt")
        (pipeline["dir"] / "model.json").write_text('{"w": 2}\n')
        with pytest.raises(UnknownReferenceError, match="modified since run"):
            store.resolve("model.json")
        with pytest.raises(UnknownReferenceError, match="neither a digest .* nor an existing"):
            store.resolve("no-such-thing")
        with pytest.raises(UnknownDigestError, match="`provstore products` lists products"):
            store.resolve("abcdef12")


def test_commands_accept_a_file_and_a_name(pipeline):
    url = pipeline["url"]
    code, out, _ = cli("--url", url, "lineage", "model.json")
    assert code == 0 and "model 1.0" in out and "clean 1" in out
    code, out, _ = cli("--url", url, "show", "name:model", "--json")
    assert code == 0 and json.loads(out)["digest"] == pipeline["model"]
    code, out, _ = cli("--url", url, "verify", "model.json", "--no-environment")
    assert code == 0 and out.rstrip().endswith("verified")
    code, _, err = cli("--url", url, "show", "name:nope")
    assert code == 2 and "no product is named 'nope'" in err


def test_why_explains_a_file(pipeline):
    code, out, _ = cli("--url", pipeline["url"], "why", "model.json")
    assert code == 0
    assert pipeline["model"][:12] in out and "model 1.0" in out
    assert "run " + pipeline["train"][:12] in out and "succeeded" in out
    assert "matches" in out and "clean.csv" in out  # its input still matches on disk
    assert "provstore lineage model.json" in out
    (pipeline["dir"] / "clean.csv").write_text("changed\n")
    code, out, _ = cli("--url", pipeline["url"], "why", "model.json", "--json")
    data = json.loads(out)
    assert code == 0 and [i["state"] for i in data["inputs"]] == ["modified"]


def test_why_exit_codes_for_unknown_and_missing_files(pipeline):
    (pipeline["dir"] / "model.json").write_text('{"w": 2}\n')
    code, out, _ = cli("--url", pipeline["url"], "why", "model.json")
    assert code == 1 and "modified since run " + pipeline["train"][:12] in out
    code, _, err = cli("--url", pipeline["url"], "why", "missing.json")
    assert code == 2 and "no such file" in err


def test_status_sorts_files_and_caches_hashes(pipeline):
    (pipeline["dir"] / "notes.txt").write_text("untracked\n")
    (pipeline["dir"] / "clean.csv").write_text("modified\n")
    with Store(pipeline["url"]) as store:
        report = store.status(["."])
    states = {os.path.normpath(f.path): f.state for f in report.files}
    assert states == {
        "model.json": "recorded",
        os.path.join("data", "raw.csv"): "recorded",
        "clean.csv": "modified",
        "notes.txt": "untracked",
    }
    assert report.counts() == {"recorded": 2, "modified": 1, "untracked": 1}


def test_a_second_status_rehashes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(50):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}\n")

    def later() -> int:  # hashed long after the files changed: outside the racy window
        return time.time_ns() + 10**10

    with FileHasher(clock=later) as first:
        digests = [first.hash(tmp_path / f"f{i}.txt") for i in range(50)]
    assert first.hashed == 50
    with FileHasher(clock=later) as second:
        second.preload(str(tmp_path))
        assert [second.hash(tmp_path / f"f{i}.txt") for i in range(50)] == digests
    assert second.hashed == 0
    (tmp_path / "f7.txt").write_text("file 7, changed\n")  # same size class, new ctime
    with FileHasher(clock=later) as third:
        third.preload(str(tmp_path))
        changed = third.hash(tmp_path / "f7.txt")
    assert third.hashed == 1 and changed != digests[7]


def test_a_file_changed_just_now_is_not_cached(tmp_path):
    path = tmp_path / "hot.txt"
    path.write_text("fresh")
    with FileHasher() as hasher:
        hasher.hash(path)
    with FileHasher() as again:
        again.hash(path)
    assert again.hashed == 1  # within the racy window: hashed again, never trusted


def test_products_pages_newest_first_with_filters(backend_url):
    with tracker(backend_url, git=False, name="old") as t:
        old = [t.register_data_product(f"sensor-{i}", "1") for i in range(3)]
    time.sleep(0.01)
    with tracker(backend_url, git=False, name="new") as t:
        new = [t.register_data_product(f"sensor-{i}", "2") for i in range(3)]
        other = t.register_data_product("model", "1")
        run = t.run
    with Store(backend_url) as store:
        first = store.products(where=ProductFilter(name="sensor-*"), limit=4)
        rest = store.products(where=ProductFilter(name="sensor-*"), limit=4,
                              after=first[-1].cursor)  # fmt: skip
        assert [r.digest.hex() for r in first + rest] == sorted(new) + sorted(old)
        classes = store.products(where=ProductFilter(name="sensor-[12]"))
        assert sorted(r.name for r in classes) == ["sensor-1", "sensor-1", "sensor-2", "sensor-2"]
        assert {r.digest.hex() for r in store.products(where=ProductFilter(run=bytes.fromhex(
            run)))} == {*new, other}  # fmt: skip
        assert store.products(where=ProductFilter(name="Sensor-*")) == []  # case-sensitive
    code, out, _ = cli("--url", backend_url, "products", "--name", "sensor-*", "-n", "2",
                       "--json")  # fmt: skip
    page = json.loads(out)
    assert code == 0 and len(page["products"]) == 2 and page["next"]
    code, out, _ = cli("--url", backend_url, "products", "--name", "sensor-*", "-n", "10",
                       "--after", page["next"], "--json")  # fmt: skip
    assert len(json.loads(out)["products"]) == 4 and json.loads(out)["next"] is None


def test_log_shows_status_exit_code_duration_and_filters(backend_url):
    with pytest.raises(RuntimeError), tracker(backend_url, git=False, name="broken"):
        raise RuntimeError("boom")
    with tracker(backend_url, git=False, name="fine") as t:
        t.register_data_product("x")
    code, out, _ = cli("--url", backend_url, "log")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("RUN") and "STATUS" in lines[0]
    assert "fine" in lines[1] and "succeeded" in lines[1] and "broken" in lines[2]
    code, out, _ = cli("--url", backend_url, "log", "--status", "failed", "--json")
    [row] = json.loads(out)
    assert row["name"] == "broken" and row["status"] == "failed" and row["duration_ns"] >= 0
    with Store(backend_url) as store:
        assert [r.name for r in store.runs(where=RunFilter(name="f*"))] == ["fine"]
        assert store.runs(where=RunFilter(since_ns=time.time_ns() + 10**12)) == []


def test_show_run_lists_its_end_inputs_and_products(pipeline):
    code, out, _ = cli("--url", pipeline["url"], "show", pipeline["train"][:10])
    assert code == 0 and "ended: succeeded" in out and "made: " + pipeline["model"][:12] in out
    code, out, _ = cli("--url", pipeline["url"], "show", pipeline["train"], "--json")
    data = json.loads(out)
    assert data["ends"][0]["status"] == "succeeded"
    assert [p["product"] for p in data["products"]] == [pipeline["model"]]


def test_a_directory_is_not_a_reference(pipeline):
    with Store(pipeline["url"]) as store, pytest.raises(PathError, match="directory"):
        store.resolve("data")


def test_the_tracker_hashes_an_unchanged_input_once(sqlite_url, tmp_path, monkeypatch):
    from provstore.capture import hashcache

    calls = []
    real = hashcache.hash_file
    monkeypatch.setattr(hashcache, "RACY_NS", -(10**18))  # trust every stat, for the test
    monkeypatch.setattr(hashcache, "hash_file", lambda path: calls.append(path) or real(path))
    data = tmp_path / "big-input.bin"
    data.write_bytes(b"x" * 100_000)
    for _ in range(3):
        with tracker(sqlite_url, git=False) as t:
            t.use(data)
    assert len(calls) == 1  # later runs took its digest from the stat cache
    data.write_bytes(b"y" * 100_000)
    with tracker(sqlite_url, git=False) as t:
        t.use(data)
    assert len(calls) == 2


def test_status_leaves_out_the_store_and_honours_no_untracked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/here.db"
    (tmp_path / "out.txt").write_text("made\n")
    (tmp_path / "loose.txt").write_text("untracked\n")
    with tracker(url, git=False) as t:
        t.track("out.txt")
    code, out, _ = cli("--url", url, "status", "--json")
    paths = {f["path"] for f in json.loads(out)["files"]}
    assert code == 0 and paths == {"out.txt", "loose.txt"}  # no here.db, -wal or -shm
    code, out, _ = cli("--url", url, "status", "--json", "--no-untracked")
    assert [f["path"] for f in json.loads(out)["files"]] == ["out.txt"]
