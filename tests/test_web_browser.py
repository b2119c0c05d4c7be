"""provstore serve in a real browser: Debian's Chromium driven by Playwright.

The server runs as a user runs it (``provstore serve`` in its own process, on a free loopback
port) over a fresh SQLite store holding a small pipeline. The browser is the system's
``/usr/bin/chromium`` (``scripts/test.sh`` installs it); nothing is downloaded at run time.
Set ``PROVSTORE_TEST_SCREENSHOTS=DIR`` to also keep the screenshots there (the docs' come so).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests._webstore import HOSTILE_NAME, HOSTILE_PATH_NAME, build

CHROMIUM = "/usr/bin/chromium"


def _need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def serving(script, url: str, *args: str) -> Iterator[int]:
    """``provstore serve ARGS`` on a free port until the block ends; yields the port."""
    port = _free_port()
    process = subprocess.Popen(
        [script.path, "--url", url, "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    pytest.fail(f"provstore serve did not start: {output}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _keep(shot: Path, name: str) -> None:
    wanted = os.environ.get("PROVSTORE_TEST_SCREENSHOTS")
    if wanted:
        os.makedirs(wanted, exist_ok=True)
        shutil.copyfile(shot, os.path.join(wanted, name))


def test_browse_runs_run_product_lineage_compare_and_back(script, sqlite_url, tmp_path):
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    ids = build(sqlite_url, tmp_path / "work")
    dialogs: list[str] = []
    with serving(script, sqlite_url) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        base = f"http://127.0.0.1:{port}"

        # Runs, newest first: "train" (a Slurm job) above "prepare".
        page.goto(base + "/")
        expect(page.locator("h1")).to_have_text("Runs")
        labels = page.locator("#runs td.label").all_inner_texts()
        assert labels == ["train [slurm 4242]", "prepare"]
        page.locator("#runs tr", has_text="train").locator("a.digest").click()

        # The run: how it ended, its environment, what it made.
        expect(page).to_have_url(f"{base}/runs/{ids['run_b']}")
        expect(page.locator("h1")).to_contain_text("train")
        assert ids["env_b"][:12] in page.locator("dl.fields").inner_text()
        names = page.locator("#products td.label").all_inner_texts()
        assert len(names) == 3 and HOSTILE_NAME in names and "model" in names
        assert any(name.endswith(HOSTILE_PATH_NAME) for name in names)
        page.locator("#products tr", has_text="model").locator("a.digest").click()

        # The product, then its lineage graph laid out by dagre.
        expect(page).to_have_url(f"{base}/products/{ids['model']}")
        expect(page.locator("#product-name")).to_have_text("model 2.0")
        page.get_by_role("link", name="Lineage", exact=True).click()
        expect(page.locator("#graph")).to_have_attribute("data-ready", "true")
        edges = {
            (e.get_attribute("data-parent"), e.get_attribute("data-child"))
            for e in page.locator("#graph path.edge").all()
        }
        assert edges == {(ids["clean"], ids["model"]), (ids["raw"], ids["clean"])}
        assert page.locator("#graph a.node").count() == 3
        shot = tmp_path / "lineage.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        _keep(shot, "serve-lineage.png")

        # A budget of one folds the parents into groups; a group click unfolds its level.
        page.goto(f"{base}/lineage/{ids['model']}?budget=1")
        expect(page.locator("#graph")).to_have_attribute("data-ready", "true")
        assert page.locator("#graph a.node.group").count() == 2
        page.locator("#graph a.node.group", has_text="clean-table").click()
        expect(page).to_have_url(f"{base}/lineage/{ids['model']}?budget=2")
        expect(page.locator("#graph")).to_have_attribute("data-ready", "true")
        assert page.locator(f'#graph a.node[data-id="{ids["clean"]}"]').count() == 1
        assert page.locator("#graph a.node.group").count() == 1

        # Click the parent node: its product page opens.
        page.locator(f'#graph a.node[data-id="{ids["clean"]}"]').click()
        expect(page).to_have_url(f"{base}/products/{ids['clean']}")
        expect(page.locator("#product-name")).to_have_text("clean-table 1.0")

        # Compare the environment behind this product with the train run's.
        page.get_by_role("link", name="Compare environment…").click()
        page.locator("input[name=b]").fill(ids["run_b"])
        page.locator("#compare").click()
        expect(page.locator("#verdict")).to_have_text("different")
        tz = page.locator("table.diff tr", has_text="TZ").inner_text()
        assert "UTC" in tz and "Europe/Paris" in tz
        compare_shot = tmp_path / "compare.png"
        page.screenshot(path=str(compare_shot), full_page=True)
        _keep(compare_shot, "serve-compare.png")

        # Back: the compare form without a result, then the product again.
        page.go_back()
        expect(page).to_have_url(f"{base}/compare?a={ids['clean']}")
        expect(page.locator("#verdict")).to_have_count(0)
        page.go_back()
        expect(page.locator("#product-name")).to_have_text("clean-table 1.0")

        # A product named by a <script> tag is text on its page and in the graph.
        page.goto(f"{base}/lineage/{ids['hostile']}")
        expect(page.locator("#graph")).to_have_attribute("data-ready", "true")
        assert HOSTILE_NAME in (page.locator("#graph svg").text_content() or "")
        page.goto(f"{base}/products/{ids['hostile']}")
        expect(page.locator("#product-name")).to_have_text(HOSTILE_NAME)
        assert page.locator("main script").count() == 0
        assert dialogs == [] and errors == []
        browser.close()


def test_public_bind_needs_the_token(script, sqlite_url, tmp_path):
    build(sqlite_url, tmp_path / "work")
    with serving(script, sqlite_url, "--host", "0.0.0.0", "--token", "tok-123") as port:
        base = f"http://127.0.0.1:{port}"
        assert _status(base + "/runs") == 401
        assert _status(base + "/api/log", {"Authorization": "Bearer nope"}) == 401
        assert _status(base + "/runs", {"Authorization": "Bearer tok-123"}) == 200
        assert _status(base + "/api/log", {"Authorization": "Bearer tok-123"}) == 200
