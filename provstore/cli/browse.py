"""Commands that look at what is recorded: show, log, stats, lineage, env, diff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from provstore.cli import output
from provstore.cli.common import EXIT_CODES, emit, json_option, store_of
from provstore.exchange.lineage import LINEAGE_FORMATS

if TYPE_CHECKING:
    from provstore.store import RunSummary


@click.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="HASH")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one object (product, run, environment, ...) by digest or unique prefix.

    \b
    Example:
      provstore show 3fa9c1 --json
    """
    item = store_of(ctx).get(ref)
    emit(as_json, output.to_json(item), lambda: output.human(item))


def _run_row(r: RunSummary) -> dict[str, Any]:
    return {
        "run": r.digest.hex(),
        "started_ns": r.started_ns,
        "finished_ns": r.finished_ns,
        "status": r.status or "unfinished",
        "host": r.host,
        "user": r.user,
        "name": r.name,
        "products": r.products,
    }


def _run_line(r: RunSummary) -> str:
    label = f"  {r.name}" if r.name else ""
    return (
        f"{r.digest.hex()[:12]}  {output.format_ns(r.started_ns)}  "
        f"{(r.status or 'unfinished'):<10} {r.products:>6} products  {r.user}@{r.host}{label}"
    )


@click.command(epilog=EXIT_CODES)
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@json_option
@click.pass_context
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the most recent runs, newest first.

    \b
    Example:
      provstore log -n 5
    """
    runs = store_of(ctx).runs(limit)
    text = "\n".join(_run_line(r) for r in runs) or "no runs recorded yet"
    emit(as_json, [_run_row(r) for r in runs], text)


def _stats_text(data: dict[str, Any]) -> str:
    lines = [f"store: {data['url']}"]
    lines += [f"  {kind:<12} {count:>10}" for kind, count in sorted(data["objects"].items())]
    lines.append(f"  {'bytes':<12} {data['bytes']:>10}")
    return "\n".join(lines)


@click.command(epilog=EXIT_CODES)
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Count the objects in the store by kind.

    \b
    Example:
      provstore stats --json
    """
    data = store_of(ctx).stats()
    emit(as_json, data, lambda: _stats_text(data))


@click.command(epilog=EXIT_CODES)
@click.option(
    "--match", is_flag=True, help="Also tell whether the store holds it (exit 1 if not)."
)
@json_option
@click.pass_context
def env(ctx: click.Context, match: bool, as_json: bool) -> None:
    """Print the current environment's digest; with --match, whether the store knows it.

    \b
    Example:
      provstore env --match
    """
    from provstore.capture.snapshot import capture_environment

    captured = capture_environment()
    data: dict[str, Any] = {"environment": captured.environment.hex}
    suffix = ""
    if match:
        data["known"] = store_of(ctx).contains(captured.environment.digest)
        suffix = "  (in the store)" if data["known"] else "  (not in the store)"
    emit(as_json, data, captured.environment.hex + suffix)
    ctx.exit(1 if match and not data["known"] else 0)


@click.command(epilog=EXIT_CODES)
@click.argument("a", metavar="A")
@click.argument("b", metavar="[B]", required=False)
@click.option(
    "--exit-code", is_flag=True, help="Exit 1 when the environments differ, as `git diff` does."
)
@json_option
@click.pass_context
def diff(ctx: click.Context, a: str, b: str | None, exit_code: bool, as_json: bool) -> None:
    """Compare two environments, or those behind products or runs (B: this one).

    Exits 0 whether or not they differ; with --exit-code, 1 when they differ.

    \b
    Examples:
      provstore diff 3fa9c1             recorded vs the current environment
      provstore diff 3fa9c1 77d0e2 --json
      provstore diff 3fa9c1 --exit-code >/dev/null || echo "environment changed"
    """
    from provstore.checks.envdiff import diff_to_json, diff_to_text

    result = store_of(ctx).diff(a, b)
    emit(as_json, diff_to_json(result), lambda: diff_to_text(result))
    ctx.exit(1 if exit_code and not result.identical else 0)


@click.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="HASH")
@click.option("--descendants", is_flag=True, help="Follow products made from it instead.")
@click.option("--depth", type=click.IntRange(min=0), help="Stop after N levels.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(LINEAGE_FORMATS)),
    default="text",
    show_default=True,
    help="Tree text, JSON nodes and edges, Graphviz or Mermaid.",
)
@click.pass_context
def lineage(ctx: click.Context, ref: str, descendants: bool, depth: int | None, fmt: str) -> None:
    """Show where a product came from (ancestors) or what was made from it.

    \b
    Examples:
      provstore lineage 3fa9c1
      provstore lineage 3fa9c1 --descendants --depth 2
      provstore lineage 3fa9c1 --format dot | dot -Tsvg > lineage.svg
    """
    store = store_of(ctx)
    result = store.lineage(ref, "descendants" if descendants else "ancestors", depth)
    click.echo(LINEAGE_FORMATS[fmt](result, store.labels(result.depths)))


COMMANDS = [show, log, stats, env, diff, lineage]
