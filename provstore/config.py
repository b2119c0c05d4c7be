"""Where the store is and what capture keeps, resolved once per process.

Precedence for every setting: an explicit argument (``--url``) > the environment variable
(``PROVSTORE_URL``, ...) > ``[tool.provstore]`` in the nearest ``pyproject.toml`` above the
working directory > the default.  There ``url`` may also be a list of one store's URLs on
several hosts (a cluster's nodes), read as one URL naming them all.  The default store is a
SQLite file that persists across processes: ``$XDG_DATA_HOME/provstore/provstore.db``
(``~/.local/share/provstore/...``).
"""

from __future__ import annotations

import difflib
import os
import re
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
    "KEYS",
    "PROBES",
    "PROBE_ROOT_VARIABLE",
    "SPOOL_VARIABLE",
    "URL_VARIABLE",
    "Settings",
    "check_probes",
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
PROBE_ROOT_VARIABLE = "PROVSTORE_PROBE_ROOT"
"""Where the probes read system files (default ``/``): a fake tree, for tests."""
PROBES = ("imports", "conda", "gpu", "container", "job")
"""Every probe's name, as ``probes_off`` names them."""


_LIST_KEYS = ("env_allow", "redact_names", "redact_values", "probes_off")
KEYS = ("url", "spool", *_LIST_KEYS, "trusted_keys", "openlineage_url", "openlineage_namespace")
"""Every key ``[tool.provstore]`` may hold; any other is an error (a typo is not ignored)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved configuration; ``source`` says where the URL came from."""

    url: str
    source: str
    spool: str | None = None
    env_allow: tuple[str, ...] = ()
    redact_names: tuple[str, ...] = ()
    redact_values: tuple[str, ...] = field(default=())
    probes_off: tuple[str, ...] = ()
    """Probes not to run: ``imports``, ``conda``, ``gpu``, ``container``, ``job``."""
    probe_root: str = "/"
    """Where the probes read ``/proc``, ``/.dockerenv``, ... (``PROVSTORE_PROBE_ROOT``: a
    fake tree, for tests)."""
    trusted_keys: tuple[str, ...] = ()
    """Public key files or directories: ``provstore import`` then requires a signature."""
    openlineage_url: str | None = None
    """Where a tracked run sends OpenLineage events as it starts and ends (None: nowhere)."""
    openlineage_namespace: str = "provstore"
    """The OpenLineage job namespace of the runs recorded here."""

    def probe(self, name: str) -> bool:
        """Whether the probe ``name`` runs."""
        return name not in self.probes_off


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
    _refuse_unknown_keys(table, path)
    return table


def _refuse_unknown_keys(table: Mapping[str, Any], path: Path) -> None:
    unknown = [key for key in table if key not in KEYS]
    if not unknown:
        return
    named = []
    for key in unknown:
        near = difflib.get_close_matches(key, KEYS, n=1)
        named.append(f"{key!r} (did you mean {near[0]!r}?)" if near else repr(key))
    raise ConfigError(
        f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(named)} in "
        f"[tool.provstore] of {path}; the keys are {', '.join(KEYS)}"
    )


