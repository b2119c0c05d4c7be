"""The object kinds: immutable facts, each encoded canonically and named by its digest.

Stable facts live apart from volatile ones, so identical software collapses to one object:

* :class:`LibrarySet` — the installed distributions, ``(pep503 name, version)`` pairs.
* :class:`ImportSet` — the installed distributions a run imported, referenced from its end.
* :class:`CondaSet` — the packages of the conda/mamba/pixi environment the interpreter lives in.
* :class:`Environment` — interpreter, platform, the library set and the allow-listed
  reproducibility-relevant variables.  No host, user, PID or time.
* :class:`Variables` — every environment variable of a run, secrets redacted.
* :class:`Run` — one execution: environment, variables, host, user, argv, cwd, start, code.
* :class:`RunEnd` — how a run ended (status, time, exit code, inputs), written once at the end,
  so nothing is ever updated in place.
* :class:`Product` — a data product: name, version, metadata, content digest and size, path,
  the run that made it and its parent products.
* :class:`Signature` — who vouched for a bundle that was imported: an ed25519 signature by a
  public key over the bundle's roots and checksum (kept so ``show`` and ``verify`` can say it).

Bodies are maps with exactly the fields below; :func:`load` refuses anything else.

Fields added after a kind's first version (``ADDED``: field -> version) are optional: left
out of the body when ``None``, and an object carrying one is framed with that version.  So an
object without the newer facts keeps the bytes and digest it always had (old stores keep
verifying, and an environment without conda, GPU or container stays the one it was), while a
reader that knows only version 1 refuses a newer object by its frame instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from provstore.core import encoding
from provstore.core.contracts import ensures, requires
from provstore.core.digests import DIGEST_SIZE, frame, hash_framed, split_frame, to_hex
from provstore.core.errors import CorruptObjectError, EncodingError

__all__ = [
    "KINDS",
    "CodeState",
    "CondaSet",
    "Environment",
    "ImportSet",
    "LibrarySet",
    "Object",
    "Product",
    "Run",
    "RunEnd",
    "Sealed",
    "Signature",
    "Variables",
    "MAX_OBJECT_SIZE",
    "load",
    "refusal",
    "second_end",
    "wrong_kind",
    "seal",
    "seal_unchecked",
]

EnvValue = str | bytes
_Check = Callable[[Any], bool]


def _is_digest(value: Any) -> bool:
    return type(value) is bytes and len(value) == DIGEST_SIZE


def _opt(check: _Check) -> _Check:
    return lambda value: value is None or check(value)


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_nonneg(value: Any) -> bool:
    return type(value) is int and value >= 0


def _list_of(check: _Check) -> _Check:
    return lambda value: type(value) is list and all(check(item) for item in value)


def _is_str_map(value: Any) -> bool:
    return type(value) is dict


def _is_pair(value: Any) -> bool:
    return type(value) is list and len(value) == 2 and all(type(v) is str for v in value)


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Text, or lists and str-keyed maps of text (a probe's facts), two levels deep at most."""
    if type(value) is str:
        return True
    if depth >= 2:
        return False
    if type(value) is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _is_facts(value: Any) -> bool:
    return type(value) is dict and _is_plain(value)


def _is_quad(value: Any) -> bool:
    return type(value) is list and len(value) == 4 and all(type(v) is str for v in value)


def _is_var_map(value: Any) -> bool:
    return type(value) is dict and all(type(v) in (str, bytes) for v in value.values())


