"""Durable registration on a three-node MariaDB Galera cluster, beside plain MariaDB.

Writer processes each open a ``tracker`` and register products with ``t.flush()`` after every
one (a committed, replicated write per product), as in :mod:`benchmarks.b_concurrency`, whose
writer pool this reuses.  Three set-ups at each writer count:

* plain MariaDB: the ordinary server (the base URL's ``<base>_b_galera`` database), no Galera;
* Galera, writers on 1 node: every writer connects to node 1 of the cluster; each commit is
  certified and replicated to the other two nodes before it returns;
* Galera, writers spread over 3 nodes: writer ``w`` lists node ``w mod 3`` first in a
  multi-host URL (the failover form), so all three nodes take writes at once.

Reported per set-up and level: products/s over the common window, p50/p99 register+flush
latency and errors (with the store check: every product stored once, one environment).  The
baseline of the Galera rows is plain MariaDB at the same writer count, in the same run.

The cluster is ``scripts/start-galera.sh``'s (``PROVSTORE_BENCH_GALERA_URL``: another one, as a
multi-host URL); the benchmark's database on it is ``<base>_b_galera``, named after the
MariaDB base URL's database.  Without a cluster the rows say so and carry no figures.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.b_concurrency import Pool, result_rows
from benchmarks.harness import Context, Row, empty_scratch, server_url, wipe_database

DESCRIPTION = "registration on a 3-node Galera cluster (1 node, spread) vs plain MariaDB"
NAME = "galera"
SCRATCH = "b_galera"
DEFAULT_CLUSTER = "mysql+pymysql://provstore@127.0.0.1:3307,127.0.0.1:3308,127.0.0.1:3309/"


def _cluster_nodes() -> tuple[str, list[str]]:
    """The cluster URL's prefix (scheme and user) and its ``host:port`` entries."""
    from sqlalchemy.engine import make_url

    from provstore.db.urls import multi_host

    text = os.environ.get("PROVSTORE_BENCH_GALERA_URL") or DEFAULT_CLUSTER
    query = make_url(multi_host(text)).query.get("host", ())
    hosts = [query] if isinstance(query, str) else list(query)
    scheme, _, rest = text.partition("://")
    netloc = rest.split("/", 1)[0]
    user = netloc.rsplit("@", 1)[0] + "@" if "@" in netloc else ""
    return f"{scheme}://{user}", hosts


def _database(ctx: Context) -> str:
    from sqlalchemy.engine import make_url

    base = ctx.backends.get("mariadb") or server_url("mariadb")
    return f"{make_url(base).database}_{SCRATCH}"


def _levels(ctx: Context) -> list[tuple[int, int]]:
    """(writers, products each)."""
    return ctx.pick([(3, 20)], [(1, 1000), (6, 300), (24, 100)])


def run(ctx: Context) -> list[Row]:
    prefix, hosts = _cluster_nodes()
    database = _database(ctx)
    node1 = f"{prefix}{hosts[0]}/{database}" if hosts else ""
    problem = None
    if len(hosts) != 3:
        problem = f"the Galera URL must name 3 nodes, not {len(hosts)}"
    else:
        try:
            wipe_database(node1)
        except Exception as exc:  # noqa: BLE001 - any failure means "no cluster here"
            problem = f"no Galera cluster at {hosts} ({type(exc).__name__}: {exc})"[:300]
    if problem is not None:
        note = f"not measured: {problem}; start one with bash scripts/start-galera.sh"
        return [Row(NAME, "products/s (flush each)", None, "/s", "galera", note=note)]

    def spread(writers: int) -> list[str]:
        return [
            f"{prefix}{','.join(hosts[w % 3 :] + hosts[: w % 3])}/{database}"
            for w in range(writers)
        ]

    rows: list[Row] = []
    pool = Pool(ctx)
    plain_url = None
    try:
        for writers, per_writer in _levels(ctx):
            timeout = ctx.pick(300.0, 1200.0)
            plain = None
            if "mariadb" in ctx.backends:
                plain_url = ctx.scratch_url("mariadb", SCRATCH)
                plain = pool.level(plain_url, writers, per_writer, timeout)
                rows += _rows("mariadb", "plain MariaDB", plain, None)
            wipe_database(node1)
            one = pool.level(node1, writers, per_writer, timeout)
            rows += _rows("galera", "writers on 1 node", one, plain)
            wipe_database(node1)
            urls = spread(writers)
            many = pool.level(urls[0], writers, per_writer, timeout, urls=urls)
            rows += _rows("galera", "writers spread over 3 nodes", many, plain)
    finally:
        pool.close()
        if plain_url is not None:
            empty_scratch(plain_url)
        wipe_database(node1)
    return rows


def _rows(backend: str, setup: str, res: dict[str, Any], base: dict[str, Any] | None) -> list[Row]:
    writers = res["writers"]
    who = f"{setup}, {writers} writer{'s' if writers > 1 else ''}"
    label = "plain MariaDB" if base else ""
    check = res["check"]
    note = (
        f"{writers}×{res['per_writer']} products, window {res['window']:.1f} s; stored "
        f"{check['products']}/{check['expected']}, {check['environments']} environment(s)"
    )
    rate_baseline = base["rate"] if base else None
    return result_rows(NAME, who, res, backend, base, label, rate_baseline, note=note)
