"""Staging: rows gathered in temporary tables, then published with one ordered insert per table.

A bundle import appends what it decodes to temporary tables shaped like the store's own (plus
``seq``, the row's position in the bundle; digests where the store's tables hold ids), with no
key and no index, so each row goes at the end.  Once everything is checked, each store table
gets one ``INSERT … SELECT … ORDER BY key`` that skips keys already present: its B-tree is
walked once in key order instead of being touched at a random leaf per row, which is what made
a big import slow down as it grew.
Objects are published first.  Where the database can reserve ids for the import, the object
staged at ``seq`` takes the id ``first + seq``; when every one was new, each index row's own id
is then ``first + seq`` too, and only the other digests it holds (a product's run and parents)
are turned into ids by a join on ``objects``' digest index, probed in digest order where the
database must be told to (a random probe per row costs ~6x a sequential one at a million).
Otherwise every digest is joined, in the same statement.

A stage may hold one chunk of a bigger import (where the database takes imports in chunks,
:attr:`~provstore.db.dialects.Dialect.import_chunk`): its ids are then reserved for its own
span of ``seq`` (``first - low + seq``), and the store already holds the chunks before it.
Rows for a stage can be gathered without a connection, in another thread, into a
:class:`Spool` (temporary files of what the database loads), and loaded at once.

References the importer could not resolve from memory are staged too (``seq``, the digest
referred to, the kind it must be) and checked in one query against the staged objects before
them and the store's objects.  Everything happens in the caller's transaction: nothing is
published unless it commits, and the staging tables are dropped before it does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

from provstore.db import dialects, layout, schema

__all__ = ["REFS", "Spool", "Stage"]

REFS = "stage_refs"
"""The staging table of references still to check: ``(seq, ref, kind)``."""

Row = tuple[Any, ...]

CHECKED_BY_INDEX: dict[tuple[str, str], tuple[str, int]] = {
    ("product", "parents"): ("product_parents", 1)
}
"""References an importer need not stage (:meth:`Stage.add_refs`): ``(kind, field)`` -> the
index table and column that hold them as digests.  The stage checks them itself, by
publishing that table (most of a big bundle's references: each product's parents)."""
_OBJECT = ("digest", "seq")  # staged objects are looked up by digest, earlier ones only
_REF = ("ref", "seq", "kind")  # the references are read in digest order, from the index alone


class Stage:
    """Staging tables for ``tables`` (and for references) on an open write transaction."""

    def __init__(self, conn: Connection, tables: Sequence[Table]) -> None:
        self.conn = conn
        self.dialect = dialects.of(conn)
        self.dialect.bulk_memory(conn, True)
        self.names = {table: f"stage_{table.name}" for table in tables}
        self._columns = {table: ["seq", *_staged_columns(table)] for table in tables}
        self._counts = dict.fromkeys(tables, 0)
        self.refs = 0
        self._rebuild: bool | None = None  # decided once, before the first table is published
        self._indexed = False  # the staged objects, by digest
        self._refs_indexed = False
        self._low: int | None = None  # the first staged object's seq
        self._span = 0  # one more than the last staged object's seq
        self._first_id: int | None = None  # the id of the object at seq 0, all being new
        self._reserved: int | None = None  # the first id reserved for the staged objects
        self._after = False  # references are checked once the objects are published
        self._covered = False  # CHECKED_BY_INDEX references are staged with the others
        self._held: list[Table] = []  # tables whose publish held rows back
        self._probed: set[Table] = set()  # staging tables indexed to be read in order
        quote = conn.dialect.identifier_preparer.quote
        for table, name in self.names.items():
            refs = layout.REFS.get(table.name, ())
            columns = ", ".join(
                f"o.digest AS {quote(c.name)}" if i in refs else f"t.{quote(c.name)}"
                for i, c in enumerate(table.columns)
                if table is not schema.objects or c.name != "id"
            )
            source = f"{quote(table.name)} t" + (
                "" if table is schema.objects else " LEFT JOIN objects o ON 1 = 0"
            )
            select = f"SELECT 0 AS seq, {columns} FROM {source} WHERE 1 = 0"
            self.dialect.create_stage(
                conn, name, select, _OBJECT if table is schema.objects else ()
            )
        self.objects = self.names[schema.objects]
        self.dialect.create_stage(
            conn, REFS, f"SELECT seq, digest AS ref, kind FROM {self.objects} WHERE 1 = 0", _REF
        )

    def add(self, table: Table, rows: Sequence[Row]) -> None:
        """Append ``(seq, *row)`` rows to ``table``'s staging table."""
        quote = self.conn.dialect.identifier_preparer.quote
        columns = [quote(c) for c in self._columns[table]]
        self.dialect.append_stage(self.conn, self.names[table], columns, rows)
        self._counts[table] += len(rows)
        if table is schema.objects and rows:
            self._seqs(min(row[0] for row in rows), max(row[0] for row in rows) + 1)

    def add_refs(self, rows: Sequence[tuple[int, bytes, str]]) -> None:
        """Append ``(seq, referred digest, kind it must be)`` rows to check later."""
        self.dialect.append_stage(self.conn, REFS, ["seq", "ref", "kind"], rows)
        self.refs += len(rows)

    def load(self, spool: Spool) -> None:
        """Append what ``spool`` gathered (for this stage's tables) to the staging tables."""
        quote = self.conn.dialect.identifier_preparer.quote
        for table, (payload, count) in spool.tables.items():
            if count:
                columns = [quote(c) for c in self._columns[table]]
                self.dialect.load_stage(self.conn, self.names[table], columns, payload)
                self._counts[table] += count
        if spool.refs[1]:
            self.dialect.load_stage(self.conn, REFS, ["seq", "ref", "kind"], spool.refs[0])
            self.refs += spool.refs[1]
        if spool.high:
            self._seqs(spool.low, spool.high)

    def _seqs(self, low: int, high: int) -> None:
        """Note staged objects from ``seq`` ``low`` to before ``high``."""
        self._low = low if self._low is None else min(self._low, low)
        self._span = max(self._span, high)

    def checks_published(self) -> bool:
        """Whether references are best checked once the objects are published (then do so).

        So when ids are reserved for the staged objects (:meth:`Dialect.reserve_ids`) and
        the store holds no digest referred to without its object (an ``objects`` row without
        a kind, which publishing would fill in under its old id): an object of this stage is
        then one whose id lies in the range reserved, and it comes before a reference at
        ``seq`` when its id is below ``first + seq``.  One probe of ``objects``' digest index
        per reference answers it all, without indexing the staged objects by digest (2.2 s
        of a million-object import on SQLite) or probing them too.
        """
        if self._after or not self._counts[schema.objects]:
            return self._after
        low = self._low or 0
        self._reserved = self.dialect.reserve_ids(self.conn, self._span - low)
        if self._reserved is not None:
            sql = "SELECT 1 FROM objects WHERE kind IS NULL"
            self._after = self.conn.exec_driver_sql(sql).first() is None
        return self._after

    def unresolved(
        self, before: int | None = None
    ) -> Iterator[tuple[int, bytes, str, str | None, str | None]]:
        """Staged references not to an object of their kind before them or in the store.

        Yields ``(seq, ref, kind, staged kind, stored kind)`` in ``seq`` order, only for
        ``seq < before`` when given; a reference whose stored kind is wrong may still be
        right by the object's own bytes (the caller checks those).  Probes go in digest order
        (indexes built after loading, once).  Before the objects are published, or after
        when :meth:`checks_published` said so.
        """
        published = self._after and before is None
        if not (published and self._first_id is not None) or self._held:
            self._stage_covered()
        if not self.refs:
            return
        conn = self.conn
        self._index(objects=not self._after)
        refs = self.dialect.scan_in_order(REFS, "r", f"ix_{REFS}", _REF)
        if published:
            sql = self._published_check(refs)
        else:
            sql = (
                f"SELECT r.seq, r.ref, r.kind, s.kind, o.kind FROM {refs} "
                f"LEFT JOIN {self.objects} s ON s.digest = r.ref AND s.seq < r.seq "
                "LEFT JOIN objects o ON o.digest = r.ref AND o.kind IS NOT NULL "
                "WHERE (COALESCE(s.kind, o.kind) IS NULL OR COALESCE(s.kind, o.kind) <> r.kind)"
                + ("" if before is None else f" AND r.seq < {int(before)}")
                + " ORDER BY r.seq, r.ref"
            )
        with self.dialect.probing_joins(conn):
            result = conn.exec_driver_sql(sql)
            try:
                for seq, ref, kind, staged, stored in result:
                    yield seq, bytes(ref), kind, staged, stored
            finally:
                result.close()

    def _stage_covered(self) -> None:
        """Stage the :data:`CHECKED_BY_INDEX` references too (once), from their index rows."""
        if self._covered:
            return
        self._covered = True
        for (kind, _), (name, position) in CHECKED_BY_INDEX.items():
            table = self._table(name)
            if table is None or not self._counts[table]:
                continue
            column = table.columns[position].name
            sql = (
                f"INSERT INTO {REFS} (seq, ref, kind) SELECT seq, {column}, '{kind}' "
                f"FROM {self.names[table]}"
            )
            self.refs += int(self.conn.exec_driver_sql(sql).rowcount)

    def _table(self, name: str) -> Table | None:
        return next((t for t in self.names if t.name == name), None)

    def _published_check(self, refs: str) -> str:
        """:meth:`unresolved`'s query once the objects are published under reserved ids.

        An object whose id is in the range reserved for this stage is staged (earlier than
        the reference when its id is below ``first + seq``); any other is stored.
        """
        first = int(self._reserved or 0) - (self._low or 0)  # the id of the one at seq 0
        start, end = self._own_ids(first)
        ours = f"o.id >= {start} AND o.id < {end}"
        return (
            "SELECT seq, ref, kind, staged, stored FROM (SELECT r.seq AS seq, r.ref AS ref, "
            f"r.kind AS kind, CASE WHEN {ours} AND o.id < {first} + r.seq THEN o.kind END "
            f"AS staged, CASE WHEN NOT ({ours}) THEN o.kind END AS stored FROM {refs} "
            "LEFT JOIN objects o ON o.digest = r.ref) c "
            "WHERE COALESCE(staged, stored) IS NULL OR COALESCE(staged, stored) <> kind "
            "ORDER BY seq, ref"
        )

    def staged_object(self, seq: int) -> tuple[bytes, bytes]:
        """The digest and bytes of the object staged at ``seq`` (to name it in a message)."""
        sql = f"SELECT digest, data FROM {self.objects} WHERE seq = {int(seq)}"
        digest, data = self.conn.exec_driver_sql(sql).one()
        return bytes(digest), bytes(data)

    def _index(self, objects: bool = True) -> None:
        """Index the staged references (and objects), once they are all loaded."""
        if not self._refs_indexed:
            self.dialect.index_stage(self.conn, REFS, _REF)
            self.dialect.analyze_stage(self.conn, REFS)
            self._refs_indexed = True
        if objects and not self._indexed:
            self.dialect.index_stage(self.conn, self.objects, _OBJECT)
            self.dialect.analyze_stage(self.conn, self.objects)
            self._indexed = True

    def _verified(self, table: Table, first: int | None) -> dict[int, str]:
        """Columns of ``table`` whose references this publish checks: position -> kind.

        Those of :data:`CHECKED_BY_INDEX` not staged as references, when the objects were
        published under their reserved ids (:meth:`checks_published`), all new.
        """
        if self._covered or not self._after or first is None:
            return {}
        return {
            position: kind
            for (kind, _), (name, position) in CHECKED_BY_INDEX.items()
            if name == table.name
        }

    def publish(self, table: Table, by_seq: bool = False, held_back: bool = False) -> int:
        """Insert ``table``'s staged rows in key order (or bundle order); how many were new.

        Objects come once each (the first staged of a digest), under ids reserved for the
        import where the database can reserve them (:meth:`_publish_objects`); index rows
        get the ids of the digests they hold, by a join on the objects already published.
        """
        if not self._counts[table]:
            return 0
        if self._rebuild is None:
            self._rebuild = self.dialect.rebuilds_indexes(self.conn, self._counts[schema.objects])
        if table is schema.objects:
            return self._publish_objects(self._rebuild)
        quote = self.conn.dialect.identifier_preparer.quote
        first = self._first_id
        verified = {} if held_back else self._verified(table, first)
        values, joins, keys, checks = [], [], [], ["1 = 1"]
        for i, column in enumerate(table.columns):
            staged = f"s.{quote(column.name)}"
            if i == 0 and first is not None:  # the row's own object: staged at the row's seq
                values.append(f"{first} + s.seq")
            elif i not in layout.REFS[table.name]:
                values.append(staged)
            else:
                join = "LEFT JOIN" if column.nullable else "JOIN"
                joins.append(f"{join} objects r{i} ON r{i}.digest = {staged}")
                values.append(f"r{i}.id")
                if i in verified:  # an object of its kind, earlier in the bundle or stored
                    checks.append(self._refers_right(f"r{i}", verified[i], int(first or 0)))
            if i < len(table.primary_key.columns):
                keys.append("s.seq" if i == 0 and first is not None else values[-1])
        if by_seq:  # which of two rows with one key is kept: ordered, not as read
            keys = ["s.seq"]
        elif keys == ["s.seq"]:  # ids in seq order: the rows as staged
            keys = [self.dialect.staged_order]
        source = self._probe_order(table, first)
        select = (
            f"SELECT {self.dialect.join_in_order}{', '.join(values)} "
            f"FROM {source} {' '.join(joins)} WHERE {' AND '.join(checks)} "
            f"ORDER BY {', '.join(keys)}"
        )
        columns = [c.name for c in table.columns]
        # rows keyed by the ids just given to new objects, with no other unique key: no
        # row can already be there
        fresh = first is not None and not by_seq and not any(i.unique for i in table.indexes)
        with self.dialect.probing_joins(self.conn):
            added = self.dialect.publish(
                self.conn,
                table,
                columns,
                select,
                rebuild=self._rebuild and not held_back,
                fresh=fresh and not held_back,
            )
        if verified and added != self._counts[table]:
            self._held.append(table)
        return added

    @property
    def held_back(self) -> bool:
        """Whether a publish held index rows back (a reference it checked looked wrong).

        The caller checks the references (:meth:`unresolved` then covers these too), then
        calls :meth:`publish_held_back`.
        """
        return bool(self._held)

    def _own_ids(self, first: int) -> tuple[int, int]:
        """The ids reserved for this stage's objects, ``[start, end)``: ``first`` at seq 0."""
        return first + (self._low or 0), first + self._span

    def _refers_right(self, alias: str, kind: str, first: int) -> str:
        """The condition that the object ``alias`` is of ``kind`` and before the row.

        An object of this stage (its id in the range reserved) must come earlier in the
        bundle.  Where the digest index gives ids alone (:attr:`Dialect.finds_id_in_index`),
        such an object must not be among the stage's objects of another kind (few: found by
        one scan of the staged objects), so that its row is never read for its kind: one
        random read each, 2.3 s for 1.5M parents on SQLite at a million objects.  Any other
        object is a stored one, judged by its ``kind``.
        """
        start, end = self._own_ids(first)
        if not self.dialect.finds_id_in_index:
            return (
                f"{alias}.kind = '{kind}' AND "
                f"({alias}.id < {first} + s.seq OR {alias}.id >= {end})"
            )
        return (
            f"CASE WHEN {alias}.id >= {start} AND {alias}.id < {end} "
            f"THEN {alias}.id < {first} + s.seq AND {alias}.id - {first} NOT IN "
            f"(SELECT seq FROM {self.objects} WHERE kind <> '{kind}') "
            f"ELSE {alias}.kind = '{kind}' END"
        )

    def publish_held_back(self) -> None:
        """Publish what :meth:`publish` held back, once its references are found right.

        (A stored object's ``kind`` column may disagree with its bytes, which decide.)
        """
        held, self._held = self._held, []
        for table in held:
            self.publish(table, held_back=True)

    def _probe_order(self, table: Table, first: int | None) -> str:
        """How to read ``table``'s staged rows so that its one join probes in digest order.

        Where the rows' own ids are known (``first``), a key column that still refers by
        digest (a product's parent: a different one per row, all over the digest index) is
        read in order (:meth:`Dialect.scan_in_order`; through a covering index where the
        database needs one).  What ``FROM`` names, as ``s``.
        """
        refs = layout.REFS[table.name]
        width = len(table.primary_key.columns)
        probed = [table.columns[i].name for i in refs if 0 < i < width]
        name = self.names[table]
        if first is None or len(refs) != 2 or len(probed) != 1:
            return f"{name} s"
        columns = (probed[0], "seq")
        if self.dialect.scans_through_index and table not in self._probed:
            self.dialect.index_stage(self.conn, name, columns)
            self._probed.add(table)
        return self.dialect.scan_in_order(name, "s", f"ix_{name}", columns)

    def _publish_objects(self, rebuild: bool) -> int:
        """Publish the staged objects; note whether each got the id reserved for its ``seq``.

        Where the database reserves ids for the import (:meth:`Dialect.reserve_ids`), the
        object staged at ``seq`` is inserted under ``first + seq``.  When every staged object
        was new (none stored before, none twice in the bundle), the count of rows in that
        range says so, and every index row's own id is then known from its ``seq``: no join
        on the digest index to find it (one random probe per row at a million objects).
        """
        conn, count = self.conn, self._counts[schema.objects]
        name, columns = self.names[schema.objects], list(layout.OBJECT_COLUMNS)
        low = self._low or 0  # a later stage of one import starts further into the bundle
        first = self._reserved
        if first is None:
            first = self.dialect.reserve_ids(conn, self._span - low)
        if first is None:
            select = self.dialect.staged_objects(name, columns)
        else:
            columns = ["id", *columns]
            select = self.dialect.staged_objects(name, columns, first - low)
        added = self.dialect.publish(conn, schema.objects, columns, select, rebuild=rebuild)
        if first is not None:
            start, end = self._own_ids(first - low)
            sql = f"SELECT count(*) FROM objects WHERE id >= {start} AND id < {end}"
            if int(conn.exec_driver_sql(sql).scalar() or 0) == count:
                self._first_id = first - low
        return added

    def close(self) -> None:
        """Drop the staging tables (before the transaction commits: no space is kept)."""
        for name in [*self.names.values(), REFS]:
            self.dialect.drop_stage(self.conn, name)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        """Restore the connection's memory settings, whether or not the import went through."""
        self.dialect.bulk_memory(self.conn, False)


