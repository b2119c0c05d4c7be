"""Where the store is and what capture keeps, resolved once per process.

Precedence for every setting: an explicit argument (``--url``) > the environment variable
(``PROVSTORE_URL``, ...) > ``[tool.provstore]`` in the nearest ``pyproject.toml`` above the
working directory > the default.  The default store is a SQLite file that persists across
processes: ``$XDG_DATA_HOME/provstore/provstore.db`` (``~/.local/share/provstore/...``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provstore.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "JOIN_VARIABLE",
    "SPOOL_VARIABLE",
    "URL_VARIABLE",
    "Settings",
    "default_url",
    "find_pyproject",
    "resolve",
]

URL_VARIABLE = "PROVSTORE_URL"
"""The store's URL, for this process and the commands it starts."""
JOIN_VARIABLE = "PROVSTORE_RUN"
"""Set by ``provstore run`` for its command: the run a ``tracker()`` inside it joins."""
SPOOL_VARIABLE = "PROVSTORE_SPOOL"
"""The spool directory (spool mode), for this process and the commands it starts."""

_LIST_KEYS = ("env_allow", "redact_names", "redact_values")


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved configuration; ``source`` says where the URL came from."""

    url: str
    source: str
    spool: str | None = None
    env_allow: tuple[str, ...] = ()
    redact_names: tuple[str, ...] = ()
    redact_values: tuple[str, ...] = field(default=())


def default_url() -> str:
    """The default store: a SQLite file in the user's data directory."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return f"sqlite:///{os.path.join(os.path.abspath(base), 'provstore', 'provstore.db')}"


def find_pyproject(start: str | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (default: the working directory)."""
    here = Path(start or os.getcwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _pyproject_table(path: Path) -> Mapping[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("provstore", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.provstore] in {path} must be a table")
    return table


def _absolute_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path in pyproject.toml relative to that file, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and len(url) > len(prefix):
        return prefix + str(base / url[len(prefix) :])
    return url


def _env_list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _list_setting(table: Mapping[str, Any], key: str, where: Path | None) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[tool.provstore] {key} in {where} must be a list of strings")
    return tuple(value)


def resolve(
    url: str | None = None, *, spool: str | None = None, start: str | None = None
) -> Settings:
    """Resolve settings from arguments, environment, pyproject.toml and defaults."""
    pyproject = find_pyproject(start)
    table: Mapping[str, Any] = _pyproject_table(pyproject) if pyproject else {}
    lists: dict[str, tuple[str, ...]] = {}
    for key in _LIST_KEYS:
        from_env = _env_list(f"PROVSTORE_{key.upper()}")
        lists[key] = _list_setting(table, key, pyproject) + from_env
    spool = spool or os.environ.get(SPOOL_VARIABLE)
    if not spool and pyproject is not None:
        from_table = _table_str(table, "spool", pyproject)
        spool = str(pyproject.parent / from_table) if from_table else None
    if url:
        return Settings(url, "argument", spool, **lists)
    if os.environ.get(URL_VARIABLE):
        return Settings(os.environ[URL_VARIABLE], URL_VARIABLE, spool, **lists)
    from_file = _table_str(table, "url", pyproject)
    if from_file and pyproject is not None:
        return Settings(
            _absolute_sqlite(from_file, pyproject.parent), str(pyproject), spool, **lists
        )
    return Settings(default_url(), "default", spool, **lists)


def _table_str(table: Mapping[str, Any], key: str, where: Path | None) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"[tool.provstore] {key} in {where} must be a string")
    return value
