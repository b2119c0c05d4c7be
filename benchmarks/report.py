"""The suite's output: the table on stdout, the results JSON, and from saved results the docs'
benchmark page (reStructuredText) and its plot."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.harness import Row, machine_info

_ORDER = {name: i for i, name in enumerate(
    ["start", "capture", "register", "register 10M", "lookup", "lineage", "concurrency",
     "hashing", "bundle", "storage", "status", "galera", "peers"]
)}  # fmt: skip
_BACKENDS = {"sqlite": 1, "postgresql": 2, "mariadb": 3, "galera": 4}
_THROUGHPUT = ("register", "bundle")  # rates measured at several store or bundle sizes
_SIZE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*([kKM]?)(?![\w])")


def _size_of(measure: str) -> float | None:
    """The store or data size a measure names ('... at 100k', '@ 1M', 'n=20,000')."""
    found = [m for m in _SIZE.finditer(measure)]
    if not found:
        return None
    number, suffix = found[-1].groups()
    value = float(number.replace(",", ""))
    return value * {"k": 1e3, "K": 1e3, "M": 1e6}.get(suffix, 1)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    header = (
        "benchmark",
        "backend",
        "measure",
        "value",
        "unit",
        "baseline",
        "ratio",
        "target",
        "",
    )
    lines = [header]
    for r in rows:
        verdict = {True: "met", False: "MISSED", None: ""}[r.met]
        base = f"{fmt(r.baseline)} ({r.baseline_label})" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        lines.append(
            (
                r.benchmark,
                r.backend,
                r.measure,
                fmt(r.value),
                r.unit,
                base,
                ratio,
                r.target,
                verdict,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in lines
    )


def write_json(path: Path, scale: str, rows: list[Row], errors: list[str], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "scale": scale,
        "machine": machine_info(),
        "seconds": round(seconds, 1),
        "command": " ".join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "errors": errors,
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("`", "'") or " "


def _table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 10 12 8 22 8 18 8",
        "",
        "   * - measure",
        "     - backend",
        "     - value",
        "     - unit",
        "     - baseline (same run)",
        "     - ratio",
        "     - target",
        "     - verdict",
    ]
    for r in rows:
        base = f"{fmt(r['baseline'])} ({r['baseline_label']})" if r["baseline"] is not None else ""
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        verdict = {True: "met", False: "**missed**", None: ""}[r["met"]]
        measure = r["measure"] + (f" ({r['note']})" if r.get("note") else "")
        cells = [r["backend"], fmt(r["value"]), r["unit"], base, ratio, r["target"]]
        out.append(f"   * - {_escape(measure)}")
        out.extend(f"     - {_escape(str(c))}" for c in cells)
        out.append(f"     - {verdict or ' '}")
    return out


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One page's data from saved runs.

    A benchmark measured on the same backend in several runs keeps its latest figures; a run
    may add a backend to a benchmark measured earlier on others.
    """
    if not runs:
        raise ValueError("no results to merge")
    scales = {run["scale"] for run in runs}
    if len(scales) > 1:
        raise ValueError(f"runs of different scales cannot share a page: {sorted(scales)}")
    rows: list[dict[str, Any]] = []
    for number, run in enumerate(runs):
        again = {(r["benchmark"], r["backend"]) for r in run["rows"]}
        rows = [r for r in rows if (r["benchmark"], r["backend"]) not in again]
        rows += [{**r, "_part": number} for r in run["rows"]]
    parts, used = [], []
    for number, run in enumerate(runs):  # each run, with what it still contributes
        names = list(dict.fromkeys(r["benchmark"] for r in rows if r["_part"] == number))
        if names:
            used.append(run)
            parts.append({
                "command": run["command"],
                "seconds": run["seconds"],
                "date": run["machine"].get("date"),
                "benchmarks": names,
            })  # fmt: skip
    rows = [{k: v for k, v in r.items() if k != "_part"} for r in rows]
    return {
        **runs[-1],
        "parts": parts,
        "seconds": sum(run["seconds"] for run in used),
        "errors": [e for run in used for e in run.get("errors", [])],
        "rows": sorted(
            rows,
            key=lambda r: (
                _ORDER.get(r["benchmark"], len(_ORDER)),
                _BACKENDS.get(r["backend"], 0),
            ),
        ),  # fmt: skip
    }


