"""Store URLs as text, before any database is chosen.

A URL shown without its password, a bare file path told apart from a URL, and a URL naming
several hosts (``mysql://u@h1:3307,h2:3308/db``, the nodes of a cluster) turned into the one
form SQLAlchemy reads, ``?host=h1:3307&host=h2:3308``.

:mod:`provstore.db.dialects` decides what each URL means; this module names no database and
imports no SQLAlchemy (a tracked process reads its store's URL before deciding to).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["bare_path", "hidden", "multi_host", "split_host"]

_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]+$")


def hidden(url: str | URL) -> str:
    """``url`` for messages: any password replaced by ``***``, even in text that does not parse."""
    if not isinstance(url, str):
        return url.render_as_string(hide_password=True)
    return _PASSWORD.sub(r"\1***@", url)


def bare_path(text: str) -> str | None:
    """The absolute path ``text`` names when it is a file path rather than a URL, else None.

    A path is text without a scheme that is absolute, starts with ``~`` or ``.``, has a
    directory part or a suffix (``store.db``), or exists; a bare word (``results``) is
    neither, so a mistyped URL does not silently become a new file.
    """
    if "://" in text or (":" in text and not os.path.isabs(text)):
        return None
    looks_like_path = (
        os.path.isabs(text)
        or text.startswith(("~", "."))
        or "/" in text
        or os.sep in text
        or _FILE_SUFFIX.search(text) is not None
        or os.path.exists(text)
    )
    return os.path.abspath(os.path.expanduser(text)) if looks_like_path else None


_NETLOC = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<netloc>[^/?#]*)(?P<rest>.*)$", re.S)


def multi_host(text: str) -> str:
    """``text`` with a comma-separated host list moved into ``host`` query parameters.

    ``mysql://u@h1:3307,h2:3308/db`` becomes ``mysql://u@/db?host=h1:3307&host=h2:3308``, the
    multi-host form SQLAlchemy parses (its own for PostgreSQL, libpq's hosts in order).  Text
    with one host, or that is no URL, is returned unchanged.
    """
    match = _NETLOC.match(text)
    if match is None:
        return text
    netloc = match["netloc"]
    userinfo, at, hostlist = netloc.rpartition("@")
    if "," not in hostlist:
        return text
    hosts = [host.strip() for host in hostlist.split(",")]
    rest = match["rest"]
    path, question, query = rest.partition("?")
    params = urllib.parse.urlencode([("host", host) for host in hosts], safe=":[]")
    query = params + ("&" + query if question and query else "")
    return f"{match['scheme']}{userinfo}{at}{path or '/'}?{query}"


def split_host(token: str) -> tuple[str, int | None]:
    """``host:port`` (``[v6]:port``, or a bare host) as the host and the port (None: default).

    A port that is not a number raises :class:`ValueError`.
    """
    if token.startswith("["):
        host, _, tail = token[1:].partition("]")
        return host, int(tail[1:]) if tail.startswith(":") else None
    host, colon, port = token.rpartition(":")
    if not colon:
        return token, None
    return host, int(port)
