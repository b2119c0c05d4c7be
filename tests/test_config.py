"""Configuration precedence: --url > PROVSTORE_URL > [tool.provstore] > the default file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provstore.config import KEYS, default_url, resolve
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


def test_a_bare_path_in_pyproject_is_relative_to_it(tmp_path, monkeypatch):
    nested = tmp_path / "src"
    nested.mkdir()
    _pyproject(tmp_path, '[tool.provstore]\nurl = "stores/p.db"\n')
    monkeypatch.chdir(nested)
    assert resolve().url == str(tmp_path / "stores" / "p.db")


@pytest.mark.parametrize(
    ("key", "nearest"),
    [("ulr", "url"), ("env_alow", "env_allow"), ("redact_value", "redact_values"),
     ("spoool", "spool")],
)  # fmt: skip
def test_an_unknown_key_is_an_error_naming_the_nearest(tmp_path, monkeypatch, key, nearest):
    _pyproject(tmp_path, f'[tool.provstore]\n{key} = "x"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve()
    message = str(caught.value)
    assert repr(key) in message and f"did you mean {nearest!r}" in message
    assert str(tmp_path / "pyproject.toml") in message and "\n" not in message


def test_an_unknown_key_with_nothing_near_lists_the_keys(tmp_path, monkeypatch):
    _pyproject(tmp_path, "[tool.provstore]\ncolour = 1\n[tool.provstore.extra]\na = 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve()
    message = str(caught.value)
    assert "'colour'" in message and "'extra'" in message and "did you mean" not in message
    assert "url, spool, env_allow, redact_names, redact_values, probes_off" in message


def test_an_unknown_key_stops_every_command(script, tmp_path):
    _pyproject(tmp_path, '[tool.provstore]\nulr = "sqlite:///x.db"\n')
    proc = script(f"sqlite:///{tmp_path}/s.db", "log", cwd=str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "did you mean 'url'" in proc.stderr


CONFIGURATION_PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.rst"


@pytest.mark.parametrize("key", KEYS)
def test_the_configuration_page_lists_every_key(key):
    text = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    assert f"* - ``{key}``\n     - ``PROVSTORE_{key.upper()}``" in text


def test_the_configuration_pages_messages_are_the_codes(tmp_path, monkeypatch):
    from provstore.db.dialects import parse_url

    text = " ".join(CONFIGURATION_PAGE.read_text(encoding="utf-8").split())
    with pytest.raises(ConfigError) as caught:
        parse_url("postgresql+asyncpg://bob@db/prov")
    assert f"provstore: error: {caught.value}" in text
    _pyproject(tmp_path, '[tool.provstore]\nulr = "x.db"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve()
    shown = str(caught.value).replace(str(tmp_path), "/home/me/project")
    assert f"provstore: error: {shown}" in text
