"""Commands for what leaves a site signed: keys and in-toto attestations."""

from __future__ import annotations

import getpass
import json
import socket

import click

from provstore.cli.common import EXIT_CODES, store_of


@click.group(name="key", epilog=EXIT_CODES)
def key_group() -> None:
    """Manage ed25519 signing keys (for signed bundles and attestations).

    \b
    Examples:
      provstore key generate -o site.key --name lab-a
    """


@key_group.command(name="generate", epilog=EXIT_CODES)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The private key file to write (mode 0600); the public key goes to OUTPUT.pub.",
)
@click.option(
    "--name", help="A name for the key, shown by those who check it (default: user@host)."
)
def key_generate_command(output: str, name: str | None) -> None:
    """Write a new ed25519 key pair: OUTPUT (private, keep it) and OUTPUT.pub (give it out).

    Neither file may exist. Sites that import your bundles put OUTPUT.pub among their
    trusted keys (import --trusted-keys, or [tool.provstore] trusted_keys).

    \b
    Examples:
      provstore key generate -o ~/.config/provstore/site.key --name lab-a
      provstore export model.json --sign ~/.config/provstore/site.key -o model.psb
    """
    from provstore.exchange.signing import generate_key

    ident = generate_key(output, name or f"{getpass.getuser()}@{socket.gethostname()}")
    click.echo(f"wrote {output} (private) and {output}.pub (public); key id {ident}")


@click.command(name="attest", epilog=EXIT_CODES)
@click.argument("ref", metavar="REF")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The ed25519 private key to sign with.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The DSSE envelope to write ('-' for standard output).",
)
@click.option(
    "--path",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the product's file here instead of at its recorded path.",
)
@click.option("-f", "--force", is_flag=True, help="Replace the output file if it exists.")
@click.pass_context
def attest_command(
    ctx: click.Context, ref: str, key_path: str, output: str, path: str | None, force: bool
) -> None:
    """Sign an in-toto Statement (SLSA Provenance v1) about a product's file.

    The subject is the file with its sha256 (computed now, after checking the file still
    holds the recorded BLAKE3 digest) and blake3; the predicate names the command, the
    inputs with their digests, the environment and the run. The envelope is DSSE, signed
    with KEY; verify it with any in-toto or DSSE tool and KEY.pub.

    \b
    Examples:
      provstore attest results/model.json --key site.key -o model.intoto.json
    """
    import os

    from provstore.core.errors import OutputExistsError
    from provstore.exchange.intoto import attest
    from provstore.exchange.signing import load_private_key

    if output != "-" and os.path.lexists(output) and not force:
        raise OutputExistsError(output)
    key = load_private_key(key_path)
    envelope = attest(store_of(ctx), ref, key, path=path)
    text = json.dumps(envelope, indent=2) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"wrote {output}, signed by {key.name} (key {key.id[:16]})")


COMMANDS = [key_group, attest_command]