class _Base:
    """Shared encoding for every kind: fields → canonical map body and back."""

    __slots__ = ()
    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    _CHECKS: ClassVar[dict[str, _Check]]
    REFERENCES: ClassVar[dict[str, str]] = {}
    """Each field that names other objects, and the kind those objects must be."""
    TEXT: ClassVar[tuple[str, ...]] = ()
    """Fields the index keeps as database text: they may not hold NUL (PostgreSQL cannot)."""
    ADDED: ClassVar[dict[str, int]] = {}
    """Optional fields added in a later version: left out of the body when ``None``."""

    @property
    def frame_version(self) -> int:
        """The frame version: the newest of the added fields this object carries, else 1."""
        added = self.ADDED
        if not added:
            return 1
        return max((v for name, v in added.items() if getattr(self, name) is not None), default=1)

    def body(self) -> dict[str, Any]:
        """The object's fields as the plain map that gets encoded."""
        # Tuples need no conversion: the encoder writes them as arrays.
        added = self.ADDED
        return {
            name: getattr(self, name)
            for name in self._CHECKS
            if name not in added or getattr(self, name) is not None
        }

    def references(self) -> tuple[bytes, ...]:
        """Digests of the objects this one refers to (its closure's next layer)."""
        out: list[bytes] = []
        for name in self.REFERENCES:
            value = getattr(self, name)
            if type(value) is bytes:
                out.append(value)
            elif value is not None:
                out.extend(value)
        return tuple(out)

    def typed_references(self) -> Iterator[tuple[str, bytes, str]]:
        """``(field, digest, kind it must name)`` for every reference, in field order."""
        for name, kind in self.REFERENCES.items():
            value = getattr(self, name)
            if type(value) is bytes:
                yield name, value, kind
            elif value is not None:
                for digest in value:
                    yield name, digest, kind

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Base)
            and type(self) is type(other)
            and self.encoded() == other.encoded()
        )

    def __hash__(self) -> int:
        return hash(self.encoded())

    def encoded(self) -> bytes:
        """The canonical body bytes."""
        return encoding.canonical(self.body())

    @classmethod
    def from_body(cls, body: Any, version: int = 1) -> Any:
        """Build the object from a decoded body, refusing missing, extra or mistyped fields.

        A body of ``version`` holds every original field, may hold the fields added up to that
        version, and (being canonical) holds at least one added in that very version.
        """
        if type(body) is not dict:
            raise ValueError(f"a {cls.KIND} body must be a map")
        if cls.ADDED:
            return cls._from_versioned(body, version)
        if body.keys() != cls._CHECKS.keys():
            raise ValueError(f"a {cls.KIND} needs exactly the fields {sorted(cls._CHECKS)}")
        # _CHECKS names every field (a test pins this), so no dataclasses.fields() per object.
        fields = {}
        for name, check in cls._CHECKS.items():
            value = body[name]
            if not check(value):
                raise ValueError(f"field {name!r} of a {cls.KIND} has the wrong type")
            fields[name] = (
                value if type(value) is not list and name != "code" else _frozen(name, value)
            )
        return cls(**fields)

    @classmethod
    def _from_versioned(cls, body: dict[str, Any], version: int) -> Any:
        added = cls.ADDED
        required = {name for name in cls._CHECKS if name not in added}
        allowed = required | {name for name, v in added.items() if v <= version}
        keys = set(body)
        if not required <= keys or not keys <= allowed:
            raise ValueError(
                f"a {cls.KIND} of version {version} needs the fields {sorted(required)} and "
                f"may hold {sorted(allowed - required)}"
            )
        if version > 1 and not any(added.get(name) == version for name in keys):
            raise ValueError(f"a {cls.KIND} of version {version} holds none of its new fields")
        fields = {}
        for name in keys:
            value = body[name]
            if not cls._CHECKS[name](value) or (name in added and value is None):
                raise ValueError(f"field {name!r} of a {cls.KIND} has the wrong type")
            fields[name] = (
                value if type(value) is not list and name != "code" else _frozen(name, value)
            )
        return cls(**fields)


def _frozen(name: str, value: Any) -> Any:
    if name == "code":
        return None if value is None else CodeState(**value)
    if name in ("metadata", "gpu", "container", "job", "cuda") or type(value) is not list:
        return value
    return tuple(tuple(v) if type(v) is list else v for v in value)


