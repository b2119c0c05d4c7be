"""``provstore run``: track any command without changing it."""

from __future__ import annotations

import click

from provstore.cli.common import EXIT_CODES


@click.command(
    epilog=EXIT_CODES,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A file the command reads (repeatable); recorded before it runs.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A file the command writes (repeatable); recorded after it ends.",
)
@click.option("--name", help="A label for the run.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def run(
    ctx: click.Context,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    name: str | None,
    command: tuple[str, ...],
) -> None:
    """Run a command under tracking, with no change to it; exits with its exit code.

    Each output is recorded with every input as its parent; an output that was there
    before and that the command did not change (same bytes and modification time) is
    not. A tracker() inside the command joins this run.

    \b
    Example:
      provstore run -i raw.csv -o clean.csv --name clean -- python clean.py raw.csv
      provstore why clean.csv            then: what made clean.csv
    """
    from provstore.tracking.command import run_command

    result = run_command(
        command, inputs=inputs, outputs=outputs, name=name, url=ctx.obj.get("url")
    )
    click.echo(f"provstore: run {result.run} exited {result.exit_code}", err=True)
    for path, digest in result.outputs.items():
        click.echo(f"provstore: recorded {path} as {digest}", err=True)
    for path, digest in result.registered_outputs.items():
        click.echo(f"provstore: {path} was recorded by the command as {digest}", err=True)
    for path in result.missing_outputs:
        click.echo(f"provstore: warning: output {path} was not written; not recorded", err=True)
    for path in result.unchanged_outputs:
        click.echo(
            f"provstore: warning: output {path} was not changed by the command; not recorded",
            err=True,
        )
    ctx.exit(result.exit_code)


COMMANDS = [run]
