"""Gateway secrets: made, hashed, checked; and the MQTT broker's password and ACL files.

A gateway (a sensor's own modem, or a box in a street cabinet speaking for several sensors)
has one secret: its MQTT password and its HTTP bearer token. The registry holds only its hash,
in Mosquitto's own format (`$7$ITERATIONS$SALT$HASH`, PBKDF2-SHA512), so the same line serves
the broker's password file and the HTTP ingest's check, and a copy of the configuration gives
an attacker nothing to log in with. A gateway in the field can be stolen: revoking it is one
line (`revoked: true`) and a reload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

# Mosquitto's own default is 101 iterations; a stolen registry should cost an attacker more
# than that. Checking one secret at this count takes about 10 ms, once per connection (the
# HTTP ingest remembers secrets it has checked).
ITERATIONS = 20_000
_SALT_BYTES = 12
# Long enough that guessing is hopeless, short enough to type into a gateway's web page.
SECRET_BYTES = 24


class CredentialError(ValueError):
    """A hash that is not in the expected format, worded for the person editing the registry."""


def new_secret() -> str:
    """A random secret for a gateway or a service: 32 URL-safe characters."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The `$7$` hash of `secret`, with a random salt unless one is given."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def stable_salt(user: str, secret: str) -> bytes:
    """A salt derived from the user and the secret: hashing the same secret again gives the
    same line (for files rewritten on every start), and two users never share a salt."""
    return hashlib.sha256(f"{user}\x1f{secret}".encode()).digest()[:_SALT_BYTES]


def verify_secret(secret: str, hashed: str) -> bool:
    """Whether `secret` is the one `hashed` was made from (constant time in the digest)."""
    iterations, salt, digest = parse_hash(hashed)
    candidate = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def parse_hash(hashed: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a `$7$...` hash; CredentialError if it is not one."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7":
        raise CredentialError(
            "expected a PBKDF2-SHA512 hash in Mosquitto's format $7$ITERATIONS$SALT$HASH "
            "(made by `pantau gateways add`)"
        )
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        digest = base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise CredentialError(f"the hash's parts do not decode: {exc}") from exc
    if not 1 <= iterations <= 10_000_000 or len(digest) != 64 or not salt:
        raise CredentialError("the hash's iterations, salt or digest are out of range")
    return iterations, salt, digest


def stable_suffix(secret: str, *parts: str) -> str:
    """A short, stable value that only someone holding `secret` can compute: it keeps the MQTT
    ingest's client id the same across restarts (its persistent session survives) while no
    one else can guess it (and take the session over)."""
    message = "\x1f".join(parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- Mosquitto files


def password_file(entries: Iterable[tuple[str, str]]) -> str:
    """Mosquitto's password file: one `user:hash` line each."""
    lines = []
    for user, hashed in entries:
        if ":" in user or "\n" in user:
            raise CredentialError(f"user name {user!r} cannot be written to a password file")
        parse_hash(hashed)
        lines.append(f"{user}:{hashed}")
    return "\n".join(lines) + "\n"


def acl_file(ingest_user: str, read: str, writes: Iterable[tuple[str, Iterable[str]]]) -> str:
    """Mosquitto's ACL file: the ingest reads `read` (a topic filter); each gateway writes only
    its own sensors' topics. Anything not granted is denied."""
    lines = [
        "# Made by `pantau` from the sensor and gateway registry; edits are overwritten.",
        f"user {ingest_user}",
        f"topic read {read}",
    ]
    for user, topics in writes:
        lines += ["", f"user {user}"]
        lines += [f"topic write {topic}" for topic in topics]
    return "\n".join(lines) + "\n"


# One-time codes that link a Telegram account to a Pantau user: eight characters people can
# read off a screen and type on a phone (no 0/O, 1/I).
_LINK_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_link_code() -> str:
    return "".join(secrets.choice(_LINK_ALPHABET) for _ in range(8))


def link_code_digest(code: str) -> str:
    """What is stored of a link code (it is typed back, so case and spaces do not matter)."""
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()
