"""Environment differences: packages, interpreter, platform, variables and redacted names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provstore.checks.envdiff import Change, diff_environments, diff_to_json, diff_to_text
from provstore.core.objects import Environment, LibrarySet, seal


def libs(**versions: str) -> LibrarySet:
    return LibrarySet(tuple(sorted(versions.items())))


def env(library_set: LibrarySet, variables=None, redacted=(), **fields) -> Environment:
    base = Environment(
        implementation="cpython",
        python_version="3.11.7",
        system="Linux",
        release="6.1.0",
        machine="x86_64",
        libc="glibc 2.36",
        libraryset=seal(library_set).digest,
        variables={} if variables is None else variables,
        redacted=tuple(redacted),
    )
    return replace(base, **fields)


def diff_of(a_libs, b_libs, a_kw=None, b_kw=None):
    return diff_environments(
        env(a_libs, **(a_kw or {})), a_libs, env(b_libs, **(b_kw or {})), b_libs
    )


OLD = libs(numpy="2.0.0", pandas="2.2.1", scipy="1.13.0", click="8.1.7")
NEW = libs(numpy="2.0.0", pandas="2.2.2", polars="1.0.0", attrs="23.1.0", click="8.1.8")


def test_packages_added_removed_changed_sorted_by_name():
    d = diff_of(OLD, NEW)
    assert d.packages_added == (Change("attrs", None, "23.1.0"), Change("polars", None, "1.0.0"))
    assert d.packages_removed == (Change("scipy", "1.13.0", None),)
    assert d.packages_changed == (
        Change("click", "8.1.7", "8.1.8"),
        Change("pandas", "2.2.1", "2.2.2"),
    )
    assert not d.interpreter and not d.platform and not d.variables
    assert not d.identical


def test_digests_name_the_environments():
    a, b = env(OLD), env(NEW)
    d = diff_environments(a, OLD, b, NEW)
    assert (d.a, d.b) == (seal(a).hex, seal(b).hex)


def test_interpreter_and_platform_changes():
    d = diff_of(
        OLD,
        OLD,
        b_kw={"python_version": "3.12.1", "release": "6.5.0", "machine": "aarch64", "libc": ""},
    )
    assert d.interpreter == (Change("python_version", "3.11.7", "3.12.1"),)
    assert d.platform == (
        Change("libc", "glibc 2.36", ""),
        Change("machine", "x86_64", "aarch64"),
        Change("release", "6.1.0", "6.5.0"),
    )
    assert not d.packages_added and not d.packages_removed and not d.packages_changed
    assert not d.identical


def test_variables_added_removed_changed_including_bytes():
    d = diff_of(
        OLD,
        OLD,
        a_kw={"variables": {"OMP_NUM_THREADS": "4", "LANG": "C", "TZ": "UTC", "LC_ALL": b"\xff"}},
        b_kw={"variables": {"OMP_NUM_THREADS": "8", "LANG": "C", "MKL_CBWR": "AVX2"}},
    )
    assert d.variables == (
        Change("LC_ALL", b"\xff", None),
        Change("MKL_CBWR", None, "AVX2"),
        Change("OMP_NUM_THREADS", "4", "8"),
        Change("TZ", "UTC", None),
    )
    assert not d.identical


def test_redacted_names_are_unverifiable_not_compared():
    d = diff_of(
        OLD,
        OLD,
        a_kw={
            "variables": {"PYTHON_TOKEN": "<redacted>", "LANG": "C", "PYTHONPATH": "/a"},
            "redacted": ("PYTHON_TOKEN",),
        },
        b_kw={
            "variables": {"PYTHON_TOKEN": "<redacted>", "LANG": "C", "PYTHONPATH": "<redacted>"},
            "redacted": ("PYTHONPATH", "PYTHON_TOKEN"),
        },
    )
    assert d.unverifiable == ("PYTHONPATH", "PYTHON_TOKEN")
    assert d.variables == ()
    assert d.identical  # unverifiable is not a difference
    text = diff_to_text(d)
    assert "environments are identical" in text
    assert "unverifiable:" in text and "PYTHONPATH" in text
    assert "variables:" not in text


def test_redacted_on_one_side_only_is_still_unverifiable():
    d = diff_of(
        OLD,
        OLD,
        a_kw={"variables": {"CUDA_URL": "http://u:<redacted>@h"}, "redacted": ("CUDA_URL",)},
        b_kw={"variables": {}},
    )
    assert d.unverifiable == ("CUDA_URL",)
    assert d.variables == ()


def test_identical():
    d = diff_of(OLD, OLD, a_kw={"variables": {"TZ": "UTC"}}, b_kw={"variables": {"TZ": "UTC"}})
    assert d.identical
    assert d.unverifiable == ()
    assert diff_to_text(d).splitlines()[1:] == ["environments are identical"]
    assert diff_to_json(d)["identical"] is True


def test_wrong_library_set_is_refused():
    with pytest.raises(ValueError, match="library set"):
        diff_environments(env(OLD), NEW, env(NEW), NEW)


def test_text_lines():
    d = diff_of(
        OLD,
        NEW,
        a_kw={"variables": {"OMP_NUM_THREADS": "4", "LC_ALL": b"C\xff"}},
        b_kw={"variables": {"OMP_NUM_THREADS": "8", "PYTHONPATH": "a b"}, "system": "Darwin"},
    )
    lines = diff_to_text(d).splitlines()
    assert lines[0] == f"environment a {d.a[:12]}  ->  b {d.b[:12]}"
    assert lines[1:] == [
        "packages:",
        "  + attrs 23.1.0",
        "  ~ click 8.1.7 -> 8.1.8",
        "  ~ pandas 2.2.1 -> 2.2.2",
        "  + polars 1.0.0",
        "  - scipy 1.13.0",
        "platform:",
        "  ~ system Linux -> Darwin",
        "variables:",
        "  - LC_ALL C\\xff",
        "  ~ OMP_NUM_THREADS 4 -> 8",
        '  + PYTHONPATH "a b"',
    ]


def test_json_structure_and_bytes():
    d = diff_of(
        OLD,
        NEW,
        a_kw={"variables": {"LANG": b"caf\xe9"}, "redacted": ("X_TOKEN",)},
        b_kw={"python_version": "3.13.0"},
    )
    data = json.loads(json.dumps(diff_to_json(d)))
    assert data["a"] == d.a and data["b"] == d.b
    assert data["identical"] is False
    assert data["packages"]["removed"] == [{"name": "scipy", "old": "1.13.0", "new": None}]
    assert [c["name"] for c in data["packages"]["added"]] == ["attrs", "polars"]
    assert [c["name"] for c in data["packages"]["changed"]] == ["click", "pandas"]
    assert data["interpreter"] == [{"name": "python_version", "old": "3.11.7", "new": "3.13.0"}]
    assert data["platform"] == []
    assert data["variables"] == [{"name": "LANG", "old": "caf\\xe9", "new": None}]
    assert data["unverifiable"] == ["X_TOKEN"]


# --- properties ------------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9._-]{0,12}", fullmatch=True)
_versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}", fullmatch=True)
library_sets = st.dictionaries(_names, _versions, max_size=30).map(lambda v: libs(**v))
_var_values = st.one_of(st.text(max_size=20), st.binary(max_size=8))
variable_maps = st.dictionaries(st.from_regex(r"[A-Z_]{1,10}", fullmatch=True), _var_values)


@given(library_sets, variable_maps)
def test_diff_with_itself_is_identical(library_set, variables):
    a = env(library_set, variables=variables)
    d = diff_environments(a, library_set, a, library_set)
    assert d.identical
    assert d.a == d.b
    assert "environments are identical" in diff_to_text(d)


@given(library_sets, library_sets)
def test_diff_is_symmetric(a_libs, b_libs):
    ab = diff_of(a_libs, b_libs)
    ba = diff_of(b_libs, a_libs)
    assert [(c.name, c.new) for c in ab.packages_added] == [
        (c.name, c.old) for c in ba.packages_removed
    ]
    assert [(c.name, c.old) for c in ab.packages_removed] == [
        (c.name, c.new) for c in ba.packages_added
    ]
    assert [(c.name, c.old, c.new) for c in ab.packages_changed] == [
        (c.name, c.new, c.old) for c in ba.packages_changed
    ]
    assert ab.identical == ba.identical == (a_libs == b_libs)


@given(library_sets, library_sets, variable_maps, variable_maps)
def test_json_round_trips_through_json_dumps(a_libs, b_libs, a_vars, b_vars):
    d = diff_of(a_libs, b_libs, a_kw={"variables": a_vars}, b_kw={"variables": b_vars})
    data = diff_to_json(d)
    assert json.loads(json.dumps(data)) == data
    names = [c["name"] for c in data["variables"]]
    assert names == sorted(names)
