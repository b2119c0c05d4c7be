"""The store's read statements, built once (SQLAlchemy then finds their compiled form cached).

Each function returns a Core statement with named bind parameters; :class:`provstore.store.Store`
executes them on its read connections.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, func, select

from provstore.db import schema

__all__ = [
    "BY_PREFIX",
    "DATA_BY_DIGEST",
    "HAS_DIGEST",
    "SCHEMA_VERSION",
    "find_products",
    "products_with_content",
    "recent_runs",
]

_O = schema.objects.c
_STORED = _O.data.is_not(None)  # rows without data: digests referred to, not stored
DATA_BY_DIGEST = select(_O.data).where(_O.digest == bindparam("digest"), _STORED)
HAS_DIGEST = select(_O.digest).where(_O.digest == bindparam("digest"), _STORED)
BY_PREFIX = (
    select(_O.digest, _O.data).where(
        _O.digest.between(bindparam("low"), bindparam("high")), _STORED
    )
).limit(2)
DIGESTS_IN_RANGE = (
    select(_O.digest)
    .where(_O.digest.between(bindparam("low"), bindparam("high")), _STORED)
    .order_by(_O.digest)
    .limit(bindparam("limit"))
)
SCHEMA_VERSION = select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
COUNT_BY_KIND = (
    select(_O.kind, func.count(), func.coalesce(func.sum(_O.size), 0))
    .where(_O.kind.is_not(None))
    .group_by(_O.kind)
)
COUNT_PARENT_LINKS = select(func.count()).select_from(schema.product_parents)


@functools.cache
def find_products(name: bool, version: bool, content: str | None, limited: bool) -> Any:
    """The ``find_products`` statement for this combination of filters (built once each).

    ``content`` is ``"exact"`` (bind ``content``), ``"range"`` (bind ``low``/``high``) or None.
    """
    p, r, o = schema.products, schema.runs, schema.objects
    query = select(o.c.digest, o.c.data).select_from(
        p.join(o, o.c.id == p.c.id).outerjoin(r, r.c.id == p.c.run)
    )
    if name:
        query = query.where(p.c.name == bindparam("name"))
    if version:
        query = query.where(p.c.version == bindparam("version"))
    if content == "exact":
        query = query.where(p.c.content == bindparam("content"))
    elif content == "range":
        query = query.where(p.c.content.between(bindparam("low"), bindparam("high")))
    query = query.order_by(*_newest_first())
    return query.limit(bindparam("limit")) if limited else query


def _newest_first() -> tuple[Any, ...]:
    """Products by their run's start, newest first; source products (no run) last everywhere.

    ``IS NULL`` comes first because the databases disagree on where ``DESC`` puts NULLs.
    """
    r, o = schema.runs, schema.objects
    return r.c.started_ns.is_(None), r.c.started_ns.desc(), o.c.digest


@functools.cache
def products_with_content() -> Any:
    """Products whose file had these bytes, newest first: one page of them.

    Bind ``content``, ``limit`` and ``offset``.
    """
    p, r, o = schema.products, schema.runs, schema.objects
    return (
        select(o.c.digest, o.c.data)
        .select_from(p.join(o, o.c.id == p.c.id).outerjoin(r, r.c.id == p.c.run))
        .where(p.c.content == bindparam("content"))
        .order_by(*_newest_first())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


@functools.cache
def recent_runs() -> Any:
    """The newest runs with how they ended and how many products each made (bind ``limit``)."""
    r, e, p, o = schema.runs, schema.run_ends, schema.products, schema.objects
    count = select(func.count()).where(p.c.run == r.c.id).scalar_subquery()
    return (
        select(o.c.digest, r.c.started_ns, r.c.host, r.c.user, r.c.name,
               e.c.status, e.c.finished_ns, count)
        .select_from(r.join(o, o.c.id == r.c.id).outerjoin(e, e.c.run == r.c.id))
        .order_by(r.c.started_ns.desc(), o.c.digest)
        .limit(bindparam("limit"))
    )  # fmt: skip
