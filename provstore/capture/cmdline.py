"""Redact a command line: secret options by name and by program, ``NAME=VALUE`` and setters.

One walk over the words, remembering which program they belong to (``sshpass -p X ssh -p 22``
switches from sshpass's ``-p``, a password, to ssh's, a port). The text of every word also
goes through the value patterns and the known secret values (the ``text`` callable the
:class:`~provstore.capture.redact.Redactor` passes in). Returns the redacted words and the
secret values removed, so that the caller can scrub them from everything else it writes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from provstore.capture.secret_shapes import (
    MIN_SECRET_LENGTH,
    NOT_SECRET_OPTION,
    OPTION_RULES,
    PROGRAMS,
    REDACTED,
    SETTER_WORDS,
    OptionRule,
)

__all__ = ["redact_words"]

_RULES: dict[str, tuple[OptionRule, ...]] = {
    program: tuple(rule for rule in OPTION_RULES if program in rule.programs)
    for program in {p for rule in OPTION_RULES for p in rule.programs}
}
_NON_WORD = r"[^A-Za-z0-9]"
# NAME=VALUE at the start of a word or after a separator (`env A=1`, `--set-env-vars=A=1,B=2`).
_ASSIGNMENT = r"(?:^|(?<=[\s,;&?=:]))([A-Za-z_][A-Za-z0-9_.\-]*)=([^\s,;&]*)"


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: importing this module must cost next to nothing."""
    return re.compile(pattern)


def redact_words(
    argv: Sequence[str], is_secret_name: Callable[[str], bool], text: Callable[[str], str]
) -> tuple[list[str], list[str]]:
    """Return ``argv`` with its secrets replaced, and the secret values it removed.

    ``is_secret_name`` judges names (options, setters, assignments); ``text`` redacts a
    word's own text (value patterns, known secret values).
    """
    walk = _Walk(is_secret_name, text)
    for arg in argv:
        walk.word(arg)
    return walk.out, walk.removed


def _program(arg: str) -> str:
    base = arg.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return base[:-4] if base.endswith(".exe") else base


class _Walk:
    """The state of one walk over a command line."""

    __slots__ = ("is_secret_name", "out", "pending", "program", "removed", "strict", "text",
                 "words")  # fmt: skip

    def __init__(self, is_secret_name: Callable[[str], bool], text: Callable[[str], str]) -> None:
        self.is_secret_name = is_secret_name
        self.text = text
        self.out: list[str] = []
        self.removed: list[str] = []
        self.program = ""
        self.words: set[str] = set()  # the positional words since the program
        self.pending: str | None = None  # the next word is secret: its "value" or "password"
        self.strict = True  # the pending value may start with "-" (it follows an option)

    def word(self, arg: str) -> None:
        if self.pending is not None and (self.strict or not arg.startswith("-")):
            part, self.pending = self.pending, None
            self.out.append(self._hide(arg, part))
            return
        self.pending = None
        if arg.startswith("-") and arg not in ("-", "--"):
            new = self._option(arg)
        else:
            new = self._positional(arg)
        if " " in arg or "\t" in arg or "\n" in arg:
            new = self._nested(arg, new)
        self.out.append(new)

    def _nested(self, arg: str, new: str) -> str:
        """A command line inside one word (``bash -c "mysql -pX"``), walked as its own."""
        import shlex  # rarely needed; keeps this module's import cheap

        try:
            words = shlex.split(arg)
        except ValueError:  # unbalanced quotes
            words = arg.split()
        if len(words) < 2:
            return new
        _, removed = redact_words(words, self.is_secret_name, self.text)
        for value in sorted(set(removed), key=len, reverse=True):
            self.removed.append(value)
            if len(value) >= MIN_SECRET_LENGTH:
                new = new.replace(value, REDACTED)
            else:  # a short value only where it stands alone (`--pin 42`, not in `420`)
                alone = rf"(?<![^\s'\"=:]){re.escape(value)}(?![^\s'\"])"
                new = re.sub(alone, REDACTED, new)
        return new

    def _secret(self, name: str) -> bool:
        key = _regex(_NON_WORD).sub("_", name).upper()
        return self.is_secret_name(key) and _regex(NOT_SECRET_OPTION).search(key) is None

    def _hide(self, value: str, part: str) -> str:
        if part == "password":
            user, colon, secret = value.partition(":")
            if not colon or not secret:
                return self.text(value)
            value, prefix = secret, f"{user}:"
        else:
            prefix = ""
        if not value or value == REDACTED:
            return prefix + value
        self.removed.append(value)
        return prefix + REDACTED

    def _rule(self, option: str) -> OptionRule | None:
        for rule in _RULES.get(self.program, ()):
            if option in rule.options and (not rule.after or self.words.intersection(rule.after)):
                return rule
        return None

    def _expect(self, part: str, *, strict: bool = True) -> None:
        self.pending, self.strict = part, strict

    def _option(self, arg: str) -> str:
        rule = self._rule(arg)
        if rule is not None:
            self._expect(rule.part)
            return self.text(arg)
        head, eq, value = arg.partition("=")
        if eq and arg.startswith("--") and (rule := self._rule(head)) is not None:
            return f"{head}={self._hide(value, rule.part)}"
        if len(arg) > 2 and arg[1] != "-" and (rule := self._rule(arg[:2])) is not None:
            return arg[:2] + self._hide(arg[2:], rule.part)
        if self._secret(head.lstrip("-")):
            if eq:
                return f"{head}={self._hide(value, 'value')}"
            self._expect("value")
            return self.text(arg)
        return self._assignments(self.text(arg))

    def _positional(self, arg: str) -> str:
        if _program(arg) in PROGRAMS:
            self.program, self.words = _program(arg), set()
            return self.text(arg)
        if "=" not in arg and self.words & SETTER_WORDS and self._secret(arg):
            self._expect("value", strict=False)  # `set NAME VALUE`; an option is no value
        self.words.add(arg)
        return self._assignments(self.text(arg))

    def _assignments(self, arg: str) -> str:
        """Redact the value of every ``NAME=VALUE`` in ``arg`` whose NAME is secret."""
        if "=" not in arg:
            return arg

        def replace(match: re.Match[str]) -> str:
            name, value = match.group(1), match.group(2)
            if not value or not self._secret(name):
                return match.group(0)
            return f"{name}={self._hide(value, 'value')}"

        return _regex(_ASSIGNMENT).sub(replace, arg)
