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

__all__ = ["EXIT_CODES", "URL_HELP", "emit", "json_option", "store_of", "url_option"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes: 0 success, 1 a check failed, 2 usage or lookup error
(unknown or ambiguous hash, missing file, bad arguments)."""


URL_HELP = (
    "The store: sqlite:///PATH (or a file path), postgresql://USER@HOST/DB or "
    "mysql://USER@HOST/DB. Default: $PROVSTORE_URL, url in [tool.provstore] of "
    "pyproject.toml, then ~/.local/share/provstore/provstore.db."
)


def _record_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["url"] = value


def url_option(func: F) -> F:
    """``--url`` after the command (``provstore log --url URL``), winning over one before it.

    Works on a function or a built command: ``cli/main.py`` gives it to every command.
    """
    return click.option(
        "--url",
        metavar="URL",
        expose_value=False,
        callback=_record_url,
        help=URL_HELP + " Overrides --url given before the command.",
    )(func)


def json_option(func: F) -> F:
    """``--json``: print data for machines instead of text for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        func
    )


def store_of(ctx: click.Context) -> Store:
    """The store named by ``--url`` (or the configured one), opened once per invocation."""
    from provstore.api import open_store

    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        store = open_store(obj.get("url"))
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
