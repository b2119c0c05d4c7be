r"""What a secret looks like: one table each for variable names, values and command-line options.

Data only; :mod:`provstore.capture.redact` compiles and applies it. Rows are named tuples,
since this module is on the start-up path of every tracked process and a dataclass costs a
few hundred microseconds to define. Every row has a test of its own (``tests/test_redact.py``
and ``tests/test_cmdline.py`` fail when a row has no example), and ``docs/concepts.rst``
lists them for users. Users add names and value patterns with ``redact_names`` /
``redact_values`` in ``[tool.provstore]``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "MIN_SECRET_LENGTH",
    "NOT_SECRET_OPTION",
    "OPTION_RULES",
    "PROGRAMS",
    "REDACTED",
    "SETTER_WORDS",
    "VALUE_SHAPES",
    "OptionRule",
    "ValueShape",
]

REDACTED = "<redacted>"
"""What a secret (or the secret part of a value) is replaced with."""

MIN_SECRET_LENGTH = 6
"""Shortest known secret value that is scrubbed wherever it appears as literal text.

A variable called ``FLAG_TOKEN`` may hold ``1``: scrubbing every ``1`` from a command line
would destroy it and protect nothing. Shorter secrets are still redacted where they stand
(the variable, the value after ``--password``).
"""

# fmt: off
DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*TOKEN", "*TOKEN_*", "*TOKEN[0-9]*",
    "*SECRET*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*",
    "PASS", "*_PASS", "SSHPASS", "*STOREPASS", "*KEYPASS",
    "PW", "*_PW", "*_PWD",
    "KEY", "*_KEY", "*_KEY_ID", "*APIKEY*", "*API_KEY*", "*PRIVATE_KEY*",
    "*CREDENTIAL*",
    "AUTH", "AUTH_*", "*_AUTH", "*_AUTH_*", "*OAUTH*", "*AUTHKEY*", "*AUTHORIZATION*",
    "*BEARER*", "*COOKIE*", "*SESSION_ID*", "OP_SESSION_*", "*_PAT",
    "*DSN*", "*CONNECTION_STRING*", "*WEBHOOK_URL*",
)
# fmt: on
"""Case-insensitive globs on variable names whose whole value is secret.

