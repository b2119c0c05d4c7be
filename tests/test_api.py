"""The public facade: what `import provstore` promises."""

from __future__ import annotations

import subprocess
import sys

import provstore


def test_all_names_resolve():
    for name in provstore.__all__:
        assert getattr(provstore, name) is not None, name


def test_all_lists_every_public_name():
    import inspect

    # Every class or function defined in provstore and reachable from the package is listed.
    public = {
        n
        for n in dir(provstore)
        if not n.startswith("_")
        and (inspect.isclass(getattr(provstore, n)) or inspect.isfunction(getattr(provstore, n)))
        and getattr(getattr(provstore, n), "__module__", "").startswith("provstore")
    }
    assert public <= set(provstore.__all__)
    assert {"tracker", "open_store", "Store", "ProvstoreError"} <= set(provstore.__all__)


def test_errors_share_one_root():
    for name in provstore.__all__:
        value = getattr(provstore, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, provstore.ProvstoreError), name


def test_import_is_lazy():
    code = "import sys, provstore, provstore.core.encoding; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_optional_exchange_dependencies_are_imported_only_when_used():
    code = (
        "import sys, provstore.cli.main, provstore.tracking.tracker, provstore.api\n"
        "import provstore.exchange.formats\n"
        "print(sorted(m for m in ('cryptography', 'openlineage', 'rocrate', 'rdflib')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tracker_is_the_function_whatever_was_imported_first():
    code = (
        "import provstore.tracking.command, provstore.tracking.tracker\n"
        "from provstore import Tracker\n"
        "from provstore import tracker\n"
        "print(callable(tracker) and tracker.__name__ == 'tracker' and type(tracker).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "function"


def test_tracking_imports_no_unused_database_dialect():
    code = (
        "import sys, provstore.tracking.tracker\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.')"
        " and m.split('.')[2] in ('postgresql', 'mysql', 'mssql', 'oracle')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
