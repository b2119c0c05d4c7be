"""The ``provstore`` command: parse, make one library call, print.

Exit codes, for every command: 0 success, 1 a check failed, 2 a usage or lookup error
(bad arguments, an unknown or ambiguous hash, a named file that does not exist).  Errors are
turned into messages in one place (:class:`_Group`), never into tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from provstore.errors import ProvstoreError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes: 0 success, 1 a check failed, 2 usage or lookup error
(unknown or ambiguous hash, missing file, bad arguments)."""


class _Group(click.Group):
    """Turns provstore and database errors into one-line messages with the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except ProvstoreError as exc:
            click.echo(f"provstore: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            click.echo(f"provstore: database error: {orig}", err=True)
            ctx.exit(1)


def _store(ctx: click.Context) -> Any:
    from provstore.store import Store, open_store

    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        store: Store = open_store(obj.get("url"))
        ctx.call_on_close(store.close)
        obj["store"] = store
    return obj["store"]


def json_option(func: F) -> F:
    """``--json``: print data for machines instead of text for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        func
    )


@click.group(
    cls=_Group, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--url",
    metavar="URL",
    help="Store URL (default: $PROVSTORE_URL, [tool.provstore] url in pyproject.toml, "
    "then ~/.local/share/provstore/provstore.db).",
)
@click.version_option(package_name="provstore")
@click.pass_context
def main(ctx: click.Context, url: str | None) -> None:
    r"""Provenance for data products: what made a file, with which code, inputs and environment.

    \b
    Examples:
      provstore log                       recent runs
      provstore show 3fa9c1               any object, by digest or unique prefix
      provstore stats --json              object counts by kind
    """
    ctx.ensure_object(dict)["url"] = url


@main.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="HASH")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    r"""Show one object (product, run, environment, ...) by digest or unique prefix.

    \b
    Example:
      provstore show 3fa9c1 --json
    """
    from provstore import render

    item = _store(ctx).get(ref)
    click.echo(render.to_json_text(render.to_json(item)) if as_json else render.human(item))


@main.command(epilog=EXIT_CODES)
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@json_option
@click.pass_context
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    r"""List the most recent runs, newest first.

    \b
    Example:
      provstore log -n 5
    """
    from provstore import render

    runs = _store(ctx).runs(limit)
    if as_json:
        rows = [
            {
                "run": r.digest.hex(),
                "started_ns": r.started_ns,
                "finished_ns": r.finished_ns,
                "status": r.status or "unfinished",
                "host": r.host,
                "user": r.user,
                "name": r.name,
                "products": r.products,
            }
            for r in runs
        ]
        click.echo(render.to_json_text(rows))
        return
    if not runs:
        click.echo("no runs recorded yet")
    for r in runs:
        label = f"  {r.name}" if r.name else ""
        click.echo(
            f"{r.digest.hex()[:12]}  {render.format_ns(r.started_ns)}  "
            f"{(r.status or 'unfinished'):<10} {r.products:>6} products  {r.user}@{r.host}{label}"
        )


@main.command(epilog=EXIT_CODES)
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    r"""Count the objects in the store by kind.

    \b
    Example:
      provstore stats --json
    """
    from provstore import render

    data = _store(ctx).stats()
    if as_json:
        click.echo(render.to_json_text(data))
        return
    click.echo(f"store: {data['url']}")
    for kind, count in sorted(data["objects"].items()):
        click.echo(f"  {kind:<12} {count:>10}")
    click.echo(f"  {'bytes':<12} {data['bytes']:>10}")
