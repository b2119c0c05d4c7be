"""The ``provstore`` command: a click group whose commands live in the modules beside it.

Exit codes, for every command: 0 success, 1 a check failed, 2 a usage or lookup error
(bad arguments, an unknown or ambiguous hash, a named file that does not exist).  Errors are
turned into messages in one place (:class:`_Group`), never into tracebacks.
"""

from __future__ import annotations

from typing import Any

import click

from provstore.cli import browse, bundles, check, running
from provstore.cli.common import EXIT_CODES
from provstore.core.errors import ProvstoreError

__all__ = ["main"]


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
            click.echo(f"provstore: database error: {_one_line(orig)}", err=True)
            ctx.exit(1)
        except OSError as exc:  # a file named on the command line that cannot be written
            click.echo(f"provstore: error: {_one_line(exc)}", err=True)
            ctx.exit(1)


def _one_line(error: BaseException) -> str:
    """A driver's or the system's message on one line (some span several)."""
    return " ".join(str(error).split())


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
    """Provenance for data products: what made a file, with which code, inputs and environment.

    \b
    Examples:
      provstore log                       recent runs
      provstore show 3fa9c1               any object, by digest or unique prefix
      provstore stats --json              object counts by kind
    """
    ctx.ensure_object(dict)["url"] = url


for _module in (browse, check, running, bundles):
    for _command in _module.COMMANDS:
        main.add_command(_command)
