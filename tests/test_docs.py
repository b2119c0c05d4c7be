"""The documentation: it builds without warnings, its tutorial and README run, its reference is
complete.

The build is ``sphinx-build -W --keep-going -b html docs OUT`` (``nox -s docs`` runs the same),
once per test module; the reference checks read the ``objects.inv`` inventory it writes.

How ``docs/tutorial.rst`` is run (``test_tutorial_runs``), in document order, in an empty
directory, by one ``bash`` process, so shell variables carry from one command to the next:

* a ``.. code-block::`` with a ``:caption:`` is a file: its content is written to the path the
  caption names, relative to the working directory;
* a ``.. code-block:: console`` holds commands: each line starting with ``$ `` is one (a line
  ending in a backslash continues on the next), and the lines after it, up to the next
  command, are its expected output: stdout and stderr together must match them, with ``...``
  standing for any text, and runs of whitespace compared as one (doctest's ``ELLIPSIS`` and
  ``NORMALIZE_WHITESPACE``). A command with no lines after it is not checked for output;
* a command must exit 0, unless it ends with a ``# exit N`` comment: then it must exit N;
* a console block with ``:class: not-run`` is not run; it may only hold ``pip install``
  commands (installing is the one step the test cannot repeat);
* any other literal block makes the test fail, so nothing in the tutorial escapes it.

``README.rst`` is run the same way (``test_readme_runs``), but GitHub and PyPI render it with
plain docutils, which has no ``:caption:``, so a comment right before a block says what it is:

* ``.. replay: file PATH``: the block is a file, written to ``PATH`` (the Quick Start's
  Python code, which the commands after it run);
* ``.. replay: skip REASON``: the block is not run, for the reason given. Only the install
  commands, the scripts that work on the checkout itself (``scripts/demo.sh``, which
  ``tests/test_example.py`` runs, ``scripts/test.sh``, ``.venv``), the development tools and
  the ``[tool.provstore]`` example may be skipped (``README_NOT_RUN``);
* console blocks with no marker are run; any other block without one makes the test fail.

The environment is the test's (``conftest.isolated_env`` keeps the user's store and cache out
of reach) with the venv's ``bin`` first on ``PATH``, ``PROVSTORE_URL`` at a new SQLite file
(the tutorial exports its own, in the working directory) and no ``PYTHONPATH``.
"""

from __future__ import annotations

import doctest
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

import provstore
from provstore.capture import process as capture
from provstore.capture import redact, secret_shapes
from provstore.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorial.rst"
README = ROOT / "README.rst"
CONCEPTS = DOCS / "concepts.rst"
BUILD_TIMEOUT = 300
REPLAY_TIMEOUT = 600

try:
    import sphinx  # noqa: F401
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise  # CI installs the docs extra (scripts/test.sh); a missing one is a failure there
    pytest.skip(
        "the docs extra is not installed: pip install -e '.[docs]'", allow_module_level=True
    )


# --- the build -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    out: Path
    returncode: int
    log: str


def sphinx_build(source: Path, out: Path) -> Build:
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        str(source),
        str(out),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT)
    log = proc.stdout + proc.stderr
    return Build(out, proc.returncode, log)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return sphinx_build(DOCS, tmp_path_factory.mktemp("docs-html"))


def inventory(build: Build) -> dict[str, set[str]]:
    """Object name -> roles, from the ``objects.inv`` the build wrote (format version 2)."""
    assert build.returncode == 0, build.log
    raw = (build.out / "objects.inv").read_bytes()
    header, _, body = raw.partition(b"zlib.\n")
    assert b"# Sphinx inventory version 2" in header
    found: dict[str, set[str]] = {}
    for line in zlib.decompress(body).decode("utf-8").splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s", line)
        if match:
            found.setdefault(match.group(1), set()).add(match.group(2))
    return found


