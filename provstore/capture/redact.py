"""Keep secrets out of storage: redact environment variables, command lines and error text.

Redaction runs *before* anything is hashed or encoded, so neither a secret nor a hash of one
ever reaches a store. Three tests decide what is secret (the tables are in
:mod:`provstore.capture.secret_shapes`):

* the variable's **name** matches one of :data:`DEFAULT_SECRET_NAMES` (case-insensitive
  :mod:`fnmatch` globs); the whole value is replaced by :data:`REDACTED`;
* the **value** contains a well-known credential shape from
  :data:`DEFAULT_SECRET_VALUE_PATTERNS` (regular expressions); only the matching part is
  replaced. A pattern with a named group ``secret`` redacts just that group, which is how
  ``postgresql://bob:hunter2@db/x`` becomes ``postgresql://bob:<redacted>@db/x``;
* on a command line, the **option** carries it (:mod:`provstore.capture.cmdline`).

What was removed is remembered as :class:`Secrets`, in memory only: the literal values are
then scrubbed from every other free-text field written for the run (other variables, argv,
the working directory, the git root, the error text), since a password that stands alone in
an exception message has no shape a pattern could know.

The defaults over-redact where the cost is small (``SSH_AUTH_SOCK``, the value after
``psql --password``, a URL with an ``@`` in its query string may lose part of its path).
Losing a harmless value is cheap; storing a token forever is not. Users extend the names and
value patterns with :meth:`Redactor.extended`.
"""

from __future__ import annotations

import bisect
import fnmatch
import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from provstore.capture.cmdline import redact_words
from provstore.capture.literals import NO_SECRETS, Secrets
from provstore.capture.secret_shapes import DEFAULT_SECRET_NAMES, REDACTED, VALUE_SHAPES
from provstore.core.errors import ConfigError

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "DEFAULT_SECRET_VALUE_PATTERNS",
    "REDACTED",
    "RedactedEnviron",
    "Redactor",
    "Secrets",
]

DEFAULT_SECRET_VALUE_PATTERNS: tuple[str, ...] = tuple(shape.pattern for shape in VALUE_SHAPES)
"""Regular expressions for values that are credentials wherever they appear (the patterns of
:data:`~provstore.capture.secret_shapes.VALUE_SHAPES`)."""

# For each built-in pattern, lower-case literals one of which the lower-cased text holds
# wherever the pattern matches. Substring searches for them (over all variables at once)
# decide which patterns a value needs, which keeps a whole environment well under a
# millisecond and compiles only the patterns some text needs.
_ANCHORS: dict[str, tuple[str, ...]] = {shape.pattern: shape.anchors for shape in VALUE_SHAPES}

_MAX_PASSES = 4  # redaction reaches a fixed point in one or two passes; bound it anyway
_GLOB_CHARS = frozenset("*?[")
_GROUP_NAME = re.compile(r"(?<!\\)\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")
_BACKREF = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


class _Names(NamedTuple):
    """Name globs split by shape: most are ``*WORD*`` or ``*WORD`` and need no regex."""

    contains: re.Pattern[str] | None  # searched in the upper-cased name
    suffixes: tuple[str, ...]
    prefixes: tuple[str, ...]
    exact: frozenset[str]
    general: re.Pattern[str] | None  # any other glob, via fnmatch, case-insensitive

    def matches(self, name: str) -> bool:
        upper = name.upper()
        if upper.endswith(self.suffixes) or upper.startswith(self.prefixes) or upper in self.exact:
            return True
        if self.contains is not None and self.contains.search(upper) is not None:
            return True
        return self.general is not None and self.general.match(name) is not None


