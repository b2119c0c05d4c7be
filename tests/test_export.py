"""``provstore export -o FILE``: never over an existing file without ``--force``, and the file
gets the user's umask like any other file they write (spool bundles do too)."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from provstore import Store, tracker
from provstore.cli.main import main
from provstore.core.errors import OutputExistsError, UsageError
from provstore.exchange import formats
from provstore.exchange.formats import export_to_path


@pytest.fixture
def recorded(sqlite_url):
    with tracker(sqlite_url, name="export-test") as t:
        product = t.register_data_product(name="p")
    return sqlite_url, product


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    before = os.umask(0o022)
    yield set_mask
    os.umask(before)


def export(url: str, *args: str):
    return CliRunner().invoke(main, ["--url", url, "export", *args])


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_existing_file_is_kept_without_force(recorded, tmp_path):
    url, product = recorded
    out = tmp_path / "out.psb"
    out.write_bytes(b"precious")
    result = export(url, product, "-o", str(out))
    assert result.exit_code == 2
    assert "--force" in result.stderr and str(out) in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert out.read_bytes() == b"precious"
    assert not list(tmp_path.glob(".provstore-export-*"))


def test_force_replaces_it(recorded, tmp_path):
    url, product = recorded
    out = tmp_path / "out.psb"
    out.write_bytes(b"old")
    result = export(url, product, "-o", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"old"
    with Store(f"sqlite:///{tmp_path}/copy.db") as copy, out.open("rb") as handle:
        from provstore.exchange.transfer import import_bundle

        assert import_bundle(copy, handle).roots == (product,)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_the_file_gets_the_users_umask(recorded, tmp_path, umask, mask):
    url, product = recorded
    umask(mask)
    for fmt in ("bundle", "prov-json"):
        out = tmp_path / f"out.{fmt}"
        assert export(url, product, "-o", str(out), "--format", fmt).exit_code == 0
        assert _mode(out) == 0o666 & ~mask
        out.write_bytes(b"")
        os.chmod(out, 0o600)
        assert export(url, product, "-o", str(out), "--format", fmt, "--force").exit_code == 0
        assert _mode(out) == 0o666 & ~mask


def test_the_library_refuses_too(recorded, tmp_path):
    url, product = recorded
    out = tmp_path / "out.psb"
    out.write_bytes(b"keep")
    with Store(url) as store:
        with pytest.raises(OutputExistsError) as caught:
            export_to_path(store, [product], str(out))
        assert isinstance(caught.value, UsageError) and isinstance(caught.value, FileExistsError)
        assert caught.value.path == str(out)
        export_to_path(store, [product], str(out), overwrite=True)
    assert out.read_bytes() != b"keep"


def test_a_file_that_appears_while_exporting_is_kept(recorded, tmp_path, monkeypatch):
    url, product = recorded
    out = tmp_path / "out.psb"
    real = formats.EXPORT_FORMATS["bundle"]

    def racing_write(store, refs, fileobj, compress):
        out.write_bytes(b"someone else's")
        return real.write(store, refs, fileobj, compress)

    monkeypatch.setitem(
        formats.EXPORT_FORMATS, "bundle", formats.ExportFormat("bundle", "", racing_write)
    )
    with Store(url) as store, pytest.raises(OutputExistsError):
        export_to_path(store, [product], str(out))
    assert out.read_bytes() == b"someone else's"
    assert not list(tmp_path.glob(".provstore-export-*"))


def test_standard_output_needs_no_force(recorded):
    url, product = recorded
    result = export(url, product, "-o", "-")
    assert result.exit_code == 0 and result.stdout_bytes


def test_a_missing_directory_is_a_usage_error(recorded, tmp_path):
    url, product = recorded
    result = export(url, product, "-o", str(tmp_path / "no" / "such" / "out.psb"))
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert len(result.stderr.splitlines()) == 1
