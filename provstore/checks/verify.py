"""Verification: is a product still what was recorded, and could it be made again here.

One report, a check per question:

* **integrity** — the object and its whole closure re-hash to their digests and every
  reference resolves;
* **data** — the product's file (recorded path, or another) hashes to the recorded digest;
* **ancestors** (on request) — so do the recorded files of all its ancestors that are on this
  machine;
* **environment** — this process's environment against the recorded one, with the diff: a
  difference in what the run used (the distributions it imported, interpreter, platform,
  GPU, container, variables) fails; another installed distribution that changed is a note
  (``strict`` makes every difference fail, and so does a run whose imports are unknown);
* **rerun** (on request) — the recorded command executed again, each output compared.

Statuses: ``ok`` and ``skipped`` pass; ``failed``, ``missing`` and ``unavailable`` fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provstore.checks.report import Check, Report
from provstore.checks.walk import closure
from provstore.config import Settings, resolve
from provstore.core.digests import hash_file, to_hex
from provstore.core.errors import PathError, ProvstoreError, UsageError
from provstore.core.objects import (
    CondaSet,
    Environment,
    ImportSet,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
)
from provstore.store import Store

if TYPE_CHECKING:
    from provstore.checks.envdiff import EnvDiff

__all__ = [
    "check_ancestors",
    "check_data",
    "check_environment",
    "check_integrity",
    "diff_refs",
    "imported_by",
    "verify",
]


def verify(
    store: Store,
    ref: str | bytes,
    *,
    path: str | None = None,
    rerun: bool = False,
    recursive: bool = False,
    environment: bool = True,
    strict: bool = False,
    settings: Settings | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Report:
    """Verify the object named by ``ref`` (a product, run or environment).

    ``recursive`` also checks the recorded files of the product's ancestors; ``strict``
    fails the environment check on any difference, used by the run or not.
    """
    item = store.get(ref)
    settings = settings or resolve(store.url)
    checks = [check_integrity(store, item)]
    obj = item.obj
    if isinstance(obj, Product):
        checks.append(check_data(obj, path, on_bytes))
        if recursive:
            checks.append(check_ancestors(store, item, on_bytes))
    run = _run_of(store, item)
    env_digest = run.obj.environment if run and isinstance(run.obj, Run) else None
    if isinstance(obj, Environment):
        env_digest = item.digest
    if environment:
        checks.append(check_environment(store, env_digest, settings, run=run, strict=strict))
    if rerun:
        from provstore.checks.rerun import check_rerun

        checks.append(check_rerun(store, run, settings))
    return Report(item.hex, item.kind, tuple(checks))


def _run_of(store: Store, item: Sealed) -> Sealed | None:
    obj = item.obj
    if isinstance(obj, Run):
        return item
    if isinstance(obj, Product) and obj.run is not None:
        found = store.get_many([obj.run], corrupt={})
        return found.get(obj.run)
    return None


def check_integrity(store: Store, item: Sealed) -> Check:
    """Re-hash the object's whole closure; every reference resolves to an object of its kind."""
    walked = closure(store, [item.digest])
    count = len(walked.found)
    if walked.whole:
        return Check(
            "integrity", "ok", f"{count} objects re-hashed; every reference resolves to its kind"
        )
    problems = [f"corrupt {to_hex(d)}: {reason}" for d, reason in sorted(walked.corrupt.items())]
    problems += [
        f"missing {to_hex(d)} (referred to by {to_hex(walked.referrers.get(d, b''))[:12]})"
        for d in sorted(walked.missing)
    ]
    problems += [
        f"{walked.kinds[d]} {to_hex(d)}: {reason}"
        for d, reason in sorted(walked.wrong_kinds.items())
    ]
    return Check(
        "integrity",
        "failed",
        "; ".join(problems),
        {
            "corrupt": {to_hex(d): r for d, r in walked.corrupt.items()},
            "missing": sorted(to_hex(d) for d in walked.missing),
            "wrong_kind": {to_hex(d): r for d, r in walked.wrong_kinds.items()},
        },
    )


