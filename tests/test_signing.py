"""Signed bundles: ed25519 keys, signatures recorded as objects, and imports that require a
signature by a trusted key rejecting everything else with one line and no trace."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat

import pytest
from click.testing import CliRunner

from provstore import Store
from provstore.cli.main import main
from provstore.core.objects import (
    Environment,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Signature,
    Variables,
    seal,
)
from provstore.exchange.bundle import BundleReader, write_bundle
from provstore.exchange.signing import generate_key, key_id, load_private_key, signature_valid
from tests.test_bundle import _snapshot


def _objects(tag: str) -> list:
    """A small closure, different for each ``tag``: a run and the product it made."""
    libs = seal(LibrarySet((("numpy", "2.0.0"),)))
    env = seal(Environment("cpython", "3.11.7", "Linux", "6.1", "x86_64", "", libs.digest, {}, ()))
    variables = seal(Variables({"HOME": "/root"}, ()))
    run = seal(Run(env.digest, variables.digest, "node1", "alice", ("x.py", tag), "/w", "/py", 1,
                   5, None, "train"))  # fmt: skip
    end = seal(RunEnd(run.digest, "succeeded", 6, None, 0, ()))
    product = seal(Product(f"model-{tag}", "1", {}, None, None, None, run.digest, ()))
    return [libs, env, variables, run, end, product]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    where = tmp_path_factory.mktemp("keys")
    for name in ("trusted", "stranger"):
        generate_key(str(where / f"{name}.key"), f"{name}-site")
    return where


def _bundle(items, key=None, signer=None) -> bytes:
    """Items as a signed (or unsigned) bundle, the last item its root."""
    buf = io.BytesIO()
    if key is not None:
        from functools import partial

        from provstore.exchange.signing import sign_bundle

        signer = partial(sign_bundle, load_private_key(str(key)))
    write_bundle(buf, [items[-1].digest], [(i.digest, i.data) for i in items], signer=signer)
    return buf.getvalue()


def _import(url, data: bytes, tmp_path, trusted):
    path = tmp_path / "in.psb"
    path.write_bytes(data)
    return CliRunner().invoke(
        main, ["--url", url, "import", "--trusted-keys", str(trusted), str(path)]
    )


def test_key_generate_writes_a_private_file_and_a_public_one(tmp_path):
    key = str(tmp_path / "k")
    result = CliRunner().invoke(main, ["key", "generate", "-o", key, "--name", "lab"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert b"PRIVATE KEY" in (tmp_path / "k").read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    key = load_private_key(str(tmp_path / "k"))
    assert key.name == "lab" and key.id in result.output
    again = CliRunner().invoke(main, ["key", "generate", "-o", str(tmp_path / "k")])
    assert again.exit_code == 2 and "exists" in again.output


def test_key_id_is_securesystemslib_s(keys):
    from securesystemslib.signer import SSlibKey

    key = load_private_key(str(keys / "trusted.key"))
    assert SSlibKey.from_crypto(key.key.public_key()).keyid == key_id(key.public_key)


def test_signed_bundle_is_accepted_and_recorded(backend_url, keys, tmp_path):
    items = _objects("a")
    result = _import(backend_url, _bundle(items, keys / "trusted.key"), tmp_path,
                     keys / "trusted.key.pub")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "signed by trusted-site" in result.output
    with Store(backend_url) as store:
        [sig] = store.signatures_of(items[-1].digest)
        assert isinstance(sig.obj, Signature) and signature_valid(sig.obj)
        assert sig.obj.roots == (items[-1].digest,)
    shown = CliRunner().invoke(main, ["--url", backend_url, "show", items[-1].hex])
    assert "signed by trusted-site" in shown.output and ": valid" in shown.output
    checked = CliRunner().invoke(main, ["--url", backend_url, "verify", items[-1].hex, "--json"])
    [signature] = [c for c in json.loads(checked.output)["checks"] if c["check"] == "signature"]
    assert signature["status"] == "ok" and signature["signatures"][0]["signer"] == "trusted-site"


def test_the_web_api_shows_signatures_as_the_cli_does(sqlite_url, keys, tmp_path):
    import warnings

    from provstore.web.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    items = _objects("w")
    result = _import(sqlite_url, _bundle(items, keys / "trusted.key"), tmp_path,
                     keys / "trusted.key.pub")  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(main, ["--url", sqlite_url, "show", items[-1].hex, "--json"])
    cli = json.loads(shown.stdout)
    assert [s["signer"] for s in cli["signatures"]] == ["trusted-site"]
    with Store(sqlite_url) as store:
        api = TestClient(create_app(store)).get(f"/api/show/{items[-1].hex}").json()
    assert api == cli


def test_signed_bundle_imports_without_trusted_keys_and_a_directory_of_keys_works(
    sqlite_url, keys, tmp_path
):
    data = _bundle(_objects("b"), keys / "stranger.key")
    path = tmp_path / "b.psb"
    path.write_bytes(data)
    plain = CliRunner().invoke(main, ["--url", sqlite_url, "import", str(path)])
    assert plain.exit_code == 0 and "signed by stranger-site" in plain.output
    by_dir = _import(sqlite_url, data, tmp_path, keys)  # the directory trusts both keys
    assert by_dir.exit_code == 0, by_dir.output


def _modified(keys) -> bytes:
    """A bundle whose contents changed after signing, its trailer recomputed to match."""
    signed = _bundle(_objects("c"), keys / "trusted.key")
    reader = BundleReader(io.BytesIO(signed))
    objects = [(digest, data) for _, digest, data in reader.objects()]
    [signature] = reader.signatures
    extra = seal(LibrarySet((("evil", "6.6.6"),)))
    buf = io.BytesIO()
    write_bundle(buf, reader.roots, [(extra.digest, extra.data), *objects],
                 signer=lambda *_: signature)  # fmt: skip
    return buf.getvalue()


def _modified_and_resigned_checksum(keys) -> bytes:
    """Modified contents, and the signature's checksum edited to match them."""
    signed = _bundle(_objects("d"), keys / "trusted.key")
    reader = BundleReader(io.BytesIO(signed))
    objects = [(digest, data) for _, digest, data in reader.objects()]
    [signature] = reader.signatures
    extra = seal(LibrarySet((("evil", "6.6.6"),)))

    def forged(roots, checksum, count):
        return seal(dataclasses.replace(signature.obj, checksum=checksum, count=count))

    buf = io.BytesIO()
    write_bundle(buf, reader.roots, [(extra.digest, extra.data), *objects], signer=forged)
    return buf.getvalue()


