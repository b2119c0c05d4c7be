"""Objects as JSON-ready data and as text for people; every digest shown as hex."""

from __future__ import annotations

import datetime
import json
from typing import Any

from provstore.core.objects import Sealed
from provstore.db.listing import ProductRow, RunSummary

__all__ = [
    "format_ns",
    "human",
    "product_row_json",
    "run_summary_json",
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


def human(item: Sealed) -> str:
    """A readable multi-line description of an object."""
    data = to_json(item)
    lines = [f"{item.kind} {item.hex}"]
    for key in sorted(k for k in data if k not in ("digest", "kind")):
        lines.extend(_field(key, data[key]))
    return "\n".join(lines)


def _field(key: str, value: Any) -> list[str]:
    if key.endswith("_ns") and isinstance(value, int):
        return [f"  {key[:-3]}: {format_ns(value)}"]
    if isinstance(value, dict) and value:
        return [f"  {key}:"] + [f"    {k} = {_scalar(v)}" for k, v in sorted(value.items())]
    if isinstance(value, list) and value:
        return [f"  {key}:"] + [f"    {_scalar(v)}" for v in value]
    return [f"  {key}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return f"{value[0]} {value[1]}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if value is None:
        return "-"
    return str(value)


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