class _Values(NamedTuple):
    """Value patterns, and what says cheaply which of them a text may need."""

    sources: tuple[str, ...]  # every pattern, in the order they apply
    by_literal: dict[str, tuple[int, ...]]  # built-in literal -> the patterns it anchors
    user: tuple[int, ...]  # the user's patterns (no literals)
    others: re.Pattern[str] | None  # the user's patterns in one alternation
    loose: tuple[re.Pattern[str], ...]  # the user's patterns that cannot join it

    def present(self, lower: str) -> tuple[str, ...]:
        """The literals that occur in ``lower`` (lower-cased text)."""
        return tuple(literal for literal in self.by_literal if literal in lower)

    def _user_may_match(self, text: str) -> bool:
        if self.others is not None and self.others.search(text) is not None:
            return True
        return any(pattern.search(text) is not None for pattern in self.loose)

    def plan(self, text: str) -> list[re.Pattern[str]]:
        """The patterns that may match ``text``, in the order they apply."""
        lower = text.lower()
        chosen: set[int] = set()
        for literal in self.by_literal:
            if literal in lower:
                chosen.update(self.by_literal[literal])
        if self.user and self._user_may_match(text):
            chosen.update(self.user)
        return [_compiled(self.sources[index]) for index in sorted(chosen)]


@functools.lru_cache(maxsize=32)
def _compile_names(names: tuple[str, ...]) -> _Names:
    contains: list[str] = []
    suffixes: list[str] = []
    prefixes: list[str] = []
    exact: list[str] = []
    general: list[str] = []
    for glob in names:
        if not isinstance(glob, str) or not glob:
            raise ConfigError(f"secret name pattern {glob!r} must be a non-empty string glob")
        head, body, tail = glob[:1] == "*", glob.strip("*").upper(), glob[-1:] == "*"
        if head and tail and (fragment := _class_fragment(body)) is not None:
            contains.append(fragment)  # *WORD[0-9]*: one more branch of the contains search
        elif not body or _GLOB_CHARS & set(body):
            general.append(fnmatch.translate(glob))
        elif head and tail:
            contains.append(re.escape(body))
        elif head:
            suffixes.append(body)
        elif tail:
            prefixes.append(body)
        else:
            exact.append(body)
    return _Names(
        contains=re.compile("|".join(contains)) if contains else None,
        suffixes=tuple(suffixes),
        prefixes=tuple(prefixes),
        exact=frozenset(exact),
        general=re.compile("|".join(general), re.IGNORECASE) if general else None,
    )


_CLASS = re.compile(r"\[!?\]?[^\]]*\]")


def _class_fragment(body: str) -> str | None:
    """A regex for a glob body of literals and ``[...]`` classes (upper-cased); else None."""
    if "[" not in body or "*" in body or "?" in body:
        return None
    parts: list[str] = []
    at = 0
    for match in _CLASS.finditer(body):
        parts.append(re.escape(body[at : match.start()]))
        chars = match.group(0)[1:-1].replace("\\", "\\\\").replace("[", "\\[")
        if chars.startswith("!"):
            chars = "^" + chars[1:]
        elif chars.startswith("^"):
            chars = "\\" + chars
        parts.append(f"[{chars}]")
        at = match.end()
    rest = body[at:]
    if "[" in rest or "]" in rest:
        return None
    parts.append(re.escape(rest))
    return "".join(parts)


@functools.lru_cache(maxsize=32)
def _compile_values(value_patterns: tuple[str, ...]) -> _Values:
    """Built-in patterns are compiled when first needed; the user's now, to report errors."""
    for pattern in value_patterns:
        if pattern not in _ANCHORS:
            _compile_value(pattern)
    by_literal: dict[str, list[int]] = {}
    user: list[int] = []
    for index, pattern in enumerate(value_patterns):
        if pattern not in _ANCHORS:
            user.append(index)
        for literal in _ANCHORS.get(pattern, ()):
            by_literal.setdefault(literal, []).append(index)
    rest = [_compiled(value_patterns[index]) for index in user]
    joinable = [p for p in rest if not _BACKREF.search(p.pattern)]
    loose = [p for p in rest if _BACKREF.search(p.pattern)]
    others = _alternation(joinable)
    if others is None:
        loose += joinable
    return _Values(
        sources=value_patterns,
        by_literal={literal: tuple(indices) for literal, indices in by_literal.items()},
        user=tuple(user),
        others=others,
        loose=tuple(loose),
    )


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _compile_value(pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"secret value pattern {pattern!r} must be a non-empty regex")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"secret value pattern {pattern!r} is not a valid regular expression ({exc}); "
            "fix or remove it"
        ) from None
    if compiled.match(""):
        raise ConfigError(
            f"secret value pattern {pattern!r} matches the empty string; it would redact "
            "everything"
        )
    return compiled