def check_data(
    product: Product, path: str | None, on_bytes: Callable[[int], None] | None = None
) -> Check:
    """Hash the product's file and compare it with the recorded content digest and size."""
    if product.content is None:
        return Check("data", "skipped", "the product has no recorded file content")
    target = path or product.path
    if target is None:
        return Check("data", "skipped", "no path recorded; give one with --path")
    expected = {"path": target, "expected": to_hex(product.content), "expected_size": product.size}
    if not os.path.exists(target):
        return Check("data", "missing", f"file not found: {target}", expected)
    try:
        digest, size = hash_file(target, on_bytes)
    except PathError as exc:
        return Check("data", "missing", f"cannot read {target}: {exc.reason}", expected)
    details = {**expected, "actual": to_hex(digest), "actual_size": size}
    if digest == product.content and size == product.size:
        return Check("data", "ok", f"{target} matches ({size} bytes)", details)
    message = (
        f"{target} differs: expected {to_hex(product.content)} ({product.size} bytes), "
        f"found {to_hex(digest)} ({size} bytes)"
    )
    return Check("data", "failed", message, details)


def check_ancestors(
    store: Store, item: Sealed, on_bytes: Callable[[int], None] | None = None
) -> Check:
    """Hash the recorded file of every ancestor that has one on this machine.

    An ancestor whose file is not here (made on another machine, or cleaned up since) is
    listed as *absent* and does not fail the check: only bytes that are here can be wrong.
    """
    lineage = store.lineage(item.digest, "ancestors")
    found = store.get_many(d for d in lineage.depths if d != item.digest)
    entries = []
    for digest in sorted(found, key=lambda d: (lineage.depths[d], d)):
        product = found[digest].obj
        if not isinstance(product, Product) or product.content is None or not product.path:
            continue
        entry = {"product": to_hex(digest), "name": product.name, "path": product.path,
                 "depth": lineage.depths[digest]}  # fmt: skip
        if not os.path.exists(product.path):
            entries.append({**entry, "status": "absent"})
            continue
        data = check_data(product, None, on_bytes)
        status = {"ok": "ok", "failed": "differs"}.get(data.status, "unreadable")
        entries.append({**entry, **_sizes(data.details), "status": status})
    return _ancestors_check(entries)


def _sizes(details: dict[str, Any]) -> dict[str, Any]:
    keep = ("expected", "actual", "expected_size", "actual_size")
    return {key: details[key] for key in keep if key in details}


def _ancestors_check(entries: list[dict[str, Any]]) -> Check:
    details = {"ancestors": entries}
    absent = sum(1 for e in entries if e["status"] == "absent")
    checked = len(entries) - absent
    away = f"; {absent} not on this machine" if absent else ""
    if not checked:
        return Check("ancestors", "skipped", f"no ancestor's file is on this machine{away}",
                     details)  # fmt: skip
    bad = [e for e in entries if e["status"] not in ("ok", "absent")]
    if not bad:
        return Check("ancestors", "ok", f"{checked} ancestor files match{away}", details)
    lines = [
        f"{e['path']} ({e['product'][:12]}) "
        + (f"differs: expected {e['expected']}, found {e['actual']}" if e["status"] == "differs"
           else "cannot be read")
        for e in bad
    ]  # fmt: skip
    return Check("ancestors", "failed", "\n".join(lines), details)


_Pair = tuple[Environment, LibrarySet, CondaSet | None]


def _environment_pair(store: Store, ref: str | bytes) -> _Pair:
    env = store.environment_of(ref)
    libs = store.get(env.obj.libraryset, kind="libraryset")  # type: ignore[union-attr]
    assert isinstance(env.obj, Environment) and isinstance(libs.obj, LibrarySet)
    conda = None
    if env.obj.conda is not None:
        found = store.get(env.obj.conda, kind="condaset").obj
        assert isinstance(found, CondaSet)
        conda = found
    return env.obj, libs.obj, conda


