"""API keys: made once, shown once, stored only as a salted hash.

A key reads `pw_<key_id>_<secret>`. The `key_id` (12 hex digits) is stored in clear and
finds the row in one indexed lookup; the secret (32 random bytes) is stored as
`sha256$<salt>$<digest>`.

Why salted SHA-256 and not scrypt/bcrypt: slow hashes exist to protect low-entropy
passwords from guessing. A 256-bit random secret cannot be guessed however fast the hash
is, while a slow hash would cost every API request tens of milliseconds of CPU on the
shop's box (scrypt at n=2**14 takes ~70 ms here). The algorithm tag in the stored value
leaves room to change this without invalidating existing keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence

from service.models import KEY_ROLES
from service.store import AlertStore, ApiKey

PREFIX = "pw"
ALL_SITES = "*"
_KEY = re.compile(r"^pw_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The stored form of a key's secret: `sha256$<salt hex>$<digest hex>`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode("utf-8")).hexdigest()
    return f"sha256${salt.hex()}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` matches a stored hash (constant-time; unknown formats never match)."""
    try:
        algorithm, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if algorithm != "sha256":
        return False
    candidate = hashlib.sha256(salt + secret.encode("utf-8")).hexdigest()
    return hmac.compare_digest(candidate, digest)


def parse_key(plain: str) -> tuple[str, str] | None:
    """(key_id, secret) of a presented key, or None when it is not shaped like one of ours."""
    match = _KEY.match(plain.strip())
    return (match.group(1), match.group(2)) if match else None


def _clean_ids(values: Iterable[str], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{what} must be non-empty strings, got {value!r}")
        if value.strip() not in out:
            out.append(value.strip())
    return out


def create_key(
    store: AlertStore,
    role: str,
    sites: Sequence[str] | str,
    cameras: Sequence[str] | None = None,
    name: str = "",
) -> str:
    """Store a new key and return it in clear - the only time it exists in clear.

    `role`: admin | manager | trainer | security. `sites`: the site ids the key may see
    ("*" for every site); `cameras`: optionally narrows it to these camera ids. `name` is
    how reviews by this key are signed (default: the key id).
    """
    if role not in KEY_ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(KEY_ROLES)})")
    site_list = _clean_ids([sites] if isinstance(sites, str) else sites, "sites")
    if not site_list:
        raise ValueError("a key needs at least one site (or '*' for every site)")
    camera_list = _clean_ids(cameras, "cameras") if cameras is not None else None
    if camera_list is not None and not camera_list:
        raise ValueError("cameras, when given, must name at least one camera")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    store.add_key(key_id, hash_secret(secret), role, site_list, camera_list, name=name or key_id)
    return f"{PREFIX}_{key_id}_{secret}"


def authenticate(store: AlertStore, plain: str) -> ApiKey | None:
    """The stored key a presented key stands for, or None (malformed, unknown, wrong or revoked)."""
    parsed = parse_key(plain)
    if parsed is None:
        return None
    key_id, secret = parsed
    key = store.key(key_id)
    if key is None or key.revoked or not verify_secret(secret, key.secret_hash):
        return None
    return key


def revoke_key(store: AlertStore, key_id: str) -> bool:
    """Revoke by key id (the part after `pw_`, or the whole key); False when no such key."""
    parsed = parse_key(key_id)
    return store.revoke_key(parsed[0] if parsed else key_id)


def list_keys(store: AlertStore) -> list[ApiKey]:
    """Every key, revoked ones included, without their hashes' meaning anything to a reader."""
    return store.keys()
