"""What each page asks the store, as plain data for its template.

Every function here makes the same library calls as the CLI command that answers the same
question (``log``, ``show``, ``lineage``, ``diff``, ``verify``), and pages of lists are
keyset-paged, so a page costs the same on a store of a thousand products or a million.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from provstore import shapes
from provstore.core.errors import UsageError
from provstore.core.objects import Environment, LibrarySet, Product, Run, RunEnd, Variables
from provstore.db.listing import ProductFilter, RunFilter, job_label
from provstore.exchange.lineage import lineage_json
from provstore.web.graph import DEFAULT_BUDGET, budgeted

if TYPE_CHECKING:
    from collections.abc import Mapping

    from provstore.api import Store
    from provstore.core.objects import Sealed

__all__ = [
    "BATCH_JOB_VARIABLES",
    "PAGE",
    "compare_page",
    "environment_page",
    "lineage_data",
    "lineage_page",
    "product_page",
    "products_page",
    "run_page",
    "runs_page",
    "search",
]

PAGE = 50
MAX_DEPTH = 50
STATUSES = ("succeeded", "failed", "unfinished")
# Where schedulers put the id of the batch job a process runs in.
BATCH_JOB_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "PBS_JOBID",
    "LSB_JOBID",
    "JOB_ID",
    "FLUX_JOB_ID",
    "CONDOR_JOB_ID",
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def when(text: str | None) -> int | None:
    """A date (2026-11-24), time, or age (3d, 12h) as integer nanoseconds UTC."""
    text = (text or "").strip()
    if not text:
        return None
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return time.time_ns() - int(text[:-1]) * _UNITS[text[-1]] * 1_000_000_000
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not a date (2026-11-24) or an age (3d, 12h)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _opt(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key, "").strip()
    return value or None


def run_filter(params: Mapping[str, str]) -> RunFilter:
    """The runs filter of ``provstore log`` from a page's query parameters."""
    status = _opt(params, "status")
    if status is not None and status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return RunFilter(
        status=status,
        since_ns=when(params.get("since")),
        until_ns=when(params.get("until")),
        host=_opt(params, "host"),
        name=_opt(params, "name"),
        job=_opt(params, "job"),
    )


def limit_of(params: Mapping[str, str], default: int = PAGE) -> int:
    """``?limit=`` between 1 and 1000."""
    text = params.get("limit", "")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise UsageError(f"limit must be a whole number from 1 to 1000, not {text!r}")
    return int(text)


