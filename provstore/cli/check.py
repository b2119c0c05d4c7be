"""Commands that check what is recorded: verify, fsck, reindex."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from provstore.cli.common import EXIT_CODES, emit, json_option, store_of
from provstore.cli.progress import progress, should_show

if TYPE_CHECKING:
    from provstore.api import Store
    from provstore.checks.fsck import FsckReport
    from provstore.checks.report import Report


@click.command(epilog=EXIT_CODES)
@click.argument("ref", metavar="REF")
@click.option(
    "--path",
    "-p",
    type=click.Path(exists=True, dir_okay=False),
    help="Check this file's bytes instead of the recorded path.",
)
@click.option("--rerun", is_flag=True, help="Run the recorded command again; compare outputs.")
@click.option(
    "--recursive", is_flag=True, help="Also check every ancestor's file that is on this machine."
)
@click.option("--no-environment", is_flag=True, help="Skip comparing the current environment.")
@click.option(
    "--strict",
    is_flag=True,
    help="Fail on any environment difference, not only in what the run imported.",
)
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    ref: str,
    path: str | None,
    rerun: bool,
    recursive: bool,
    no_environment: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Check a product: integrity, file content, environment, and optionally a re-run.

    Exits 0 only when every check passed; 1 when any failed (a missing file is a
    failed check). The environment check fails when a distribution the run imported
    changed (or the interpreter, platform, GPU, container or a recorded variable); any
    other installed distribution that changed is a note, unless --strict.
    --recursive also hashes the recorded file of every ancestor that is on this
    machine. --rerun first says which recorded inputs have changed; the
    command's output goes to stderr.

    \b
    Examples:
      provstore verify results/model.json
      provstore verify name:model@1.0 --path /data/copy.parquet --json
      provstore verify results/model.json --recursive
      provstore verify results/model.json --rerun
    """
    report = store_of(ctx).verify(
        ref,
        path=path,
        rerun=rerun,
        recursive=recursive,
        environment=not no_environment,
        strict=strict,
    )
    emit(as_json, report.to_json(), lambda: _report_text(report))
    ctx.exit(0 if report.ok else 1)


@click.command(epilog=EXIT_CODES)
@json_option
@click.pass_context
def fsck(ctx: click.Context, as_json: bool) -> None:
    """Re-hash every object, check references and the index; exit 1 on any problem.

    \b
    Examples:
      provstore fsck
      provstore verify results/model.json   then: one product, end to end
    """
    from provstore.checks.fsck import fsck as run_fsck

    store = store_of(ctx)
    with progress("fsck", _object_count(store), enabled=should_show(as_json)) as bar:
        report = run_fsck(store, on_progress=bar.advance)
    emit(as_json, _fsck_json(report), lambda: _fsck_text(report))
    ctx.exit(0 if report.ok else 1)


@click.command(epilog=EXIT_CODES)
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the index tables from the stored objects (one transaction).

    \b
    Examples:
      provstore reindex
      provstore show name:model           then: the index answers again
    """
    store = store_of(ctx, create=True)
    with progress("reindex", _object_count(store), enabled=should_show(False)) as bar:
        count = store.reindex(on_progress=bar.advance)
    click.echo(f"reindexed {count} objects")


def _object_count(store: Store) -> int:
    return sum(store.stats()["objects"].values())


def _report_text(report: Report) -> str:
    lines = [f"{report.kind} {report.digest}"]
    for check in report.checks:
        first, *rest = check.message.splitlines() or [""]
        lines.append(f"  {check.status:<11} {check.name:<12} {first}")
        lines.extend(f"  {'':<11} {'':<12} {line}" for line in rest)
    lines.append("verified" if report.ok else "NOT verified")
    return "\n".join(lines)


def _fsck_json(report: FsckReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "objects": report.objects,
        "by_kind": report.by_kind,
        "problems": [
            {"digest": p.digest, "kind": p.kind, "message": p.message} for p in report.problems
        ],
    }


def _fsck_text(report: FsckReport) -> str:
    lines = [f"{p.kind:<12} {p.digest or '-':<64} {p.message}" for p in report.problems]
    verdict = "no problems" if report.ok else f"{len(report.problems)} problems"
    lines.append(f"checked {report.objects} objects: {verdict}")
    return "\n".join(lines)


COMMANDS = [verify, fsck, reindex]
