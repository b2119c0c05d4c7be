"""Commands that move provenance between stores: export and import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from provstore.cli.common import EXIT_CODES, emit, json_option, store_of
from provstore.cli.progress import progress, should_show
from provstore.exchange.formats import EXPORT_FORMATS

if TYPE_CHECKING:
    from provstore.tracking.spool import IngestReport

_FORMATS_HELP = "; ".join(f"{f.name}: {f.help}" for f in EXPORT_FORMATS.values()) + "."


@click.command(name="export", epilog=EXIT_CODES)
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True),
    help="The file to write ('-' for standard output; a directory for --format ro-crate "
    "unless it ends in .zip); an existing one is kept unless --force.",
)
@click.option("-f", "--force", is_flag=True, help="Replace the output file if it exists.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(EXPORT_FORMATS)),
    default="bundle",
    show_default=True,
    help=_FORMATS_HELP,
)
@click.option("--no-compress", is_flag=True, help="Write the bundle body uncompressed.")
@click.option(
    "--sign",
    "sign_key",
    metavar="KEY",
    type=click.Path(exists=True, dir_okay=False),
    help="Sign the bundle with this ed25519 private key (see `provstore key generate`).",
)
@click.option(
    "--namespace",
    metavar="NS",
    default=None,
    help="OpenLineage: the job namespace (default: [tool.provstore] openlineage_namespace, "
    "else 'provstore').",
)
@click.option(
    "--with-files",
    is_flag=True,
    help="RO-Crate: copy the recorded files (those still matching their digest) into it.",
)
@click.pass_context
def export_command(
    ctx: click.Context,
    refs: tuple[str, ...],
    output: str,
    force: bool,
    fmt: str,
    no_compress: bool,
    sign_key: str | None,
    namespace: str | None,
    with_files: bool,
) -> None:
    """Write products (or any objects) with their whole provenance closure to a file.

    The file is written under a temporary name and renamed when complete, with your umask's
    permissions; an existing file is left alone unless --force.

    \b
    Examples:
      provstore export results/model.json -o results.psb
      provstore export results/model.json --sign site.key -o results.psb
      provstore export name:model@1.0 3fa9c1 --format prov-json -o results.prov.json
      provstore export model.json --format openlineage -o events.jsonl
      provstore export model.json --format ro-crate --with-files -o crate.zip
    """
    from provstore.config import resolve
    from provstore.exchange.formats import ExportOptions, export_to_path

    given = {
        "sign": sign_key is not None,
        "namespace": namespace is not None,
        "with_files": with_files,
        "compress": no_compress,
    }
    allowed = EXPORT_FORMATS[fmt].options
    for name, used in given.items():
        if used and name not in allowed:
            flag = "--no-compress" if name == "compress" else "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} does not apply to --format {fmt}")
    if namespace is None:
        namespace = resolve(ctx.obj.get("url")).openlineage_namespace
    options = ExportOptions(
        compress=not no_compress, sign=sign_key, namespace=namespace, with_files=with_files
    )
    result = export_to_path(store_of(ctx), refs, output, fmt=fmt, overwrite=force, options=options)
    if output != "-":
        click.echo(f"exported {result.objects} {result.what} to {output}")


@click.command(name="import", epilog=EXIT_CODES)
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
@click.option(
    "--stale-hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="With --spool: remove unfinished bundles (a killed job's) not written for this long.",
)
@click.option(
    "--trusted-keys",
    "trusted_keys",
    metavar="FILE|DIR",
    multiple=True,
    type=click.Path(exists=True),
    help="Require a valid signature by one of these public keys (a .pub file, or a "
    "directory of them; repeatable). Default: [tool.provstore] trusted_keys.",
)
@json_option
@click.pass_context
def import_command(
    ctx: click.Context,
    source: str | None,
    spool: str | None,
    delete: bool,
    stale_hours: float,
    trusted_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check a bundle completely, then add its objects to the store in one transaction.

    A damaged, incomplete or tampered bundle is rejected (exit 1) and the store is
    left exactly as it was. Importing the same bundle twice adds nothing. A signed
    bundle's signature must hold; with trusted keys (--trusted-keys or [tool.provstore]
    trusted_keys) a bundle without a valid signature by one of them is rejected.
    The signature is recorded: `provstore show` and `verify` say who signed.

    \b
    Examples:
      provstore import results.psb
      provstore import --trusted-keys keys/ results.psb
      provstore import --spool /scratch/provstore-spool
      provstore show name:model          then: look at what arrived
    """
    if (source is None) == (spool is None):
        raise click.UsageError("give either a bundle FILE or --spool DIR")
    store = store_of(ctx, create=True)
    if spool is not None:
        from provstore.tracking.spool import ingest

        report = ingest(store, spool, delete=delete, stale_after=stale_hours * 3600)
        emit(as_json, _ingest_json(report), lambda: _ingest_text(report))
        if not as_json:
            for name, reason in report.rejected.items():
                click.echo(f"  rejected {name}: {reason}", err=True)
        ctx.exit(1 if report.rejected else 0)
    from provstore.config import resolve
    from provstore.exchange.formats import import_from_path

    keys = trusted_keys or resolve(ctx.obj.get("url")).trusted_keys
    with progress("importing objects", None, enabled=should_show(as_json)) as bar:
        result = import_from_path(store, source or "-", on_progress=bar.advance, trusted_keys=keys)
    data = {
        "roots": list(result.roots),
        "added": result.added,
        "present": result.present,
        "signed_by": list(result.signed_by),
    }
    signed = f"; signed by {', '.join(result.signed_by)}" if result.signed_by else ""
    emit(
        as_json,
        data,
        f"imported {result.added} new objects ({result.present} already present){signed}",
    )


def _ingest_json(report: IngestReport) -> dict[str, Any]:
    return {
        "ingested": report.ingested,
        "rejected": report.rejected,
        "added": report.added,
        "present": report.present,
        "stale_removed": report.stale,
    }


def _ingest_text(report: IngestReport) -> str:
    stale = f"; removed {len(report.stale)} stale unfinished bundles" if report.stale else ""
    return (
        f"ingested {len(report.ingested)} bundles ({report.added} new objects, "
        f"{report.present} already present); rejected {len(report.rejected)}{stale}"
    )


COMMANDS = [export_command, import_command]
