"""A small pipeline tracked by provstore: raw data -> cleaned table -> summary.

Run it with ``bash scripts/demo.sh``, which gives it a scratch store and directory and removes
them afterwards, or with ``python scripts/example_pipeline.py [WORKDIR]``, which writes its
files to WORKDIR (created if needed; default a new temporary directory, left in place) and
records the run on the configured store (by default the SQLite file in your user data
directory).  Either way it then runs ``provstore verify`` on the summary.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile

from provstore import open_store, tracker


def make_raw(path: str) -> None:
    rng = random.Random(42)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["station", "temperature"])
        for i in range(1000):
            writer.writerow([f"s{i % 7}", f"{rng.gauss(12, 4):.2f}"])


def clean(raw: str, out: str) -> int:
    with open(raw, newline="") as src, open(out, "w", newline="") as dst:
        rows = [r for r in csv.DictReader(src) if -30 < float(r["temperature"]) < 50]
        writer = csv.DictWriter(dst, fieldnames=["station", "temperature"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def summarise(table: str, out: str) -> None:
    sums: dict[str, list[float]] = {}
    with open(table, newline="") as src:
        for row in csv.DictReader(src):
            sums.setdefault(row["station"], []).append(float(row["temperature"]))
    means = {k: round(sum(v) / len(v), 3) for k, v in sorted(sums.items())}
    with open(out, "w") as dst:
        json.dump(means, dst, indent=2, sort_keys=True)


def main(workdir: str) -> int:
    os.makedirs(workdir, exist_ok=True)
    raw, table, summary = (
        os.path.join(workdir, n) for n in ("raw.csv", "clean.csv", "summary.json")
    )
    make_raw(raw)
    with tracker(name="example-pipeline") as t:
        raw_id = t.use(raw)
        rows = clean(raw, table)
        table_id = t.register_data_product(
            name="clean_table",
            version="1.0.0",
            metadata={"rows": rows},
            path=table,
            parents=[raw_id],
        )
        summarise(table, summary)
        summary_id = t.track(summary, parents=[table_id], name="station_means", version="1.0.0")
        print(f"environment {t.environment}\nrun         {t.run}")
    print(f"product     {summary_id}  ({summary})")

    with open_store() as store:
        ancestors = store.lineage(summary_id).depths
        print(f"lineage     {len(ancestors) - 1} ancestors recorded; store {store.url}")
    # The same check a user runs by hand: integrity, file content, environment.
    provstore = os.path.join(os.path.dirname(sys.executable), "provstore")
    return subprocess.call([provstore, "verify", summary_id])


if __name__ == "__main__":
    sys.exit(
        main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="provstore-demo-"))
    )
