"""OpenLineage: exported events read back by the official client's generated classes (whose
attrs validators check types and compute the schemaURL), live events received by a loopback
HTTP sink, and an endpoint that is down costing the run nothing but a counted loss."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import uuid
import warnings

import pytest
from click.testing import CliRunner

from provstore import tracker
from provstore.cli.main import main
from provstore.exchange.gathered import run_uuid
from provstore.tracking.lineage_events import LineageEmitter, LineageWarning

REQUIRED_EVENT = ("eventTime", "producer", "schemaURL", "eventType", "run", "job")


def _read(event: dict):
    """Build the client's event_v2 objects from an exported map: an independent reader."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        error_message_run,
        job_type_job,
    )
    from openlineage.client.generated.base import DatasetFacet, RunFacet

    def custom(base, facet):
        assert facet["_producer"] and facet["_schemaURL"].startswith("https://")
        fields = {k: v for k, v in facet.items() if not k.startswith("_")}
        return base(producer=facet["_producer"]).with_additional_properties(**fields)

    def standard(cls, facet):
        made = cls(producer=facet["_producer"],
                   **{k: v for k, v in facet.items() if not k.startswith("_")})  # fmt: skip
        assert made._schemaURL == facet["_schemaURL"], "a standard facet's schema URL"
        return made

    def dataset(cls, data):
        facets = {}
        for name, facet in data["facets"].items():
            if name == "version":
                facets[name] = standard(dataset_version_dataset.DatasetVersionDatasetFacet, facet)
            else:
                facets[name] = custom(DatasetFacet, facet)
        return cls(namespace=data["namespace"], name=data["name"], facets=facets)

    run_facets = {}
    for name, facet in event["run"]["facets"].items():
        if name == "errorMessage":
            run_facets[name] = standard(error_message_run.ErrorMessageRunFacet, facet)
        else:
            run_facets[name] = custom(RunFacet, facet)
    job_facets = {"jobType": standard(job_type_job.JobTypeJobFacet,
                                      event["job"]["facets"]["jobType"])}  # fmt: skip
    made = RunEvent(
        eventTime=event["eventTime"],
        producer=event["producer"],
        eventType=RunState(event["eventType"]),
        run=Run(runId=event["run"]["runId"], facets=run_facets),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"], facets=job_facets),
        inputs=[dataset(InputDataset, d) for d in event["inputs"]],
        outputs=[dataset(OutputDataset, d) for d in event["outputs"]],
    )
    assert made.schemaURL == event["schemaURL"], "the RunEvent schema of spec 2-0-2"
    for name in REQUIRED_EVENT:
        assert event[name], name
    return made


