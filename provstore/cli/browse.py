"""Commands that look at what is recorded: show, log, stats, lineage, env, diff."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from provstore import shapes
from provstore.cli import output
from provstore.cli.common import EXIT_CODES, When, duration, emit, json_option, store_of
from provstore.core.objects import CondaSet, Environment, ImportSet, LibrarySet, Run, RunEnd
from provstore.db.listing import ProductRow, RunFilter, RunSummary
from provstore.exchange.lineage import LINEAGE_FORMATS

if TYPE_CHECKING:
    from provstore.api import Store
    from provstore.core.objects import Sealed


@click.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="REF")
@click.option("--all", "every", is_flag=True, help="Show every object REF names, best first.")
@click.option("-n", "--limit", default=20, show_default=True, help="Products of a run shown.")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, every: bool, limit: int, as_json: bool) -> None:
    """Show one object (product, run, environment, ...); a run with its end and products.

    \b
    Examples:
      provstore show model.json            the product with this file's bytes
      provstore show name:sensor-model@1.0 --json
      provstore show 3fa9c1                a run: how it ended, what it read and made
    """
    store = store_of(ctx)
    digests = store.resolve_all(ref) if every else [store.resolve(ref)]
    shown = [_shown(store, store.get(digest), limit) for digest in digests]
    data = [d for d, _ in shown] if every else shown[0][0]
    emit(as_json, data, lambda: "\n\n".join(text for _, text in shown))


def _shown(store: Store, item: Sealed, limit: int) -> tuple[dict[str, Any], str]:
    """An object as JSON and text; a run also with its end, inputs and products."""
    text = output.human(item)
    data, ends, made, signatures = shapes.shown(store, item, limit)
    if signatures:
        from provstore.exchange.signing import signer_lines

        text += "".join(f"\n  {line}" for line in signer_lines(signatures))
    if item.kind == "environment":
        return data, _environment_text(store, item, text)
    if item.kind != "run":
        return data, text
    lines = [text]
    for end in ends:
        assert isinstance(end.obj, RunEnd)
        code = "" if end.obj.exit_code is None else f", exit {end.obj.exit_code}"
        lines.append(f"  ended: {end.obj.status}{code} at {output.format_ns(end.obj.finished_ns)}")
        if end.obj.error:
            lines.append(f"  error: {end.obj.error}")
        lines += [f"  read: {d.hex()[:12]}" for d in end.obj.inputs]
        lines.append(f"  imported: {_imported_text(store, item, end.obj)}")
        for framework, version in sorted((end.obj.cuda or {}).items()):
            lines.append(f"  cuda runtime ({framework}): {version}")
    if not ends:
        lines.append("  ended: - (still running, or killed)")
    lines += [f"  made: {_product_line(row)}" for row in made[:limit]]
    if len(made) > limit:
        lines.append(f"  ... more: provstore products --run {item.hex[:12]}")
    return data, "\n".join(lines)


def _environment_text(store: Store, item: Sealed, text: str) -> str:
    """An environment, with how many distributions and conda packages its sets hold."""
    env = item.obj
    assert isinstance(env, Environment)
    lines = [text]
    sets = [("distributions", env.libraryset), ("conda packages", env.conda)]
    for label, digest in sets:
        if digest is None:
            continue
        found = store.get_many([digest], corrupt={}).get(digest)
        if found is None:
            lines.append(f"  {label}: missing ({digest.hex()[:12]})")
        elif isinstance(found.obj, LibrarySet):
            lines.append(f"  {label}: {len(found.obj.distributions)} ({digest.hex()[:12]})")
        elif isinstance(found.obj, CondaSet):
            count = len(found.obj.packages)
            bad = len(found.obj.unreadable)
            extra = f", {bad} unreadable" if bad else ""
            lines.append(f"  {label}: {count}{extra} ({digest.hex()[:12]})")
    return "\n".join(lines)


def _imported_text(store: Store, run: Sealed, end: RunEnd) -> str:
    """The distributions a run imported, or why they are unknown."""
    if end.imported is None:
        assert isinstance(run.obj, Run)
        if run.obj.command is not None:
            return "unknown (the command did not use tracker())"
        return "not recorded"
    found = store.get_many([end.imported], corrupt={}).get(end.imported)
    if found is None or not isinstance(found.obj, ImportSet):
        return f"missing ({end.imported.hex()[:12]})"
    pairs = found.obj.distributions
    shown = ", ".join(f"{n} {v}" for n, v in pairs) if pairs else "none"
    noun = "distribution" if len(pairs) == 1 else "distributions"
    return f"{len(pairs)} {noun} ({end.imported.hex()[:12]}): {shown}"


def _product_line(row: ProductRow) -> str:
    version = f" {row.version}" if row.version else ""
    size = "-" if row.size is None else f"{row.size:,}"
    return f"{row.digest.hex()[:12]}  {row.name}{version}  ({size} bytes)"


_LOG_HEADER = (
    f"{'RUN':<12}  {'STARTED':<20}  {'STATUS':<10} {'EXIT':>4} {'TOOK':>7} "
    f"{'PRODUCTS':>8}  {'WHERE':<20}  NAME OR COMMAND"
)


def _run_line(r: RunSummary) -> str:
    code = "-" if r.exit_code is None else str(r.exit_code)
    where = f"{r.user}@{r.host}"
    label = f"[{r.job_label}] {r.label}" if r.job_label else r.label
    return (
        f"{r.digest.hex()[:12]}  {output.format_ns(r.started_ns):<20}  "
        f"{(r.status or 'unfinished'):<10} {code:>4} {duration(r.duration_ns):>7} "
        f"{r.products:>8}  {where:<20}  {label}"
    )


@click.command(epilog=EXIT_CODES)
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@click.option(
    "--status",
    type=click.Choice(["succeeded", "failed", "unfinished"]),
    help="Only runs that ended so (or have not ended).",
)
@click.option("--since", type=When(), help="Started at or after (2026-11-24, 3d, 12h).")
@click.option("--until", type=When(), help="Started before.")
@click.option("--host", help="Only runs on this host.")
@click.option("--name", help="Only runs whose name matches this glob.")
@click.option("--job", help="Only runs of this batch job (or of every task of this array job).")
@json_option
@click.pass_context
def log(
    ctx: click.Context,
    limit: int,
    status: str | None,
    since: int | None,
    until: int | None,
    host: str | None,
    name: str | None,
    job: str | None,
    as_json: bool,
) -> None:
    """List the most recent runs, newest first: how each ended, how long, what it made.

    \b
    Examples:
      provstore log -n 5
      provstore log --status failed --since 3d
      provstore log --job 12345          the runs of Slurm (PBS, LSF, ...) job 12345
      provstore show name:model          then: which run made this product
    """
    where = RunFilter(status=status, since_ns=since, until_ns=until, host=host, name=name, job=job)
    runs = store_of(ctx).runs(limit, where=where)
    lines = [_LOG_HEADER, *(_run_line(r) for r in runs)] if runs else ["no runs recorded yet"]
    emit(as_json, [output.run_summary_json(r) for r in runs], "\n".join(lines))


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
    Examples:
      provstore stats --json
      provstore show name:model          then: one of the products counted
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
    Examples:
      provstore env --match
      provstore diff results/model.json  then: how the recorded environment differs
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
@click.option("--used", is_flag=True, help="Only the distributions the run behind A imported.")
@json_option
@click.pass_context
def diff(
    ctx: click.Context, a: str, b: str | None, exit_code: bool, used: bool, as_json: bool
) -> None:
    """Compare two environments, or those behind products or runs (B: this one).

    A and B are references (REF below). Exits 0 whether or not they differ; with
    --exit-code, 1 when they differ.

    \b
    Examples:
      provstore diff model.json          recorded vs the current environment
      provstore diff name:model@1.0 name:model@2.0 --json
      provstore diff model.json --exit-code >/dev/null || echo "environment changed"
      provstore diff model.json --used   only what the recording run imported
    """
    from provstore.checks.envdiff import diff_to_json, diff_to_text

    result = store_of(ctx).diff(a, b, used=used)
    emit(as_json, diff_to_json(result), lambda: diff_to_text(result))
    ctx.exit(1 if exit_code and not result.identical else 0)


@click.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="REF")
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
@click.option(
    "--stream",
    is_flag=True,
    help="One JSON line per product as the walk reaches it (digest, depth; no edges, no "
    "labels), holding a page of them at most: for neighbourhoods too big to hold.",
)
@click.pass_context
def lineage(
    ctx: click.Context, ref: str, descendants: bool, depth: int | None, fmt: str, stream: bool
) -> None:
    """Show where a product came from (ancestors) or what was made from it.

    \b
    Examples:
      provstore lineage model.json
      provstore lineage name:raw-data --descendants --depth 2
      provstore lineage 3fa9c1 --format dot | dot -Tsvg > lineage.svg
      provstore lineage model.json --stream | wc -l
    """
    store = store_of(ctx)
    direction = "descendants" if descendants else "ancestors"
    if stream:
        if fmt != "text":
            raise click.UsageError("--stream writes JSON lines: it takes no --format")
        for digest, level in store.iter_lineage(ref, direction, depth):
            click.echo(json.dumps({"digest": digest.hex(), "depth": level}))
        return
    result = store.lineage(ref, direction, depth)
    click.echo(LINEAGE_FORMATS[fmt](result, store.labels(result.depths)))


COMMANDS = [show, log, stats, env, diff, lineage]