def imported_by(store: Store, ref: str | bytes | Sealed) -> tuple[tuple[str, ...] | None, str]:
    """The distributions the run behind ``ref`` imported, or ``None`` and why they are unknown."""
    item = ref if isinstance(ref, Sealed) else store.get(ref)
    run = _run_of(store, item)
    if run is None or not isinstance(run.obj, Run):
        return None, "no run is behind it, so nothing says what was imported"
    ends = store.get_many(store.run_ends([run.digest]), corrupt={})
    end = next((e.obj for e in ends.values() if isinstance(e.obj, RunEnd)), None)
    if end is None:
        return None, "the run has not ended (or was killed), so its imports were not recorded"
    if end.imported is None:
        if run.obj.command is not None:
            return None, (
                "the run is a `provstore run` whose command did not use tracker(), so what "
                "it imported is unknown"
            )
        return None, (
            "the run was recorded without its imports (by an older provstore, or with the "
            "imports probe off)"
        )
    used = store.get(end.imported, kind="importset").obj
    assert isinstance(used, ImportSet)
    return used.names(), ""


def diff_refs(
    store: Store,
    a: str | bytes,
    b: str | bytes | None = None,
    settings: Settings | None = None,
    *,
    used: bool = False,
) -> EnvDiff:
    """Diff the environments behind ``a`` and ``b`` (products, runs or environments).

    ``b`` defaults to this process's environment.  ``used`` limits the packages to those the
    run behind ``a`` imported (:class:`UsageError` when that is unknown).
    """
    from provstore.checks.envdiff import diff_environments

    left = _environment_pair(store, a)
    if b is None:
        from provstore.capture.snapshot import capture_environment

        now = capture_environment(settings or resolve(store.url))
        assert isinstance(now.environment.obj, Environment)
        assert isinstance(now.libraryset.obj, LibrarySet)
        conda = now.conda.obj if now.conda is not None else None
        assert conda is None or isinstance(conda, CondaSet)
        right: _Pair = (now.environment.obj, now.libraryset.obj, conda)
    else:
        right = _environment_pair(store, b)
    item = store.get(a)
    imported, why = imported_by(store, item) if item.kind != "environment" else (None, "")
    if used and imported is None:
        reason = why or "an environment has no run, so nothing says what was imported"
        raise UsageError(f"--used needs the distributions the run imported: {reason}")
    diff = diff_environments(left[0], left[1], right[0], right[1], a_conda=left[2],
                             b_conda=right[2], imported=imported)  # fmt: skip
    return diff.used_only() if used else diff


def check_environment(
    store: Store,
    recorded: bytes | None,
    settings: Settings,
    *,
    run: Sealed | None = None,
    strict: bool = False,
) -> Check:
    """Compare this process's environment with the recorded one; the diff when they differ.

    A difference in what the run used fails; the others are a note (all fail when
    ``strict``, or when the run's imports are unknown).
    """
    if recorded is None:
        return Check("environment", "skipped", "no environment recorded (a source product)")
    from provstore.checks.envdiff import diff_to_json, diff_to_text

    try:
        diff = diff_refs(store, run.digest if run is not None else recorded, None, settings)
    except ProvstoreError as exc:
        return Check("environment", "failed", f"the recorded environment is unreadable: {exc}")
    details: dict[str, Any] = {"recorded": diff.a, "current": diff.b, "diff": diff_to_json(diff)}
    note = ""
    if diff.unverifiable:
        note = f"; redacted, unverifiable: {', '.join(diff.unverifiable)}"
    if diff.identical:
        return Check("environment", "ok", f"identical to the recorded environment{note}", details)
    unknown = ""
    if diff.imported is None and run is not None:
        unknown = f"\n(every difference counts: {imported_by(store, run)[1]})"
    if strict or diff.matters:
        names = ", ".join(c.name for c in (diff.matters or diff.notes))
        where = "" if diff.imported is None else " in what the run used" if diff.matters else ""
        return Check(
            "environment",
            "failed",
            f"differs from the recorded one{where}: {names}\n"
            + diff_to_text(diff) + unknown,
            details,
        )  # fmt: skip
    other = ", ".join(c.name for c in diff.notes)
    return Check(
        "environment",
        "ok",
        f"note: what the run used is unchanged; other differences (not used by the run, "
        f"use --strict to fail on them): {other}{note}\n" + diff_to_text(diff),
        details,
    )
