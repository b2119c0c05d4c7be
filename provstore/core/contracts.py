"""Contracts (``deal``) on the public API and the pure core, failing as provstore's own errors.

* :func:`requires` — a pre-condition on a caller's arguments.  The validator takes the
  function's own arguments and returns ``True`` or a message saying what is wrong and what to
  give instead; a broken one raises :class:`~provstore.core.errors.UsageError` (CLI exit 2).
* :func:`ensures` / :func:`returns` — a post-condition on what provstore's own code produced
  (from the arguments and the result, or from the result alone); a broken one raises
  :class:`~provstore.core.errors.InvariantError`: a bug in provstore, never the caller's fault.

Contracts run unless Python runs with ``-O`` (deal's rule, as for ``assert``).  Each costs
about half a microsecond a call, so none sits on the per-product registration loop: that
loop uses the unchecked twins (:func:`provstore.core.objects.seal_unchecked`), which the tests
hold equal to the checked functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from provstore.core.errors import InvariantError, UsageError

__all__ = [
    "ensures",
    "is_count",
    "is_digest_ref",
    "is_optional_str",
    "is_path",
    "is_paths",
    "is_refs",
    "requires",
    "returns",
]


def _import_deal() -> ModuleType:
    """``deal``, imported without Pygments when nothing has imported Pygments yet.

    deal imports Pygments, if installed, only to colour a failed validator's source in its
    own messages; provstore's contracts raise provstore's errors with their own messages, so
    that import (~20 ms of every process start) buys nothing.  A ``None`` entry in
    ``sys.modules`` makes deal's ``import pygments`` fail as if it were not installed; the
    entry is removed at once, so a later ``import pygments`` works as usual.
    """
    if "deal" in sys.modules or "pygments" in sys.modules:
        import deal

        return deal
    sys.modules["pygments"] = None  # type: ignore[assignment]
    try:
        import deal
    finally:
        if "pygments" in sys.modules and sys.modules["pygments"] is None:
            del sys.modules["pygments"]
    return deal


if TYPE_CHECKING:
    import deal
else:
    deal = _import_deal()

F = TypeVar("F", bound=Callable[..., Any])
Verdict = bool | str
"""``True`` when the condition holds, else a message that says what is wrong."""


def requires(validator: Callable[..., Verdict]) -> Callable[[F], F]:
    """A pre-condition: ``validator(*args, **kwargs)`` must return True, else UsageError."""
    return deal.pre(validator, exception=UsageError)


def ensures(validator: Callable[..., Verdict]) -> Callable[[F], F]:
    """A post-condition over the arguments and ``result=`` the return value."""
    return deal.ensure(validator, exception=InvariantError)


def returns(validator: Callable[[Any], Verdict]) -> Callable[[F], F]:
    """A post-condition over the return value alone."""
    return deal.post(validator, exception=InvariantError)


def _type_name(value: Any) -> str:
    return type(value).__name__


def is_optional_str(value: Any, what: str, *, empty: bool = True) -> Verdict:
    """``value`` is None or a str (non-empty unless ``empty``)."""
    if value is None or (isinstance(value, str) and (empty or value)):
        return True
    if isinstance(value, str):
        return f"{what} must not be empty"
    return f"{what} must be a str or None, not {_type_name(value)}"


def is_path(value: Any, what: str = "path") -> Verdict:
    """A file path: str or ``os.PathLike`` (a ``pathlib.Path``)."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return True
    return f"{what} must be a non-empty str or os.PathLike, not {value!r}"


def is_paths(values: Any, what: str = "paths") -> Verdict:
    """A list of file paths; one bare string is refused (it would be read letter by letter)."""
    if isinstance(values, (str, bytes, os.PathLike)) or not isinstance(values, Sequence):
        return f"{what} must be a list of paths, not {_type_name(values)} (wrap one in [...])"
    return all_of(*(is_path(value, f"each of {what}") for value in values))


def is_digest_ref(value: Any, what: str = "reference") -> Verdict:
    """A digest given as hex text (or a prefix) or as 32 raw bytes."""
    if isinstance(value, str) or (isinstance(value, bytes) and len(value) == 32):
        return True
    if isinstance(value, bytes):
        return f"{what} must be 32 raw bytes when given as bytes, not {len(value)}"
    return f"{what} must be a hex digest (str) or 32 raw bytes, not {_type_name(value)}"


def is_refs(values: Any, what: str = "references") -> Verdict:
    """A list (or other sequence) of digest references; one bare str is refused.

    A bare string would be iterated one character at a time: a common slip that deserves a
    message rather than six "not a digest" errors.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return f"{what} must be a list of digests, not {_type_name(values)} (wrap one in [...])"
    for value in values:
        verdict = is_digest_ref(value, f"each of {what}")
        if verdict is not True:
            return verdict
    return True


def is_mapping(value: Any, what: str) -> Verdict:
    """None or a mapping (its contents are checked when it is encoded)."""
    if value is None or isinstance(value, Mapping):
        return True
    return f"{what} must be a mapping (dict) or None, not {_type_name(value)}"


def is_count(value: Any, what: str, *, optional: bool = False) -> Verdict:
    """A whole number of at least 0 (or None when ``optional``)."""
    if (optional and value is None) or (type(value) is int and value >= 0):
        return True
    return f"{what} must be a whole number of at least 0, not {value!r}"


def all_of(*verdicts: Verdict) -> Verdict:
    """The first failing verdict, or True."""
    for verdict in verdicts:
        if verdict is not True:
            return verdict
    return True
