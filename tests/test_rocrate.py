"""RO-Crate: the tutorial pipeline's crate passes roc-validator for the Process Run Crate 0.5
profile, offline.

The validator resolves the crate's JSON-LD context (``https://w3id.org/ro/crate/1.1/context``)
through its HTTP cache (requests-cache, SQLite); with ``offline=True`` it reads only that
cache.  The fixture seeds a cache of its own, fetching the URL once through a requests
adapter that answers with the context ``rocrate`` ships (``rocrate/data/ro-crate.jsonld``,
the RO-Crate 1.3 context, which defines every 1.1 term with the same IRI), so no network is
used.  docs/formats/ro-crate.rst says the same for users.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from provstore.cli.main import main

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.rst"
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
BLOCK = re.compile(r"\.\. code-block:: \w+\n   :caption: (\S+)\n\n((?:   .*\n|\n)+)")


def tutorial_files() -> dict[str, str]:
    """raw.csv, clean.py and summarize.py as the tutorial shows them."""
    text = TUTORIAL.read_text(encoding="utf-8")
    found = {}
    for name, body in BLOCK.findall(text):
        lines = [line[3:] for line in body.splitlines()]
        found[name] = "\n".join(lines).strip("\n") + "\n"
    return found


@pytest.fixture(scope="module")
def validator_cache(tmp_path_factory):
    """A requests-cache database holding the RO-Crate context, made without network."""
    import requests
    import requests_cache
    import rocrate
    import urllib3

    context = (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()

    class Shipped(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            assert request.url == CONTEXT_URL, request.url
            raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200,
                                       headers={"Content-Type": "application/ld+json"},
                                       preload_content=False, request_url=request.url)  # fmt: skip
            return self.build_response(request, raw)

    cache = tmp_path_factory.mktemp("roc-cache") / "http-cache"
    session = requests_cache.CachedSession(cache_name=str(cache), backend="sqlite",
                                           expire_after=-1)  # fmt: skip
    session.mount("https://", Shipped())
    session.get(CONTEXT_URL, headers={"Accept": "application/ld+json, application/json"})
    session.close()
    return cache


def _validate(crate: Path, cache: Path, severity: str = "REQUIRED"):
    from rocrate_validator import services
    from rocrate_validator.models import ValidationSettings

    settings = ValidationSettings(
        rocrate_uri=str(crate), profile_identifier="process-run-crate-0.5",
        requirement_severity=severity, offline=True, cache_path=cache,
        skip_availability_check=True,
    )  # fmt: skip
    return services.validate(settings)


@pytest.fixture
def tutorial(tmp_path, script):
    work = tmp_path / "work"
    work.mkdir()
    files = tutorial_files()
    assert {"raw.csv", "clean.py", "summarize.py"} <= files.keys()
    for name, text in files.items():
        (work / name).write_text(text)
    url = f"sqlite:///{tmp_path}/store.db"
    ran = script(url, "run", "-i", "raw.csv", "-o", "clean.csv", "--name", "clean", "--",
                 sys.executable, "clean.py", cwd=str(work))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    summary = subprocess.run([sys.executable, "summarize.py"], cwd=work, capture_output=True,
                             text=True, env={**__import__("os").environ, "PROVSTORE_URL": url},
                             check=True)  # fmt: skip
    return url, summary.stdout.strip(), work


def test_the_tutorial_crate_passes_the_validator_offline(tutorial, tmp_path, validator_cache):
    url, product, work = tutorial
    crate = tmp_path / "crate"
    result = CliRunner().invoke(main, ["--url", url, "export", product, "--format", "ro-crate",
                                       "--with-files", "-o", str(crate)])  # fmt: skip
    assert result.exit_code == 0, result.output
    outcome = _validate(crate, validator_cache)
    issues = [f"{i.severity}: {i.message}" for i in outcome.get_issues()]
    assert outcome.passed(), issues
    graph = json.loads((crate / "ro-crate-metadata.json").read_text())["@graph"]
    actions = [e for e in graph if e.get("@type") == "CreateAction"]
    assert sorted(a["name"] for a in actions) == ["Run clean", "Run summarize"]
    by_id = {e["@id"]: e for e in graph}
    summarize = next(a for a in actions if a["name"] == "Run summarize")
    assert by_id[summarize["result"]["@id"]]["identifier"] == f"urn:provstore:{product}"
    assert summarize["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert by_id[summarize["instrument"]["@id"]]["@type"] == "SoftwareApplication"
    assert (crate / "data" / "summary.json").read_bytes() == (work / "summary.json").read_bytes()
    assert (crate / "data" / "raw.csv").exists()


def test_without_files_the_crate_names_them_and_still_validates(
    tutorial, tmp_path, validator_cache
):
    url, product, work = tutorial
    out = tmp_path / "crate.zip"
    result = CliRunner().invoke(main, ["--url", url, "export", product, "--format", "ro-crate",
                                       "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["ro-crate-metadata.json"]
        archive.extractall(tmp_path / "unzipped")
    assert _validate(tmp_path / "unzipped", validator_cache).passed()
    graph = json.loads((tmp_path / "unzipped" / "ro-crate-metadata.json").read_text())["@graph"]
    assert f"file://{work / 'summary.json'}" in {e["@id"] for e in graph}


def test_an_existing_directory_is_kept(tutorial, tmp_path):
    url, product, _ = tutorial
    (tmp_path / "taken").mkdir()
    result = CliRunner().invoke(main, ["--url", url, "export", product, "--format", "ro-crate",
                                       "-o", str(tmp_path / "taken")])  # fmt: skip
    assert result.exit_code == 2 and "exists" in result.output
