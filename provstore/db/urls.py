"""Store URLs as text, before any database is chosen.

A URL shown without its password, and a bare file path told apart from a URL.

:mod:`provstore.db.dialects` decides what each URL means; this module names no database and
imports no SQLAlchemy (a tracked process reads its store's URL before deciding to).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["bare_path", "hidden"]

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