class Spool:
    """Rows for a :class:`Stage`, turned into what the database loads, without a connection.

    Made in one thread while another loads the previous spool (:meth:`Stage.load`): what the
    database loads is written to temporary files as it comes (:meth:`Dialect.stage_text`), so
    a spool holds little memory however many rows it has.
    """

    def __init__(self, dialect: dialects.Dialect, tables: Sequence[Table]) -> None:
        self.dialect = dialect
        self.tables: dict[Table, tuple[Any, int]] = {t: (dialect.new_spool(), 0) for t in tables}
        self.refs: tuple[Any, int] = (dialect.new_spool(), 0)
        self.low = 0
        self.high = 0  # one more than the last object's seq (0: none yet)
        self.objects = 0

    def add(self, table: Table, rows: Sequence[Row]) -> None:
        """Add ``(seq, *row)`` rows for ``table``."""
        payload, count = self.tables[table]
        self.dialect.spool_rows(payload, rows)
        self.tables[table] = (payload, count + len(rows))
        if table is schema.objects and rows:
            low, high = min(row[0] for row in rows), max(row[0] for row in rows) + 1
            self.low = low if not self.high else min(self.low, low)
            self.high = max(self.high, high)
            self.objects += len(rows)

    def add_refs(self, rows: Sequence[tuple[int, bytes, str]]) -> None:
        """Add ``(seq, referred digest, kind it must be)`` rows."""
        payload, count = self.refs
        self.dialect.spool_rows(payload, rows)
        self.refs = (payload, count + len(rows))

    def close(self) -> None:
        """Let go of the temporary files."""
        for payload, _ in [*self.tables.values(), self.refs]:
            self.dialect.close_spool(payload)


def _staged_columns(table: Table) -> list[str]:
    """The columns a staging table holds for ``table`` (objects: all but the id)."""
    names = [c.name for c in table.columns]
    return names[1:] if table is schema.objects else names
