"""What a user names, resolved to stored objects, in one place for every entry point.

A reference is one of:

* ``name:NAME`` or ``name:NAME@VERSION`` — products of that name (and version), newest first.
  A name that itself holds ``@`` is matched whole first;
* a digest, or a unique prefix of at least six hex characters;
* a path to an existing file — hashed (through the stat cache) and matched by content; when
  several products have those bytes, the one recorded at that path comes first, then the
  newest.  Text that reads as a digest is a path only if such a file exists (or it holds a
  path separator).

:func:`resolve_all` gives every match, best first; :func:`resolve` the best one.  Unknown
references raise :class:`~provstore.core.errors.UnknownReferenceError`, saying what was tried
and which command lists candidates.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from provstore.capture.hashcache import FileHasher
from provstore.core.digests import DIGEST_SIZE, to_hex
from provstore.core.errors import PathError, UnknownReferenceError
from provstore.core.objects import Product, Sealed

if TYPE_CHECKING:
    from provstore.store import Store

__all__ = ["NAME_PREFIX", "is_digest_text", "matches_for_file", "resolve", "resolve_all"]

NAME_PREFIX = "name:"
_HEX_REF = re.compile(r"[0-9a-fA-F]{6,64}")
_HEXISH = re.compile(r"[0-9a-fA-F]+")


def is_digest_text(text: str) -> bool:
    """Whether ``text`` reads as a digest or a digest prefix (6 to 64 hex characters)."""
    return bool(_HEX_REF.fullmatch(text.strip()))


def resolve(store: Store, ref: str | bytes) -> bytes:
    """The digest ``ref`` names (the best match when it names several)."""
    return resolve_all(store, ref)[0]


def resolve_all(store: Store, ref: str | bytes) -> list[bytes]:
    """Every digest ``ref`` names, best first (never empty: unknown references raise)."""
    if isinstance(ref, bytes):
        return [store.resolve_digest(ref)]
    if ref.startswith(NAME_PREFIX):
        return [item.digest for item in _by_name(store, ref[len(NAME_PREFIX) :])]
    if is_digest_text(ref) and not (os.sep in ref or os.path.isfile(ref)):
        return [store.resolve_digest(ref)]
    if os.path.exists(ref):
        found = matches_for_file(store, ref)
        if not found:
            raise UnknownReferenceError(ref, _unknown_file(store, ref))
        return [item.digest for item in found]
    if _HEXISH.fullmatch(ref.strip()):  # hex, but too short or long: say what a digest needs
        return [store.resolve_digest(ref)]
    raise UnknownReferenceError(
        ref,
        f"{ref!r} is neither a digest (6 to 64 hex characters), nor name:NAME, nor an existing "
        "file; `provstore products` lists products and `provstore log` runs",
    )


def _by_name(store: Store, spec: str) -> list[Sealed]:
    if not spec:
        raise UnknownReferenceError("name:", "give a name after `name:`, e.g. name:model@1.0")
    found = store.find_products(name=spec)
    if not found and "@" in spec:
        name, version = spec.rsplit("@", 1)
        found = store.find_products(name=name, version=version)
    if found:
        return found
    glob = spec.split("@")[0].replace("[", "[[]") + "*"
    raise UnknownReferenceError(
        NAME_PREFIX + spec,
        f"no product is named {spec!r}; list names with `provstore products --name '{glob}'`",
    )


def matches_for_file(
    store: Store, path: str | os.PathLike[str], hasher: FileHasher | None = None
) -> list[Sealed]:
    """Products with the bytes of the file at ``path``: recorded at that path first, newest."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise PathError(name, "it is a directory; name a file (or use `provstore status DIR`)")
    if hasher is None:
        with FileHasher() as own:
            digest, _ = own.hash(name)
    else:
        digest, _ = hasher.hash(name)
    found = store.find_products(content_digest=digest)
    here = os.path.abspath(name)
    return sorted(found, key=lambda item: _path_of(item) != here)  # stable: newest next


def _path_of(item: Sealed) -> str | None:
    return item.obj.path if isinstance(item.obj, Product) else None


def _unknown_file(store: Store, ref: str) -> str:
    """Why a file's bytes are unknown, and whether its path was recorded with other bytes."""
    with FileHasher() as hasher:
        digest, _ = hasher.hash(ref)
    earlier = store.products_at(os.path.abspath(ref), limit=1)
    said = f"no product has the bytes of {ref} (BLAKE3 {to_hex(digest)[: 2 * DIGEST_SIZE]})"
    if earlier:
        product = earlier[0].obj
        assert isinstance(product, Product)
        run = f"run {to_hex(product.run)[:12]}" if product.run else "a `use()`"
        return f"{said}; it was modified since {run} recorded it as {earlier[0].hex[:12]}"
    return f"{said}; `provstore status {ref}` and `provstore products` list what is recorded"
