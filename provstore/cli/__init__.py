"""The ``provstore`` command: parse, make one library call, print.

Exit codes, for every command: 0 success, 1 a check failed, 2 a usage or lookup error
(bad arguments, an unknown or ambiguous hash, a named file that does not exist).  Errors are
turned into messages in one place (:class:`_Group`), never into tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from provstore.core.errors import ProvstoreError

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
    """Provenance for data products: what made a file, with which code, inputs and environment.

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
    """Show one object (product, run, environment, ...) by digest or unique prefix.

    \b
    Example:
      provstore show 3fa9c1 --json
    """
    from provstore.cli import output as render

    item = _store(ctx).get(ref)
    click.echo(render.to_json_text(render.to_json(item)) if as_json else render.human(item))


@main.command(epilog=EXIT_CODES)
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@json_option
@click.pass_context
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the most recent runs, newest first.

    \b
    Example:
      provstore log -n 5
    """
    from provstore.cli import output as render

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
    """Count the objects in the store by kind.

    \b
    Example:
      provstore stats --json
    """
    from provstore.cli import output as render

    data = _store(ctx).stats()
    if as_json:
        click.echo(render.to_json_text(data))
        return
    click.echo(f"store: {data['url']}")
    for kind, count in sorted(data["objects"].items()):
        click.echo(f"  {kind:<12} {count:>10}")
    click.echo(f"  {'bytes':<12} {data['bytes']:>10}")


@main.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="HASH")
@click.option(
    "--path",
    "-p",
    type=click.Path(exists=True, dir_okay=False),
    help="Check this file's bytes instead of the recorded path.",
)
@click.option("--rerun", is_flag=True, help="Run the recorded command again; compare outputs.")
@click.option("--no-environment", is_flag=True, help="Skip comparing the current environment.")
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    ref: str,
    path: str | None,
    rerun: bool,
    no_environment: bool,
    as_json: bool,
) -> None:
    """Check a product: integrity, file content, environment, and optionally a re-run.

    Exits 0 only when every check passed; 1 when any failed (a missing file is a
    failed check).

    \b
    Examples:
      provstore verify 3fa9c1
      provstore verify 3fa9c1 --path /data/copy.parquet --json
      provstore verify 3fa9c1 --rerun
    """
    from provstore.checks.verify import verify as run_verify
    from provstore.cli import output as render

    report = run_verify(_store(ctx), ref, path=path, rerun=rerun, environment=not no_environment)
    if as_json:
        click.echo(render.to_json_text(report.to_json()))
    else:
        click.echo(f"{report.kind} {report.digest}")
        for check in report.checks:
            first, *rest = check.message.splitlines() or [""]
            click.echo(f"  {check.status:<11} {check.name:<12} {first}")
            for line in rest:
                click.echo(f"  {'':<11} {'':<12} {line}")
        click.echo("verified" if report.ok else "NOT verified")
    ctx.exit(0 if report.ok else 1)


@main.command(
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

    Each output is recorded with every input as its parent. A tracker() inside the
    command joins this run.

    \b
    Example:
      provstore run -i raw.csv -o clean.csv --name clean -- python clean.py raw.csv
    """
    from provstore.tracking.command import run_command

    result = run_command(
        command, inputs=inputs, outputs=outputs, name=name, url=ctx.obj.get("url")
    )
    click.echo(f"provstore: run {result.run} exited {result.exit_code}", err=True)
    for path, digest in result.outputs.items():
        click.echo(f"provstore: recorded {path} as {digest}", err=True)
    for path in result.missing_outputs:
        click.echo(f"provstore: warning: output {path} was not written; not recorded", err=True)
    ctx.exit(result.exit_code)


@main.command(epilog=EXIT_CODES)
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
    from provstore.cli import output as render

    captured = capture_environment()
    data: dict[str, Any] = {"environment": captured.environment.hex}
    if match:
        data["known"] = _store(ctx).contains(captured.environment.digest)
    if as_json:
        click.echo(render.to_json_text(data))
    else:
        suffix = ""
        if match:
            suffix = "  (in the store)" if data["known"] else "  (not in the store)"
        click.echo(captured.environment.hex + suffix)
    ctx.exit(1 if match and not data["known"] else 0)


@main.command(epilog=EXIT_CODES)
@click.argument("a", metavar="A")
@click.argument("b", metavar="[B]", required=False)
@json_option
@click.pass_context
def diff(ctx: click.Context, a: str, b: str | None, as_json: bool) -> None:
    """Compare two environments, or those behind products or runs (B: this one).

    \b
    Examples:
      provstore diff 3fa9c1             recorded vs the current environment
      provstore diff 3fa9c1 77d0e2 --json
    """
    from provstore.checks.envdiff import diff_to_json, diff_to_text
    from provstore.checks.verify import diff_refs
    from provstore.cli import output as render

    result = diff_refs(_store(ctx), a, b)
    click.echo(render.to_json_text(diff_to_json(result)) if as_json else diff_to_text(result))


