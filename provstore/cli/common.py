"""What every command shares: the exit-code epilog, ``--json``, the store, and printing.

Each command parses its arguments, makes one library call and hands the result to
:func:`emit`, which prints JSON for machines or text for people.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from provstore.api import Store

__all__ = ["EXIT_CODES", "emit", "json_option", "store_of"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes: 0 success, 1 a check failed, 2 usage or lookup error
(unknown or ambiguous hash, missing file, bad arguments)."""


def json_option(func: F) -> F:
    """``--json``: print data for machines instead of text for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        func
    )


def store_of(ctx: click.Context, *, create: bool = False) -> Store:
    """The store named by ``--url`` (or the configured one), opened once per invocation.

    Commands that only read never create or change a store (a missing one is exit 2);
    commands that write pass ``create=True``.
    """
    from provstore.api import open_store

    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        store = open_store(obj.get("url"), create=create)
        ctx.call_on_close(store.close)
        obj["store"] = store
    found: Store = obj["store"]
    return found


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    """Print ``data`` as stable JSON, or ``text`` (built only when needed) for people."""
    from provstore.cli.output import to_json_text

    if as_json:
        click.echo(to_json_text(data))
    else:
        click.echo(text() if callable(text) else text)