@dataclass(frozen=True, slots=True, eq=False)
class LibrarySet(_Base):
    """Installed distributions as sorted ``(normalized name, version)`` pairs."""

    KIND: ClassVar[str] = "libraryset"
    _CHECKS: ClassVar[dict[str, _Check]] = {"distributions": _list_of(_is_pair)}
    distributions: tuple[tuple[str, str], ...]

    def versions(self) -> dict[str, str]:
        """Name → version."""
        return dict(self.distributions)


@dataclass(frozen=True, slots=True, eq=False)
class ImportSet(_Base):
    """The installed distributions a run imported, as sorted ``(name, version)`` pairs."""

    KIND: ClassVar[str] = "importset"
    _CHECKS: ClassVar[dict[str, _Check]] = {"distributions": _list_of(_is_pair)}
    distributions: tuple[tuple[str, str], ...]

    def names(self) -> tuple[str, ...]:
        """The distributions' names."""
        return tuple(name for name, _ in self.distributions)


@dataclass(frozen=True, slots=True, eq=False)
class CondaSet(_Base):
    """The packages of a conda environment: sorted ``(name, version, build, channel)``.

    ``unreadable`` lists ``(file, reason)`` for package records that could not be read.
    """

    KIND: ClassVar[str] = "condaset"
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "packages": _list_of(_is_quad),
        "unreadable": _list_of(_is_pair),
    }
    packages: tuple[tuple[str, str, str, str], ...]
    unreadable: tuple[tuple[str, str], ...]

    def versions(self) -> dict[str, str]:
        """Name -> ``version build (channel)`` text, for diffs."""
        return {n: f"{v} {b} ({c})" if c else f"{v} {b}" for n, v, b, c in self.packages}


@dataclass(frozen=True, slots=True, eq=False)
class Environment(_Base):
    """What software computed a result: stable across hosts, users and time.

    Version 2 adds the conda packages (a :class:`CondaSet`), the GPU driver and models, and
    the container image, each absent when there is none (or its probe is off).
    """

    KIND: ClassVar[str] = "environment"
    VERSION: ClassVar[int] = 2
    REFERENCES: ClassVar[dict[str, str]] = {"libraryset": "libraryset", "conda": "condaset"}
    ADDED: ClassVar[dict[str, int]] = {"conda": 2, "gpu": 2, "container": 2}
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "implementation": _is_str,
        "python_version": _is_str,
        "system": _is_str,
        "release": _is_str,
        "machine": _is_str,
        "libc": _is_str,
        "libraryset": _is_digest,
        "variables": _is_var_map,
        "redacted": _list_of(_is_str),
        "conda": _opt(_is_digest),
        "gpu": _opt(_is_facts),
        "container": _opt(_is_facts),
    }
    implementation: str
    python_version: str
    system: str
    release: str
    machine: str
    libc: str
    libraryset: bytes
    variables: Mapping[str, EnvValue]
    redacted: tuple[str, ...]
    conda: bytes | None = None
    gpu: Mapping[str, Any] | None = None
    container: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Variables(_Base):
    """Every environment variable of a run after redaction; ``redacted`` names the hidden."""

    KIND: ClassVar[str] = "variables"
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "variables": _is_var_map,
        "redacted": _list_of(_is_str),
    }
    variables: Mapping[str, EnvValue]
    redacted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CodeState:
    """The git state of the code a run executed."""

    root: str
    commit: str | None
    branch: str | None
    dirty: bool
    diff_digest: bytes | None

    def body(self) -> dict[str, Any]:
        """Plain map form."""
        return {
            "root": self.root,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "diff_digest": self.diff_digest,
        }


def _is_code(value: Any) -> bool:
    checks: dict[str, _Check] = {
        "root": _is_str,
        "commit": _opt(_is_str),
        "branch": _opt(_is_str),
        "dirty": lambda v: type(v) is bool,
        "diff_digest": _opt(_is_digest),
    }
    return (
        type(value) is dict
        and set(value) == set(checks)
        and all(check(value[k]) for k, check in checks.items())
    )