Word boundaries are spelled with ``_`` so that ordinary names stay readable: ``*TOKEN``,
``*TOKEN_*`` and ``*TOKEN[0-9]*`` (not ``*TOKEN*``) keep ``TOKENIZERS_PARALLELISM`` and
``MAX_TOKENS``; ``AUTH``,
``AUTH_*``, ``*_AUTH`` and ``*_AUTH_*`` (not ``*AUTH*``) keep ``GIT_AUTHOR_NAME`` and
``XAUTHORITY``; ``*_PASS`` keeps ``COMPASS``; ``*_PWD`` keeps ``PWD`` and ``OLDPWD``.
``*DSN*`` and ``*CONNECTION_STRING*`` usually embed a password; ``*WEBHOOK_URL*`` embeds a
bearer secret in its path. On the command line the same globs name secret options
(``--api-key``, ``-storepass``), dashes and dots read as underscores.
"""

_SECRET_GROUP_GUARD = "(?!<redacted>)"  # a part already redacted is not redacted again


class ValueShape(NamedTuple):
    """A credential recognisable by its shape wherever it appears.

    ``pattern`` is a regular expression; a group named ``secret`` redacts only that group.
    ``anchors`` are lower-case literals, one of which the lower-cased text holds wherever the
    pattern matches: plain substring searches (over all variables at once) decide which
    patterns a value needs, and a pattern is compiled only when some text needs it. Few and
    short is faster than many and precise: a literal that occurs by chance costs one pattern
    search in one value, each literal costs a search through every variable.
    """

    name: str
    what: str
    pattern: str
    anchors: tuple[str, ...]


_SCHEME = r"[A-Za-z][A-Za-z0-9_\-]*[ \t]+(?=[^\s\"'])"  # Basic, Bearer, Digest, ...
_GITLAB = r"gl(?:pat|dt|rt|ptt|ft|imt|cbt|soat|oas|ffct|agent)-"
_KEYS = (
    r"pass(?:word|wd|phrase)|secret|token|auth|api[_\-]?key|access[_\-]?key"
    r"|account[_\-]?key|subscription[_\-]?key|private[_\-]?key"
)

VALUE_SHAPES: tuple[ValueShape, ...] = (
    ValueShape(
        "pem-private-key",
        "PEM private key blocks (RSA, EC, OpenSSH, encrypted, PGP); an unterminated block is "
        "redacted to the end of the text",
        r"(?s:-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z))",
        ("-----begin ",),
    ),
    ValueShape(
        "aws-access-key-id",
        "AWS access key ids: long-term ``AKIA…`` and temporary ``ASIA…``",
        r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        ("akia", "asia"),
    ),
    ValueShape(
        "github",
        "GitHub tokens ``ghp_…``, ``gho_…``, ``ghu_…``, ``ghs_…``, ``ghr_…``",
        r"gh[pousr]_[A-Za-z0-9]{20,}",
        ("gh",),
    ),
    ValueShape(
        "github-fine-grained",
        "GitHub fine-grained personal access tokens ``github_pat_…``",
        r"github_pat_[A-Za-z0-9_]{20,}",
        ("_pat_",),
    ),
    ValueShape(
        "gitlab",
        "GitLab tokens ``glpat-…``, ``gldt-…``, ``glrt-…``, ``glptt-…``, ``glcbt-…`` and the "
        "other ``gl…-`` prefixes",
        _GITLAB + r"[A-Za-z0-9_\-]{20,}",
        ("gl",),
    ),
    ValueShape(
        "slack",
        "Slack tokens ``xoxb-…``, ``xoxp-…``, ``xoxa-…``, ``xoxo-…``, ``xoxs-…``, ``xoxr-…``",
        r"xox[abposr]-[A-Za-z0-9\-]{10,}",
        ("xox",),
    ),
    ValueShape(
        "slack-webhook",
        "the path of Slack incoming-webhook URLs",
        r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_\-]+)",
        ("hooks.slack.com/services/",),
    ),
    ValueShape(
        "jwt",
        "JSON Web Tokens (``eyJ….eyJ….…``)",
        r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        ("eyj",),
    ),
    ValueShape(
        "stripe",
        "Stripe secret and restricted keys ``sk_live_…``, ``sk_test_…``, ``rk_live_…``, "
        "``rk_test_…`` and webhook secrets ``whsec_…``",
        r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9+/=]{24,}",
        ("_live_", "_test_", "whsec_"),
    ),
    ValueShape(
        "anthropic",
        "Anthropic API keys ``sk-ant-…``",
        r"sk-ant-[A-Za-z0-9_\-]{20,}",
        ("sk-",),
    ),
    ValueShape(
        "openai",
        "OpenAI keys ``sk-proj-…``, ``sk-svcacct-…``, ``sk-admin-…`` and legacy keys with "
        "``T3BlbkFJ`` inside",
        r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"
        r"|sk-[A-Za-z0-9_\-]{16,}T3BlbkFJ[A-Za-z0-9_\-]{16,}",
        ("sk-",),
    ),
    ValueShape(
        "sk-api-key",
        "other ``sk-…`` API keys of 32 or more letters and digits (DeepSeek, Moonshot, …)",
        r"(?<![A-Za-z0-9])sk-[A-Za-z0-9]{32,}",
        ("sk-",),
    ),
    ValueShape(
        "hugging-face",
        "Hugging Face tokens ``hf_…``",
        r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}",
        ("hf_",),
    ),
    ValueShape(
        "google",
        "Google API keys ``AIza…``, OAuth access tokens ``ya29.…`` and client secrets "
        "``GOCSPX-…``",
        r"AIza[0-9A-Za-z_\-]{35}|ya29\.[0-9A-Za-z_\-]{20,}|GOCSPX-[0-9A-Za-z_\-]{20,}",
        ("aiza", "ya29.", "gocspx-"),
    ),
    ValueShape(
        "pypi",
        "PyPI and TestPyPI upload tokens ``pypi-AgE…``",
        r"pypi-AgE[A-Za-z0-9_\-]{50,}",
        ("pypi-age",),
    ),
    ValueShape(
        "npm",
        "npm access tokens ``npm_…``",
        r"npm_[A-Za-z0-9]{36}",
        ("npm_",),
    ),
    ValueShape(
        "docker-hub",
        "Docker Hub personal access tokens ``dckr_pat_…``",
        r"dckr_pat_[A-Za-z0-9_\-]{20,}",
        ("_pat_",),
    ),
    ValueShape(
        "azure-sas",
        "the signature of Azure shared access signatures (``…&sig=…``)",
        r"(?<![A-Za-z0-9_])(?ai:sig)=(?P<secret>" + _SECRET_GROUP_GUARD + r"[^&\s\"';,]+)",
        ("sig=",),
    ),
    ValueShape(
        "url-password",
        "the password in a URL: ``postgresql://bob:hunter2@db/x`` becomes "
        "``postgresql://bob:<redacted>@db/x`` (a raw ``@`` in the password is followed up "
        "to the last ``@`` before the path)",
        r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:(?P<secret>[^\s@]+(?:@[^\s@/?#]*)*)(?=@)",
        ("@",),  # every match is followed by (or holds) the @
    ),
    ValueShape(
        "url-token",
        "a token used as the user of a URL, without a password (16 or more characters): "
        "Sentry DSNs ``https://KEY@…ingest.sentry.io/…``, Azure DevOps and GitHub clone URLs",
        r"[A-Za-z][A-Za-z0-9+.\-]*://(?P<secret>[A-Za-z0-9_\-.~%+=]{16,})@",
        ("@",),  # every match is followed by (or holds) the @
    ),
    ValueShape(
        "bearer",
        "HTTP bearer credentials (``Bearer …``)",
        r"(?ai:\bbearer\s+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
        ("bearer",),
    ),
    ValueShape(
        "authorization-header",
        "the credentials of an ``Authorization`` or ``Proxy-Authorization`` header, whatever "
        "the scheme (``Basic``, ``Bearer``, ``Token``, ``Digest``, …), to the end of the line",
        r"(?ai:\b(?:proxy-)?authori[sz]ation[\"']?\s*[:=]\s*[\"']?)"
        r"(?:" + _SCHEME + "|(?!" + _SCHEME + "))"  # the scheme, if any, is never secret
        r"(?P<secret>" + _SECRET_GROUP_GUARD + r"[^\s\"'][^\r\n\"']*)",
        ("auth",),
    ),
    ValueShape(
        "cookie-header",
        "the value of a ``Cookie`` or ``Set-Cookie`` header, to the end of the line",
        r"(?ai:\b(?:set-)?cookie[\"']?\s*:\s*[\"']?)"
        r"(?P<secret>" + _SECRET_GROUP_GUARD + r"[^\s\"'][^\r\n\"']*)",
        ("cookie",),
    ),
    ValueShape(
        "assignment",
        '``password=…``, ``token: …``, ``api_key=…``, ``"client_secret": "…"``, '
        "``AccountKey=…``, ``Subscription-Key: …``, ``_auth=…`` (libpq and Azure connection "
        "strings, query strings, JSON, headers, shell snippets)",
        r"(?ai:" + _KEYS + r")[\"']?\s*[=:]\s*[\"']?"
        r"(?P<secret>" + _SECRET_GROUP_GUARD + r"[^\s\"'&;,]+)",
        ("pass", "secret", "token", "auth", "key"),
    ),
    ValueShape(
        "short-assignment",
        "``pass=…`` and ``pw=…`` standing alone (``DB_PASS=…`` counts, ``bypass=…`` does not)",
        r"(?ai:(?<![a-z0-9])(?:pass|pw))\s*=\s*[\"']?"
        r"(?P<secret>" + _SECRET_GROUP_GUARD + r"[^\s\"'&;,]+)",
        ("pass", "pw"),
    ),
    ValueShape(
        "netrc",
        "netrc-style ``machine … login … password …``, on one line or several",
        r"(?ai:\b(?:machine|login|account)\s+\S+"
        r"(?:\s+(?:machine|login|account)\s+\S+)*\s+password\s+)"
        r"(?P<secret>" + _SECRET_GROUP_GUARD + r"\S+)",
        ("pass",),
    ),
    ValueShape(
        "odbc-pwd",
        "``;Pwd=…`` in ODBC and ADO connection strings",
        r"(?ai:;\s*pwd\s*=\s*)(?P<secret>" + _SECRET_GROUP_GUARD + r"[^;\r\n]+)",
        ("pw",),
    ),
)
"""Credentials recognisable by their shape, in any variable, argument or error text."""


class OptionRule(NamedTuple):
    """Options of particular programs whose value is secret, though their name does not say.

    ``-p`` is a password to ``mysql`` and ``sshpass`` but a port to ``psql`` and ``ssh``, and
    ``-u user:password`` means a password only to ``curl`` and its kin; so these rules apply
    only after the program (its base name) appears on the command line, and, with ``after``,
    only once one of those words (a subcommand such as ``login``) has followed it.
    ``part`` says what is secret: the whole ``value``, or the ``password`` after the first
    ``:``. A two-character option also takes its value glued on (``-pX``).
    """

    name: str
    programs: tuple[str, ...]
    options: tuple[str, ...]
    part: str = "value"
    after: tuple[str, ...] = ()


_MYSQL = (
    "mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow", "mysqlslap",
    "mysqlbinlog", "mysqlpump", "mysqlsh", "mariadb", "mariadb-dump", "mariadb-admin",
    "mariadb-import", "mariadb-check", "mariadb-show", "mariadb-slap", "mariadb-binlog",
)  # fmt: skip
_MONGO = ("mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport")
_LDAP = ("ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapwhoami", "ldappasswd")
_REGISTRIES = ("docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "crane")

OPTION_RULES: tuple[OptionRule, ...] = (
    OptionRule("mysql", _MYSQL, ("-p",)),
    OptionRule("sshpass", ("sshpass",), ("-p",)),
    OptionRule("registry-login", _REGISTRIES, ("-p",), after=("login",)),
    OptionRule("az-login", ("az",), ("-p",), after=("login",)),
    OptionRule("az-secret-value", ("az",), ("--value",), after=("secret",)),
    OptionRule("aws-ssm-value", ("aws",), ("--value",), after=("put-parameter",)),
    OptionRule("gh-secret-body", ("gh",), ("-b", "--body"), after=("secret",)),
    OptionRule(
        "package-upload", ("twine", "poetry", "uv", "flit"), ("-p",), after=("upload", "publish")
    ),
    OptionRule("redis-cli", ("redis-cli", "valkey-cli", "keydb-cli"), ("-a",)),
    OptionRule("mongodb", _MONGO, ("-p",)),
    OptionRule("ldap", _LDAP, ("-w",)),
    OptionRule("sqlcmd", ("sqlcmd", "bcp", "osql"), ("-P",)),
    OptionRule("openssl", ("openssl",), ("-passin", "-passout", "-k", "-K")),
    OptionRule("keytool", ("keytool", "jarsigner"), ("-new",)),
    OptionRule(
        "curl-user",
        ("curl",),
        ("-u", "--user", "-U", "--proxy-user", "-E", "--cert", "--proxy-cert"),
        part="password",
    ),
    OptionRule("curl-cookie", ("curl",), ("-b",)),
    OptionRule("httpie", ("http", "https", "xh", "xhs"), ("-a", "--auth"), part="password"),
    OptionRule("ab", ("ab",), ("-A", "-P"), part="password"),
)
"""Program-specific secret options; options named like a secret need no rule (``--pass``)."""

PROGRAMS: frozenset[str] = frozenset(
    {program for rule in OPTION_RULES for program in rule.programs}
    | {"ssh", "scp", "sftp", "rsync", "psql", "pg_dump", "pg_restore", "git", "gcloud",
       "gsutil", "kubectl", "wget", "env", "sudo", "doas", "time", "nice", "nohup", "timeout",
       "xargs", "exec", "bash", "sh", "zsh", "python", "python3"}
)  # fmt: skip
"""Program names that start a new command on a command line (``sshpass -p X ssh -p 22``):
those with rules, and common ones whose options mean something else (``ssh -p`` is a port)."""

SETTER_WORDS: frozenset[str] = frozenset({"set", "config", "configure"})
"""After one of these words, an argument named like a secret makes the next one secret:
``aws configure set aws_secret_access_key X``, ``git config github.token X``."""

NOT_SECRET_OPTION = (
    r"^(?:NO|ASK|WITH|USE)_|_(?:FILE|PATH|DIR|ENV|STDIN|PROMPT|CMD|COMMAND)$"
    r"|^(?:STORE|KEY)PASSWD$"
)
"""Option names (upper-case, underscores) that match a secret glob but carry no secret:
``--password-stdin`` and ``--no-password`` take no value, ``--password-file`` a path,
``keytool -storepasswd`` is a command."""