def _commands(data: dict[str, Any]) -> list[str]:
    parts = data.get("parts") or [
        {"command": data["command"], "seconds": data["seconds"], "date": None, "benchmarks": []}
    ]
    if len(parts) == 1:
        part = parts[0]
        return [f"* command: ``{part['command']}`` ({part['seconds']:.0f} s)"]
    lines = [f"* taken in {len(parts)} runs ({data['seconds']:.0f} s in all); each benchmark's "
             "figures and baselines come from one run:", ""]  # fmt: skip
    for part in parts:
        lines.append(
            f"  * ``{part['command']}`` ({', '.join(part['benchmarks'])}; "
            f"{part['seconds']:.0f} s, written {part['date']})"
        )
    return [*lines, ""]


def write_report(data: dict[str, Any], path: Path, plot: Path | None = None) -> None:
    """Write the results page; with ``plot``, draw the figure and show it on the page."""
    machine = data["machine"]
    rows = data["rows"]
    missed = [r for r in rows if r["met"] is False]
    met = [r for r in rows if r["met"] is True]
    lines = [
        "Benchmarks",
        "==========",
        "",
        "Every figure below was measured beside its baseline in the same run (a raw-driver",
        "floor or a naive implementation) and is held to the target beside it. The machine is",
        "shared and noisy (about ±30% on single figures): compare ratios. What each",
        "optimisation bought, measured before and after, is on :doc:`performance`.",
        "",
        f"* scale: ``--scale {data['scale']}``",
        *_commands(data),
        f"* date: {machine.get('date')}",
        f"* machine: {machine.get('cpus')} CPUs ({machine.get('cpu', '?')}), "
        f"{int(machine.get('memory_kib', 0)) // (1 << 20)} GiB, {machine.get('platform')}",
        f"* Python {machine.get('python')}, SQLAlchemy {machine.get('sqlalchemy')}",
        f"* targets: {len(met)} met, {len(missed)} missed",
        "",
    ]
    if data.get("errors"):
        lines += ["Errors in this run:", ""]
        lines += [f"* ``{e.splitlines()[0]}``" for e in data["errors"]] + [""]
    if plot is not None:
        write_plot(data, plot)
        rel = Path(plot).resolve().relative_to(Path(path).resolve().parent)
        lines += [
            f".. image:: {rel.as_posix()}",
            "   :alt: throughput and latency against size",
            "",
        ]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["benchmark"]].append(r)
    for name, group in groups.items():
        lines += [name, "-" * len(name), ""] + _table(group) + [""]
    if missed:
        lines += ["Missed targets", "--------------", ""]
        lines += [f"* {_escape(r['benchmark'])}: {_escape(r['measure'])} ({r['backend']}): "
                  f"{fmt(r['value'])} {r['unit']}, target {_escape(r['target'])}"
                  for r in missed] + [""]  # fmt: skip
    Path(path).write_text("\n".join(lines))


def write_plot(data: dict[str, Any], path: Path) -> None:
    """Throughput against store or bundle size, and lineage latency against depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in data["rows"]:
        size = _size_of(r["measure"])
        if size is None or r["value"] is None or "whole" in r["measure"]:
            continue  # the whole-block average repeats the windows
        if r["benchmark"] == "lineage" and r["unit"] == "ms" and "DAG ancestors" in r["measure"]:
            label = r["measure"].split(" depth")[0]  # x: the depth asked for
            series[("ms", f"{label} [{r['backend']}]")].append((size, r["value"]))
            continue
        if size < 100 or not (r["unit"].endswith("/s") and r["benchmark"] in _THROUGHPUT):
            continue  # small numbers in a measure are percentiles or counts, not sizes
        label = _SIZE.sub("", r["measure"]).split(",")[0].strip()
        series[(r["unit"], f"{r['benchmark']}: {label} [{r['backend']}]")].append(
            (size, r["value"])
        )
        if r["baseline"] is not None and r["baseline_label"]:
            base = f"  baseline: {r['baseline_label']} [{r['backend']}]"
            series[(r["unit"], base)].append((size, r["baseline"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for (unit, label), points in sorted(series.items()):
        if len(points) < 2:
            continue
        points.sort()
        axis = right if unit == "ms" else left
        style = "--" if label.startswith(("  baseline", "floor")) else "-"
        axis.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label)
    panels = (
        (left, "throughput (/s) against store / bundle size",
         "products in the store (objects in the bundle)"),
        (right, "lineage latency (ms) against depth, DAG ancestors", "depth"),
    )  # fmt: skip
    for axis, title, xlabel in panels:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "no series in this run", ha="center", transform=axis.transAxes)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