def test_docs_build_without_warnings(built: Build) -> None:
    assert built.returncode == 0, f"sphinx-build -W failed:\n{built.log}"
    pages = [p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.rst")]
    assert len(pages) >= 10
    missing = [str(page) for page in pages if not (built.out / f"{page}.html").is_file()]
    assert not missing, missing


def test_benchmarks_page_is_in_the_toctree(built: Build) -> None:
    # -W would fail on a page left out of every toctree; make sure it is this page's link.
    index = (built.out / "index.html").read_text(encoding="utf-8")
    assert 'href="benchmarks.html"' in index


def test_a_missing_benchmark_plot_does_not_break_the_build(tmp_path: Path) -> None:
    # The generated benchmarks page may point at _static/benchmarks.png; a checkout without
    # the picture must still build with -W.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source / "conf.py")
    (source / "index.rst").write_text(
        "Benchmarks\n==========\n\n.. image:: _static/benchmarks.png\n   :alt: plot\n"
    )
    result = sphinx_build(source, tmp_path / "out")
    assert result.returncode == 0, result.log


# --- the reference is complete -------------------------------------------------------------


def public_members(cls: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    )


def test_every_public_name_is_in_the_api_reference(built: Build) -> None:
    names = inventory(built)
    missing = [name for name in provstore.__all__ if f"provstore.{name}" not in names]
    assert not missing, f"in provstore.__all__ but not in docs/api.rst: {missing}"


@pytest.mark.parametrize("name", ["Store", "Tracker"])
def test_every_store_and_tracker_method_is_in_the_api_reference(built: Build, name: str) -> None:
    names = inventory(built)
    cls = getattr(provstore, name)
    missing = [m for m in public_members(cls) if f"provstore.{name}.{m}" not in names]
    assert not missing, f"{name} members missing from docs/api.rst: {missing}"


def test_the_facade_names_the_functions_not_their_modules(built: Build) -> None:
    roles = inventory(built)
    assert "py:function" in roles["provstore.tracker"]
    assert "py:function" in roles["provstore.open_store"]


def click_commands(
    command: click.Command, path: tuple[str, ...] = ("provstore",)
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from click_commands(sub, (*path, name))


def test_every_command_and_option_is_in_the_cli_reference(built: Build) -> None:
    names = inventory(built)
    page = (built.out / "cli.html").read_text(encoding="utf-8")
    missing = []
    for path, command in click_commands(cli_main):
        program = "-".join(path)
        if f'<section id="{program}"' not in page:
            missing.append(" ".join(path))
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if isinstance(param, click.Option):
                spellings = [*param.opts, *param.secondary_opts]
            else:
                spellings = [param.human_readable_name]
            missing += [
                f"{' '.join(path)} {s}" for s in spellings if f"{program}.{s}" not in names
            ]
    assert not missing, f"missing from the CLI reference (docs/cli.rst): {missing}"


# --- concepts: the examples and lists are the code's -------------------------------------


def test_concepts_examples_run() -> None:
    result = doctest.testfile(
        str(CONCEPTS), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert result.attempted >= 10
    assert result.failed == 0


def test_every_digest_printed_in_concepts_is_checked() -> None:
    text = CONCEPTS.read_text(encoding="utf-8")
    examples = doctest.DocTestParser().get_examples(text)
    checked = " ".join(example.want for example in examples)
    printed = set(re.findall(r"\b[0-9a-f]{64}\b", text))
    assert printed, "concepts.rst should show worked digest examples"
    unchecked = sorted(d for d in printed if d not in checked)
    assert not unchecked, f"digests in concepts.rst that no example produces: {unchecked}"


def test_the_framing_example_is_the_pinned_golden_vector() -> None:
    text = CONCEPTS.read_text(encoding="utf-8")
    assert "product 1 1\\x00\\x80" in text
    assert "479f8706e50025f03f87500bae6f9cfb8b5cff610ecceb8a5f4024dd886cdfe1" in text


@pytest.mark.parametrize(
    "patterns",
    [
        capture.DEFAULT_ENV_ALLOW,
        capture.DEFAULT_ENV_DENY,
        redact.DEFAULT_SECRET_NAMES,
        tuple(shape.name for shape in secret_shapes.VALUE_SHAPES),
        tuple(rule.name for rule in secret_shapes.OPTION_RULES),
        tuple(p for rule in secret_shapes.OPTION_RULES for p in rule.programs + rule.options),
    ],
    ids=["env-allow", "env-deny", "secret-names", "secret-values", "option-rules", "programs"],
)
def test_concepts_lists_every_default_pattern(patterns: tuple[str, ...]) -> None:
    text = CONCEPTS.read_text(encoding="utf-8")
    missing = [p for p in patterns if f"``{p}``" not in text]
    assert not missing, f"docs/concepts.rst does not list {missing}"


def test_readme_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    linked = set(re.findall(r"docs/[\w/.-]+\.rst", readme))
    assert linked, "README.rst should link into docs/"
    assert all((ROOT / path).is_file() for path in linked), linked


# --- the tutorial runs ---------------------------------------------------------------------

DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?P<name>[\w:-]+)::\s*(?P<arg>.*)$")
OPTION = re.compile(r"^\s+:(?P<key>[\w-]+):\s*(?P<value>.*)$")
EXPECTED_EXIT = re.compile(r"\s#\s*exit\s+(?P<code>\d+)\s*$")
INSTALL = re.compile(r"^(python -m )?pip install\b")
MARKER = re.compile(r"^\.\. replay:\s*(?P<text>.*?)\s*$")


@dataclass
class Block:
    line: int
    language: str
    options: dict[str, str]
    text: str
    marker: str = ""  # the text of a `.. replay:` comment right before the block


@dataclass
class Skip:
    """A block a page marks ``.. replay: skip REASON``."""

    line: int
    language: str
    reason: str
    commands: list[str]


@dataclass
class Step:
    line: int
    command: str = ""
    expected: list[str] = field(default_factory=list)
    file: tuple[str, str] | None = None  # (path, content)

    @property
    def exit_code(self) -> int:
        match = EXPECTED_EXIT.search(self.command)
        return int(match.group("code")) if match else 0


def literal_blocks(text: str) -> Iterator[Block]:
    """Every code block of a reStructuredText page; anything else literal is an error.

    A ``.. replay: ...`` comment is kept with the code block right after it (blank lines may
    come between); anything else between them is an error, so a marker cannot drift.
    """
    lines = text.splitlines()
    index = 0
    marker: tuple[int, str] | None = None
    while index < len(lines):
        line = lines[index]
        match = DIRECTIVE.match(line)
        if match and match.group("name") in ("code", "sourcecode", "literalinclude"):
            raise AssertionError(f"line {index + 1}: use `.. code-block::` on a replayed page")
        if not match and line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            raise AssertionError(
                f"line {index + 1}: a `::` literal block is not run; use "
                "`.. code-block::` with a :caption: or console"
            )
        if marked := MARKER.match(line):
            assert marker is None, f"line {marker[0] + 1}: a replay marker without its block"
            marker = (index, marked.group("text"))
            index += 1
        elif match and match.group("name") == "code-block":
            block, index = read_block(lines, index, match, marker[1] if marker else "")
            marker = None
            yield block
        else:
            assert marker is None or not line.strip(), (
                f"line {marker[0] + 1}: a replay marker must come right before its code block"
            )
            index += 1
    assert marker is None, f"line {marker[0] + 1}: a replay marker without its block"


def read_block(
    lines: list[str], index: int, directive: re.Match[str], marker: str
) -> tuple[Block, int]:
    """The code block whose directive is ``lines[index]``, and the index of the line after it."""
    indent = len(directive.group("indent"))
    index += 1
    options: dict[str, str] = {}
    while index < len(lines) and (opt := OPTION.match(lines[index])):
        options[opt.group("key")] = opt.group("value").strip()
        index += 1
    while index < len(lines) and not lines[index].strip():
        index += 1
    start = index + 1  # the line number of the block's first line
    body: list[str] = []
    while index < len(lines):
        current = lines[index]
        if current.strip() and len(current) - len(current.lstrip()) <= indent:
            break
        body.append(current)
        index += 1
    text = textwrap.dedent("\n".join(body)).rstrip("\n") + "\n"
    return Block(start, directive.group("arg").strip(), options, text, marker), index


def console_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    continued = False
    for offset, line in enumerate(block.text.splitlines()):
        if continued:
            steps[-1].command += "\n" + line
        elif line.startswith("$ "):
            steps.append(Step(block.line + offset, command=line[2:]))
        elif steps:
            steps[-1].expected.append(line)
        elif line.strip():
            raise AssertionError(f"line {block.line}: console block output before any `$ `")
        continued = (continued or line.startswith("$ ")) and line.endswith("\\")
    return steps


def tutorial_steps(text: str) -> tuple[list[Step], list[str]]:
    """The steps to run, in order, and the commands left out (``:class: not-run``)."""
    steps: list[Step] = []
    skipped: list[str] = []
    for block in literal_blocks(text):
        assert not block.marker, (
            f"tutorial line {block.line}: the tutorial says what a block is with :caption: "
            "and :class: not-run (Sphinx shows the caption); `.. replay:` is for README.rst"
        )
        caption = block.options.get("caption")
        if caption:
            assert not caption.startswith("/") and ".." not in caption.split("/"), caption
            steps.append(Step(block.line, file=(caption, block.text)))
        elif block.language == "console":
            commands = console_steps(block)
            if "not-run" in block.options.get("class", "").split():
                bad = [s.command for s in commands if not INSTALL.match(s.command)]
                assert not bad, f"line {block.line}: only pip install may be left out: {bad}"
                skipped += [s.command for s in commands]
            else:
                steps += commands
        else:
            raise AssertionError(
                f"tutorial line {block.line}: a {block.language} block without a :caption: "
                "is neither a file nor commands, so the test cannot run it"
            )
    return steps, skipped


def bash_script(steps: list[Step], workdir: Path, staged: Path, results: Path) -> str:
    """The script that replays ``steps`` in ``workdir``; each file's content is staged first.

    Step N leaves its output in ``results/N.out`` and its exit code in ``results/N.rc``; the
    script stops at the first unexpected exit code.
    """
    parts = ["cd " + shlex.quote(str(workdir))]
    for number, step in enumerate(steps):
        if step.file is not None:
            source = staged / str(number)
            source.write_text(step.file[1], encoding="utf-8")
            target = shlex.quote(step.file[0])
            parts.append(
                f'mkdir -p "$(dirname {target})" && cp {shlex.quote(str(source))} '
                f"{target} || exit 0"
            )
            continue
        out = shlex.quote(str(results / f"{number}.out"))
        rc = shlex.quote(str(results / f"{number}.rc"))
        parts.append(
            f"{{\n{step.command}\n}} >{out} 2>&1 </dev/null\n"
            f"__rc=$?\necho $__rc >{rc}\n"
            f"[ $__rc -eq {step.exit_code} ] || exit 0"
        )
    return "\n".join(parts) + "\n"


def test_the_tutorial_has_the_promised_steps() -> None:
    steps, skipped = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    commands = "\n".join(s.command for s in steps)
    assert skipped and all(INSTALL.match(c) for c in skipped)
    for needed in (
        "provstore run ",
        "python summarize.py",
        "provstore lineage",
        "provstore verify",
        "provstore diff",
        "provstore export",
        "import summary.psb",
        "provstore why summary.json",
        "provstore status",
        "provstore products",
        "name:summary",
    ):
        assert needed in commands, needed
    assert any(s.exit_code == 1 and "verify" in s.command for s in steps)
    assert any(s.exit_code == 1 and "provstore why" in s.command for s in steps)
    assert any(s.file and s.file[0].endswith(".py") for s in steps)


def replay(page: str, steps: list[Step], tmp_path: Path) -> None:
    """Run ``steps`` in a new directory against a new store; fail where ``page`` is wrong."""
    workdir, staged, results = tmp_path / "work", tmp_path / "staged", tmp_path / "results"
    for directory in (workdir, staged, results):
        directory.mkdir()
    script = tmp_path / "replay.sh"
    script.write_text(bash_script(steps, workdir, staged, results), encoding="utf-8")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PROVSTORE_URL"] = f"sqlite:///{tmp_path / 'fresh-store.db'}"
    proc = subprocess.run(
        ["bash", str(script)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for number, step in enumerate(steps):
        if step.file is not None:
            continue
        where = f"{page} line {step.line}: $ {step.command}"
        rc_file = results / f"{number}.rc"
        assert rc_file.exists(), f"{where}\nwas not reached"
        output = (results / f"{number}.out").read_text(encoding="utf-8", errors="replace")
        code = int(rc_file.read_text())
        assert code == step.exit_code, (
            f"{where}\nexited {code}, {page} says {step.exit_code}; output:\n{output}"
        )
        want = "\n".join(step.expected).strip("\n")
        if want:
            assert checker.check_output(want + "\n", output, flags), (
                f"{where}\nprinted:\n{output}\n{page} shows:\n{want}"
            )


def test_tutorial_runs(tmp_path: Path) -> None:
    steps, _ = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    replay("docs/tutorial.rst", steps, tmp_path)


# --- the README runs -----------------------------------------------------------------------

# The Quick Start of data_product_tracker's README, below its import; README.rst keeps it.
SEED_QUICK_START = """\
# Track a data product execution
with tracker() as t:
    # Your data processing code here
    data = process_data()

    # Register the data product
    product_id = t.register_data_product(
        name="analysis_results",
        version="1.0.0",
        metadata={"format": "parquet", "rows": len(data)}
    )
"""
# The commands README.rst may leave out, and why: installing changes the environment the
# suite runs in; scripts/ and .venv belong to the checkout (tests/test_example.py runs
# demo.sh); the rest is the development tooling itself.
README_NOT_RUN = re.compile(
    r"^(pip install |bash scripts/|source \.venv/|nox |python -m benchmarks )"
)


def readme_steps(text: str) -> tuple[list[Step], list[Skip]]:
    """The steps to run, in order, and the blocks marked ``.. replay: skip REASON``."""
    steps: list[Step] = []
    skipped: list[Skip] = []
    for block in literal_blocks(text):
        where = f"README.rst line {block.line}"
        verb, _, argument = block.marker.partition(" ")
        if verb == "file":
            assert argument and not argument.startswith("/"), f"{where}: `file PATH`"
            assert ".." not in argument.split("/"), f"{where}: {argument}"
            steps.append(Step(block.line, file=(argument, block.text)))
        elif verb == "skip":
            assert argument, f"{where}: say why it is not run: `.. replay: skip REASON`"
            commands = console_steps(block) if block.language == "console" else []
            skipped.append(
                Skip(block.line, block.language, argument, [s.command for s in commands])
            )
        elif verb:
            raise AssertionError(f"{where}: unknown marker `.. replay: {block.marker}`")
        elif block.language == "console":
            steps += console_steps(block)
        else:
            raise AssertionError(
                f"{where}: a {block.language} block must be marked `.. replay: file PATH` "
                "(written there, for the commands after it) or `.. replay: skip REASON`"
            )
    return steps, skipped


def test_a_replay_marker_belongs_to_the_block_right_after_it() -> None:
    page = (
        ".. replay: file a.py\n\n.. code-block:: python\n\n   print(1)\n\n"
        ".. code-block:: console\n\n   $ python a.py\n   1\n"
    )
    steps, skipped = readme_steps(page)
    assert steps[0].file == ("a.py", "print(1)\n")
    assert (steps[1].command, steps[1].expected) == ("python a.py", ["1"])
    assert skipped == []
    with pytest.raises(AssertionError, match="right before its code block"):
        readme_steps(".. replay: skip no reason to run\n\nA paragraph.\n\n" + page)
    with pytest.raises(AssertionError, match="must be marked"):
        readme_steps(".. code-block:: python\n\n   print(1)\n")
    with pytest.raises(AssertionError, match="say why"):
        readme_steps(".. replay: skip\n\n.. code-block:: console\n\n   $ ls\n")


def test_the_readme_has_the_promised_steps() -> None:
    steps, _ = readme_steps(README.read_text(encoding="utf-8"))
    files = {s.file[0]: s.file[1] for s in steps if s.file is not None}
    commands = [s.command.split("#")[0].strip() for s in steps if s.file is None]
    quick_start = files["quickstart.py"]
    assert quick_start.startswith("from provstore import tracker\n")
    assert SEED_QUICK_START in quick_start
    assert quick_start.rstrip().endswith("print(product_id)")
    for needed in (
        "python quickstart.py",
        "provstore log",
        "provstore show name:analysis_results",
        "provstore lineage name:analysis_results",
        "provstore verify name:analysis_results",
        "provstore why mean.txt",
        "provstore status",
    ):
        assert needed in commands, needed
    assert "path=" in files["mean.py"]
    quick_start_step = next(s for s in steps if s.command == "python quickstart.py")
    assert quick_start_step.expected, "the README should show that the Quick Start prints"


def test_the_readme_leaves_out_only_what_it_cannot_run() -> None:
    _, skipped = readme_steps(README.read_text(encoding="utf-8"))
    assert [s.language for s in skipped].count("toml") == 1  # the settings example
    for skip in skipped:
        assert skip.language in ("console", "toml"), skip
        assert len(skip.reason.split()) >= 3, f"README.rst line {skip.line}: say why"
        unexpected = [c for c in skip.commands if not README_NOT_RUN.match(c)]
        assert not unexpected, f"README.rst line {skip.line}: run these: {unexpected}"
    assert len(skipped) <= 5, "keep the README's unrun blocks few"


def test_the_readme_says_how_to_reach_provstore_after_the_demo() -> None:
    text = README.read_text(encoding="utf-8")
    after_demo = text[text.index("bash scripts/demo.sh") :]
    section_end = after_demo.index("\n-----")
    assert "source .venv/bin/activate" in after_demo[:section_end]


def test_the_readme_renders_on_its_own() -> None:
    # GitHub and PyPI render README.rst with plain docutils, which knows no Sphinx options
    # such as :caption: (hence the `.. replay:` markers).
    import docutils.core  # with Sphinx, so only once the module knows the docs extra is there

    messages = io.StringIO()
    docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"),
        source_path=str(README),
        settings_overrides={"warning_stream": messages, "report_level": 2, "halt_level": 5},
    )
    assert messages.getvalue() == ""


def test_readme_runs(tmp_path: Path) -> None:
    steps, _ = readme_steps(README.read_text(encoding="utf-8"))
    replay("README.rst", steps, tmp_path)
