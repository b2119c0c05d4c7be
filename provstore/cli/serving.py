"""``provstore serve``: the read-only web pages over the store (the optional ``web`` extra)."""

from __future__ import annotations

import ipaddress

import click

from provstore.cli.common import EXIT_CODES, store_of
from provstore.core.errors import UsageError

TOKEN_VARIABLE = "PROVSTORE_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command(epilog=EXIT_CODES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar=TOKEN_VARIABLE,
    show_envvar=True,
    metavar="TOKEN",
    help="Required on every request (Authorization: Bearer TOKEN, or a visit with "
    "?token=TOKEN, which sets a session cookie). Needed when --host is not loopback.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, token: str | None) -> None:
    """Browse runs, products, lineage graphs and environments in a web browser (read-only).

    Pages for runs, a run, a product (with Verify), its lineage graph, an environment and
    the comparison of two, a search box; JSON under /api/ equal to the CLI's --json. Binds
    loopback by default; another --host needs --token. Needs `pip install 'provstore[web]'`.

    \b
    Examples:
      provstore serve                      then open http://127.0.0.1:8765/
      provstore serve --port 9000 --url postgresql://db/prov
      PROVSTORE_SERVE_TOKEN=s3cret provstore serve --host 0.0.0.0
    """
    if not is_loopback(host):
        if not token:
            raise UsageError(
                f"--host {host} is reachable from other machines: give --token TOKEN "
                f"(or set {TOKEN_VARIABLE}) so only holders of the token can read the store"
            )
        click.echo(
            f"provstore: warning: listening on {host}: anyone who can reach it and holds the "
            "token can read this store; use HTTPS in front of it on untrusted networks",
            err=True,
        )
    try:
        import uvicorn

        from provstore.web.app import create_app
    except ImportError as exc:
        raise UsageError(
            f"provstore serve needs the web extra ({exc.name} is missing): "
            "pip install 'provstore[web]'"
        ) from None
    store = store_of(ctx)
    app = create_app(store, token=token)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"provstore: serving {store.safe_url} on http://{shown}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


COMMANDS = [serve]
