"""Admitting framed bytes fast: the kind, version and body of a valid object, without the object.

A bundle import checks every object it receives as :func:`~provstore.core.objects.load`
does (a known frame, canonical msgpack, exactly the fields and types of its kind, nothing
:func:`~provstore.core.objects.refusal` refuses), but it only needs the decoded body to
derive index rows from, not the frozen object.  :func:`admit` takes the same decisions in
fewer steps: the frame is looked up among the frames of the known kinds; the body's keys
(which fields, in canonical order, allowed at that version) are checked by one lookup of
their tuple among the shapes already seen valid; each field gets its kind's own check; the
canonical form is confirmed by packing the body once and comparing.

Whenever it is not sure, it answers ``None`` and leaves the decision to ``load``, which
accepts the object or names what is wrong with it: ``admit`` never accepts what ``load``
refuses (a test holds them together on valid, mutated and arbitrary bytes).
"""

from __future__ import annotations

from typing import Any

import msgpack

from provstore.core.digests import DIGEST_SIZE
from provstore.core.encoding import SCALARS, in_order
from provstore.core.objects import KINDS, MAX_OBJECT_SIZE, Product

__all__ = ["admit", "typed_references"]

Check = Any  # a field check of objects._CHECKS: value -> bool
Shape = tuple[tuple[str, Check], ...]

_FRAMES: dict[tuple[bytes, bytes], tuple[Any, str, int]] = {
    (kind.encode("ascii"), b"%d" % version): (cls, kind, version)
    for kind, cls in KINDS.items()
    for version in range(1, cls.VERSION + 1)
}
"""``(kind, version)`` as a frame spells them -> the class, its kind and the version."""

_SHAPES: dict[tuple[str, int, tuple[str, ...]], Shape] = {}
"""Valid key tuples per kind and version (bounded: subsets of a kind's fields), learnt."""

_packb = msgpack.Packer(use_bin_type=True, use_single_float=False, autoreset=True).pack


def admit(data: bytes) -> tuple[str, int, dict[str, Any]] | None:
    """``(kind, version, body)`` when ``data`` is a valid object that may be stored, else None.

    ``None`` does not mean invalid: ``load`` decides those (and says why).
    """
    end = data.find(b"\x00", 0, 64)
    if end < 0 or len(data) > MAX_OBJECT_SIZE:
        return None
    parts = data[:end].split(b" ")
    if len(parts) != 3:
        return None
    found = _FRAMES.get((parts[0], parts[1]))
    size = len(data) - end - 1
    if found is None or parts[2] != b"%d" % size:
        return None
    cls, kind, version = found
    try:
        body = msgpack.unpackb(
            memoryview(data)[end + 1 :],
            raw=False,
            use_list=True,
            strict_map_key=True,
            timestamp=0,
        )
    except Exception:  # noqa: BLE001 - load() names the problem
        return None
    if type(body) is not dict:
        return None
    keys = tuple(body)
    if keys == _PRODUCT and kind == "product":
        if not _product_fields(body):
            return None
    elif not _fields(cls, kind, version, keys, body):
        return None
    packed = _packb(body)
    if len(packed) != size or not data.endswith(packed):
        return None
    return kind, version, body


_PRODUCT = tuple(sorted(Product._CHECKS))
"""A product body's keys, in canonical order (products are most of a big bundle)."""


def _product_fields(body: dict[str, Any]) -> bool:
    """``Product._CHECKS``, written out (a test holds them equal), and no NUL in its text."""
    name, version, content, size = body["name"], body["version"], body["content"], body["size"]
    path, run, parents, metadata = body["path"], body["run"], body["parents"], body["metadata"]
    return (
        type(name) is str
        and "\x00" not in name
        and (version is None or (type(version) is str and "\x00" not in version))
        and type(metadata) is dict
        and (content is None or (type(content) is bytes and len(content) == DIGEST_SIZE))
        and (size is None or (type(size) is int and size >= 0))
        and (path is None or type(path) is str)
        and (run is None or (type(run) is bytes and len(run) == DIGEST_SIZE))
        and type(parents) is list
        and all(type(p) is bytes and len(p) == DIGEST_SIZE for p in parents)
        and (not metadata or in_order(metadata, 1))
    )


def _fields(
    cls: Any, kind: str, version: int, keys: tuple[str, ...], body: dict[str, Any]
) -> bool:
    """Whether a body has the fields its kind and version allow, of their types, canonical."""
    shape = _SHAPES.get((kind, version, keys))
    if shape is None:
        shape = _learn(cls, version, keys)
        if shape is None:
            return False
    for name, check in shape:
        value = body[name]
        if not check(value) or (type(value) not in SCALARS and not in_order(value, 1)):
            return False
    for name in cls.TEXT:
        text = body.get(name)
        if text is not None and "\x00" in text:
            return False
    return True


def _learn(cls: Any, version: int, keys: tuple[str, ...]) -> Shape | None:
    """The checks of a body with these keys, remembered; None if no such body is valid.

    The rules of ``from_body``: exactly the kind's fields, or for a kind with fields added in
    later versions, every original field, added ones only up to ``version``, and at least one
    of ``version`` itself when it is above 1 (an added field may not be ``None``).  Keys must
    be text in canonical (sorted, unique) order.
    """
    if any(type(key) is not str for key in keys) or list(keys) != sorted(set(keys)):
        return None
    fields: dict[str, Check] = cls._CHECKS
    added: dict[str, int] = cls.ADDED
    present = set(keys)
    if added:
        required = {name for name in fields if name not in added}
        allowed = required | {name for name, v in added.items() if v <= version}
        if not required <= present <= allowed:
            return None
        if version > 1 and not any(added.get(name) == version for name in keys):
            return None
    elif present != set(fields):
        return None
    shape = tuple(
        (name, _not_none(fields[name]) if name in added else fields[name]) for name in keys
    )
    _SHAPES[(cls.KIND, version, keys)] = shape
    return shape


def _not_none(check: Check) -> Check:
    return lambda value: value is not None and check(value)


def typed_references(kind: str, body: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """``(field, digest, kind it must name)`` for an admitted body, as the object would say."""
    if kind == "product":  # most of a big bundle: its fields written out (a test holds them)
        run = body["run"]
        out = [("parents", parent, "product") for parent in body["parents"]]
        if run is not None:
            out.insert(0, ("run", run, "run"))
        return out
    out = []
    for name, expected in KINDS[kind].REFERENCES.items():
        value = body.get(name)
        if type(value) is bytes:
            out.append((name, value, expected))
        elif value is not None:
            out.extend((name, digest, expected) for digest in value)
    return out