@main.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="HASH")
@click.option("--descendants", is_flag=True, help="Follow products made from it instead.")
@click.option("--depth", type=click.IntRange(min=0), help="Stop after N levels.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "dot", "mermaid"]),
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
    from provstore.cli import output as render
    from provstore.exchange import lineage as graph

    store = _store(ctx)
    result = store.lineage(ref, "descendants" if descendants else "ancestors", depth)
    names = store.labels(result.depths)
    if fmt == "json":
        click.echo(render.to_json_text(graph.lineage_json(result, names)))
    else:
        render_fn = {
            "text": graph.lineage_text,
            "dot": graph.lineage_dot,
            "mermaid": graph.lineage_mermaid,
        }[fmt]
        click.echo(render_fn(result, names))


@main.command(epilog=EXIT_CODES)
@json_option
@click.pass_context
def fsck(ctx: click.Context, as_json: bool) -> None:
    """Re-hash every object, check references and the index; exit 1 on any problem.

    \b
    Example:
      provstore fsck
    """
    from provstore.checks.fsck import fsck as run_fsck
    from provstore.cli import output as render
    from provstore.cli.progress import progress, should_show

    store = _store(ctx)
    total = sum(store.stats()["objects"].values())
    with progress("fsck", total, enabled=should_show(as_json)) as bar:
        report = run_fsck(store, on_progress=bar.advance)
    if as_json:
        data = {
            "ok": report.ok,
            "objects": report.objects,
            "by_kind": report.by_kind,
            "problems": [
                {"digest": p.digest, "kind": p.kind, "message": p.message} for p in report.problems
            ],
        }
        click.echo(render.to_json_text(data))
    else:
        for problem in report.problems:
            click.echo(f"{problem.kind:<12} {problem.digest or '-':<64} {problem.message}")
        verdict = "no problems" if report.ok else f"{len(report.problems)} problems"
        click.echo(f"checked {report.objects} objects: {verdict}")
    ctx.exit(0 if report.ok else 1)


@main.command(epilog=EXIT_CODES)
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the index tables from the stored objects (one transaction).

    \b
    Example:
      provstore reindex
    """
    from provstore.cli.progress import progress, should_show

    store = _store(ctx)
    total = sum(store.stats()["objects"].values())
    with progress("reindex", total, enabled=should_show(False)) as bar:
        count = store.reindex(on_progress=bar.advance)
    click.echo(f"reindexed {count} objects")


@main.command(name="export", epilog=EXIT_CODES)
@click.argument("refs", metavar="HASH...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The file to write ('-' for standard output).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bundle", "prov-json"]),
    default="bundle",
    show_default=True,
    help="A provstore bundle, or W3C PROV-JSON for other tools.",
)
@click.option("--no-compress", is_flag=True, help="Write the bundle body uncompressed.")
@click.pass_context
def export_command(
    ctx: click.Context, refs: tuple[str, ...], output: str, fmt: str, no_compress: bool
) -> None:
    """Write products (or any objects) with their whole provenance closure to a file.

    \b
    Examples:
      provstore export 3fa9c1 -o results.psb
      provstore export 3fa9c1 77d0e2 --format prov-json -o results.prov.json
    """
    from provstore.exchange.transfer import export_to_path

    result = export_to_path(_store(ctx), refs, output, fmt=fmt, compress=not no_compress)
    if output != "-":
        click.echo(f"exported {result.objects} objects to {output}")


@main.command(name="import", epilog=EXIT_CODES)
@click.argument(
    "source",
    metavar="FILE",
    required=False,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@click.option(
    "--spool",
    type=click.Path(exists=True, file_okay=False),
    help="Ingest every complete bundle in this spool directory.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="With --spool: delete ingested bundles (default: move to ingested/).",
)
@json_option
@click.pass_context
def import_command(
    ctx: click.Context, source: str | None, spool: str | None, delete: bool, as_json: bool
) -> None:
    """Check a bundle completely, then add its objects to the store in one transaction.

    A damaged, incomplete or tampered bundle is rejected (exit 1) and the store is
    left exactly as it was. Importing the same bundle twice adds nothing.

    \b
    Examples:
      provstore import results.psb
      provstore import --spool /scratch/provstore-spool
    """
    from provstore.cli import output as render

    if (source is None) == (spool is None):
        raise click.UsageError("give either a bundle FILE or --spool DIR")
    store = _store(ctx)
    if spool is not None:
        from provstore.tracking.spool import ingest

        report = ingest(store, spool, delete=delete)
        data = {
            "ingested": report.ingested,
            "rejected": report.rejected,
            "added": report.added,
            "present": report.present,
        }
        if as_json:
            click.echo(render.to_json_text(data))
        else:
            click.echo(
                f"ingested {len(report.ingested)} bundles ({report.added} new objects, "
                f"{report.present} already present); rejected {len(report.rejected)}"
            )
            for name, reason in report.rejected.items():
                click.echo(f"  rejected {name}: {reason}", err=True)
        ctx.exit(1 if report.rejected else 0)
    from provstore.cli.progress import progress, should_show
    from provstore.exchange.transfer import import_from_path

    with progress("importing objects", None, enabled=should_show(as_json)) as bar:
        result = import_from_path(store, source or "-", on_progress=bar.advance)
    if as_json:
        click.echo(render.to_json_text(
            {"roots": list(result.roots), "added": result.added, "present": result.present}
        ))  # fmt: skip
    else:
        click.echo(f"imported {result.added} new objects ({result.present} already present)")
