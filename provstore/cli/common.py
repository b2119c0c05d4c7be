"""What every command shares: the exit-code epilog, ``--json``, the store, and printing.

Each command parses its arguments, makes one library call and hands the result to
:func:`emit`, which prints JSON for machines or text for people.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from provstore.shapes import duration

if TYPE_CHECKING:
    from provstore.api import Store

__all__ = [
    "EXIT_CODES",
    "URL_HELP",
    "When",
    "duration",
    "emit",
    "json_option",
    "store_of",
    "url_option",
]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
REF: a digest or unique prefix (6+ hex characters), name:NAME or
name:NAME@VERSION (the newest product of that name), or a path to an
existing file (the product with its bytes, recorded there first).

\b
Exit codes: 0 success, 1 a check failed, 2 usage or lookup error
(unknown or ambiguous reference, missing file, bad arguments)."""


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


if TYPE_CHECKING:  # click's ParamType is generic from 8.2 on (not subscriptable before)
    _IntParam = click.ParamType[int, Any]
else:
    _IntParam = click.ParamType


class When(_IntParam):
    """A moment: an ISO 8601 date or time (UTC unless it says), or an age like ``3d``, ``12h``."""

    name = "WHEN"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Integer nanoseconds since the epoch, UTC."""
        text = str(value).strip()
        if text[:-1].isdigit() and text[-1:] in self._UNITS:
            return time.time_ns() - int(text[:-1]) * self._UNITS[text[-1]] * 1_000_000_000
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is not a date (2026-11-24, 2026-11-24T09:30) or age (3d, 12h)")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    """Print ``data`` as stable JSON, or ``text`` (built only when needed) for people."""
    from provstore.cli.output import to_json_text

    if as_json:
        click.echo(to_json_text(data))
    else:
        click.echo(text() if callable(text) else text)
