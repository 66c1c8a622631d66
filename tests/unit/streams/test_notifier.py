"""The outbox's retry schedule: what becomes of a delivery after each try."""

from __future__ import annotations

import pytest

from pantau.settings import NotifySettings
from streams.channels import DeliveryError
from streams.notifier import Step, next_step

NOTIFY = NotifySettings.model_validate(
    {"retry_initial_s": 2.0, "retry_max_s": 60.0, "max_attempts": 8}
)
DOWN = DeliveryError("connection refused", retryable=True)


def test_a_delivery_that_went_out_is_sent() -> None:
    assert next_step(1, None, NOTIFY) == Step("sent")
    assert next_step(7, None, NOTIFY) == Step("sent")


def test_a_channel_that_is_down_is_tried_again_with_doubling_capped_waits() -> None:
    schedule = [next_step(n, DOWN, NOTIFY) for n in range(1, 8)]
    assert [s.status for s in schedule] == ["pending"] * 7
    assert [s.retry_in_s for s in schedule] == [2, 4, 8, 16, 32, 60, 60]


def test_the_last_allowed_attempt_gives_up() -> None:
    assert next_step(8, DOWN, NOTIFY) == Step("failed")
    assert next_step(9, DOWN, NOTIFY) == Step("failed")


def test_a_final_refusal_gives_up_at_once() -> None:
    blocked = DeliveryError("bot was blocked by the user", retryable=False, status=403)
    assert next_step(1, blocked, NOTIFY) == Step("failed")


@pytest.mark.parametrize(("attempt", "asked", "wait"), [(1, 30.0, 30.0), (6, 5.0, 60.0)])
def test_the_channels_retry_after_is_kept_when_longer(
    attempt: int, asked: float, wait: float
) -> None:
    limited = DeliveryError("too many requests", retryable=True, status=429, retry_after_s=asked)
    assert next_step(attempt, limited, NOTIFY) == Step("pending", wait)
