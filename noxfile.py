"""Developer sessions: `nox` runs tests, lint and typecheck; `nox -s tests -- -k lineage`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_venv = "yes"

LINT_PATHS = ["provstore", "tests", "benchmarks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("bash", "scripts/start-test-databases.sh", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    # mypy needs provstore's dependencies to check the calls into them; settings (strict,
    # packages = ["provstore"]) come from [tool.mypy] in pyproject.toml.
    session.install("-e", ".[openlineage,rocrate,sign]", "mypy>=1.10")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    # Warnings are errors, as in CI (tests/test_docs.py runs the same build); the pages go to
    # build/docs. Arguments are passed to sphinx-build: `nox -s docs -- -E` rebuilds all.
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", *session.posargs, "docs", "build/docs"
    )
