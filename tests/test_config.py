"""Configuration precedence: --url > PROVSTORE_URL > [tool.provstore] > the default file."""

from __future__ import annotations

import os

import pytest

from provstore.config import default_url, resolve
from provstore.core.errors import ConfigError


def _pyproject(directory, body: str):
    (directory / "pyproject.toml").write_text(body)


def test_default_is_a_persistent_file_in_the_data_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = resolve()
    assert settings.source == "default"
    assert settings.url == default_url()
    assert settings.url == f"sqlite:///{os.environ['XDG_DATA_HOME']}/provstore/provstore.db"


def test_default_without_xdg_uses_local_share(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path}/.local/share/provstore/provstore.db"


def test_precedence(tmp_path, monkeypatch):
    project = tmp_path / "project"
    nested = project / "src" / "pkg"
    nested.mkdir(parents=True)
    _pyproject(project, '[tool.provstore]\nurl = "sqlite:///stores/p.db"\nenv_allow = ["LAB_*"]\n')
    monkeypatch.chdir(nested)
    from_file = resolve()
    assert from_file.url == f"sqlite:///{project}/stores/p.db"  # relative to the pyproject
    assert from_file.source == str(project / "pyproject.toml")
    assert from_file.env_allow == ("LAB_*",)
    monkeypatch.setenv("PROVSTORE_URL", "sqlite:////env/e.db")
    assert resolve().url == "sqlite:////env/e.db"
    assert resolve("sqlite:////arg/a.db").url == "sqlite:////arg/a.db"
    assert resolve("sqlite:////arg/a.db").source == "argument"


def test_lists_extend_from_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROVSTORE_REDACT_NAMES", "*_SIGNATURE, *_SALT")
    assert resolve().redact_names == ("*_SIGNATURE", "*_SALT")


def test_value_patterns_from_environment_keep_their_commas(tmp_path, monkeypatch):
    # A comma inside {m,n}, [...] or (...) belongs to the regular expression.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "PROVSTORE_REDACT_VALUES",
        r"acme-[0-9a-f]{12,}, pin=(?P<secret>\d{4,6}),[,;]x, a\,b,[{]z,last",
    )
    assert resolve().redact_values == (
        "acme-[0-9a-f]{12,}",
        r"pin=(?P<secret>\d{4,6})",
        "[,;]x",
        r"a\,b",
        "[{]z",
        "last",
    )


@pytest.mark.parametrize(
    "body",
    ["[tool.provstore]\nurl = 3\n", '[tool.provstore]\nenv_allow = "X"\n', "[tool.provstore\n"],
)
def test_bad_pyproject_is_a_config_error(tmp_path, monkeypatch, body):
    _pyproject(tmp_path, body)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        resolve()