def _moved(keys) -> bytes:
    """Bundle e's contents carrying the (valid) signature of bundle f."""
    other = BundleReader(io.BytesIO(_bundle(_objects("f"), keys / "trusted.key")))
    list(other.objects())
    return _bundle(_objects("e"), signer=lambda *_: other.signatures[0])


CASES = {
    "untrusted key": (lambda keys: _bundle(_objects("g"), keys / "stranger.key"),
                      "signed only by stranger-site"),
    "unsigned": (lambda keys: _bundle(_objects("h")), "is not signed"),
    "modified after signing": (_modified, "made for other contents"),
    "checksum edited to match": (_modified_and_resigned_checksum, "does not verify"),
    "signature from another bundle": (_moved, "made for other contents"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_with_one_line_and_the_store_unchanged(backend_url, keys, tmp_path, case):
    make, reason = CASES[case]
    with Store(backend_url) as store:
        store.put(_objects("already-here"))
    before = _snapshot(backend_url)
    result = _import(backend_url, make(keys), tmp_path, keys / "trusted.key.pub")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("provstore: error: bundle rejected:")
    assert reason in lines[0] and "nothing was imported" in lines[0]
    assert _snapshot(backend_url) == before


def test_a_bad_signature_is_rejected_even_when_none_is_required(sqlite_url, keys, tmp_path):
    path = tmp_path / "m.psb"
    path.write_bytes(_moved(keys))
    result = CliRunner().invoke(main, ["--url", sqlite_url, "import", str(path)])
    assert result.exit_code == 1 and "made for other contents" in result.output


def test_trusted_keys_setting_in_pyproject(tmp_path, keys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.provstore]\nurl = "store.db"\ntrusted_keys = ["{keys / "trusted.key.pub"}"]\n'
    )
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "u.psb"
    path.write_bytes(_bundle(_objects("i")))
    result = CliRunner().invoke(main, ["import", str(path)])
    assert result.exit_code == 1 and "is not signed" in result.output
    path.write_bytes(_bundle(_objects("i"), keys / "trusted.key"))
    assert CliRunner().invoke(main, ["import", str(path)]).exit_code == 0


def test_export_sign_writes_a_signed_bundle(sqlite_url, keys, tmp_path):
    items = _objects("j")
    with Store(sqlite_url) as store:
        store.put(items)
    out = tmp_path / "s.psb"
    result = CliRunner().invoke(main, ["--url", sqlite_url, "export", items[-1].hex, "--sign",
                                       str(keys / "trusted.key"), "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    reader = BundleReader(io.BytesIO(out.read_bytes()))
    assert len(list(reader.objects())) == len(items)
    [sig] = reader.signatures
    assert sig.obj.checksum == reader.checksum and signature_valid(sig.obj)
    wrong = CliRunner().invoke(main, ["--url", sqlite_url, "export", items[-1].hex, "--format",
                                      "prov-json", "--sign", str(keys / "trusted.key"), "-o",
                                      str(tmp_path / "x.json")])  # fmt: skip
    assert wrong.exit_code == 2 and "--sign does not apply" in wrong.output


def test_the_python_api_signs_and_requires_signatures(sqlite_url, tmp_path, keys):
    from provstore.api import Store as PublicStore
    from provstore.core.errors import BundleError

    items = _objects("k")
    with PublicStore(sqlite_url) as store:
        store.put(items)
        signed, unsigned = io.BytesIO(), io.BytesIO()
        store.export_bundle([items[-1].hex], signed, sign=str(keys / "trusted.key"))
        store.export_bundle([items[-1].hex], unsigned)
    other = f"sqlite:///{tmp_path}/other.db"
    with PublicStore(other) as store:
        unsigned.seek(0)
        with pytest.raises(BundleError, match="is not signed"):
            store.import_bundle(unsigned, trusted_keys=[str(keys / "trusted.key.pub")])
        signed.seek(0)
        result = store.import_bundle(signed, trusted_keys=[str(keys / "trusted.key.pub")])
        assert result.signed_by and result.signed_by[0].startswith("trusted-site")
