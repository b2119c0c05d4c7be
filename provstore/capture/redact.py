"""Keep secrets out of storage: redact environment variables and command-line text.

Redaction runs *before* anything is hashed or encoded, so neither a secret nor a hash of one
ever reaches a store. Two independent tests decide what is secret:

* the variable's **name** matches one of :data:`DEFAULT_SECRET_NAMES` (case-insensitive
  :mod:`fnmatch` globs); the whole value is replaced by :data:`REDACTED`;
* the **value** contains a well-known credential shape from
  :data:`DEFAULT_SECRET_VALUE_PATTERNS` (regular expressions); only the matching part is
  replaced. A pattern with a named group ``secret`` redacts just that group, which is how
  ``postgresql://bob:hunter2@db/x`` becomes ``postgresql://bob:<redacted>@db/x``.

The defaults over-redact on purpose where the cost is small: ``*AUTH*`` also matches
``AUTHOR``, ``XAUTHORITY`` and ``SSH_AUTH_SOCK``, and a URL with an ``@`` in its query string
may lose part of its path. Losing a harmless value is cheap; storing a token forever is not.
Users extend both lists with :meth:`Redactor.extended`.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provstore.core.errors import ConfigError

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "DEFAULT_SECRET_VALUE_PATTERNS",
    "REDACTED",
    "Redactor",
]

REDACTED = "<redacted>"
"""What a secret (or the secret part of a value) is replaced with."""

DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*_PASS",
    "*_PWD",
    "*_KEY",
    "*_KEY_ID",
    "*APIKEY*",
    "*API_KEY*",
    "*PRIVATE_KEY*",
    "*CREDENTIAL*",
    "*AUTH*",
    "*BEARER*",
    "*COOKIE*",
    "*SESSION_ID*",
    "*_PAT",
    "*DSN*",
    "*CONNECTION_STRING*",
    "*WEBHOOK_URL*",
)
"""Case-insensitive globs on variable names whose whole value is secret.