@dataclass(frozen=True, slots=True, eq=False)
class Run(_Base):
    """One execution.  ``command`` is the command ``provstore run`` tracked (None otherwise).

    Version 2 adds ``job`` (the batch job or pod the run belonged to) and ``gpu`` (the devices
    it was given, e.g. ``CUDA_VISIBLE_DEVICES``): volatile facts, never in the environment.
    """

    KIND: ClassVar[str] = "run"
    VERSION: ClassVar[int] = 2
    ADDED: ClassVar[dict[str, int]] = {"job": 2, "gpu": 2}
    REFERENCES: ClassVar[dict[str, str]] = {"environment": "environment", "variables": "variables"}
    TEXT: ClassVar[tuple[str, ...]] = ("host", "user", "name")
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "environment": _is_digest,
        "variables": _is_digest,
        "host": _is_str,
        "user": _is_str,
        "argv": _list_of(_is_str),
        "cwd": _is_str,
        "executable": _is_str,
        "pid": _is_nonneg,
        "started_ns": _is_int,
        "code": _opt(_is_code),
        "name": _opt(_is_str),
        "command": _opt(_list_of(_is_str)),
        "job": _opt(_is_facts),
        "gpu": _opt(_is_facts),
    }
    environment: bytes
    variables: bytes
    host: str
    user: str
    argv: tuple[str, ...]
    cwd: str
    executable: str
    pid: int
    started_ns: int
    code: CodeState | None
    name: str | None
    command: tuple[str, ...] | None = None
    job: Mapping[str, Any] | None = None
    gpu: Mapping[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """The fields, with the code state as a plain map."""
        out = _Base.body(self)
        if self.code is not None:
            out["code"] = self.code.body()
        return out


@dataclass(frozen=True, slots=True, eq=False)
class RunEnd(_Base):
    """How a run ended.  ``status`` is ``succeeded`` or ``failed``.

    Version 2 adds ``imported`` (an :class:`ImportSet`: the installed distributions the run
    imported; absent when unknown) and ``cuda`` (framework -> CUDA runtime version, for the
    frameworks the run had imported).
    """

    KIND: ClassVar[str] = "runend"
    VERSION: ClassVar[int] = 2
    ADDED: ClassVar[dict[str, int]] = {"imported": 2, "cuda": 2}
    REFERENCES: ClassVar[dict[str, str]] = {
        "run": "run",
        "inputs": "product",
        "imported": "importset",
    }
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "run": _is_digest,
        "status": lambda v: v in ("succeeded", "failed"),
        "finished_ns": _is_int,
        "error": _opt(_is_str),
        "exit_code": _opt(_is_int),
        "inputs": _list_of(_is_digest),
        "imported": _opt(_is_digest),
        "cuda": _opt(_is_facts),
    }
    run: bytes
    status: str
    finished_ns: int
    error: str | None
    exit_code: int | None
    inputs: tuple[bytes, ...]
    imported: bytes | None = None
    cuda: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Product(_Base):
    """A data product.  ``content``/``size`` describe its bytes when it is a file."""

    KIND: ClassVar[str] = "product"
    REFERENCES: ClassVar[dict[str, str]] = {"run": "run", "parents": "product"}
    TEXT: ClassVar[tuple[str, ...]] = ("name", "version")
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "name": _is_str,
        "version": _opt(_is_str),
        "metadata": _is_str_map,
        "content": _opt(_is_digest),
        "size": _opt(_is_nonneg),
        "path": _opt(_is_str),
        "run": _opt(_is_digest),
        "parents": _list_of(_is_digest),
    }
    name: str
    version: str | None
    metadata: Mapping[str, Any]
    content: bytes | None
    size: int | None
    path: str | None
    run: bytes | None
    parents: tuple[bytes, ...]

    def body(self) -> dict[str, Any]:
        """The fields in canonical (sorted) order: a test holds it equal to :class:`_Base`'s."""
        return {
            "content": self.content,
            "metadata": self.metadata,
            "name": self.name,
            "parents": self.parents,
            "path": self.path,
            "run": self.run,
            "size": self.size,
            "version": self.version,
        }

    def encoded(self) -> bytes:
        """The canonical body bytes, without sorting the body's keys (it is built in order)."""
        return encoding.canonical_sorted(self.body())


