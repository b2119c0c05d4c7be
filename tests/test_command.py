"""``provstore run``: which outputs are recorded, and how a tracker() inside the command joins."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from provstore import Store


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "in.txt").write_text("hello provenance\n")
    return tmp_path


def _products(url: str, name: str) -> list:
    with Store(url) as store:
        return store.find_products(name=name)


def _python(workdir, name: str, code: str) -> list[str]:
    (workdir / name).write_text(textwrap.dedent(code))
    return [sys.executable, name]


def test_an_output_the_command_did_not_touch_is_not_recorded(backend_url, workdir, script):
    stale = workdir / "out.txt"
    stale.write_text("left over from yesterday\n")
    proc = script(backend_url, "run", "-i", "in.txt", "-o", "out.txt", "--",
                  *_python(workdir, "idle.py", "pass\n"), cwd=str(workdir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: output out.txt was not changed by the command; not recorded" in proc.stderr
    assert _products(backend_url, "out.txt") == []
    assert stale.read_text() == "left over from yesterday\n"


@pytest.mark.parametrize(
    "code",
    [
        # the same bytes written again: a new mtime, so the command made it
        "open('out.txt', 'w').write('same\\n')\n",
        # new bytes under the old mtime (as `cp -p` or `rsync -t` leave it)
        "import os\nst = os.stat('out.txt')\nopen('out.txt', 'w').write('new!\\n')\n"
        "os.utime('out.txt', ns=(st.st_atime_ns, st.st_mtime_ns))\n",
    ],
    ids=["same-bytes-new-mtime", "new-bytes-old-mtime"],
)
def test_an_output_the_command_rewrote_is_recorded(sqlite_url, workdir, script, code):
    (workdir / "out.txt").write_text("same\n")
    os.utime(workdir / "out.txt", ns=(1_000_000_000, 1_000_000_000))
    proc = script(sqlite_url, "run", "-o", "out.txt", "--", *_python(workdir, "w.py", code),
                  cwd=str(workdir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    [product] = _products(sqlite_url, "out.txt")
    assert product.obj.size == (workdir / "out.txt").stat().st_size


REGISTERS_ITS_OUTPUT = """
from provstore import tracker
with tracker() as t:
    with open("data/daily.csv", "w") as out:
        out.write("day,value\\n1,2\\n")
    t.register_data_product(name="daily", version="2", metadata={"rows": 1},
                            path="data/daily.csv")
    print(t.run, t.joined)
"""


def test_an_output_the_command_registers_itself_is_recorded_once(backend_url, workdir, script):
    (workdir / "data").mkdir()
    command = _python(workdir, "daily.py", REGISTERS_ITS_OUTPUT)
    proc = script(backend_url, "run", "-i", "in.txt", "-o", "data/daily.csv", "--", *command,
                  cwd=str(workdir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run, joined = proc.stdout.split()
    assert joined == "True"
    with Store(backend_url) as store:
        made = store.products_of_run(bytes.fromhex(run))
        [daily] = made  # one product for the one output: the script's own registration
        assert daily.obj.name == "daily" and daily.obj.metadata == {"rows": 1}
        assert daily.obj.path == str(workdir / "data" / "daily.csv")
        [summary] = store.runs()
        assert summary.digest.hex() == run and summary.products == 1
    assert f"provstore: data/daily.csv was recorded by the command as {daily.hex}" in proc.stderr


def test_the_commands_tracker_finds_the_inputs_recorded_for_it(sqlite_url, workdir, script):
    command = _python(workdir, "reads.py", """
        from provstore import tracker
        with tracker() as t:
            print(t.use("./in.txt"))
    """)  # fmt: skip
    proc = script(sqlite_url, "run", "-i", "in.txt", "--", *command, cwd=str(workdir))
    assert proc.returncode == 0, proc.stderr
    with Store(sqlite_url) as store:
        [source] = store.find_products(name="in.txt")
        assert store.find_products(name="./in.txt") == []
    assert proc.stdout.strip() == source.hex  # the input provstore run recorded, not a second
