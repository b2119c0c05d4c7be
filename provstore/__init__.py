"""provstore: a content-addressed provenance store.

``with tracker() as t:`` records the environment, the run and every data product it
registers; :func:`open_store` queries what was recorded.

Names are imported on first use, so ``import provstore.core.encoding`` (or a CLI command that needs
no database) does not pay for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = (
    "AmbiguousDigestError", "BundleError", "CheckFailed", "ConfigError", "CorruptObjectError",
    "EncodingError", "FileChangedError", "InvalidDigestError", "InvariantError", "NoStoreError",
    "OutputExistsError", "PathError", "ProvstoreError", "ReadOnlyStoreError",
    "SchemaVersionError", "StoreError", "StoreFullError", "UnknownDigestError",
    "UnknownReferenceError", "UnsupportedStoreError", "UsageError", "WrongKindError",
)  # fmt: skip
_OBJECTS = (
    "CodeState", "CondaSet", "Environment", "ImportSet", "LibrarySet", "Product", "Run",
    "RunEnd", "Sealed", "Variables",
)  # fmt: skip
_HOMES: dict[str, str] = {
    **{name: "provstore.core.errors" for name in _ERRORS},
    **{name: "provstore.core.objects" for name in _OBJECTS},
    **{name: "provstore.store" for name in ("Lineage",)},
    **{
        name: "provstore.db.listing"
        for name in ("ProductFilter", "ProductRow", "RunFilter", "RunSummary")
    },
    **{name: "provstore.api" for name in ("Store", "open_store")},
    **{name: "provstore.tracking.tracker" for name in ("Tracker", "tracker")},
}

__all__ = [
    "AmbiguousDigestError",
    "BundleError",
    "CheckFailed",
    "CodeState",
    "CondaSet",
    "ConfigError",
    "CorruptObjectError",
    "EncodingError",
    "Environment",
    "FileChangedError",
    "ImportSet",
    "InvalidDigestError",
    "InvariantError",
    "LibrarySet",
    "Lineage",
    "NoStoreError",
    "OutputExistsError",
    "PathError",
    "Product",
    "ProductFilter",
    "ProductRow",
    "ProvstoreError",
    "ReadOnlyStoreError",
    "Run",
    "RunEnd",
    "RunFilter",
    "RunSummary",
    "SchemaVersionError",
    "Sealed",
    "Store",
    "StoreError",
    "StoreFullError",
    "Tracker",
    "UnknownDigestError",
    "UnknownReferenceError",
    "UnsupportedStoreError",
    "UsageError",
    "Variables",
    "WrongKindError",
    "__version__",
    "open_store",
    "tracker",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'provstore' has no attribute {name!r}")
    from provstore.capture import imports

    imports.mark_own_start()  # what loading provstore's machinery imports is not the run's
    try:
        value = getattr(importlib.import_module(home), name)
    finally:
        imports.mark_own_end()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from provstore.api import Store, open_store
    from provstore.core.errors import (
        AmbiguousDigestError,
        BundleError,
        CheckFailed,
        ConfigError,
        CorruptObjectError,
        EncodingError,
        FileChangedError,
        InvalidDigestError,
        InvariantError,
        NoStoreError,
        PathError,
        ProvstoreError,
        ReadOnlyStoreError,
        SchemaVersionError,
        StoreError,
        StoreFullError,
        UnknownDigestError,
        UnknownReferenceError,
        UnsupportedStoreError,
        UsageError,
        WrongKindError,
    )
    from provstore.core.objects import (
        CodeState,
        CondaSet,
        Environment,
        ImportSet,
        LibrarySet,
        Product,
        Run,
        RunEnd,
        Sealed,
        Variables,
    )
    from provstore.db.listing import ProductFilter, ProductRow, RunFilter, RunSummary
    from provstore.store import Lineage
    from provstore.tracking.tracker import Tracker, tracker
