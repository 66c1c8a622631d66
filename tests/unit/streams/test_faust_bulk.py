"""The faust internals the stream processor replaces still match the installed faust; an
upgrade that changes them fails here, naming what to compare."""

from __future__ import annotations

import faust.transport.consumer
import pytest

from streams import faust_bulk
from streams.faust_bulk import FAUST_VERSION, REPLACED, faust_drift, source_digest


def test_the_installed_faust_is_the_one_the_copied_code_was_taken_from() -> None:
    problems = faust_drift()
    assert problems == [], (
        "faust-streaming changed under streams/faust_bulk.py: "
        + "; ".join(problems)
        + ". Compare BulkConsumer._drain_messages and BulkApp._new_consumer with the installed "
        "faust's, carry its changes over, then update FAUST_VERSION and REPLACED."
    )


def test_another_faust_version_is_named() -> None:
    assert faust_drift("0.16.0") == [
        f"faust-streaming is 0.16.0, the copies were taken from {FAUST_VERSION}"
    ]


def test_a_changed_or_missing_original_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def rewritten(self: object, fetcher: object) -> None:
        return None

    monkeypatch.setattr(faust.transport.consumer.Consumer, "_drain_messages", rewritten)
    monkeypatch.setitem(REPLACED, ("faust.transport.consumer", "Consumer._gone"), "0" * 64)

    problems = faust_drift(FAUST_VERSION)

    assert any("Consumer._drain_messages changed" in p for p in problems), problems
    assert "faust.transport.consumer.Consumer._gone is gone" in problems


def test_every_replaced_original_is_found() -> None:
    for module, qualname in REPLACED:
        assert source_digest(module, qualname) is not None, (module, qualname)
    # The replacements themselves are where the module says.
    assert "_drain_messages" in faust_bulk.BulkConsumer.__dict__
    assert "_new_consumer" in faust_bulk.BulkApp.__dict__