def _is_bytes_of(size: int) -> _Check:
    return lambda value: type(value) is bytes and len(value) == size


SIGNATURE_CONTEXT = b"provstore bundle signature 1\n"
"""What a signed message starts with, so a bundle signature can never pass for another one."""


@dataclass(frozen=True, slots=True, eq=False)
class Signature(_Base):
    """An ed25519 signature over a bundle's roots, object count and trailer checksum.

    ``roots`` are not references with a kind (a bundle's roots may be of any kind) and the
    bundle's objects name no signature: a signature is found by the roots it lists.  The
    signed message is :meth:`message`, so changing any field but ``signature`` breaks it.
    """

    KIND: ClassVar[str] = "signature"
    TEXT: ClassVar[tuple[str, ...]] = ("signer",)
    _CHECKS: ClassVar[dict[str, _Check]] = {
        "roots": _list_of(_is_digest),
        "checksum": _is_digest,
        "count": _is_nonneg,
        "algorithm": lambda v: v == "ed25519",
        "public_key": _is_bytes_of(32),
        "signer": _is_str,
        "signed_ns": _is_int,
        "signature": _is_bytes_of(64),
    }
    roots: tuple[bytes, ...]
    checksum: bytes
    count: int
    algorithm: str
    public_key: bytes
    signer: str
    signed_ns: int
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature is over: a context string, then every other field."""
        fields = {name: getattr(self, name) for name in self._CHECKS if name != "signature"}
        return SIGNATURE_CONTEXT + encoding.canonical(fields)


MAX_OBJECT_SIZE = 4 << 20
"""The largest object (framed bytes) a store accepts and a bundle may carry.

