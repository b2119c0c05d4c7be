"""provstore serve, in process: pages, the JSON API against the CLI's --json, the token,
escaping, headers, read-only behaviour and the lineage node budget."""

from __future__ import annotations

import html
import json
import re
import warnings

import pytest
from click.testing import CliRunner

from provstore.api import open_store
from provstore.cli.main import main
from provstore.store import Lineage
from provstore.web.app import COOKIE, CSP, create_app
from provstore.web.graph import budgeted
from tests._webstore import HOSTILE_META, HOSTILE_NAME, HOSTILE_PATH_NAME, build

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette asks for httpx2; httpx still works
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def site(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "hunter2-very-secret-value")
    ids = build(sqlite_url, tmp_path / "work")
    store = open_store(sqlite_url, create=False)
    yield sqlite_url, ids, TestClient(create_app(store))
    store.close()


def cli_json(url: str, *args: str):
    result = CliRunner().invoke(main, ["--url", url, *args])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def api_json(client, path: str):
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


# --- the JSON API answers what the CLI's --json answers ----------------------------------------


def test_api_log_equals_cli(site):
    url, _, client = site
    assert api_json(client, "/api/log") == cli_json(url, "log", "--json")


def test_api_log_filtered_equals_cli(site):
    url, _, client = site
    got = api_json(client, "/api/log?status=succeeded&name=tra*&limit=5")
    assert got == cli_json(
        url, "log", "--status", "succeeded", "--name", "tra*", "-n", "5", "--json"
    )
    assert [r["name"] for r in got] == ["train"]


def test_runs_filter_by_batch_job(site):
    url, _, client = site
    got = api_json(client, "/api/log?job=4242")
    assert got == cli_json(url, "log", "--job", "4242", "--json")
    assert [r["name"] for r in got] == ["train"] and got[0]["job"]["id"] == "4242"
    page = client.get("/runs?job=4242").text
    assert "slurm 4242" in page and ">prepare<" not in page
    assert "slurm 4242" in client.get(f"/runs/{got[0]['run']}").text


def test_api_products_equals_cli(site):
    url, _, client = site
    got = api_json(client, "/api/products?name=clean*&limit=1")
    assert got == cli_json(url, "products", "--name", "clean*", "-n", "1", "--json")
    assert got["products"][0]["name"] == "clean-table" and got["next"]


def test_api_show_product_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/show/{ids['clean'][:10]}")
    assert got == cli_json(url, "show", ids["clean"][:10], "--json")
    assert got["metadata"] == HOSTILE_META


def test_api_show_run_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/show/{ids['run_b']}?limit=2")
    assert got == cli_json(url, "show", ids["run_b"], "-n", "2", "--json")
    assert len(got["products"]) == 2 and got["ends"][0]["status"] == "succeeded"


def test_api_show_by_name_equals_cli(site):
    url, _, client = site
    assert api_json(client, "/api/show/name:model@2.0") == cli_json(
        url, "show", "name:model@2.0", "--json"
    )


def test_api_lineage_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/lineage/{ids['hostile']}")
    assert got == cli_json(url, "lineage", ids["hostile"], "--format", "json")
    assert {"child": ids["hostile"], "parent": ids["model"]} in got["edges"]


def test_api_descendants_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/lineage/{ids['clean']}?direction=descendants&depth=1")
    assert got == cli_json(
        url, "lineage", ids["clean"], "--descendants", "--depth", "1", "--format", "json"
    )
    assert {n["digest"] for n in got["nodes"]} == {ids["clean"], ids["model"], ids["odd"]}


def test_api_diff_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/diff?a={ids['run_a']}&b={ids['model']}")
    assert got == cli_json(url, "diff", ids["run_a"], ids["model"], "--json")
    assert {"name": "TZ", "old": "UTC", "new": "Europe/Paris"} in got["variables"]


def test_api_verify_equals_cli(site):
    url, ids, client = site
    got = api_json(client, f"/api/verify/{ids['model']}")
    assert got == cli_json(url, "verify", ids["model"], "--json")
    assert got["digest"] == ids["model"]


def test_api_stats_equals_cli(site):
    url, _, client = site
    got = api_json(client, "/api/stats")
    assert got == cli_json(url, "stats", "--json")
    assert got["objects"]["run"] == 2


def test_api_errors_are_json_with_status(site):
    _, _, client = site
    answer = client.get("/api/show/name:nothing-like-this")
    assert answer.status_code == 404 and "nothing-like-this" in answer.json()["error"]
    assert client.get("/api/log?status=bogus").status_code == 400


# --- pages ---------------------------------------------------------------------------------------


