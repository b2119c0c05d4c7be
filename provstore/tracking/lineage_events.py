"""Live OpenLineage emission: a tracked run's START and COMPLETE/FAIL events, sent as it goes.

The tracked run only builds each event (a plain map, :mod:`provstore.exchange.openlineage`)
and puts it on a bounded queue; a daemon thread imports the official ``openlineage-python``
client (the ``openlineage`` extra), turns the map into its event classes and emits it through
one of the client's transports.  So the run never waits for the network and never pays for
importing the client on its own thread:

* a full queue drops the event (counted in :attr:`LineageEmitter.dropped`);
* an endpoint that fails (down, refusing, timing out) costs the thread, not the run; the
  event is counted in :attr:`LineageEmitter.failed`;
* the first drop or failure gives one warning (:class:`LineageWarning`), never more;
* at the end of the run the thread gets at most :data:`DRAIN_SECONDS` to deliver what is
  queued, and none once the endpoint has failed.

Where events go: ``http(s)://HOST[:PORT][/PATH]`` (the HTTP transport, ``/api/v1/lineage``
unless the URL has a path), ``file:PATH`` (the file transport, one event a line, appended)
or ``console`` (the console transport, through logging).
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

from provstore.core.errors import ConfigError

__all__ = ["DRAIN_SECONDS", "QUEUE_SIZE", "LineageEmitter", "LineageWarning", "check_target"]

QUEUE_SIZE = 64
"""Events waiting to be sent at most; more are dropped (a run sends two)."""
DRAIN_SECONDS = 2.0
"""How long the end of a run waits, at most, for queued events to be delivered."""
HTTP_TIMEOUT = 2.0
"""Seconds the HTTP transport waits for an endpoint (on the sender thread)."""

_STOP = object()


class LineageWarning(RuntimeWarning):
    """OpenLineage events were dropped or could not be delivered (the run is recorded)."""


def check_target(target: str) -> str:
    """``target`` if it names a transport provstore can use, else :class:`ConfigError`."""
    if target == "console" or target.startswith("file:"):
        return target
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.netloc:
        return target
    raise ConfigError(
        f"openlineage_url {target!r} is not http(s)://HOST[:PORT][/PATH], file:PATH or console"
    )


class LineageEmitter:
    """Sends OpenLineage events from a background thread; see the module's description."""

    def __init__(self, target: str, *, queue_size: int = QUEUE_SIZE) -> None:
        self.target = check_target(target)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._warned = False
        self._lock = threading.Lock()
        self._endpoint_down = False
        self._thread = threading.Thread(target=self._work, name="provstore-openlineage")
        self._thread.daemon = True  # never keeps the process alive
        self._thread.start()

    # -- the tracked run's side ----------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        """Queue an event; never blocks (a full queue drops it)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._problem("dropped", "the queue of unsent events is full")

    def close(self, drain: float = DRAIN_SECONDS) -> None:
        """Let the thread deliver what is queued for at most ``drain`` seconds, then stop.

        Events still queued then are counted as dropped (with the one warning).
        """
        deadline = time.monotonic() + drain
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread is a daemon: it ends with the process
        while self._thread.is_alive() and not self._endpoint_down:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._thread.join(min(left, 0.05))
        unsent = sum(1 for item in self._drain() if item is not _STOP)
        if unsent:
            self._problem("dropped", f"{unsent} events were still queued when the run ended",
                          count=unsent)  # fmt: skip

    def _drain(self) -> list[Any]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _problem(self, counter: str, reason: str, count: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)
            if self._warned:
                return
            self._warned = True
        warnings.warn(
            f"OpenLineage events for {self.target} are not all delivered ({reason}); the run "
            "itself is recorded. Further problems are counted, not reported.",
            LineageWarning,
            stacklevel=2,
        )

    # -- the sender thread -------------------------------------------------------------------

    def _work(self) -> None:
        try:
            transport = _transport(self.target)
        except Exception as exc:  # noqa: BLE001 - any failure must stay on this thread
            self._endpoint_down = True
            self._problem("failed", f"the OpenLineage client cannot be used: {exc}")
            return
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            try:
                transport.emit(_client_event(event))
            except Exception as exc:  # noqa: BLE001
                self._endpoint_down = True
                self._problem("failed", f"{type(exc).__name__}: {_one_line(exc)}")
            else:
                self.sent += 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]


def _transport(target: str) -> Any:
    """The client's transport for ``target`` (imports the client: on the sender thread)."""
    try:
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
        from openlineage.client.transport.file import FileConfig, FileTransport
        from openlineage.client.transport.http import HttpConfig, HttpTransport
    except ImportError:
        raise ConfigError(
            "live OpenLineage emission needs openlineage-python: pip install "
            "'provstore[openlineage]'"
        ) from None
    if target == "console":
        return ConsoleTransport(ConsoleConfig())
    if target.startswith("file:"):
        return FileTransport(FileConfig(log_file_path=target[len("file:") :], append=True))
    parts = urlsplit(target)
    base = f"{parts.scheme}://{parts.netloc}"
    endpoint = parts.path.lstrip("/") or "api/v1/lineage"
    config = HttpConfig.from_dict(
        {
            "url": base,
            "endpoint": endpoint,
            "timeout": HTTP_TIMEOUT,
            "retry": {"total": 0, "connect": 0, "read": 0},
        }
    )
    return HttpTransport(config)


def _client_event(data: dict[str, Any]) -> Any:
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
