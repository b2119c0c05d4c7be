"""ed25519 keys, bundle signatures and the trusted keys an import checks them against.

Keys are PEM files any tool reads (PKCS#8 for the private key, SubjectPublicKeyInfo for the
public one), each after one comment line naming the key (``# provstore ed25519 key: NAME``);
PEM readers skip text before the block.  The key id is the one TUF, in-toto and
securesystemslib compute for an ed25519 key: the SHA-256 of its canonical JSON form, so an
attestation's ``keyid`` means the same to them.

The cryptography itself is ``cryptography``'s (the ``sign`` extra), imported only here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provstore.checks.report import Check
from provstore.core.digests import to_hex
from provstore.core.errors import BundleError, ConfigError, PathError, UsageError
from provstore.core.objects import Sealed, Signature, seal

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
    )

    from provstore.store import Store

__all__ = [
    "PrivateKey",
    "TrustedKeys",
    "check_signatures",
    "check_signed",
    "describe",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_trusted_keys",
    "sign_bundle",
    "signature_valid",
    "signer_lines",
]

_COMMENT = "# provstore ed25519 key: "
_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_NAME_LINE = re.compile(rb"^# provstore ed25519 key: (.*)$", re.MULTILINE)


def _crypto() -> None:
    """Fail with advice when the ``sign`` extra is not installed."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise ConfigError(
            "signing needs the 'cryptography' package: pip install 'provstore[sign]'"
        ) from None