def test_pages_show_what_was_recorded(site):
    _, ids, client = site
    runs = client.get("/runs").text
    assert "prepare" in runs and "train" in runs and ids["run_b"][:12] in runs
    assert "prepare" not in client.get("/runs?name=train").text
    run = client.get(f"/runs/{ids['run_b']}").text
    assert ids["env_b"] in run and "succeeded" in run and ids["model"][:12] in run
    product = client.get(f"/products/{ids['clean']}").text
    for digest in (ids["raw"], ids["model"], ids["odd"], ids["run_a"]):
        assert digest[:12] in product
    env = client.get(f"/environments/{ids['env_b']}").text
    assert "Europe/Paris" in env and "Distributions" in env
    filtered = client.get(f"/environments/{ids['env_b']}?q=sqlalchemy").text
    assert "sqlalchemy" in filtered and ">pytest<" not in filtered
    compare = client.get(f"/compare?a={ids['run_a']}&b={ids['run_b']}").text
    assert "Europe/Paris" in compare and "different" in compare
    verified = client.get(f"/products/{ids['model']}/verify").text
    assert "verified" in verified and "content" in verified


def test_lineage_page_lists_nodes_and_edges_without_javascript(site):
    _, ids, client = site
    page = client.get(f"/lineage/{ids['hostile']}?depth=all").text
    edges = set(re.findall(r'data-parent="([0-9a-f]+)" data-child="([0-9a-f]+)"', page))
    assert edges == {(ids["model"], ids["hostile"]), (ids["clean"], ids["model"]),
                     (ids["raw"], ids["clean"])}  # fmt: skip
    one = client.get(f"/lineage/{ids['hostile']}?depth=1").text
    assert ids["clean"] not in one.split('id="nodes"')[1]


def test_search_box_takes_every_reference_form(site, tmp_path):
    _, ids, client = site
    for query, target in [
        (ids["model"][:8], f"/products/{ids['model']}"),
        ("name:clean-table@1.0", f"/products/{ids['clean']}"),
        (str(tmp_path / "work" / "model.json"), f"/products/{ids['model']}"),
        (ids["run_a"][:10], f"/runs/{ids['run_a']}"),
        (ids["env_a"], f"/environments/{ids['env_a']}"),
    ]:
        answer = client.get("/search", params={"q": query}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == target, query
    missing = client.get("/search", params={"q": "name:no-such"})
    assert missing.status_code == 404 and "no-such" in missing.text


def test_every_user_string_is_escaped(site):
    _, ids, client = site
    pages = [
        "/runs", f"/runs/{ids['run_b']}", f"/products/{ids['hostile']}",
        f"/products/{ids['clean']}", f"/products/{ids['odd']}", f"/lineage/{ids['hostile']}",
        f"/search?q=name:{HOSTILE_NAME}", "/products",
    ]  # fmt: skip
    for path in pages:
        text = client.get(path).text
        assert HOSTILE_NAME not in text and "<b>bold" not in text and "<b> 'q'" not in text, path
    product = client.get(f"/products/{ids['hostile']}").text
    assert "&lt;script&gt;alert(" in product and HOSTILE_NAME in html.unescape(product)
    clean = client.get(f"/products/{ids['clean']}").text
    assert "{{ 7*7 }}" in html.unescape(clean) and ">49<" not in clean
    odd = client.get(f"/products/{ids['odd']}").text
    assert HOSTILE_PATH_NAME in html.unescape(odd) and "&lt;b&gt;" in odd


def test_headers_forbid_inline_scripts_and_pages_have_none(site):
    _, ids, client = site
    for path in ["/runs", f"/lineage/{ids['model']}", f"/environments/{ids['env_a']}",
                 "/static/provstore.js", "/api/log", "/nowhere"]:  # fmt: skip
        answer = client.get(path)
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text), path
        assert not re.search(r"\son[a-z]+=", answer.text) or path.endswith(".js"), path
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP


def test_redacted_values_are_never_sent(site):
    _, ids, client = site
    seen = "".join(
        client.get(path).text
        for path in [f"/runs/{ids['run_a']}", f"/environments/{ids['env_a']}",
                     f"/api/show/{ids['run_a']}", f"/compare?a={ids['run_a']}&b={ids['run_b']}"]
    )  # fmt: skip
    assert "MY_SERVICE_TOKEN" in seen and "redacted" in seen
    assert "hunter2" not in seen


def test_read_only_methods_and_store_unchanged(site):
    url, ids, client = site
    before = cli_json(url, "stats", "--json")
    assert client.post("/runs").status_code == 405
    assert client.delete(f"/products/{ids['model']}").status_code == 405
    for path in [f"/products/{ids['model']}/verify", f"/api/verify/{ids['clean']}", "/runs"]:
        client.get(path)
    assert cli_json(url, "stats", "--json") == before