4 MiB: a MariaDB server's default ``max_allowed_packet`` (16 MiB) holds one with room for
escaping; PostgreSQL and SQLite take far more, but a limit that differs per backend would
strand objects at the site that could record them.
"""

Object = (
    LibrarySet
    | ImportSet
    | CondaSet
    | Environment
    | Variables
    | Run
    | RunEnd
    | Product
    | Signature
)
KINDS: dict[str, type[Object]] = {
    cls.KIND: cls
    for cls in (
        LibrarySet,
        ImportSet,
        CondaSet,
        Environment,
        Variables,
        Run,
        RunEnd,
        Product,
        Signature,
    )  # fmt: skip
}


@dataclass(frozen=True, slots=True)
class Sealed:
    """An object with its framed bytes and digest, ready to store."""

    digest: bytes
    kind: str
    data: bytes
    obj: Object

    @property
    def hex(self) -> str:
        """The digest as hex text."""
        return to_hex(self.digest)


def _well_typed(obj: Object) -> bool | str:
    """Every field holds what its kind allows (the checks a reader applies when loading)."""
    if not isinstance(obj, _Base):
        return f"only provstore objects can be sealed, not {type(obj).__name__}"
    body = encoding.decode(obj.encoded())  # an unencodable value raises EncodingError here
    try:
        type(obj).from_body(body, obj.frame_version)
    except (ValueError, TypeError) as exc:
        return f"cannot seal this {obj.KIND}: {exc}"
    return True


def _sealed_faithfully(obj: Object, result: Sealed) -> bool | str:
    if len(result.digest) != DIGEST_SIZE:
        return f"a digest of {len(result.digest)} bytes, not {DIGEST_SIZE}"
    if hash_framed(result.data) != result.digest:
        return f"the digest of a sealed {obj.KIND} is not the hash of its framed bytes"
    try:
        again = load(result.digest, result.data).obj
    except CorruptObjectError as exc:
        return f"a sealed {obj.KIND} does not load back: {exc.reason}"
    return again == obj or f"a sealed {obj.KIND} loads back as another object"


@requires(_well_typed)
@ensures(_sealed_faithfully)
def seal(obj: Object) -> Sealed:
    """Encode, frame and hash an object.

    Checked: every field has its kind's type (so a wrong one fails here, not when the object
    is read back), the digest is the hash of the framed bytes, and loading them gives the
    object back.
    """
    return seal_unchecked(obj)


def seal_unchecked(obj: Object) -> Sealed:
    """:func:`seal` without its contract: for the registration loop, thousands a second.

    Still refuses what no store could keep or no bundle could carry (:func:`refusal`).
    """
    data = frame(obj.KIND, obj.frame_version, obj.encoded())
    reason = refusal(obj, len(data))
    if reason is not None:
        raise EncodingError(reason[0], reason[1])
    return Sealed(hash_framed(data), obj.KIND, data, obj)


def wrong_kind(referrer: str, field: str, ref: bytes, found: str, expected: str) -> str:
    """The message for a reference to an object of another kind than its field requires."""
    return (
        f"its {field} {to_hex(ref)} is a {found}, but a {referrer}'s {field} must name a "
        f"{expected}"
    )


def second_end(run: bytes, first: bytes) -> str:
    """The message for an end of a run that already ended otherwise."""
    return (
        f"run {to_hex(run)} already ended ({to_hex(first)}); a run ends once, so this second "
        "end is a conflict"
    )


def refusal(obj: Object, size: int) -> tuple[str, str] | None:
    """Why an object of ``size`` framed bytes may not be stored: ``(where, reason)``, or None.

    Sealing and importing apply the same rule, so whatever one site records another can
    import: at most :data:`MAX_OBJECT_SIZE` bytes, and no NUL in a field the index keeps as
    text (PostgreSQL cannot store it; the rule holds on every backend alike).
    """
    if size > MAX_OBJECT_SIZE:
        return (
            f"this {obj.KIND}",
            f"it is {size:,} bytes encoded; an object may be at most {MAX_OBJECT_SIZE:,} bytes "
            f"({MAX_OBJECT_SIZE >> 20} MiB), so that every database and every bundle can hold "
            "it. Keep large data in a file and record its path",
        )
    for name in obj.TEXT:
        value = getattr(obj, name)
        if value is not None and "\x00" in value:
            return (
                f"the {obj.KIND}'s {name}",
                "it holds a NUL character, which no store can keep as text",
            )
    return None


def load(digest: bytes, data: bytes, *, hashed: bool = False) -> Sealed:
    """Check framed bytes against their digest and decode them; CorruptObjectError if not.

    ``hashed=True`` skips the hash when the caller has just checked it (a bundle reader).
    """
    if not hashed and hash_framed(data) != digest:
        raise CorruptObjectError(to_hex(digest), "its bytes do not hash to its digest")
    try:
        kind, version, body = split_frame(data)
        cls = KINDS.get(kind)
        if cls is None:
            raise ValueError(f"unknown kind {kind!r}")
        if not 1 <= version <= cls.VERSION:
            raise ValueError(
                f"{kind} version {version} is not supported (this reads versions up to "
                f"{cls.VERSION}; a newer provstore wrote it)"
            )
        obj = cls.from_body(encoding.decode(body), version)
    except EncodingError as exc:
        raise CorruptObjectError(to_hex(digest), f"its body {exc.reason}") from None
    except (ValueError, TypeError) as exc:
        raise CorruptObjectError(to_hex(digest), str(exc)) from None
    return Sealed(digest, kind, data, obj)