def _alternation(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One regex that matches where any of ``patterns`` does; ``None`` if it cannot be built.

    Group names are made unique per pattern, since several may use ``secret``.
    """
    if not patterns:
        return None
    parts = []
    for index, pattern in enumerate(patterns):
        body = _GROUP_NAME.sub(f"(?P<_{index}_\\1>", pattern.pattern)
        parts.append(f"(?:{body})")
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


def _replacer(found: list[str] | None) -> Callable[[re.Match[str]], str]:
    """Replacement for one value-pattern match: the ``secret`` group only, if it has one.

    An empty match (or empty ``secret`` group) hides nothing and is left alone, so that
    redaction never inserts text and always reaches a fixed point. What is hidden is added to
    ``found`` (when given).
    """

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        start, end = match.span()
        if "secret" in match.re.groupindex and match.group("secret") is not None:
            start, end = match.span("secret")
        if start == end:
            return text
        if found is not None:
            found.append(match.string[start:end])
        offset = match.start()
        return text[: start - offset] + REDACTED + text[end - offset :]

    return replace


def _as_tuple(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        raise ConfigError(
            f"secret patterns must be a list of strings, not the single string {patterns!r}"
        )
    return tuple(patterns)


class RedactedEnviron(NamedTuple):
    """Variables after redaction, the names whose values changed, and the secrets learnt."""

    values: dict[str, str | bytes]
    redacted: tuple[str, ...]
    secrets: Secrets


def _text_forms(value: str | bytes) -> list[str]:
    """How a variable's value can appear in text: itself, or its bytes decoded two ways."""
    if isinstance(value, str):
        return [value]
    return [value.decode("utf-8", "surrogateescape"), value.decode("utf-8", "backslashreplace")]


@dataclass(frozen=True, slots=True)
class Redactor:
    """Decides which variable names and which substrings are secrets, and replaces them.

    Immutable; :meth:`extended` returns a new redactor with user additions. Compiled
    patterns are cached per distinct pair of lists, so constructing one is cheap.
    """

    names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    value_patterns: tuple[str, ...] = DEFAULT_SECRET_VALUE_PATTERNS

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _as_tuple(self.names))
        object.__setattr__(self, "value_patterns", _as_tuple(self.value_patterns))
        # Compile (cached) now, so that a bad pattern fails here and not on first use.
        _compile_names(self.names)
        _compile_values(self.value_patterns)

    def extended(self, names: Sequence[str] = (), value_patterns: Sequence[str] = ()) -> Redactor:
        """Return a redactor that also treats ``names`` and ``value_patterns`` as secret.

        Raises :class:`~provstore.core.errors.ConfigError` for a pattern that does not compile.
        """
        return Redactor(
            names=self.names + _as_tuple(names),
            value_patterns=self.value_patterns + _as_tuple(value_patterns),
        )

    def is_secret_name(self, name: str) -> bool:
        """Whether a variable called ``name`` holds a secret whatever its value."""
        return _compile_names(self.names).matches(name)

    def _patterns(self, text: str, found: list[str] | None = None) -> str:
        """``text`` with every value-pattern match replaced (repeated to a fixed point)."""
        plan = _compile_values(self.value_patterns).plan(text)
        if not plan:
            return text
        replace = _replacer(found)
        result = text
        for _ in range(_MAX_PASSES):
            before = result
            for pattern in plan:
                result = pattern.sub(replace, result)
            if result == before:
                break
        return result

    def redact_text(self, text: str, secrets: Secrets = NO_SECRETS) -> tuple[str, bool]:
        """Replace known ``secrets`` and credential-shaped substrings of ``text``.

        Returns the text and whether it changed.
        """
        result = self._patterns(secrets.scrub(text))
        return result, result != text

    def scan_argv(
        self, argv: Sequence[str], secrets: Secrets = NO_SECRETS
    ) -> tuple[list[str], Secrets]:
        """Redact a command line; return it and ``secrets`` plus the values it removed.

        Secret options (by name, ``--password hunter2``, ``--api-key=abc``; or by program,
        ``mysql -pX``, ``curl -u bob:pw``), ``NAME=VALUE`` with a secret NAME, setters
        (``aws configure set aws_secret_access_key X``), value patterns and the known
        ``secrets`` are all replaced; a value removed in one word is scrubbed from the rest.
        """
        found: list[str] = []

        def text(word: str) -> str:
            return self._patterns(secrets.scrub(word), found)

        out, removed = redact_words(argv, self.is_secret_name, text)
        learnt = Secrets.of(found + removed)
        if learnt:
            out = [learnt.scrub(word) for word in out]
        return out, secrets | learnt

    def redact_argv(self, argv: Sequence[str]) -> tuple[list[str], bool]:
        """Redact a command line (see :meth:`scan_argv`); return it and whether it changed."""
        out, _ = self.scan_argv(argv)
        return out, out != list(argv)

    def redact_environ(
        self, env: Mapping[str, str | bytes]
    ) -> tuple[dict[str, str | bytes], tuple[str, ...]]:
        """Return the variables with secrets replaced, and the sorted names that were redacted.

        See :meth:`scan_environ`, which also returns the secret values it met.
        """
        scan = self.scan_environ(env)
        return scan.values, scan.redacted

    def scan_environ(self, env: Mapping[str, str | bytes]) -> RedactedEnviron:
        """Redact variables, and scrub the secret values met from the other variables.

        A secret name replaces the whole value by :data:`REDACTED`; a secret-looking value
        has only the matching part replaced. A ``bytes`` value (not valid UTF-8) that holds
        anything secret is replaced whole, since it cannot be edited losslessly. The secret
        values met (the whole value of a secret name, the parts patterns matched) are then
        scrubbed from every other variable and returned as :class:`Secrets`.
        """
        secret_name = _compile_names(self.names).matches
        out: dict[str, str | bytes] = dict(env)
        redacted: set[str] = set()
        found: list[str] = []
        plain: dict[str, str] = {}  # the other text values, for the value patterns
        for name, value in env.items():
            if secret_name(name):
                out[name] = REDACTED
                redacted.add(name)
                for form in _text_forms(value):
                    found.append(form)
                    self._patterns(form, found)
            elif isinstance(value, bytes):
                before = len(found)
                self._patterns(value.decode("utf-8", "replace"), found)
                if len(found) > before:
                    out[name] = REDACTED
                    redacted.add(name)
            else:
                plain[name] = value
        for name in _suspects(_compile_values(self.value_patterns), plain):
            value = plain[name]
            if (new := self._patterns(value, found)) != value:
                out[name] = new
                redacted.add(name)
        secrets = Secrets.of(found)
        if secrets:
            _scrub_variables(out, redacted, secrets)
        return RedactedEnviron(out, tuple(sorted(redacted)), secrets)


