"""What differs between two environments: packages, interpreter, platform and variables.

Pure functions over :class:`~provstore.core.objects.Environment` and
:class:`~provstore.core.objects.LibrarySet` values; the caller loads them (from a store, or from
the live process).  Variables that were redacted on either side are *unverifiable*: their
stored values are ``<redacted>`` placeholders, so they are never reported as equal or as
different, only listed by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provstore.core.objects import Environment, LibrarySet, seal

__all__ = ["Change", "EnvDiff", "diff_environments", "diff_to_json", "diff_to_text"]

Value = str | bytes
"""A compared value: variables that are not valid UTF-8 are kept as ``bytes``."""

_INTERPRETER = ("implementation", "python_version")
_PLATFORM = ("libc", "machine", "release", "system")
_SHORT = 12


@dataclass(frozen=True, slots=True)
class Change:
    """One named value on each side; ``None`` means absent on that side."""

    name: str
    old: Value | None
    new: Value | None


@dataclass(frozen=True, slots=True)
class EnvDiff:
    """The differences from environment ``a`` to environment ``b`` (hex digests).

    Every tuple is sorted by name.  ``unverifiable`` names variables redacted on either side.
    """

    a: str
    b: str
    packages_added: tuple[Change, ...]
    packages_removed: tuple[Change, ...]
    packages_changed: tuple[Change, ...]
    interpreter: tuple[Change, ...]
    platform: tuple[Change, ...]
    variables: tuple[Change, ...]
    unverifiable: tuple[str, ...]

    @property
    def identical(self) -> bool:
        """True when nothing differs; unverifiable variables do not count as differences."""
        return not (
            self.packages_added
            or self.packages_removed
            or self.packages_changed
            or self.interpreter
            or self.platform
            or self.variables
        )


def _changes(old: Mapping[str, Value], new: Mapping[str, Value]) -> list[Change]:
    """Every name whose value differs (or that exists on one side only), sorted by name."""
    return [
        Change(name, old.get(name), new.get(name))
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]


def _fields(env: Environment, names: Iterable[str]) -> dict[str, Value]:
    return {name: getattr(env, name) for name in names}


def _check_libraries(env: Environment, libs: LibrarySet, side: str) -> None:
    if seal(libs).digest != env.libraryset:
        raise ValueError(
            f"the library set given for {side} is not the one environment {side} names"
        )


def diff_environments(
    a: Environment, a_libs: LibrarySet, b: Environment, b_libs: LibrarySet
) -> EnvDiff:
    """Compare environment ``a`` (with its library set) to ``b``.

    Raises :class:`ValueError` when a library set is not the one its environment refers to.
    """
    _check_libraries(a, a_libs, "a")
    _check_libraries(b, b_libs, "b")
    packages = _changes(a_libs.versions(), b_libs.versions())
    unverifiable = tuple(sorted(set(a.redacted) | set(b.redacted)))
    hidden = set(unverifiable)
    a_vars = {k: v for k, v in a.variables.items() if k not in hidden}
    b_vars = {k: v for k, v in b.variables.items() if k not in hidden}
    return EnvDiff(
        a=seal(a).hex,
        b=seal(b).hex,
        packages_added=tuple(c for c in packages if c.old is None),
        packages_removed=tuple(c for c in packages if c.new is None),
        packages_changed=tuple(c for c in packages if c.old is not None and c.new is not None),
        interpreter=tuple(_changes(_fields(a, _INTERPRETER), _fields(b, _INTERPRETER))),
        platform=tuple(_changes(_fields(a, _PLATFORM), _fields(b, _PLATFORM))),
        variables=tuple(_changes(a_vars, b_vars)),
        unverifiable=unverifiable,
    )


def _text(value: Value | None) -> str | None:
    """A value as text; undecodable bytes stay visible as backslash escapes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _change_json(change: Change) -> dict[str, Any]:
    return {"name": change.name, "old": _text(change.old), "new": _text(change.new)}


def diff_to_json(d: EnvDiff) -> dict[str, Any]:
    """The diff as plain JSON data (every value a ``str`` or ``None``)."""

    def listed(changes: tuple[Change, ...]) -> list[dict[str, Any]]:
        return [_change_json(c) for c in changes]

    return {
        "a": d.a,
        "b": d.b,
        "identical": d.identical,
        "packages": {
            "added": listed(d.packages_added),
            "removed": listed(d.packages_removed),
            "changed": listed(d.packages_changed),
        },
        "interpreter": listed(d.interpreter),
        "platform": listed(d.platform),
        "variables": listed(d.variables),
        "unverifiable": list(d.unverifiable),
    }


def _shown(value: Value | None) -> str:
    """A value for one line of a table: quoted when bare text would be ambiguous."""
    text = _text(value) or ""
    if text and text.isprintable() and " " not in text and text != "->":
        return text
    return json.dumps(text, ensure_ascii=False)


def _line(change: Change) -> str:
    if change.old is None:
        return f"  + {change.name} {_shown(change.new)}"
    if change.new is None:
        return f"  - {change.name} {_shown(change.old)}"
    return f"  ~ {change.name} {_shown(change.old)} -> {_shown(change.new)}"


def diff_to_text(d: EnvDiff) -> str:
    """A table for people: one section per kind of difference, one line per change.

    ``+`` is only in ``b``, ``-`` only in ``a``, ``~`` changed from ``a``'s value to ``b``'s.
    """
    packages = sorted(
        d.packages_added + d.packages_removed + d.packages_changed, key=lambda c: c.name
    )
    sections = [
        ("packages", [_line(c) for c in packages]),
        ("interpreter", [_line(c) for c in d.interpreter]),
        ("platform", [_line(c) for c in d.platform]),
        ("variables", [_line(c) for c in d.variables]),
        ("unverifiable", [f"  ? {name} (redacted)" for name in d.unverifiable]),
    ]
    lines = [f"environment a {d.a[:_SHORT]}  ->  b {d.b[:_SHORT]}"]
    if d.identical:
        lines.append("environments are identical")
    for title, body in sections:
        if body:
            lines.append(f"{title}:")
            lines.extend(body)
    return "\n".join(lines)
