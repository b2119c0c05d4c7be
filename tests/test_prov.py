"""PROV-JSON export: validated by the ``prov`` package, relations checked through its model."""

from __future__ import annotations

import datetime
import json
import warnings

import prov.model as prov_model
import pytest

from provstore import open_store, tracker
from provstore.checks.walk import closure
from provstore.core.objects import (
    Environment,
    LibrarySet,
    Product,
    Run,
    RunEnd,
    Sealed,
    Variables,
    seal,
)
from provstore.exchange.prov import PREFIXES, to_prov_json

PROV_TYPE = "prov:type"


def parse(doc: dict) -> prov_model.ProvDocument:
    """Deserialize with every prov warning (it drops what it cannot read) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", prov_model.ProvWarning)
        return prov_model.ProvDocument.deserialize(content=json.dumps(doc), format="json")


def qn(digest: bytes | str) -> str:
    return f"provstore:{digest if isinstance(digest, str) else digest.hex()}"


def records(parsed, cls) -> list:
    return [r for r in parsed.get_records() if isinstance(r, cls)]


def pairs(parsed, cls) -> set[tuple[str, ...]]:
    """Each relation of ``cls`` as its formal attributes, qualified names as text, None as '-'."""
    return {
        tuple(str(value) if value is not None else "-" for _, value in r.formal_attributes)
        for r in records(parsed, cls)
    }


def attr(record, name: str):
    values = list(record.get_attribute(name))
    assert len(values) == 1, (name, values)
    return values[0]


def by_id(parsed) -> dict[str, object]:
    return {str(r.identifier): r for r in parsed.get_records() if r.identifier is not None}


# --- a closure made by the tracker -------------------------------------------------------------


@pytest.fixture
def tracked(sqlite_url, tmp_path):
    """A run that used a source file and made ``config`` and ``result`` (parents raw, config)."""
    raw_path = tmp_path / "raw.csv"
    raw_path.write_text("a,b\n1,2\n")
    out_path = tmp_path / "result.bin"
    out_path.write_bytes(b"result bytes")
    with tracker(sqlite_url) as t:
        raw = t.use(raw_path)
        config = t.register_data_product("config", "1", metadata={"lr": 0.5})
        result = t.register_data_product(
            name="result",
            version="2.0",
            metadata={
                "rows": 10,
                "format": "parquet",
                "columns": ["a", "b"],
                "nested": {"k": [1, None]},
                "blob": b"\x00\xff",
                "weird key/ü.": True,
            },
            path=out_path,
            parents=[raw, config],
        )
        run = t.run
        environment = t.environment
    store = open_store(sqlite_url)
    try:
        found = closure(store, [bytes.fromhex(result)]).found
    finally:
        store.close()
    names = {"raw": raw, "config": config, "result": result, "run": run, "env": environment}
    return found, names


def test_document_is_valid_prov_and_json(tracked):
    found, _ = tracked
    doc = to_prov_json(found)
    assert doc["prefix"] == PREFIXES
    json.dumps(doc)  # plain JSON: no bytes, no tuples that change on a round trip
    assert json.loads(json.dumps(doc)) == doc
    parsed = parse(doc)
    assert len(parsed.get_records()) > 0


def test_every_digest_of_the_closure_appears(tracked):
    found, _ = tracked
    assert {item.kind for item in found.values()} == {
        "product",
        "run",
        "runend",
        "environment",
        "libraryset",
        "importset",
        "variables",
    }
    text = json.dumps(to_prov_json(found))
    for digest in found:
        assert digest.hex() in text, found[digest].kind


def test_entities_activities_and_agents(tracked):
    found, n = tracked
    parsed = parse(to_prov_json(found))
    entities = records(parsed, prov_model.ProvEntity)
    kinds = sorted(str(attr(e, PROV_TYPE)) for e in entities)
    assert kinds == [
        "provstore:Environment",
        "provstore:ImportSet",
        "provstore:LibrarySet",
        "provstore:Product",
        "provstore:Product",
        "provstore:Product",
        "provstore:Variables",
    ]
    ids = by_id(parsed)
    result = ids[qn(n["result"])]
    assert attr(result, "prov:label") == "result"
    assert attr(result, "provstore:version") == "2.0"
    assert attr(result, "provstore:size") == len(b"result bytes")
    assert len(attr(result, "provstore:contentDigest")) == 64
    assert attr(result, "provstore:path").endswith("result.bin")
    assert str(attr(ids[qn(n["env"])], PROV_TYPE)) == "provstore:Environment"
    (activity,) = records(parsed, prov_model.ProvActivity)
    assert str(activity.identifier) == qn(n["run"])
    (agent,) = records(parsed, prov_model.ProvAgent)
    assert str(attr(agent, PROV_TYPE)) == "prov:Person"
    assert "@" in attr(agent, "prov:label")


def test_metadata_is_flattened(tracked):
    found, n = tracked
    result = by_id(parse(to_prov_json(found)))[qn(n["result"])]
    assert attr(result, "provstore:meta_rows") == 10
    assert attr(result, "provstore:meta_format") == "parquet"
    columns = attr(result, "provstore:meta_columns")
    assert json.loads(columns.value) == ["a", "b"] and str(columns.datatype) == "rdf:JSON"
    assert json.loads(attr(result, "provstore:meta_nested").value) == {"k": [1, None]}
    assert attr(result, "provstore:meta_blob").value == "00ff"
    assert attr(result, "provstore:meta_weird%20key%2F%C3%BC%2E") is True


def test_generation_derivation_usage_association(tracked):
    found, n = tracked
    parsed = parse(to_prov_json(found))
    run, raw, config, result = (qn(n[k]) for k in ("run", "raw", "config", "result"))
    assert pairs(parsed, prov_model.ProvGeneration) == {
        (result, run, "-"),
        (config, run, "-"),
    }  # the source file was not made by the run
    assert pairs(parsed, prov_model.ProvDerivation) == {
        (result, raw, run, "-", "-"),
        (result, config, run, "-", "-"),
    }
    used = {(r[0], r[1]) for r in pairs(parsed, prov_model.ProvUsage)}
    assert {(run, raw), (run, config), (run, qn(n["env"]))} <= used
    roles = {
        str(u.formal_attributes[1][1]): set(u.get_attribute("prov:role"))
        for u in records(parsed, prov_model.ProvUsage)
    }
    assert roles[qn(n["env"])] == {"environment"}
    assert roles[raw] == set()
    (association,) = pairs(parsed, prov_model.ProvAssociation)
    assert association[0] == run and association[1].startswith("provstore:agent_")


def test_run_times_and_status(tracked):
    found, n = tracked
    run = found[bytes.fromhex(n["run"])].obj
    end = next(item.obj for item in found.values() if isinstance(item.obj, RunEnd))
    (activity,) = records(parse(to_prov_json(found)), prov_model.ProvActivity)
    start = datetime.datetime.fromtimestamp(run.started_ns // 1000 / 1e6, datetime.timezone.utc)
    assert activity.get_startTime() == start
    assert activity.get_endTime() > activity.get_startTime()
    assert attr(activity, "provstore:status") == "succeeded"
    assert attr(activity, "provstore:runEnd") == seal(end).hex


def test_deterministic_whatever_the_order(tracked):
    found, _ = tracked
    first = to_prov_json(found)
    assert to_prov_json(found) == first
    backwards = dict(reversed(list(found.items())))
    assert json.dumps(to_prov_json(backwards)) == json.dumps(first)
    relation_ids = [key for name in ("used", "wasDerivedFrom") for key in first[name]]
    assert len(relation_ids) == len(set(relation_ids))
    assert list(first["used"]) == [f"_:used{i}" for i in range(1, len(first["used"]) + 1)]


# --- closures built by hand -------------------------------------------------------------------


def _d(n: int) -> bytes:
    return bytes([n]) * 32


def hand_made(*, status: str = "failed", ended: bool = True) -> dict[bytes, Sealed]:
    libs = seal(LibrarySet(distributions=(("numpy", "1.26.4"),)))
    env = seal(
        Environment(
            implementation="cpython",
            python_version="3.12.1",
            system="Linux",
            release="6.1",
            machine="x86_64",
            libc="glibc 2.36",
            libraryset=libs.digest,
            variables={"LANG": "C.UTF-8", "ODD": b"\xff"},
            redacted=("API_TOKEN",),
        )
    )
    variables = seal(Variables(variables={"HOME": "/home/ü"}, redacted=("API_TOKEN",)))
    run = seal(
        Run(
            environment=env.digest,
            variables=variables.digest,
            host="node 7",
            user="ada",
            argv=("train.py", "--lr", "0.1 x"),
            cwd="/w",
            executable="/usr/bin/python3",
            pid=42,
            started_ns=1_700_000_000_123_456_789,
            code=None,
            name=None,
        )
    )
    out = seal(
        Product(
            name="model",
            version=None,
            metadata={},
            content=None,
            size=None,
            path=None,
            run=run.digest,
            parents=(_d(9),),  # not among the objects
        )
    )
    items = [libs, env, variables, run, out]
    if ended:
        end = RunEnd(
            run=run.digest,
            status=status,
            finished_ns=1_700_000_001_000_000_000,
            error="boom" if status == "failed" else None,
            exit_code=1 if status == "failed" else 0,
            inputs=(_d(8),),
        )
        items.append(seal(end))
    return {item.digest: item for item in items}


def test_failed_run_with_outside_references():
    objects = hand_made()
    doc = to_prov_json(objects)
    parsed = parse(doc)
    (activity,) = records(parsed, prov_model.ProvActivity)
    assert attr(activity, "provstore:status") == "failed"
    assert attr(activity, "provstore:error") == "boom"
    assert attr(activity, "provstore:exitCode") == 1
    assert attr(activity, "provstore:argv") == "train.py --lr '0.1 x'"
    assert doc["activity"][str(activity.identifier)]["prov:startTime"] == (
        "2023-11-14T22:13:20.123456789Z"
    )
    assert doc["activity"][str(activity.identifier)]["prov:endTime"] == "2023-11-14T22:13:21Z"
    used = {(r[1]) for r in pairs(parsed, prov_model.ProvUsage)}
    assert {qn(_d(8)), qn(_d(9))} <= used  # the run end's input, the product's parent
    (agent,) = records(parsed, prov_model.ProvAgent)
    assert str(agent.identifier) == "provstore:agent_ada%40node%207"
    env = next(e for e in doc["entity"].values() if e[PROV_TYPE]["$"] == "provstore:Environment")
    assert json.loads(env["provstore:variables"]["$"]) == {"LANG": "C.UTF-8", "ODD": "\\xff"}
    assert env["provstore:redacted"] == ["API_TOKEN"]


def test_run_without_an_end_has_no_end_time():
    doc = to_prov_json(hand_made(ended=False))
    parse(doc)
    (activity,) = doc["activity"].values()
    assert "prov:endTime" not in activity and "provstore:status" not in activity


def test_empty_closure_is_an_empty_document():
    doc = to_prov_json({})
    assert doc == {"prefix": PREFIXES}
    assert parse(doc).get_records() == []


# --- what prov itself refuses -------------------------------------------------------------------


def test_prov_rejects_an_element_with_an_undeclared_prefix():
    """The validation has teeth: prov refuses, warnings or not, what a broken export makes."""
    doc = to_prov_json(hand_made())
    doc["entity"]["elsewhere:x"] = {}
    with pytest.raises(prov_model.ProvException, match="identifier"):
        prov_model.ProvDocument.deserialize(content=json.dumps(doc), format="json")


def test_document_without_its_prefix_fails():
    doc = to_prov_json(hand_made())
    del doc["prefix"]["provstore"]
    with pytest.raises((prov_model.ProvException, prov_model.ProvWarning)):
        parse(doc)


def test_prov_warnings_are_failures():
    """A relation naming an undeclared prefix is dropped by prov 3.2 with a warning: we fail."""
    doc = to_prov_json(hand_made())
    doc["used"]["_:used1"]["prov:entity"] = "elsewhere:x"
    with pytest.raises(prov_model.ProvWarning):
        parse(doc)