@pytest.fixture
def pipeline(sqlite_url, tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("x\n1\n")
    with tracker(sqlite_url, name="clean") as t:
        used = t.use(raw)
        clean = tmp_path / "clean.csv"
        clean.write_text("x\n1\n2\n")
        product = t.track(clean, parents=[used])
        first_run = t.run
    with pytest.raises(RuntimeError), tracker(sqlite_url, name="broken") as t:
        t.use(clean)
        raise RuntimeError("boom")
    with tracker(sqlite_url, name="model") as t:
        t.use(clean)
        final = t.register_data_product("model", "1", {"k": 1}, parents=[product])
    return sqlite_url, final, first_run


def _export(url, ref, tmp_path, *extra):
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["--url", url, "export", ref, "--format", "openlineage",
                                       "-o", str(out), "--force", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_exported_events_load_into_the_client_classes(pipeline, tmp_path):
    url, final, first_run = pipeline
    events = _export(url, final, tmp_path, "--namespace", "lab-a")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    for event in events:
        _read(event)
    ends = [e for e in events if e["eventType"] == "COMPLETE"]
    clean_end = next(e for e in ends if e["job"]["name"] == "clean")
    assert clean_end["run"]["runId"] == str(run_uuid(bytes.fromhex(first_run)))
    assert uuid.UUID(clean_end["run"]["runId"]).version == 5
    assert clean_end["job"]["namespace"] == "lab-a"
    [source] = clean_end["inputs"]
    [output] = clean_end["outputs"]
    assert source["namespace"] == "file" and source["name"].endswith("raw.csv")
    assert output["facets"]["version"]["datasetVersion"].startswith("blake3:")
    facets = clean_end["run"]["facets"]
    assert len(facets["provstore_environment"]["digest"]) == 64
    assert facets["provstore_run"]["digest"] == first_run
    assert _export(url, final, tmp_path, "--namespace", "lab-a") == events  # deterministic


def test_a_failed_run_is_a_fail_event_with_its_error(pipeline, tmp_path):
    url, _, _ = pipeline
    result = CliRunner().invoke(main, ["--url", url, "log", "--json"])
    broken = next(r for r in json.loads(result.output) if r.get("name") == "broken")
    events = _export(url, broken["run"], tmp_path)
    fail = next(e for e in events if e["eventType"] == "FAIL")
    _read(fail)
    assert "boom" in fail["run"]["facets"]["errorMessage"]["message"]


class _Sink(http.server.ThreadingHTTPServer):
    def __init__(self, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: list[tuple[str, dict]] = []
        self.delay = delay
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        self.server.events.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sink():
    server = _Sink()
    yield server
    server.shutdown()
    server.server_close()


def _delivered(t) -> None:
    """Wait for the run's sender to report on every event (it outlives the block)."""
    assert t.openlineage_emitter.wait(120), "the sender did not finish"


def test_live_emission_reaches_a_loopback_sink(sqlite_url, tmp_path, sink):
    out = tmp_path / "out.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)
        with tracker(sqlite_url, name="live", openlineage=sink.url) as t:
            out.write_text("data\n")
            digest = t.track(out)
    _delivered(t)
    assert t.openlineage_emitter.sent == 2
    assert [path for path, _ in sink.events] == ["/api/v1/lineage"] * 2
    start, complete = (event for _, event in sink.events)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == str(run_uuid(bytes.fromhex(t.run)))
    assert complete["outputs"][0]["facets"]["provstore_product"]["digest"] == digest
    _read(complete)
    assert t.openlineage_dropped == 0 and t.openlineage_emitter.failed == 0


def test_the_setting_sends_events_and_the_export_matches_them(tmp_path, sink, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.provstore]\nurl = "s.db"\nopenlineage_url = "{sink.url}/custom/path"\n'
        'openlineage_namespace = "site-b"\n'
    )
    monkeypatch.chdir(tmp_path)
    with tracker(name="configured") as t:
        (tmp_path / "a.txt").write_text("a")
        product = t.track(tmp_path / "a.txt")
    _delivered(t)
    assert [path for path, _ in sink.events] == ["/custom/path"] * 2
    live = [event for _, event in sink.events]
    exported = _export(f"sqlite:///{tmp_path}/s.db", product, tmp_path)
    assert [e["run"]["runId"] for e in exported] == [e["run"]["runId"] for e in live]
    sent = [{k: v for k, v in d.items() if k != "outputFacets"} for d in live[1]["outputs"]]
    assert exported[1]["outputs"] == sent and live[0]["job"]["namespace"] == "site-b"


def test_a_dead_endpoint_costs_one_warning_and_counted_losses(sqlite_url, tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LineageWarning)  # nothing dropped on the run's side
        with tracker(sqlite_url, name="dead", openlineage="http://127.0.0.1:9") as t:
            (tmp_path / "b.txt").write_text("b")
            t.track(tmp_path / "b.txt")
    _delivered(t)
    emitter = t.openlineage_emitter
    assert (emitter.failed, emitter.sent, emitter.dropped) == (2, 0, 0)
    said = [line for line in capfd.readouterr().err.splitlines() if "OpenLineage" in line]
    assert said == [said[0]] and said[0].startswith("provstore: warning: 2 of 2 OpenLineage")
    assert "the run itself is recorded" in said[0]
    result = CliRunner().invoke(main, ["--url", sqlite_url, "log", "--json"])
    assert json.loads(result.output)[0]["status"] == "succeeded"


def test_a_full_queue_drops_without_blocking(tmp_path, monkeypatch):
    import provstore.tracking.lineage_events as lineage_events

    # A sender that never reads: the writer blocks once the pipe is full, the queue fills.
    real = subprocess.Popen
    monkeypatch.setattr(lineage_events.subprocess, "Popen",
                        lambda args, **kwargs: real(["sleep", "30"], **kwargs))  # fmt: skip
    big = {"padding": "x" * 100_000}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emitter = LineageEmitter("console", queue_size=2)
        began = time.monotonic()
        for _ in range(20):
            emitter.send(big)
        assert time.monotonic() - began < 0.5, "send() must never wait"
        emitter.close(drain=0.2)
    assert emitter.dropped >= 18
    assert len([w for w in caught if issubclass(w.category, LineageWarning)]) == 1
    emitter._sender.kill()
    shutil.rmtree(emitter._spool)


def test_file_transport_appends_events(sqlite_url, tmp_path):
    target = tmp_path / "events.jsonl"
    with tracker(sqlite_url, name="to-file", openlineage=f"file:{target}") as t:
        pass
    _delivered(t)
    kinds = [json.loads(line)["eventType"] for line in target.read_text().splitlines()]
    assert kinds == ["START", "COMPLETE"]


def test_a_bad_target_is_refused_before_anything_is_recorded(sqlite_url):
    from provstore.core.errors import ConfigError

    with pytest.raises(ConfigError, match="openlineage_url"):
        tracker(sqlite_url, openlineage="ftp://nowhere")