# --- the token -----------------------------------------------------------------------------------


def test_token_is_checked_on_every_request(sqlite_url, tmp_path):
    build(sqlite_url, tmp_path / "work")
    with open_store(sqlite_url, create=False) as store:
        client = TestClient(create_app(store, token="s3cret-token"))
        for path in ["/runs", "/api/log", "/static/provstore.js"]:
            assert client.get(path).status_code == 401
        assert client.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/runs?token=wrong").status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/log", headers=good).status_code == 200
        visit = client.get("/runs?status=succeeded&token=s3cret-token", follow_redirects=False)
        assert visit.status_code == 303 and visit.headers["location"] == "/runs?status=succeeded"
        assert COOKIE in client.cookies and "s3cret-token" not in visit.headers["set-cookie"]
        assert client.get("/runs").status_code == 200  # the session cookie now
        client.cookies.clear()
        assert client.get("/runs").status_code == 401


def test_serve_refuses_a_public_host_without_token(sqlite_url):
    result = CliRunner().invoke(main, ["--url", sqlite_url, "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.stderr


def test_serve_help_is_there():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "PROVSTORE_SERVE_TOKEN" in result.output


# --- every backend -------------------------------------------------------------------------------


def test_pages_render_on_every_backend(backend_url, tmp_path):
    ids = build(backend_url, tmp_path / "work")
    with open_store(backend_url, create=False) as store:
        client = TestClient(create_app(store))
        for path in ["/runs", f"/runs/{ids['run_a']}", f"/products/{ids['clean']}",
                     f"/lineage/{ids['hostile']}", f"/environments/{ids['env_a']}",
                     f"/compare?a={ids['run_a']}&b={ids['run_b']}", "/products"]:  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
        assert api_json(client, f"/api/lineage/{ids['hostile']}") == cli_json(
            backend_url, "lineage", ids["hostile"], "--format", "json"
        )


# --- the node budget -----------------------------------------------------------------------------


def _fan(width: int, levels: int) -> Lineage:
    """A root with ``width`` parents per level for ``levels`` levels, each level fully linked
    to the next through one hub."""
    root = bytes(32)
    depths = {root: 0}
    edges = []
    previous = [root]
    for level in range(1, levels + 1):
        current = [
            level.to_bytes(2, "big") + i.to_bytes(4, "big") + bytes(26) for i in range(width)
        ]
        for node in current:
            depths[node] = level
            edges.append((previous[0], node))
        previous = current
    return Lineage(root, "ancestors", depths, tuple(sorted(edges)))


def test_budget_folds_far_levels_into_groups():
    lineage = _fan(500, 4)  # 2,001 products
    names = {d: f"part-{d[1] % 3}" for d in lineage.depths}
    graph = budgeted(lineage, names, budget=300)
    groups = [n for n in graph.nodes if n.get("group")]
    assert graph.total == 2001 and len(graph.nodes) < 320
    assert sum(n["count"] for n in graph.nodes) == 2001
    assert groups and all(n["depth"] >= 1 for n in groups)
    ids = {n["id"] for n in graph.nodes}
    assert all(p in ids and c in ids for p, c in graph.edges)
    small = budgeted(_fan(3, 2), {}, budget=300)
    assert len(small.nodes) == 7 and not any(n.get("group") for n in small.nodes)


def test_a_group_says_how_to_open_it():
    lineage = _fan(500, 4)  # levels of 1, 500, 500, 500, 500 products
    names = {d: f"part-{d[1] % 3}" for d in lineage.depths}
    names[lineage.root] = "root"
    graph = budgeted(lineage, names, budget=300)
    first = [n for n in graph.nodes if n.get("group") and n["depth"] == 1]
    assert first and all(n["search"] == n["label"] for n in first)
    assert {n["unfold"] for n in first} == {501}  # the root and level 1 drawn one by one
    unfolded = budgeted(lineage, names, budget=501)
    assert not [n for n in unfolded.nodes if n.get("group") and n["depth"] == 1]
    far = [n for n in graph.nodes if n.get("group") and n["depth"] >= 2]
    assert far and not any("unfold" in n for n in far)  # 1,001+ nodes: beyond the cap
    many = {d: f"name-{d.hex()}" for d in lineage.depths}  # too many names: a level group
    [level] = [n for n in budgeted(lineage, many, budget=300).nodes if n["depth"] == 1]
    assert level["unfold"] == 501 and "search" not in level
    globbed = budgeted(lineage, dict.fromkeys(lineage.depths, "runs*"), budget=1)
    assert not any("search" in n for n in globbed.nodes)
