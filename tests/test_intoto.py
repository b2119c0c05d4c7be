"""in-toto attestations: checked by securesystemslib's DSSE verification with the public key
and by ``sha256sum``, not by provstore's own code."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from provstore import tracker
from provstore.cli.main import main
from provstore.exchange.signing import generate_key


def _public_key(path):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(load_pem_public_key(path.read_bytes()))


@pytest.fixture
def recorded(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "raw.csv"
    raw.write_text("x,y\n1,2\n3,4\n")
    model = tmp_path / "model.bin"
    with tracker(sqlite_url, name="train") as t:
        used = t.use(raw)
        model.write_bytes(b"weights " * 1000)
        product = t.track(model, parents=[used])
    generate_key(str(tmp_path / "site.key"), "lab-a")
    return sqlite_url, product, model, raw


def _attest(url, ref, tmp_path, *extra):
    out = tmp_path / "model.intoto.json"
    key = str(tmp_path / "site.key")
    result = CliRunner().invoke(
        main, ["--url", url, "attest", ref, "--key", key, "-o", str(out), *extra]
    )
    return result, out


def test_attestation_verifies_independently_and_names_the_sha256(recorded, tmp_path):
    from securesystemslib.dsse import Envelope

    url, product, model, raw = recorded
    result, out = _attest(url, str(model), tmp_path)
    assert result.exit_code == 0, result.output
    envelope = Envelope.from_dict(json.loads(out.read_text()))
    verified = envelope.verify([_public_key(tmp_path / "site.key.pub")], 1)
    assert len(verified) == 1
    assert envelope.payload_type == "application/vnd.in-toto+json"
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    [subject] = statement["subject"]
    sha256sum = shutil.which("sha256sum")
    assert sha256sum, "coreutils' sha256sum is needed by this test"
    expected = subprocess.run([sha256sum, str(model)], capture_output=True, text=True,
                              check=True).stdout.split()[0]  # fmt: skip
    assert subject["digest"]["sha256"] == expected
    assert subject["name"] == str(model)
    predicate = statement["predicate"]
    build = predicate["buildDefinition"]
    assert build["buildType"].startswith("urn:provstore:")
    # the input file, and the code's git commit when the test runs inside a git checkout
    files = [d for d in build["resolvedDependencies"] if d["uri"].startswith("file://")]
    code = [d for d in build["resolvedDependencies"] if d["uri"].startswith("git+")]
    assert len(files) == 1 and len(code) <= 1
    assert all(len(d["digest"]["gitCommit"]) == 40 for d in code)
    [dependency] = files
    assert (
        dependency["digest"]["sha256"]
        == subprocess.run(
            [sha256sum, str(raw)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    details = predicate["runDetails"]
    assert details["builder"]["id"].startswith("urn:provstore:builder:")
    assert details["metadata"]["invocationId"] and details["metadata"]["finishedOn"]


def test_a_tampered_attestation_fails_verification(recorded, tmp_path):
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    url, product, model, _ = recorded
    _, out = _attest(url, product, tmp_path)
    data = json.loads(out.read_text())
    payload = json.loads(base64.b64decode(data["payload"]))
    payload["subject"][0]["digest"]["sha256"] = "0" * 64
    data["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(data).verify([_public_key(tmp_path / "site.key.pub")], 1)


def test_a_changed_file_is_not_attested(recorded, tmp_path):
    url, product, model, _ = recorded
    model.write_bytes(b"other weights")
    result, out = _attest(url, product, tmp_path)
    assert result.exit_code == 1 and "no longer holds the bytes recorded" in result.output
    assert not out.exists()