def _suspects(values: _Values, plain: dict[str, str]) -> list[str]:
    """The names whose values hold a literal of some pattern.

    One substring search per literal through all the values joined, not one per value.
    """
    names = list(plain)
    if values.user:
        return names  # the user's patterns have no literals: every value is a suspect
    texts = list(plain.values())
    joined = "\0".join(texts)
    lower = joined.lower()
    present = values.present(lower)
    if not present:
        return []
    if len(lower) != len(joined):  # lower-casing moved the offsets (rare letters)
        return names
    starts = list(itertools.accumulate((len(text) + 1 for text in texts[:-1]), initial=0))
    hit: set[int] = set()
    for literal in present:
        at = lower.find(literal)
        while at != -1:
            hit.add(bisect.bisect_right(starts, at) - 1)
            at = lower.find(literal, at + 1)
    return [names[index] for index in sorted(hit)]


def _scrub_variables(out: dict[str, str | bytes], redacted: set[str], secrets: Secrets) -> None:
    """Scrub known secret values from the variables not redacted yet, in place."""
    kept = [name for name in out if name not in redacted]
    joined = "\0".join(f for name in kept for f in _text_forms(out[name]))
    if not any(value in joined for value in secrets.values):
        return  # the common case: one search per secret over all the variables at once
    for name in kept:
        value = out[name]
        if isinstance(value, bytes):
            if any(secrets.scrub(form) != form for form in _text_forms(value)):
                out[name] = REDACTED
                redacted.add(name)
        elif (scrubbed := secrets.scrub(value)) != value:
            out[name] = scrubbed
            redacted.add(name)