def _absolute_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path in pyproject.toml relative to that file, not the cwd.

    Both forms: ``sqlite:///stores/p.db`` and the bare path ``stores/p.db``.
    """
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and len(url) > len(prefix):
        return prefix + str(base / url[len(prefix) :])
    if ":" not in url and not os.path.isabs(os.path.expanduser(url)):
        return str(base / url)
    return url


def _env_list(name: str) -> tuple[str, ...]:
    r"""A comma-separated list; a comma inside ``{}``, ``[]``, ``()`` or after ``\`` is kept.

    So that a regular expression such as ``key-[0-9a-f]{12,}`` survives in
    ``PROVSTORE_REDACT_VALUES``. Inside ``[...]`` only ``]`` counts (``[{,]`` is one class).
    """
    items: list[str] = []
    depth, start, escaped, in_class = 0, 0, False, False
    raw = os.environ.get(name, "")
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "{(":
            depth += 1
        elif char in "})":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append(raw[start:index])
            start = index + 1
    items.append(raw[start:])
    return tuple(item.strip() for item in items if item.strip())


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
    lists: dict[str, Any] = {}
    for key in _LIST_KEYS:
        from_env = _env_list(f"PROVSTORE_{key.upper()}")
        lists[key] = _list_setting(table, key, pyproject) + from_env
    _check_probes(lists["probes_off"], pyproject)
    lists_and_root: dict[str, Any] = {
        **lists,
        "probe_root": os.environ.get(PROBE_ROOT_VARIABLE) or "/",
    }
    spool = spool or os.environ.get(SPOOL_VARIABLE)
    if not spool and pyproject is not None:
        from_table = _table_str(table, "spool", pyproject)
        spool = str(pyproject.parent / from_table) if from_table else None
    extra = _exchange_settings(table, pyproject)
    if url:
        return Settings(url, "argument", spool, **lists_and_root, **extra)
    if os.environ.get(URL_VARIABLE):
        return Settings(os.environ[URL_VARIABLE], URL_VARIABLE, spool, **lists_and_root, **extra)
    from_file = _table_url(table, pyproject)
    if from_file and pyproject is not None:
        return Settings(
            _absolute_sqlite(from_file, pyproject.parent),
            str(pyproject),
            spool,
            **lists_and_root,
            **extra,
        )
    return Settings(default_url(), "default", spool, **lists_and_root, **extra)


def check_probes(names: tuple[str, ...] | list[str], where: object = None) -> None:
    """Refuse a probe name that does not exist (a typo would silently keep the probe on)."""
    _check_probes(tuple(names), where)


def _check_probes(names: tuple[str, ...], where: object) -> None:
    unknown = [name for name in names if name not in PROBES]
    if unknown:
        place = f" in {where}" if where else ""
        raise ConfigError(
            f"unknown probe {', '.join(map(repr, unknown))}{place}; the probes are "
            f"{', '.join(PROBES)}"
        )


def _exchange_settings(table: Mapping[str, Any], pyproject: Path | None) -> dict[str, Any]:
    """Trusted keys (paths relative to pyproject.toml) and where OpenLineage events go.

    ``PROVSTORE_TRUSTED_KEYS`` adds to the list; ``PROVSTORE_OPENLINEAGE_URL`` and
    ``PROVSTORE_OPENLINEAGE_NAMESPACE`` win over the table.
    """
    keys = _list_setting(table, "trusted_keys", pyproject) + _env_list("PROVSTORE_TRUSTED_KEYS")
    base = pyproject.parent if pyproject is not None else Path.cwd()
    url = os.environ.get("PROVSTORE_OPENLINEAGE_URL") or _table_str(
        table, "openlineage_url", pyproject
    )
    namespace = os.environ.get("PROVSTORE_OPENLINEAGE_NAMESPACE") or _table_str(
        table, "openlineage_namespace", pyproject
    )
    return {
        "trusted_keys": tuple(str(base / os.path.expanduser(key)) for key in keys),
        "openlineage_url": url or None,
        "openlineage_namespace": namespace or "provstore",
    }


def _table_str(table: Mapping[str, Any], key: str, where: Path | None) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"[tool.provstore] {key} in {where} must be a string")
    return value


_SERVER_URL = re.compile(
    r"^(?P<scheme>[^:/?#]+://)(?:(?P<user>[^/?#]*)@)?(?P<host>[^/?#@]*)(?P<rest>.*)$"
)


def _table_url(table: Mapping[str, Any], where: Path | None) -> str | None:
    """``url``: one URL, or a list of one store's URLs on several hosts (a cluster's nodes).

    A list becomes one multi-host URL (``mysql://u@h1:3307,h2:3308/db``); its URLs must differ
    in host and port only.
    """
    value = table.get("url")
    if not isinstance(value, list):
        return _table_str(table, "url", where)
    if not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[tool.provstore] url in {where} must be a string or a list of them")
    parts = [_SERVER_URL.match(url) for url in value]
    if not all(parts):
        raise ConfigError(f"[tool.provstore] url in {where}: a list holds server URLs only")
    first = parts[0]
    assert first is not None
    for url, part in zip(value, parts, strict=True):
        assert part is not None
        if (part["scheme"], part["user"], part["rest"]) != (
            first["scheme"], first["user"], first["rest"]
        ):  # fmt: skip
            raise ConfigError(
                f"[tool.provstore] url in {where}: the URLs of a list may differ in host and "
                f"port only, but {_shown(url)!r} and {_shown(value[0])!r} differ otherwise"
            )
    hosts = ",".join(part["host"] for part in parts if part is not None)
    user = f"{first['user']}@" if first["user"] is not None else ""
    return f"{first['scheme']}{user}{hosts}{first['rest']}"


def _shown(url: str) -> str:
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
