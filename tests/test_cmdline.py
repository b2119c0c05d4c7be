"""Command lines: secret options by name, by program and by value; what must stay readable."""

from __future__ import annotations

import pytest

from provstore.capture.redact import REDACTED, Redactor, Secrets
from provstore.capture.secret_shapes import OPTION_RULES

R = Redactor()
X = REDACTED


def redacted(argv: list[str]) -> list[str]:
    return R.redact_argv(argv)[0]


# One or more examples per row of OPTION_RULES: the command line and what is stored.
OPTION_EXAMPLES: dict[str, list[tuple[list[str], list[str]]]] = {
    "mysql": [
        (["mysql", "-uroot", "-pS3cret!", "db"], ["mysql", "-uroot", f"-p{X}", "db"]),
        (["mysqldump", "-p", "S3cret!", "db"], ["mysqldump", "-p", X, "db"]),
        (["/usr/bin/mariadb", "-p-leading", "db"], ["/usr/bin/mariadb", f"-p{X}", "db"]),
    ],
    "sshpass": [
        (["sshpass", "-p", "pw1234", "ssh", "-p", "2222", "h"],
         ["sshpass", "-p", X, "ssh", "-p", "2222", "h"]),
        (["sshpass", "-ppw1234", "scp", "a", "h:b"], ["sshpass", f"-p{X}", "scp", "a", "h:b"]),
    ],
    "registry-login": [
        (["docker", "login", "-u", "bob", "-p", "dckr-pw", "reg.io"],
         ["docker", "login", "-u", "bob", "-p", X, "reg.io"]),
        (["podman", "login", "-p", "pw"], ["podman", "login", "-p", X]),
        (["helm", "registry", "login", "-p", "pw", "r.io"],
         ["helm", "registry", "login", "-p", X, "r.io"]),
    ],
    "az-login": [
        (["az", "login", "--service-principal", "-u", "app", "-p", "sp-secret", "--tenant", "t"],
         ["az", "login", "--service-principal", "-u", "app", "-p", X, "--tenant", "t"]),
    ],
    "az-secret-value": [
        (["az", "keyvault", "secret", "set", "--name", "db", "--value", "kv-secret"],
         ["az", "keyvault", "secret", "set", "--name", "db", "--value", X]),
    ],
    "aws-ssm-value": [
        (["aws", "ssm", "put-parameter", "--name", "db", "--value", "ssm-secret"],
         ["aws", "ssm", "put-parameter", "--name", "db", "--value", X]),
    ],
    "gh-secret-body": [
        (["gh", "secret", "set", "DEPLOY", "--body", "gh-secret"],
         ["gh", "secret", "set", "DEPLOY", "--body", X]),
        (["gh", "secret", "set", "DEPLOY", "-b", "gh-secret"],
         ["gh", "secret", "set", "DEPLOY", "-b", X]),
    ],
    "package-upload": [
        (["twine", "upload", "-u", "__token__", "-p", "upload-pw", "dist/*"],
         ["twine", "upload", "-u", "__token__", "-p", X, "dist/*"]),
        (["poetry", "publish", "-u", "bob", "-p", "upload-pw"],
         ["poetry", "publish", "-u", "bob", "-p", X]),
    ],
    "redis-cli": [(["redis-cli", "-h", "cache", "-a", "redis-pw"],
                   ["redis-cli", "-h", "cache", "-a", X])],
    "mongodb": [(["mongosh", "-u", "bob", "-p", "mongo-pw"], ["mongosh", "-u", "bob", "-p", X])],
    "ldap": [(["ldapsearch", "-D", "cn=admin", "-w", "ldap-pw"],
              ["ldapsearch", "-D", "cn=admin", "-w", X])],
    "sqlcmd": [(["sqlcmd", "-S", "db", "-U", "sa", "-P", "mssql-pw"],
                ["sqlcmd", "-S", "db", "-U", "sa", "-P", X])],
    "openssl": [
        (["openssl", "rsa", "-passin", "pass:ossl-pw", "-in", "k.pem"],
         ["openssl", "rsa", "-passin", X, "-in", "k.pem"]),
        (["openssl", "enc", "-aes256", "-k", "ossl-pw"], ["openssl", "enc", "-aes256", "-k", X]),
    ],
    "keytool": [
        (["keytool", "-list", "-keystore", "k.jks", "-storepass", "ks-pw"],
         ["keytool", "-list", "-keystore", "k.jks", "-storepass", X]),
        (["keytool", "-storepasswd", "-new", "new-pw"], ["keytool", "-storepasswd", "-new", X]),
    ],
    "curl-user": [
        (["curl", "-u", "bob:curl-pw", "https://x"], ["curl", "-u", f"bob:{X}", "https://x"]),
        (["curl", "-ubob:curl-pw", "https://x"], ["curl", f"-ubob:{X}", "https://x"]),
        (["curl", "--user=bob:curl-pw", "https://x"], ["curl", f"--user=bob:{X}", "https://x"]),
        (["curl", "-U", "proxy:curl-pw", "-E", "cert.pem:cert-pw", "https://x"],
         ["curl", "-U", f"proxy:{X}", "-E", f"cert.pem:{X}", "https://x"]),
        (["curl", "-u", "bob", "https://x"], ["curl", "-u", "bob", "https://x"]),
    ],
    "curl-cookie": [(["curl", "-b", "session=abc123", "https://x"],
                     ["curl", "-b", X, "https://x"])],
    "httpie": [(["http", "-a", "bob:httpie-pw", "GET", "https://x"],
                ["http", "-a", f"bob:{X}", "GET", "https://x"])],
    "ab": [(["ab", "-A", "bob:ab-pw", "-n", "10", "https://x/"],
            ["ab", "-A", f"bob:{X}", "-n", "10", "https://x/"])],
}  # fmt: skip


