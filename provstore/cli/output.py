"""Objects as text for people; their JSON forms live in :mod:`provstore.shapes` (re-exported)."""

from __future__ import annotations

import json
from typing import Any

from provstore.core.objects import Sealed
from provstore.shapes import (
    format_ns,
    product_row_json,
    run_summary_json,
    to_json,
    to_json_text,
)

__all__ = [
    "format_ns",
    "human",
    "product_row_json",
    "run_summary_json",
    "to_json",
    "to_json_text",
]


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
