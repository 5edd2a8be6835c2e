"""The user's signing key: an Ed25519 key pair that signs the runs this user makes, offline.

`reproexec keys init` makes it under `$XDG_CONFIG_HOME/reproexec/` (default `~/.config/reproexec/`):
`signing-key.pem` (the private key, mode 0600, never copied into a run folder or a bundle) and
`signing-key.pub` (the public key, to share). A key's id is the sha256 of its public key file, so
anyone can compute it (`sha256sum signing-key.pub`) and compare it with the one they were given.
Keys are made and used by well-kept libraries (cryptography, securesystemslib), not by hand.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reproexec.errors import AttestationError, ConfigError
from reproexec.fsutil import UnreadableFile, read_bounded, write_atomic

PRIVATE_KEY = "signing-key.pem"
PUBLIC_KEY = "signing-key.pub"
MAX_KEY_BYTES = 64 * 1024


def key_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "reproexec"


def key_id(public_pem: bytes) -> str:
    """A public key's id: the sha256 of its PEM file."""
    return hashlib.sha256(public_pem).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    pem: bytes
    keyid: str

    def sslib(self) -> Any:
        """The key as securesystemslib verifies with it (its keyid the one reproexec names it by)."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        from securesystemslib.signer import SSlibKey

        return SSlibKey.from_crypto(load_pem_public_key(self.pem), keyid=self.keyid)


def init_keys(*, force: bool = False) -> PublicKey:
    """Make this user's key pair (refused if one exists, unless force)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = key_dir()
    if (folder / PRIVATE_KEY).exists() and not force:
        raise ConfigError(
            f"a signing key already exists in {folder}",
            "`reproexec keys show` prints it; pass --force to replace it (runs signed with the old key stay "
            "verifiable with its public key)",
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(folder / PRIVATE_KEY, private_pem, mode=0o600)
    write_atomic(folder / PUBLIC_KEY, public_pem, mode=0o644)
    return PublicKey(public_pem, key_id(public_pem))


def read_public_key(path: Path) -> PublicKey:
    """A public key file someone gave: a regular file (never through a link), bounded, a PEM key
    of a kind reproexec signs with."""
    pem = _read_key_file(path, "public key")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        if not isinstance(load_pem_public_key(pem), Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
    except ValueError as e:
        raise AttestationError(
            f"{path} is not a public key reproexec can check: {e}", "pass a signing-key.pub"
        ) from None
    return PublicKey(pem, key_id(pem))


def own_public_key() -> PublicKey | None:
    """This user's public key, or None when `reproexec keys init` was never run."""
    path = key_dir() / PUBLIC_KEY
    return read_public_key(path) if path.exists() else None


def load_signer() -> tuple[Any, PublicKey] | None:
    """A securesystemslib signer for this user's key (and its public key), or None without a key.
    The private key must be a regular file only its owner can read."""
    path = key_dir() / PRIVATE_KEY
    if not path.exists() and not path.is_symlink():
        return None
    pem = _read_key_file(path, "private key")
    mode = os.stat(path, follow_symlinks=False).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AttestationError(
            f"the signing key {path} can be read by others (mode {stat.S_IMODE(mode):o})", f"chmod 600 {path}"
        )
    public = own_public_key()
    if public is None:
        raise AttestationError(
            f"{key_dir() / PUBLIC_KEY} is missing beside the signing key", "run `reproexec keys init --force`"
        )
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise AttestationError(
            f"{path} is not a signing key reproexec can use: {e}", "run `reproexec keys init --force`"
        ) from None
    return CryptoSigner(private, public.sslib()), public  # type: ignore[arg-type]


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return read_bounded(path, MAX_KEY_BYTES, follow_symlinks=False)
    except FileNotFoundError:
        raise AttestationError(f"{what} {path} does not exist", "pass the path of a key file") from None
    except UnreadableFile as e:
        raise AttestationError(
            f"{what} {path} cannot be read: {e.strerror}", "pass a key file, not a device or folder"
        ) from None
    except OSError as e:
        raise AttestationError(
            f"{what} {path} cannot be read: {e.strerror or e} (a key file is never read through a link)",
            "pass the key file itself",
        ) from None