def test_every_option_rule_has_examples() -> None:
    assert set(OPTION_EXAMPLES) == {rule.name for rule in OPTION_RULES}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [pytest.param(a, e, id=f"{name}-{i}") for name, rows in OPTION_EXAMPLES.items()
     for i, (a, e) in enumerate(rows)],
)  # fmt: skip
def test_option_rules(argv: list[str], expected: list[str]) -> None:
    assert redacted(argv) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # By option name, in any program (item 13).
        (["tool", "--pass", "pw1", "--pw", "pw2", "--key", "k3"],
         ["tool", "--pass", X, "--pw", X, "--key", X]),
        (["plink", "-pw", "putty-pw", "host"], ["plink", "-pw", X, "host"]),
        (["tool", "--password", "-starts-with-dash"], ["tool", "--password", X]),
        (["tool", "--api-key", "--"], ["tool", "--api-key", X]),
        (["tool", "--password=", "x"], ["tool", "--password=", "x"]),
        (["wget", "--http-password=pw", "https://x"], ["wget", f"--http-password={X}", "https://x"]),
        (["keytool", "-importkeystore", "-srcstorepass", "a1", "-deststorepass", "b2"],
         ["keytool", "-importkeystore", "-srcstorepass", X, "-deststorepass", X]),
        # NAME=VALUE anywhere on the line, when NAME is a secret name.
        (["env", "DB_PASS=pw", "API_KEY=k", "LEVEL=3", "tool"],
         ["env", f"DB_PASS={X}", f"API_KEY={X}", "LEVEL=3", "tool"]),
        (["docker", "run", "-e", "GITHUB_TOKEN=t0k", "img"],
         ["docker", "run", "-e", f"GITHUB_TOKEN={X}", "img"]),
        (["python", "train.py", "db.password=pw", "model.lr=0.1"],
         ["python", "train.py", f"db.password={X}", "model.lr=0.1"]),
        (["gcloud", "run", "deploy", "--set-env-vars=MODE=x,DB_PASS=pw"],
         ["gcloud", "run", "deploy", f"--set-env-vars=MODE=x,DB_PASS={X}"]),
        # Configuration setters: `... set NAME VALUE` with a secret NAME.
        (["aws", "configure", "set", "aws_secret_access_key", "abc/def"],
         ["aws", "configure", "set", "aws_secret_access_key", X]),
        (["git", "config", "--global", "github.token", "t0k"],
         ["git", "config", "--global", "github.token", X]),
        (["npm", "config", "set", "//registry.npmjs.org/:_authToken", "t0k"],
         ["npm", "config", "set", "//registry.npmjs.org/:_authToken", X]),
        (["poetry", "config", "pypi-token.pypi", "t0k"],
         ["poetry", "config", "pypi-token.pypi", X]),
        # By value (item 13): headers, URLs, Azure SAS, gsutil boto options.
        (["curl", "-H", "Authorization: Basic dXNlcjpwYXNz", "https://x"],
         ["curl", "-H", f"Authorization: Basic {X}", "https://x"]),
        (["curl", "--header", "Authorization: Bearer abc.def", "https://x"],
         ["curl", "--header", f"Authorization: Bearer {X}", "https://x"]),
        (["git", "-c", "http.extraHeader=Authorization: Basic dXNlcjpwYXNz", "fetch"],
         ["git", "-c", f"http.extraHeader=Authorization: Basic {X}", "fetch"]),
        (["git", "clone", "https://oauth2:glpat-abc@gitlab.com/g/r.git"],
         ["git", "clone", f"https://oauth2:{X}@gitlab.com/g/r.git"]),
        (["git", "clone", "https://0123456789abcdef0123@dev.azure.com/o/p/_git/r"],
         ["git", "clone", f"https://{X}@dev.azure.com/o/p/_git/r"]),
        (["gsutil", "-o", "Credentials:gs_oauth2_refresh_token=1//0gRefresh", "ls"],
         ["gsutil", "-o", f"Credentials:gs_oauth2_refresh_token={X}", "ls"]),
        (["azcopy", "copy", "https://a.blob.core.windows.net/c?sv=2022&sp=r&sig=AbC%2Bd", "."],
         ["azcopy", "copy", f"https://a.blob.core.windows.net/c?sv=2022&sp=r&sig={X}", "."]),
        # A command line inside one word (bash -c, ssh host CMD) is walked as its own.
        (["bash", "-c", "mysql -uroot -pS3cret db && echo ok"],
         ["bash", "-c", f"mysql -uroot -p{X} db && echo ok"]),
        (["ssh", "host", "sshpass -p 'pa ss' scp a b"],
         ["ssh", "host", f"sshpass -p '{X}' scp a b"]),
        (["sh", "-c", "curl -u bob:pw1 https://x | jq ."],
         ["sh", "-c", f"curl -u bob:{X} https://x | jq ."]),
        (["bash", "-c", "tool --pin 42 --count 420 --pw='42'"],
         ["bash", "-c", f"tool --pin {X} --count 420 --pw='{X}'"]),
    ],
)  # fmt: skip
def test_secret_command_lines(argv: list[str], expected: list[str]) -> None:
    assert redacted(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "train.py", "--lr", "0.1"],
        ["mkdir", "-p", "out/dir"],
        ["psql", "-h", "db", "-p", "5432", "-U", "bob", "analytics"],
        ["ssh", "-p", "2222", "host"],
        ["docker", "run", "-p", "8080:80", "-u", "1000:1000", "img"],
        ["tool", "-p", "8080", "-u", "a:b"],  # unknown program: -p and -u mean nothing here
        ["python", "tokenize_data.py", "--max-tokens", "512", "--tokenizer", "bert"],
        ["git", "log", "--author", "Bob"],
        ["docker", "login", "--password-stdin", "reg.io"],
        ["tool", "--password-file", "/run/secrets/db", "--no-password", "x"],
        ["gcloud", "auth", "activate-service-account", "--key-file=sa.json"],
        ["sort", "-k", "2"],
        ["git", "config", "user.name", "Bob"],
        ["bash", "-c", "mkdir -p out && ssh -p 22 host 'ls -la'"],
        ["git", "commit", "-m", "fix the password reset form"],
    ],
)
def test_ordinary_command_lines_are_kept(argv: list[str]) -> None:
    assert R.redact_argv(argv) == (argv, False)


def test_scan_argv_reports_the_secrets_it_removed() -> None:
    argv, secrets = R.scan_argv(["sshpass", "-p", "hunter22", "ssh", "h", "echo hunter22"])
    assert argv == ["sshpass", "-p", X, "ssh", "h", f"echo {X}"]  # a second mention goes too
    assert secrets.scrub("failed: hunter22") == f"failed: {X}"


def test_scan_argv_scrubs_known_secrets() -> None:
    known = Secrets.of(["correct-horse", "12"])
    argv, secrets = R.scan_argv(["tool", "--user=bob", "correct-horse!", "12"], known)
    assert argv == ["tool", "--user=bob", f"{X}!", "12"]  # "12" is too short to be scrubbed
    assert secrets == known
