"""What a check says: one :class:`Check` per question, gathered into a :class:`Report`.

Statuses: ``ok`` and ``skipped`` pass; ``failed``, ``missing`` and ``unavailable`` fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PASSING", "Check", "Report"]

PASSING = ("ok", "skipped")


@dataclass(frozen=True, slots=True)
class Check:
    """One line of a report."""

    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether this check lets the whole verification pass."""
        return self.status in PASSING


@dataclass(frozen=True, slots=True)
class Report:
    """Every check on one object."""

    digest: str
    kind: str
    checks: tuple[Check, ...]

    def adding(self, check: Check) -> Report:
        """A copy of the report with one more check at the end."""
        return Report(self.digest, self.kind, (*self.checks, check))

    @property
    def ok(self) -> bool:
        """True when every check passed (exit code 0)."""
        return all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "digest": self.digest,
            "kind": self.kind,
            "ok": self.ok,
            "checks": [
                {"check": c.name, "status": c.status, "message": c.message, **c.details}
                for c in self.checks
            ],
        }
