"""What differs between two environments: packages, conda, interpreter, GPU, variables, ...

Pure functions over :class:`~provstore.core.objects.Environment`,
:class:`~provstore.core.objects.LibrarySet` and :class:`~provstore.core.objects.CondaSet`
values; the caller loads them (from a store, or from the live process).  Variables that were
redacted on either side are *unverifiable*: their stored values are ``<redacted>``
placeholders, so they are never reported as equal or as different, only listed by name.

When the distributions a run imported are known (``imported``), a difference splits in two:
what the run used (its imported distributions, the conda packages of the same name, the
interpreter, platform, GPU, container and variables) *matters*; another installed
distribution or conda package that changed is only a *note*.  A GPU or container fact
recorded on one side only is a note too (the other side may predate the probe, or had it off).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from provstore.core.objects import CondaSet, Environment, LibrarySet, seal

__all__ = ["Change", "EnvDiff", "diff_environments", "diff_to_json", "diff_to_text"]

Value = str | bytes
"""A compared value: variables that are not valid UTF-8 are kept as ``bytes``."""

_INTERPRETER = ("implementation", "python_version")
_PLATFORM = ("libc", "machine", "release", "system")
_PROBED = ("gpu", "container")
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
    ``imported`` names the distributions the run behind ``a`` imported (``None``: unknown).
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
    conda: tuple[Change, ...] = ()
    probed: tuple[Change, ...] = ()
    """GPU and container facts (``gpu.driver``, ``container.image``, ...)."""
    imported: tuple[str, ...] | None = None

    @property
    def packages(self) -> tuple[Change, ...]:
        """Every distribution that differs, sorted by name."""
        every = self.packages_added + self.packages_removed + self.packages_changed
        return tuple(sorted(every, key=lambda c: c.name))

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
            or self.conda
            or self.probed
        )

    def _used(self, name: str) -> bool:
        return self.imported is None or name in self.imported

    @property
    def matters(self) -> tuple[Change, ...]:
        """The differences in what the run used: they fail a verification."""
        return (
            tuple(c for c in self.packages if self._used(c.name))
            + tuple(c for c in self.conda if self._used(c.name))
            + self.interpreter
            + self.platform
            + tuple(c for c in self.probed if c.old is not None and c.new is not None)
            + self.variables
        )

    @property
    def notes(self) -> tuple[Change, ...]:
        """The other differences: they do not fail a verification unless it is strict."""
        return (
            tuple(c for c in self.packages if not self._used(c.name))
            + tuple(c for c in self.conda if not self._used(c.name))
            + tuple(c for c in self.probed if c.old is None or c.new is None)
        )

    def used_only(self) -> EnvDiff:
        """The diff limited to the distributions (and conda packages) the run imported."""
        if self.imported is None:
            return self
        keep = set(self.imported)
        return replace(
            self,
            packages_added=tuple(c for c in self.packages_added if c.name in keep),
            packages_removed=tuple(c for c in self.packages_removed if c.name in keep),
            packages_changed=tuple(c for c in self.packages_changed if c.name in keep),
            conda=tuple(c for c in self.conda if c.name in keep),
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


def _facts(env: Environment) -> dict[str, Value]:
    """The GPU and container facts as ``probe.key`` -> text."""
    out: dict[str, Value] = {}
    for probe in _PROBED:
        facts = getattr(env, probe)
        for key, value in (facts or {}).items():
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True, ensure_ascii=False)
            out[f"{probe}.{key}"] = value
    return out


def _probe_changes(a: Environment, b: Environment) -> list[Change]:
    """Fact changes; a probe absent on one side is one change per fact of the other side."""
    return _changes(_facts(a), _facts(b))


def _check_conda(env: Environment, conda: CondaSet | None, side: str) -> dict[str, str]:
    if env.conda is None:
        return {}
    if conda is None or seal(conda).digest != env.conda:
        raise ValueError(f"the conda set given for {side} is not the one environment {side} names")
    return conda.versions()


def diff_environments(
    a: Environment,
    a_libs: LibrarySet,
    b: Environment,
    b_libs: LibrarySet,
    *,
    a_conda: CondaSet | None = None,
    b_conda: CondaSet | None = None,
    imported: Iterable[str] | None = None,
) -> EnvDiff:
    """Compare environment ``a`` (with its library and conda sets) to ``b``.

    ``imported`` names the distributions the run behind ``a`` imported, when known.  Raises
    :class:`ValueError` when a library or conda set is not the one its environment refers to.
    """
    _check_libraries(a, a_libs, "a")
    _check_libraries(b, b_libs, "b")
    conda = _changes(_check_conda(a, a_conda, "a"), _check_conda(b, b_conda, "b"))
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
        conda=tuple(conda),
        probed=tuple(_probe_changes(a, b)),
        imported=None if imported is None else tuple(sorted(imported)),
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
        "conda": listed(d.conda),
        "interpreter": listed(d.interpreter),
        "platform": listed(d.platform),
        "probed": listed(d.probed),
        "variables": listed(d.variables),
        "unverifiable": list(d.unverifiable),
        "imported": None if d.imported is None else list(d.imported),
        "matters": listed(d.matters),
        "notes": listed(d.notes),
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
    When the run's imported distributions are known, packages it imported come first and the
    others are listed apart, as not used by the run.
    """
    if d.imported is None:
        package_sections = [("packages", [_line(c) for c in d.packages]),
                            ("conda packages", [_line(c) for c in d.conda])]  # fmt: skip
    else:
        used = set(d.imported)
        package_sections = [
            ("packages the run imported", [_line(c) for c in d.packages if c.name in used]),
            ("conda packages of distributions the run imported",
             [_line(c) for c in d.conda if c.name in used]),
            ("other packages (not imported by the run)",
             [_line(c) for c in d.packages if c.name not in used]),
            ("other conda packages", [_line(c) for c in d.conda if c.name not in used]),
        ]  # fmt: skip
    sections = [
        *package_sections,
        ("interpreter", [_line(c) for c in d.interpreter]),
        ("platform", [_line(c) for c in d.platform]),
        ("gpu and container", [_line(c) for c in d.probed]),
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
