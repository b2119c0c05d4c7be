"""The OpenLineage sender process: ``python -m provstore.tracking.lineage_sender TARGET DIR``.

Reads the names of event files in ``DIR`` from standard input, one a line (each file one
event as JSON, removed once read; ``DIR`` is removed at the end), emits each through the official
``openlineage-python`` client's transport for ``TARGET`` (see
:mod:`provstore.tracking.lineage_events`) and reports on standard output, one line per
event: ``ok``, or ``fail REASON``; nobody may be reading by then (the run has ended), which
is fine.  Input is taken in at once by a thread, before the client is imported, so the run
never waits on a full pipe.  At the end of its input, after the last attempt, it says once
on standard error how many events it could not deliver, if any.
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
from typing import Any
from urllib.parse import urlsplit


def _lowest_priority() -> None:
    """Background work: on a busy machine the tracked run comes first.

    This process is in a session of its own, which Linux schedules as a group of its own
    (autogroup) where plain ``nice`` counts only inside the group: the group's niceness is
    raised too.
    """
    try:
        os.nice(19)
    except OSError:  # pragma: no cover
        pass
    if os.getsid(0) != os.getpid():
        return  # not a session of our own: the group is the run's, leave it alone
    try:
        with open("/proc/self/autogroup", "w") as handle:
            handle.write("19")
    except OSError:  # not Linux, or no autogroup
        pass


if __name__ == "__main__":
    _lowest_priority()  # before importing the client, which is most of what this process costs

__all__ = ["HTTP_TIMEOUT", "client_event", "main", "transport_for"]

HTTP_TIMEOUT = 2.0
"""Seconds the HTTP transport waits for an endpoint; no retries (the next event retries)."""


def transport_for(target: str) -> Any:
    """The client's transport for ``target`` (``http(s)://…``, ``file:PATH``, ``console``)."""
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    if target == "console":
        return ConsoleTransport(ConsoleConfig())
    if target.startswith("file:"):
        return FileTransport(FileConfig(log_file_path=target[len("file:") :], append=True))
    parts = urlsplit(target)
    config = HttpConfig.from_dict(
        {
            "url": f"{parts.scheme}://{parts.netloc}",
            "endpoint": parts.path.lstrip("/") or "api/v1/lineage",
            "timeout": HTTP_TIMEOUT,
            "retry": {"total": 0, "connect": 0, "read": 0},
        }
    )
    return HttpTransport(config)


def client_event(data: dict[str, Any]) -> Any:
    """An event map as the client's ``event_v2.RunEvent``, facets keeping their schema URLs."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.event_v2 import RunState as EventType
    from openlineage.client.generated.base import DatasetFacet, JobFacet, RunFacet

    def facets(found: dict[str, Any] | None, base: Any) -> dict[str, Any]:
        out = {}
        for name, facet in (found or {}).items():
            fields = {k: v for k, v in facet.items() if not k.startswith("_")}
            made = base(producer=facet["_producer"]).with_additional_properties(**fields)
            made._schemaURL = facet["_schemaURL"]
            out[name] = made
        return out

    def datasets(cls: Any, found: list[dict[str, Any]]) -> list[Any]:
        return [cls(d["namespace"], d["name"], facets=facets(d.get("facets"), DatasetFacet))
                for d in found]  # fmt: skip

    return RunEvent(
        eventTime=data["eventTime"],
        producer=data["producer"],
        eventType=EventType(data["eventType"]),
        run=Run(runId=data["run"]["runId"], facets=facets(data["run"].get("facets"), RunFacet)),
        job=Job(
            namespace=data["job"]["namespace"],
            name=data["job"]["name"],
            facets=facets(data["job"].get("facets"), JobFacet),
        ),
        inputs=datasets(InputDataset, data.get("inputs", [])),
        outputs=datasets(OutputDataset, data.get("outputs", [])),
    )


def _report(line: str) -> None:
    try:
        sys.stdout.write(" ".join(line.split())[:300] + "\n")
        sys.stdout.flush()
    except OSError:  # the run has ended and no longer reads: deliver anyway
        pass


def _take_input(into: queue.Queue[bytes | None]) -> None:
    for raw in sys.stdin.buffer:
        into.put(raw)
    into.put(None)


def main(argv: list[str]) -> int:
    """Send every event on standard input; one report line each; one warning at the end."""
    import json

    target, spool = argv[0], argv[1]
    events: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_take_input, args=(events,), daemon=True).start()
    broken = ""
    try:
        transport = transport_for(target)
    except ImportError:
        transport = None
        broken = "openlineage-python is not installed (pip install 'provstore[openlineage]')"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        transport, broken = None, f"the OpenLineage client cannot be used: {exc}"
    total = failed = 0
    while (raw := events.get()) is not None:
        total += 1
        try:
            path = os.path.join(spool, os.path.basename(raw.decode("ascii").strip()))
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
            os.unlink(path)
            if transport is None:
                raise RuntimeError(broken)
            transport.emit(client_event(data))
        except Exception as exc:  # noqa: BLE001
            failed += 1
            broken = broken or f"{type(exc).__name__}: {exc}"
            _report(f"fail {type(exc).__name__}: {exc}")
        else:
            _report("ok")
    shutil.rmtree(spool, ignore_errors=True)
    if failed:
        reason = " ".join(broken.split())[:300]
        try:
            sys.stderr.write(
                f"provstore: warning: {failed} of {total} OpenLineage events for {target} were "
                f"not delivered ({reason}); the run itself is recorded\n"
            )
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
