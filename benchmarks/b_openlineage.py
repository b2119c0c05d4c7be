"""Live OpenLineage emission: what sending a run's events costs the run, with the endpoint up
and down.

Each figure is the wall time of one tracked run in a fresh interpreter, from ``tracker()``
to the end of its ``with`` block (so it includes queueing the START and COMPLETE events and
the bounded wait for the sender to take them): the run writes and tracks ``n`` files of
128 KiB, each made from the last, with a little Python work between them (2,000 and 6,000
files at full scale: about 1.4 and 2.2 s here, so the fixed cost of emission,
mostly the sender process importing the client beside the run, shows against both).  Three
ways, interleaved ``repeat`` times (drift on a shared machine hits all alike), medians:

* *no emission* — the baseline;
* *dead endpoint* — ``openlineage=http://127.0.0.1:<closed port>``: every event fails
  (connection refused); the target is that this stays within 5% of no emission;
* *loopback sink* — a local HTTP server that accepts the events (context: delivery works).

Children get byte-code caches of their own (as users' installs have), so the sender process
does not compile the OpenLineage client in every run.
"""

from __future__ import annotations

import http.server
import socket
import statistics
import threading

from benchmarks.harness import Context, Row, child_env, quiet_dir, run_child

DESCRIPTION = "live OpenLineage emission: a tracked run with no endpoint, a dead one, a sink"

TARGET = 1.05  # dead endpoint <= 1.05x no emission

_RUN = r"""
import hashlib, json, os, sys, time, warnings
from provstore import tracker

url, target, n = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
os.makedirs("files", exist_ok=True)
warnings.simplefilter("ignore")
t0 = time.perf_counter()
with tracker(url, name="b_openlineage", openlineage=target) as t:
    previous = []
    for i in range(n):
        data = hashlib.sha256(str(i).encode()).digest() * 4096
        sum(range(20000))
        path = f"files/f{i}.bin"
        with open(path, "wb") as out:
            out.write(data)
        previous = [t.track(path, parents=previous[-1:])]
elapsed = time.perf_counter() - t0
print(json.dumps({"s": elapsed, "lost": t.openlineage_dropped}))
"""


class _Sink(http.server.ThreadingHTTPServer):
    received = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # free once closed: nothing listens there


def run(ctx: Context) -> list[Row]:
    rows = []
    for n in ctx.pick((200,), (2000, 6000)):
        rows += _measure(ctx, n, ctx.pick(2, 9))
    return rows


def _measure(ctx: Context, n: int, repeat: int) -> list[Row]:
    sink = _Sink(("127.0.0.1", 0), _Handler)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    modes = {
        "no emission": "",
        "dead endpoint": f"http://127.0.0.1:{_closed_port()}",
        "loopback sink": f"http://127.0.0.1:{sink.server_port}",
    }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    lost: dict[str, set[int]] = {mode: set() for mode in modes}
    env = child_env(ctx.work / "openlineage-cache")
    try:
        for round_ in range(repeat + 1):  # round 0 warms the byte-code cache, unmeasured
            names = list(modes)
            order = names[round_ % 3 :] + names[: round_ % 3]
            for mode in order:
                cwd = quiet_dir(ctx.work / f"openlineage-{n}-{mode.replace(' ', '-')}-{round_}")
                url = f"sqlite:///{cwd}/store.db"
                got = run_child(_RUN, [url, modes[mode], str(n)], env, cwd, timeout=900)
                if round_:
                    times[mode].append(got["s"] * 1e3)
                    lost[mode].add(got["lost"])
    finally:
        sink.shutdown()
        sink.server_close()
    base = statistics.median(times["no emission"])
    rows = []
    for mode in modes:
        value = statistics.median(times[mode])
        note = (
            f"median of {repeat} runs of {n} tracked files; events lost per run (known when "
            f"the run ended): {'/'.join(map(str, sorted(lost[mode])))}"
        )
        if mode != "no emission":
            note += f"; {value - base:+.0f} ms against no emission"
        if mode == "loopback sink":
            note += f"; the sink received {sink.received} events"
        target = f"<= {TARGET:.2f}x no emission" if mode == "dead endpoint" else ""
        rows.append(Row(
            "openlineage", f"tracked run of {n} files, {mode}", value, "ms",
            baseline=base if mode != "no emission" else None,
            baseline_label="no emission" if mode != "no emission" else "",
            target=target, met=(value <= TARGET * base) if target else None, note=note,
        ))  # fmt: skip
    return rows