def runs_page(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """Newest runs first, filtered, one keyset page."""
    limit = limit_of(params)
    runs = store.runs(
        limit, where=run_filter(params), after=shapes.parse_cursor(params.get("after"))
    )
    after = shapes.cursor_text(runs[-1].cursor) if len(runs) == limit else None
    return {"runs": runs, "next": after, "params": params, "statuses": STATUSES}


def products_page(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """Newest products first, filtered by name and path globs, one keyset page."""
    limit = limit_of(params)
    where = ProductFilter(name=_opt(params, "name"), path=_opt(params, "path"))
    rows = store.products(where=where, limit=limit, after=shapes.parse_cursor(params.get("after")))
    return {"rows": rows, "page": shapes.products_page_json(rows, limit), "params": params}


def _batch_job(variables: Mapping[str, Any]) -> str | None:
    for name in BATCH_JOB_VARIABLES:
        value = variables.get(name)
        if isinstance(value, str) and value != "<redacted>":
            return f"{name}={value}"
    return None


def _shown_variables(obj: Environment | Variables) -> list[tuple[str, str | None]]:
    """Name and value of each variable; None for a redacted one (its value is never sent)."""
    hidden = set(obj.redacted)
    out: list[tuple[str, str | None]] = []
    for name, value in sorted(obj.variables.items()):
        if name in hidden:
            out.append((name, None))
        else:
            text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
            out.append((name, text))
    out += [(name, None) for name in sorted(hidden - set(obj.variables))]
    return out


def run_page(store: Store, ref: str, params: Mapping[str, str]) -> dict[str, Any]:
    """One run: what ran where, how it ended, what it read, what it made (paged)."""
    item = store.get(store.resolve(ref), kind="run")
    run = item.obj
    assert isinstance(run, Run)
    limit = limit_of(params)
    ends = [store.get(d) for d in store.run_ends([item.digest])]
    made = store.products(
        where=ProductFilter(run=item.digest),
        limit=limit,
        after=shapes.parse_cursor(params.get("after")),
    )
    inputs = sorted({d for end in ends if isinstance(end.obj, RunEnd) for d in end.obj.inputs})
    names = store.labels(inputs)
    loaded = store.get_many([run.variables, run.environment], corrupt={})
    variables, env = loaded.get(run.variables), loaded.get(run.environment)
    var_obj = variables.obj if variables is not None else None
    var_map = var_obj.variables if isinstance(var_obj, Variables) else {}
    return {
        "item": item,
        "run": run,
        "ends": [end.obj for end in ends if isinstance(end.obj, RunEnd)],
        "made": made,
        "next": shapes.cursor_text(made[-1].cursor) if len(made) == limit else None,
        "inputs": [(d, names.get(d)) for d in inputs],
        "batch_job": job_label(run.job) or _batch_job(var_map),
        "env": env.obj if env is not None and isinstance(env.obj, Environment) else None,
        "variables": _shown_variables(var_obj) if isinstance(var_obj, Variables) else [],
    }


def product_page(store: Store, ref: str) -> dict[str, Any]:
    """One product: its fields, the run that made it, its parents and children."""
    item = store.get(store.resolve(ref), kind="product")
    product = item.obj
    assert isinstance(product, Product)
    children = store.lineage(item.digest, "descendants", 1)
    kids = sorted(d for d in children.depths if d != item.digest)
    labels = store.labels([*product.parents, *kids])
    run = None
    if product.run is not None:
        found = store.get_many([product.run], corrupt={}).get(product.run)
        run = found.obj if found is not None and isinstance(found.obj, Run) else None
    return {
        "item": item,
        "product": product,
        "run": run,
        "parents": [(d, labels.get(d)) for d in product.parents],
        "children": [(d, labels.get(d)) for d in kids],
        "metadata": shapes.to_json(item)["metadata"],
    }


def depth_of(params: Mapping[str, str], default: int = 3) -> int | None:
    """``?depth=`` (``all`` for no limit)."""
    text = params.get("depth", "") or str(default)
    if text == "all":
        return None
    if not text.isdigit() or int(text) > MAX_DEPTH:
        raise UsageError(f"depth must be a whole number up to {MAX_DEPTH} or 'all', not {text!r}")
    return int(text)


def direction_of(params: Mapping[str, str]) -> str:
    """``?direction=ancestors`` (the default) or ``descendants``."""
    direction = params.get("direction") or "ancestors"
    if direction not in ("ancestors", "descendants"):
        raise UsageError(f"direction must be ancestors or descendants, not {direction!r}")
    return direction


def lineage_data(store: Store, ref: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The lineage as ``provstore lineage --format json`` prints it."""
    depth = params.get("depth")
    found = store.lineage(ref, direction_of(params), None if not depth else depth_of(params))
    return lineage_json(found, store.labels(found.depths))


def lineage_page(store: Store, ref: str, params: Mapping[str, str]) -> dict[str, Any]:
    """A product's lineage to a depth, cut to a node budget (the rest in groups)."""
    digest = store.resolve(ref)
    root = store.get(digest, kind="product")
    depth, direction = depth_of(params), direction_of(params)
    budget = limit_of({"limit": params.get("budget", "")}, DEFAULT_BUDGET)
    found = store.lineage(digest, direction, depth)
    graph = budgeted(found, store.labels(found.depths), budget)
    return {
        "root": root,
        "graph": graph,
        "depth": "all" if depth is None else depth,
        "direction": direction,
        "budget": budget,
    }


def environment_of(store: Store, ref: str) -> Sealed:
    """The environment ``ref`` names, or the one behind the run or product it names."""
    return store.environment_of(store.resolve(ref))


def environment_page(store: Store, ref: str, params: Mapping[str, str]) -> dict[str, Any]:
    """An environment: interpreter, platform, distributions (filtered by ``?q=``), variables."""
    item = environment_of(store, ref)
    env = item.obj
    assert isinstance(env, Environment)
    libs = store.get_many([env.libraryset], corrupt={}).get(env.libraryset)
    dists = list(libs.obj.distributions) if libs and isinstance(libs.obj, LibrarySet) else []
    query = (params.get("q") or "").strip().lower()
    shown = [d for d in dists if query in d[0]] if query else dists
    return {
        "item": item,
        "env": env,
        "distributions": shown,
        "total": len(dists),
        "q": query,
        "variables": _shown_variables(env),
    }


def compare_page(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The diff of the environments behind ``?a=`` and ``?b=`` (each a reference)."""
    from provstore.checks.envdiff import diff_to_json

    a, b = (params.get("a") or "").strip(), (params.get("b") or "").strip()
    if not (a and b):
        return {"a": a, "b": b, "diff": None}
    return {"a": a, "b": b, "diff": diff_to_json(store.diff(a, b))}


def search(store: Store, query: str) -> list[Sealed]:
    """Every object the search box's text names, best first (as the CLI resolves it)."""
    digests = store.resolve_all(query.strip())
    found = store.get_many(digests, corrupt={})
    return [found[d] for d in digests if d in found]
