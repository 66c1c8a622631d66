from __future__ import annotations

import time

import pytest

from console.auth import (
    LoginLimiter,
    PasswordTooWeak,
    digest,
    hash_password,
    new_token,
    password_matches,
    split_token,
)


def test_a_password_is_kept_as_an_argon2_hash_that_only_it_matches() -> None:
    stored = hash_password("kali-brantas-2026")
    assert stored.startswith("$argon2id$")
    assert "kali-brantas-2026" not in stored
    assert password_matches(stored, "kali-brantas-2026")
    assert not password_matches(stored, "kali-brantas-2027")
    assert not password_matches(None, "kali-brantas-2026")
    assert not password_matches("not a hash", "kali-brantas-2026")


def test_a_short_password_is_refused() -> None:
    with pytest.raises(PasswordTooWeak, match="at least 12 characters, got 6"):
        hash_password("rahasi")


def test_a_token_is_recognised_and_only_its_digest_need_be_kept() -> None:
    token_id, secret, token = new_token()
    assert token.startswith("pt_") and secret not in token_id
    assert split_token(token) == (token_id, secret)
    assert digest(secret) != secret and len(digest(secret)) == 64
    for other in ("", "pt_", "pt_abc", "Bearer x", "pt_.x", "xx_abc.def", "pt_a." + "x" * 300):
        assert split_token(other) is None


def test_logins_are_limited_per_user_and_per_address_and_the_window_passes() -> None:
    limiter = LoginLimiter(attempts=3, window_s=0.3)
    for _ in range(3):
        assert limiter.retry_after("user:siti", "addr:10.0.0.9") == 0
        limiter.failed("user:siti", "addr:10.0.0.9")
    assert limiter.retry_after("user:siti", "addr:10.0.0.1") > 0  # the user, from anywhere
    assert limiter.retry_after("user:budi", "addr:10.0.0.9") > 0  # anyone, from that address
    assert limiter.retry_after("user:budi", "addr:10.0.0.1") == 0
    time.sleep(0.35)
    assert limiter.retry_after("user:siti", "addr:10.0.0.9") == 0


def test_a_good_login_forgets_the_users_failures() -> None:
    limiter = LoginLimiter(attempts=2, window_s=60)
    limiter.failed("user:siti", "addr:a")
    limiter.succeeded("siti")
    limiter.failed("user:siti", "addr:b")
    assert limiter.retry_after("user:siti", "addr:c") == 0
