"""The secret values redaction has met, kept in memory to scrub them from other text.

A password that stands alone in an exception message, a working directory or another
variable has no shape a pattern could know; knowing its value is the only way to find it.
:class:`Secrets` is never stored, encoded or hashed, and its repr never shows a value.
"""

from __future__ import annotations

from collections.abc import Iterable

from provstore.capture.secret_shapes import MIN_SECRET_LENGTH, REDACTED

__all__ = ["NO_SECRETS", "Secrets"]


class Secrets:
    """Literal secret values met while redacting, longest first; held in memory, never stored.

    Only values of at least :data:`MIN_SECRET_LENGTH` characters are kept (scrubbing every
    ``1`` would destroy text and protect nothing). Immutable; the repr never shows them. (A
    plain class: a dataclass costs more to define than this module's whole import.)
    """

    __slots__ = ("values",)
    values: tuple[str, ...]

    def __init__(self, values: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "values", values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secrets is immutable")

    @classmethod
    def of(cls, candidates: Iterable[str]) -> Secrets:
        """The meaningful values among ``candidates`` (stripped; placeholders left out)."""
        kept = set()
        for value in candidates:
            value = value.strip()
            if len(value) >= MIN_SECRET_LENGTH and REDACTED not in value:
                if value not in REDACTED:
                    kept.add(value)
        return cls(tuple(sorted(kept, key=lambda v: (-len(v), v))))

    def __bool__(self) -> bool:
        return bool(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secrets) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __or__(self, other: Secrets) -> Secrets:
        if not other.values:
            return self
        return Secrets.of(self.values + other.values)

    def __repr__(self) -> str:
        return f"Secrets(<{len(self.values)} values>)"

    def scrub(self, text: str) -> str:
        """``text`` with every known value replaced by :data:`REDACTED`."""
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


NO_SECRETS = Secrets()
"""No secret values: scrubbing with it changes nothing."""
