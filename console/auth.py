"""Passwords, session and API-token secrets, and the login rate limit.

Passwords are hashed with argon2id. Sessions and API tokens are random secrets handed to
the client once; the database keeps only their SHA-256 (they are long and random, so a fast
digest is enough, and a stolen table opens nothing). Pure apart from the clock and the
random source: the database side lives in console.store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
# A hash to verify against when the user does not exist, so that a wrong user name takes
# as long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 12
TOKEN_PREFIX = "pt_"  # noqa: S105 - how our tokens begin, not a secret


class PasswordTooWeak(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooWeak(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(15)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> tuple[str, str, str]:
    """A new API token: (token id, secret, the whole token the client sends)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{TOKEN_PREFIX}{token_id}.{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a token as the client sent it; None if it is no token of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, dot, secret = token[len(TOKEN_PREFIX) :].partition(".")
    if not dot or not token_id or not secret or len(token) > 200:
        return None
    return token_id, secret


class LoginLimiter:
    """At most `attempts` failed logins per user name and per address in `window_s`.

    In the process's memory: one console process per site. A refused attempt is not
    counted, so waiting out the window always works.
    """

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for these keys is taken again (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window_s - (now - times[0])
                for times in (self._recent(k, now) for k in keys)
                if len(times) >= self.attempts
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:
                # Forget addresses that tried once long ago rather than grow without bound.
                for key in [k for k, t in self._failures.items() if not self._recent(k, now)]:
                    del self._failures[key]

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username}", None)