def key_id(public_key: bytes) -> str:
    """The securesystemslib/in-toto key id of a raw ed25519 public key (64 hex digits)."""
    # Canonical JSON (sorted keys, no spaces): what securesystemslib hashes.
    text = json.dumps(
        {"keytype": "ed25519", "keyval": {"public": public_key.hex()}, "scheme": "ed25519"},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A loaded signing key: its name, raw public key and the ``cryptography`` key object."""

    name: str
    public_key: bytes
    key: Ed25519PrivateKey

    @property
    def id(self) -> str:
        """The key id (see :func:`key_id`)."""
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``message``."""
        return self.key.sign(message)


def generate_key(path: str, name: str) -> str:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub``.

    Neither file may exist; returns the key id.
    """
    _crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if "\n" in name or "\r" in name:
        raise UsageError("a key name is one line of text")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    head = f"{_COMMENT}{name}\n".encode()
    for target in (path, path + ".pub"):
        if os.path.lexists(target):
            raise PathError(target, "it exists; choose another name or remove it", action="write")
    _write_new(path, head + private, 0o600)
    _write_new(path + ".pub", head + public, 0o644)
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return key_id(raw)


def _write_new(path: str, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc), action="write") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask does not make a private key readable by others


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise PathError(path, exc.strerror or str(exc)) from None


def _name_in(data: bytes, fallback: str) -> str:
    found = _NAME_LINE.search(data)
    return found.group(1).decode("utf-8", "replace").strip() if found else fallback


def load_private_key(path: str) -> PrivateKey:
    """The ed25519 private key in the PEM file at ``path``."""
    _crypto()
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path)
    try:
        key = ser.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return PrivateKey(_name_in(data, Path(path).stem), raw, key)


def _public_keys(path: str) -> dict[bytes, str]:
    """Raw public key → name, for every PEM public key in the file."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read(path)
    blocks = _PEM_PUBLIC.findall(data)
    if not blocks:
        raise ConfigError(f"{path} holds no PEM public key")
    found: dict[bytes, str] = {}
    for block in blocks:
        try:
            key = ser.load_pem_public_key(block)
        except ValueError as exc:
            raise ConfigError(f"{path} holds a damaged public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
        raw = key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        found[raw] = _name_in(data, Path(path).name)
    return found


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """Public keys whose signatures an import accepts: raw key → name."""

    keys: dict[bytes, str]
    source: str

    def name_of(self, public_key: bytes) -> str | None:
        """The key's name when it is trusted, else None."""
        return self.keys.get(public_key)


def load_trusted_keys(paths: Sequence[str]) -> TrustedKeys:
    """Every public key in the files named, and in the ``*.pub`` files of directories named.

    An empty result is an error: an import that requires a trusted key must have one.
    """
    _crypto()
    keys: dict[bytes, str] = {}
    for path in paths:
        if os.path.isdir(path):
            files = sorted(str(p) for p in Path(path).glob("*.pub") if p.is_file())
        elif os.path.exists(path):
            files = [path]
        else:
            raise PathError(path, "no such file or directory")
        for name in files:
            keys.update(_public_keys(name))
    if not keys:
        raise ConfigError(f"no public keys (*.pub) in {', '.join(paths)}")
    return TrustedKeys(keys, ", ".join(paths))


def sign_bundle(key: PrivateKey, roots: Sequence[bytes], checksum: bytes, count: int) -> Sealed:
    """A signature object by ``key`` over a bundle's roots, object count and checksum."""
    unsigned = Signature(
        roots=tuple(roots),
        checksum=checksum,
        count=count,
        algorithm="ed25519",
        public_key=key.public_key,
        signer=key.name,
        signed_ns=time.time_ns(),
        signature=bytes(64),
    )
    return seal(dataclasses.replace(unsigned, signature=key.sign(unsigned.message())))


def signature_valid(sig: Signature) -> bool:
    """Whether the ed25519 signature holds over the signature's own fields."""
    _crypto()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature, sig.message())
    except (InvalidSignature, ValueError):
        return False
    return True


def describe(sig: Signature) -> str:
    """``NAME (key 1a2b3c4d5e6f7a8b)``: how messages name a signer."""
    return f"{sig.signer or 'unnamed'} (key {key_id(sig.public_key)[:16]})"


def check_signatures(
    signatures: Iterable[Sealed],
    roots: Sequence[bytes],
    checksum: bytes,
    count: int,
    trusted: TrustedKeys | None,
) -> list[Sealed]:
    """The bundle's signatures to record, once each holds for this bundle; else BundleError.

    Every signature a bundle carries must be valid and made for this bundle (its roots,
    object count and checksum): a bad one means the bundle or the signature was altered.
    With ``trusted`` keys, at least one signature must be by one of them.
    """
    found = list(signatures)
    for item in found:
        sig = item.obj
        assert isinstance(sig, Signature)
        who = describe(sig)
        if sig.checksum != checksum or sig.count != count:
            raise BundleError(
                f"the signature by {who} was made for other contents (checksum "
                f"{sig.checksum.hex()[:16]}..., this bundle's is {checksum.hex()[:16]}...)"
            )
        if list(sig.roots) != list(roots):
            raise BundleError(f"the signature by {who} names other roots than this bundle's")
        if not signature_valid(sig):
            raise BundleError(
                f"the signature by {who} does not verify (the bundle or its signature was altered)"
            )
    if trusted is None:
        return found
    if not found:
        raise BundleError(
            f"the bundle is not signed, and a signature by a trusted key ({trusted.source}) "
            "is required"
        )
    sigs = [item.obj for item in found if isinstance(item.obj, Signature)]
    if not any(trusted.name_of(sig.public_key) is not None for sig in sigs):
        names = ", ".join(describe(sig) for sig in sigs)
        raise BundleError(f"the bundle is signed only by {names}, not by a trusted key")
    return found


def signer_lines(signatures: Iterable[Sealed]) -> list[str]:
    """One line per signature: who signed a bundle with this root, when, whether it verifies."""
    from provstore.exchange.gathered import iso

    lines = []
    for item in signatures:
        sig = item.obj
        assert isinstance(sig, Signature)
        state = "valid" if signature_valid(sig) else "INVALID"
        lines.append(
            f"signed by {describe(sig)} at {iso(sig.signed_ns)}: {state} "
            f"(signature {to_hex(item.digest)[:12]})"
        )
    return lines


def check_signed(store: Store, ref: str) -> Check | None:
    """The ``signature`` check of ``verify``: who signed the bundles that brought ``ref``.

    None when no recorded signature names it (most objects are recorded here, not
    imported); fails when a recorded signature does not verify (it was altered since).
    """
    digest = store.resolve(ref)
    found = store.signatures_of(digest)
    if not found:
        return None
    try:
        lines = signer_lines(found)
    except ConfigError as exc:  # the sign extra is not installed
        return Check("signature", "skipped", f"{len(found)} signatures recorded; {exc}")
    details = {"signatures": [_signature_json(item) for item in found]}
    status = "failed" if any(": INVALID" in line for line in lines) else "ok"
    return Check("signature", status, "; ".join(lines), details)


def _signature_json(item: Sealed) -> dict[str, object]:
    sig = item.obj
    assert isinstance(sig, Signature)
    return {
        "digest": to_hex(item.digest),
        "signer": sig.signer,
        "key_id": key_id(sig.public_key),
        "signed_ns": sig.signed_ns,
        "valid": signature_valid(sig),
    }
