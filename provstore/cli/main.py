"""The ``provstore`` command: a click group whose commands live in the modules beside it.

Exit codes, for every command: 0 success, 1 a check failed, 2 a usage or lookup error
(bad arguments, an unknown or ambiguous hash, a named file that does not exist).  Errors are
turned into messages in one place (:class:`_Group`), never into tracebacks.
"""

from __future__ import annotations

import warnings
from typing import Any

import click

from provstore.cli import browse, bundles, check, files, running, serving, signing
from provstore.cli.common import EXIT_CODES, URL_HELP, url_option
from provstore.core.errors import ConfigError, ProvstoreError, StoreError

__all__ = ["main"]


class _Group(click.Group):
    """Turns provstore and database errors into one-line messages with the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except ProvstoreError as exc:
            # Store and URL errors carry the driver's text, which may span lines.
            carried = isinstance(exc, (StoreError, ConfigError))
            click.echo(f"provstore: error: {_one_line(exc) if carried else exc}", err=True)
            ctx.exit(exc.exit_code)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            click.echo(f"provstore: database error: {_one_line(orig)}", err=True)
            ctx.exit(1)
        except OSError as exc:  # a file named on the command line that cannot be written
            click.echo(f"provstore: error: {_one_line(exc)}", err=True)
            ctx.exit(1)


def _one_line(message: object) -> str:
    """A driver's or the system's message on one line (some span several)."""
    return " ".join(str(message).split())


def _show_warning(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
    """A warning (say, a URL option the driver ignores) as one line, without source code."""
    click.echo(f"provstore: warning: {_one_line(message)}", err=True)


@click.group(
    cls=_Group, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--url",
    metavar="URL",
    help=URL_HELP + " May also be given after the command, where it wins.",
)
@click.version_option(package_name="provstore")
@click.pass_context
def main(ctx: click.Context, url: str | None) -> None:
    """Provenance for data products: what made a file, with which code, inputs and environment.

    \b
    Examples:
      provstore why results/model.json    what made this file
      provstore status                    which files here are recorded
      provstore log                       recent runs
      provstore show name:model@1.0       any object, by name, file or digest
      provstore products --name 'model*'  products, newest first
      provstore log --url ./other.db      the runs in another store
    """
    ctx.ensure_object(dict)["url"] = url


for _module in (browse, files, check, running, bundles, serving, signing):
    for _command in _module.COMMANDS:
        main.add_command(url_option(_command))  # every command takes a store
