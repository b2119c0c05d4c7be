"""The JSON forms of what provstore answers, shared by the CLI's ``--json`` and the web API.

One function per answer, so ``provstore log --json`` and ``GET /api/log`` cannot drift apart:
both call the same library method and hand its result to the same function here.  Every digest
is hex; environment variables that are not UTF-8 are shown as escaped text.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

from provstore.core.errors import UsageError
from provstore.db.listing import ProductFilter, ProductRow, RunSummary

if TYPE_CHECKING:
    from provstore.core.objects import Sealed
    from provstore.store import Store

__all__ = [
    "duration",
    "format_ns",
    "parse_cursor",
    "product_row_json",
    "products_page_json",
    "cursor_text",
    "run_parts",
    "run_summary_json",
    "show_json",
    "shown",
    "to_json",
    "to_json_text",
]

_VARIABLE_MAPS = ("variables",)


def _jsonable(value: Any, *, in_variables: bool = False) -> Any:
    if isinstance(value, bytes):
        # Digests (and binary metadata) as hex; undecodable environment values as escaped text.
        return value.decode("utf-8", "backslashreplace") if in_variables else value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v, in_variables=in_variables) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, in_variables=in_variables) for v in value]
    return value


def to_json(item: Sealed) -> dict[str, Any]:
    """The object as plain JSON data: ``digest``, ``kind`` and its fields."""
    out: dict[str, Any] = {"digest": item.hex, "kind": item.kind}
    for key, value in item.obj.body().items():
        out[key] = _jsonable(value, in_variables=isinstance(value, dict) and key in _VARIABLE_MAPS)
    return out


def to_json_text(data: Any) -> str:
    """Stable, readable JSON."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def format_ns(ns: int | None) -> str:
    """A UTC timestamp in integer nanoseconds as ISO-8601 text."""
    if ns is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(ns: int | None) -> str:
    """``1.2s``, ``3m04s``, ``2h05m`` (``-`` when unknown)."""
    if ns is None:
        return "-"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def product_row_json(row: ProductRow) -> dict[str, Any]:
    """A listed product as ``provstore products --json`` prints it."""
    return {
        "product": row.digest.hex(),
        "name": row.name,
        "version": row.version,
        "size": row.size,
        "run": None if row.run is None else row.run.hex(),
        "path": row.path,
        "started_ns": row.started_ns,
    }


def run_summary_json(r: RunSummary) -> dict[str, Any]:
    """A run as ``provstore log --json`` prints it."""
    return {
        "run": r.digest.hex(),
        "started_ns": r.started_ns,
        "finished_ns": r.finished_ns,
        "duration_ns": r.duration_ns,
        "status": r.status or "unfinished",
        "exit_code": r.exit_code,
        "host": r.host,
        "user": r.user,
        "name": r.name,
        "command": None if r.command is None else list(r.command),
        "products": r.products,
        "job": None if r.job is None else dict(r.job),
    }


def cursor_text(cursor: tuple[int, bytes]) -> str:
    """A page's cursor as ``STARTED:HEX`` (what ``--after`` and ``?after=`` take)."""
    started, digest = cursor
    return f"{started}:{digest.hex()}"


def parse_cursor(text: str | None) -> tuple[int, bytes] | None:
    """The cursor :func:`cursor_text` wrote (None for the first page)."""
    if not text:
        return None
    try:
        started, digest = text.split(":")
        return int(started), bytes.fromhex(digest)
    except ValueError:
        raise UsageError(f"{text!r} is not a cursor a page ended with") from None


def products_page_json(rows: list[ProductRow], limit: int) -> dict[str, Any]:
    """A page of products and the cursor of the next (None on the last page)."""
    cursor = cursor_text(rows[-1].cursor) if rows and len(rows) == limit else None
    return {"products": [product_row_json(row) for row in rows], "next": cursor}


def show_json(
    item: Sealed, ends: list[Sealed] | None = None, made: list[ProductRow] | None = None
) -> dict[str, Any]:
    """An object as ``provstore show --json`` prints it; a run with its ends and products."""
    data = to_json(item)
    if item.kind == "run":
        data["ends"] = [to_json(end) for end in ends or ()]
        data["products"] = [product_row_json(row) for row in made or ()]
    return data


def shown(
    store: Store, item: Sealed, limit: int
) -> tuple[dict[str, Any], list[Sealed], list[ProductRow], list[Sealed]]:
    """What ``provstore show --json`` and ``/api/show`` give, and the parts it was made of.

    The JSON is :func:`show_json` (a run with its ends and first ``limit`` products, and one
    more product row in the parts when a page follows) plus its signatures, if any.
    """
    ends, made = run_parts(store, item.digest, limit) if item.kind == "run" else ([], [])
    data = show_json(item, ends, made[:limit]) if item.kind == "run" else show_json(item)
    signatures = store.signatures_of(item.digest)
    if signatures:
        data["signatures"] = [to_json(sig) for sig in signatures]
    return data, ends, made, signatures


def run_parts(store: Store, run: bytes, limit: int) -> tuple[list[Sealed], list[ProductRow]]:
    """A run's ends and up to ``limit + 1`` of its products (one more says a page follows)."""
    ends = [store.get(d) for d in store.run_ends([run])]
    return ends, store.products(where=ProductFilter(run=run), limit=limit + 1)