``*_PASS`` and ``*_PWD`` need the underscore so that ``PWD`` and ``OLDPWD`` stay readable;
``*DSN*`` and ``*CONNECTION_STRING*`` usually embed a password; ``*WEBHOOK_URL*`` embeds a
bearer secret in its path. ``*AUTH*`` over-redacts ``AUTHOR`` and ``SSH_AUTH_SOCK``.
"""

DEFAULT_SECRET_VALUE_PATTERNS: tuple[str, ...] = (
    # PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, PGP ... BLOCK); an unterminated block is
    # redacted to the end of the text.
    r"(?s:-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z))",
    # AWS access key ids: long-term (AKIA) and temporary (ASIA).
    r"(?:AKIA|ASIA)[A-Z0-9]{16}",
    # GitHub: classic personal, OAuth, user-to-server, server-to-server and refresh tokens.
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    # GitHub fine-grained personal access tokens.
    r"github_pat_[A-Za-z0-9_]{20,}",
    # GitLab personal, deploy, runner and pipeline-trigger tokens.
    r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_\-]{20,}",
    # Slack bot, user, app, workspace and refresh tokens.
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    # Slack incoming webhooks: the path is the secret.
    r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_\-]+)",
    # JSON Web Tokens: base64url header and payload (both JSON objects), optional signature.
    r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    # Credentials in a URL: only the password between `user:` and the `@` before the host.
    # A raw `@` inside the password is followed up to the last `@` before the path.
    r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:(?P<secret>[^\s@]+(?:@[^\s@/?#]*)*)(?=@)",
    # HTTP bearer credentials, e.g. in `curl -H "Authorization: Bearer ..."`.
    r"(?ai:\bbearer\s+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    # `password=...`, `api_key: ...`, `--token=...`, `"secret": "..."` (libpq DSNs, query
    # strings, JSON, shell snippets in argv).
    r"(?ai:pass(?:word|wd|phrase)|secret|token|api[_\-]?key|access[_\-]?key)"
    r"[\"']?\s*[=:]\s*[\"']?(?P<secret>[^\s\"'&;,]+)",
)
"""Regular expressions for values that are credentials wherever they appear."""

# For each built-in pattern, a regex that finds, in the *lower-cased* text, a literal that
# every match of the pattern contains. One search for all anchors decides whether a value
# needs the full patterns at all, which keeps a whole environment well under a millisecond.
_ANCHORS: dict[str, str] = dict(
    zip(
        DEFAULT_SECRET_VALUE_PATTERNS,
        (
            r"-----begin ",
            r"akia|asia",
            r"gh[pousr]_",
            r"github_pat_",
            r"gl(?:pat|dt|rt|ptt)-",
            r"xox[abposr]-",
            r"hooks\.slack\.com/services/",
            r"eyj",
            r"://",
            r"bearer",
            r"pass|secret|token|api[_\-]?key|access[_\-]?key",
        ),
        strict=True,
    )
)

_MAX_PASSES = 4  # redaction reaches a fixed point in one or two passes; bound it anyway
_GLOB_CHARS = frozenset("*?[")
_GROUP_NAME = re.compile(r"(?<!\\)\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")
_BACKREF = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


@dataclass(frozen=True, slots=True)
class _Names:
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


@dataclass(frozen=True, slots=True)
class _Values:
    """Value patterns, and the pre-filters that say cheaply whether any can match."""

    anchors: re.Pattern[str] | None  # literals of the built-in patterns, on lower-cased text
    others: re.Pattern[str] | None  # one alternation of the remaining patterns
    loose: tuple[re.Pattern[str], ...]  # patterns that cannot join an alternation
    patterns: tuple[re.Pattern[str], ...]

    def may_match(self, text: str) -> bool:
        if self.anchors is not None and self.anchors.search(text.lower()) is not None:
            return True
        if self.others is not None and self.others.search(text) is not None:
            return True
        return any(pattern.search(text) is not None for pattern in self.loose)


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
        if not body or _GLOB_CHARS & set(body):
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


@functools.lru_cache(maxsize=32)
def _compile_values(value_patterns: tuple[str, ...]) -> _Values:
    patterns = tuple(_compile_value(pattern) for pattern in value_patterns)
    anchors = [_ANCHORS[p.pattern] for p in patterns if p.pattern in _ANCHORS]
    rest = [p for p in patterns if p.pattern not in _ANCHORS]
    joinable = [p for p in rest if not _BACKREF.search(p.pattern)]
    loose = [p for p in rest if _BACKREF.search(p.pattern)]
    others = _alternation(joinable)
    if others is None:
        loose += joinable
    return _Values(
        anchors=re.compile("|".join(anchors)) if anchors else None,
        others=others,
        loose=tuple(loose),
        patterns=patterns,
    )


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


def _replace(match: re.Match[str]) -> str:
    """Replacement for one value-pattern match: the ``secret`` group only, if it has one.

    An empty match (or empty ``secret`` group) hides nothing and is left alone, so that
    redaction never inserts text and always reaches a fixed point.
    """
    text = match.group(0)
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        start, end = match.span("secret")
        if start == end:
            return text
        offset = match.start()
        return text[: start - offset] + REDACTED + text[end - offset :]
    return REDACTED if text else text


def _as_tuple(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        raise ConfigError(
            f"secret patterns must be a list of strings, not the single string {patterns!r}"
        )
    return tuple(patterns)


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

    def _finds(self, text: str) -> bool:
        values = _compile_values(self.value_patterns)
        return values.may_match(text) and any(p.search(text) for p in values.patterns)

    def is_secret_name(self, name: str) -> bool:
        """Whether a variable called ``name`` holds a secret whatever its value."""
        return _compile_names(self.names).matches(name)

    def redact_text(self, text: str) -> tuple[str, bool]:
        """Replace credential-shaped substrings of ``text``; return it and whether it changed."""
        values = _compile_values(self.value_patterns)
        if not values.may_match(text):
            return text, False
        result = text
        for _ in range(_MAX_PASSES):
            before = result
            for pattern in values.patterns:
                result = pattern.sub(_replace, result)
            if result == before:
                break
        return result, result != text

    def redact_argv(self, argv: Sequence[str]) -> tuple[list[str], bool]:
        """Redact a command line: each element's text, and the value after a secret flag.

        ``--password hunter2`` and ``--api-key=abc`` lose their values because the flag name
        (dashes read as underscores) is a secret name.
        """
        out: list[str] = []
        changed = False
        secret_next = False
        for arg in argv:
            if secret_next and not arg.startswith("-"):
                out.append(REDACTED)
                changed = changed or arg != REDACTED
                secret_next = False
                continue
            secret_next = False
            new, hit = self.redact_text(arg)
            if arg.startswith("-") and len(arg) > 2:
                flag, eq, value = arg.lstrip("-").partition("=")
                if self.is_secret_name(flag.replace("-", "_")):
                    if value:
                        new = arg[: len(arg) - len(value)] + REDACTED
                        hit = hit or value != REDACTED
                    elif not eq:
                        secret_next = True
            out.append(new)
            changed = changed or hit
        return out, changed

    def redact_environ(
        self, env: Mapping[str, str | bytes]
    ) -> tuple[dict[str, str | bytes], tuple[str, ...]]:
        """Return the variables with secrets replaced, and the sorted names that were redacted.

        A secret name replaces the whole value by :data:`REDACTED`; a secret-looking value
        has only the matching part replaced. A ``bytes`` value (not valid UTF-8) that holds
        anything secret-looking is replaced whole, since it cannot be edited losslessly.
        """
        secret_name = _compile_names(self.names).matches
        may_match = _compile_values(self.value_patterns).may_match
        out: dict[str, str | bytes] = {}
        redacted: list[str] = []
        for name, value in env.items():
            if secret_name(name):
                out[name] = REDACTED
                redacted.append(name)
                continue
            if isinstance(value, bytes):
                if self._finds(value.decode("utf-8", "replace")):
                    out[name] = REDACTED
                    redacted.append(name)
                else:
                    out[name] = value
                continue
            if not may_match(value):
                out[name] = value
                continue
            new, changed = self.redact_text(value)
            out[name] = new
            if changed:
                redacted.append(name)
        return out, tuple(sorted(redacted))
