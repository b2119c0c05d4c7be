"""Commands that start from what the user holds: why (a file), status (a tree), products."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import click

from provstore import shapes
from provstore.cli import output
from provstore.cli.common import EXIT_CODES, When, duration, emit, json_option, store_of
from provstore.core.objects import Environment, Product, Run, RunEnd
from provstore.db.listing import ProductFilter, ProductRow

if TYPE_CHECKING:
    from provstore.checks.status import StatusReport
    from provstore.checks.why import Why


@click.command(epilog=EXIT_CODES)
@click.argument("path", metavar="PATH")
@json_option
@click.pass_context
def why(ctx: click.Context, path: str, as_json: bool) -> None:
    """What made this file: its product, the run, its inputs, the environment.

    Exits 0 when the file's bytes are recorded, 1 when they are not (it says whether the
    path was recorded with other bytes), 2 when the file does not exist.

    \b
    Examples:
      provstore why results/model.json
      provstore why data/clean.csv --json
    """
    answer = store_of(ctx).why(path)
    emit(as_json, _why_json(answer), lambda: _why_text(path, answer))
    ctx.exit(0 if answer.recorded else 1)


def _why_json(answer: Why) -> dict[str, Any]:
    return {
        "path": answer.path,
        "content": answer.content.hex(),
        "size": answer.size,
        "recorded": answer.recorded,
        "products": [output.to_json(item) for item in answer.products],
        "run": None if answer.run is None else output.to_json(answer.run),
        "end": None if answer.end is None else output.to_json(answer.end),
        "inputs_from": answer.inputs_from,
        "inputs": [
            {"product": i.product.hex, "state": i.state, **_name_path(i.product.obj)}
            for i in answer.inputs
        ],
        "environment": None if answer.environment is None else answer.environment.hex,
        "distributions": answer.distributions,
        "recorded_before": [item.hex for item in answer.earlier],
    }


def _name_path(obj: Any) -> dict[str, Any]:
    return {"name": obj.name, "path": obj.path} if isinstance(obj, Product) else {}


def _why_text(given: str, answer: Why) -> str:
    if not answer.recorded:
        return _unknown_text(given, answer)
    best = answer.products[0]
    assert isinstance(best.obj, Product)
    version = f" {best.obj.version}" if best.obj.version else ""
    lines = [given, f"  product  {best.hex[:12]}  {best.obj.name}{version}"]
    if len(answer.products) > 1:
        more = len(answer.products) - 1
        lines.append(f"           {more} more with these bytes: provstore show --all {given}")
    lines += _run_lines(answer)
    lines += _input_lines(answer)
    lines += _environment_lines(answer)
    lines.append(
        f"  more     provstore lineage {given} | provstore verify {given} | "
        f"provstore show {best.hex[:12]}"
    )
    return "\n".join(lines)


def _unknown_text(given: str, answer: Why) -> str:
    lines = [f"{given}: not recorded (no product has these bytes, BLAKE3 {answer.content.hex()})"]
    for item in answer.earlier[:3]:
        assert isinstance(item.obj, Product)
        by = f"run {item.obj.run.hex()[:12]}" if item.obj.run else "a use()"
        lines.append(f"  modified since {by} recorded it as {item.hex[:12]} ({item.obj.name})")
    if not answer.earlier:
        lines.append("  this path was never recorded either: `provstore status` lists what is")
    return "\n".join(lines)


def _run_lines(answer: Why) -> list[str]:
    run, end = answer.run, answer.end
    if run is None or not isinstance(run.obj, Run):
        return ["  made by  nothing recorded: a source product (a file a run read)"]
    obj = run.obj
    command = shlex.join(obj.command if obj.command is not None else obj.argv) or "-"
    lines = [f"  made by  run {run.hex[:12]}  {obj.name or command}"]
    if obj.name:
        lines.append(f"           {command}")
    when = f"{output.format_ns(obj.started_ns)}"
    if end is not None and isinstance(end.obj, RunEnd):
        took = duration(end.obj.finished_ns - obj.started_ns)
        code = "" if end.obj.exit_code is None else f", exit {end.obj.exit_code}"
        when += f" for {took}, {end.obj.status}{code}"
    else:
        when += ", no end recorded (still running, or killed)"
    lines.append(f"           {obj.user}@{obj.host}, {when}")
    if obj.code is not None:
        state = obj.code
        where = f"{state.branch or 'detached'}{', dirty' if state.dirty else ''}"
        lines.append(f"           git {(state.commit or 'no commit')[:12]} ({where})")
    return lines


def _input_lines(answer: Why) -> list[str]:
    if not answer.inputs:
        return ["  inputs   none recorded"]
    head = "inputs" if answer.inputs_from == "parents" else "read"
    lines = []
    for index, item in enumerate(answer.inputs):
        obj = item.product.obj
        assert isinstance(obj, Product)
        label = obj.path or obj.name
        lines.append(
            f"  {head if index == 0 else '':<7}  {item.state:<9} {item.product.hex[:12]}  {label}"
        )
    return lines


def _environment_lines(answer: Why) -> list[str]:
    env = answer.environment
    if env is None or not isinstance(env.obj, Environment):
        return []
    e = env.obj
    dists = "" if answer.distributions is None else f", {answer.distributions} distributions"
    return [
        f"  env      {e.implementation} {e.python_version} on {e.system} {e.machine}"
        f"{dists} ({env.hex[:12]})"
    ]


@click.command(epilog=EXIT_CODES)
@click.argument("paths", metavar="[PATH]...", nargs=-1)
@click.option("--untracked/--no-untracked", default=True, help="List untracked files too.")
@click.option(
    "--watch",
    "start_watch",
    is_flag=True,
    help="Start a background watcher on each directory (see `provstore watch`), so the "
    "next status there looks only at what changed.",
)
@json_option
@click.pass_context
def status(
    ctx: click.Context, paths: tuple[str, ...], untracked: bool, start_watch: bool, as_json: bool
) -> None:
    """Which files are recorded, modified since they were recorded, or untracked.

    Directories are walked recursively (default: the working directory). A file is hashed
    once per change: its digest is cached with its size and times, as git's index does, and
    the answer is kept for the next status with the same arguments. Where a watcher runs
    (`--watch`, `provstore watch`), the next status asks it what changed and looks at
    nothing else.

    \b
    Examples:
      provstore status
      provstore status results/ data/raw.csv --json
      provstore status --watch data/    start a watcher: later calls are near instant
    """
    targets = list(paths) or ["."]
    if start_watch:
        from provstore.capture import watch

        for target in targets:
            if os.path.isdir(target):
                watch.start(target)
    report = store_of(ctx).status(targets)
    emit(as_json, _status_json(report, untracked), lambda: _status_text(report, untracked))


def _status_json(report: StatusReport, untracked: bool) -> dict[str, Any]:
    return {
        "files": [
            {"path": f.path, "state": f.state, "product": f.product.hex() if f.product else None}
            for f in report.files
            if untracked or f.state != "untracked"
        ],
        "counts": report.counts(),
        "hashed": report.hashed,
        "walked": report.walked,
        "watched": report.watched,
    }


def _status_text(report: StatusReport, untracked: bool) -> str:
    lines = []
    for item in report.files:
        if item.state == "untracked" and not untracked:
            continue
        product = item.product.hex()[:12] if item.product else ""
        lines.append(f"{item.state:<10} {product:<12}  {item.path}")
    counts = report.counts()
    watched = f"; watched, {report.walked} looked at" if report.watched else ""
    lines.append(
        f"{counts['recorded']} recorded, {counts['modified']} modified, "
        f"{counts['untracked']} untracked ({report.hashed} "
        f"{'file' if report.hashed == 1 else 'files'} hashed{watched})"
    )
    return "\n".join(lines)


@click.command(epilog=EXIT_CODES)
@click.option("--name", help="Names matching this shell glob (case-sensitive).")
@click.option("--path", help="Recorded paths matching this glob (relative: from here).")
@click.option("--run", "run_ref", metavar="REF", help="Only products this run made.")
@click.option("--since", type=When(), help="Made by runs started at or after this.")
@click.option("--until", type=When(), help="Made by runs started before this.")
@click.option("-n", "--limit", default=50, show_default=True, help="Products per page.")
@click.option("--after", metavar="CURSOR", help="The next page: the cursor a page ended with.")
@json_option
@click.pass_context
def products(ctx: click.Context, name: str | None, path: str | None, run_ref: str | None,
             since: int | None, until: int | None, limit: int, after: str | None,
             as_json: bool) -> None:  # fmt: skip
    """List products newest first, a page at a time.

    \b
    Examples:
      provstore products --name 'sensor*' --limit 20
      provstore products --path 'results/model*.json' --since 7d
      provstore products --run name:train --json
    """
    store = store_of(ctx)
    run = None if run_ref is None else _run_of(store, run_ref)
    where = ProductFilter(name=name, path=_path_glob(path), run=run, since_ns=since,
                          until_ns=until)  # fmt: skip
    rows = store.products(where=where, limit=limit, after=_cursor(after))
    data = shapes.products_page_json(rows, limit)
    emit(as_json, data, lambda: _products_text(rows, data["next"]))


def _run_of(store: Any, ref: str) -> bytes:
    """A run reference; a product reference stands for the run that made it."""
    item = store.get(ref, kind=("run", "product"))
    if isinstance(item.obj, Product):
        if item.obj.run is None:
            raise click.BadParameter(f"{ref} is a source product: no run made it")
        return item.obj.run
    return item.digest  # type: ignore[no-any-return]


def _path_glob(pattern: str | None) -> str | None:
    if pattern is None or pattern.startswith(("/", "*")):
        return pattern
    return os.path.join(os.getcwd(), pattern)


def _cursor(text: str | None) -> tuple[int, bytes] | None:
    if text is None:
        return None
    try:
        started, digest = text.split(":")
        return int(started), bytes.fromhex(digest)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a cursor a page ended with") from None


def _products_text(rows: list[ProductRow], cursor: str | None) -> str:
    if not rows:
        return "no products match"
    lines = [f"{'PRODUCT':<12}  {'MADE':<20}  {'SIZE':>12}  {'RUN':<12}  NAME"]
    for row in rows:
        size = "-" if row.size is None else f"{row.size:,}"
        run = row.run.hex()[:12] if row.run else "(source)"
        version = f" {row.version}" if row.version else ""
        lines.append(
            f"{row.digest.hex()[:12]}  {output.format_ns(row.started_ns):<20}  {size:>12}  "
            f"{run:<12}  {row.name}{version}"
        )
    if cursor:
        lines.append(f"next page: provstore products ... --after {cursor}")
    return "\n".join(lines)


@click.command(name="watch", epilog=EXIT_CODES)
@click.argument("paths", metavar="[DIR]...", nargs=-1)
@click.option("--stop", is_flag=True, help="Stop the watchers of these directories.")
@click.option("--list", "listing", is_flag=True, help="List the directories watched now.")
@click.option(
    "--idle",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="A new watcher exits after this long without a question (default: an hour).",
)
@json_option
def watch_command(
    paths: tuple[str, ...], stop: bool, listing: bool, idle: float | None, as_json: bool
) -> None:
    """Watch directories so that `provstore status` there looks only at what changed.

    A watcher is a small background process per directory tree (Linux inotify, as git's
    fsmonitor): it notes every path that changes, and a status asks it what changed since
    the last one instead of asking the kernel about every file. It exits after an hour
    without a question (--idle), when its directory is removed, or with --stop. Without a
    watcher, status gives the same answers, more slowly. Writes through a shared mmap or
    through a hard link outside the tree, and changes made on another machine (network
    file systems), are not seen: do not watch such trees.

    \b
    Examples:
      provstore watch data/ results/     start watchers (default: the working directory)
      provstore watch --list             which directories are watched
      provstore watch --stop data/       stop one
    """
    from provstore.capture import watch

    if listing:
        roots = watch.running()
        emit(as_json, {"watched": roots}, lambda: "\n".join(roots) or "no directory is watched")
        return
    targets = list(paths) or ["."]
    if stop:
        stopped = [t for t in targets if watch.stop(t)]
        emit(
            as_json,
            {"stopped": [os.path.abspath(t) for t in stopped]},
            lambda: "\n".join(f"stopped watching {t}" for t in stopped) or "nothing was watched",
        )
        return
    started = [watch.start(target, idle=idle).root for target in targets]
    emit(as_json, {"watched": started}, lambda: "\n".join(f"watching {root}" for root in started))


COMMANDS = [why, status, products, watch_command]
