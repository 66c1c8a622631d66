from __future__ import annotations

import logging

import pytest

from pantau.logs import ScrubFilter, redact_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "rtsp://admin:hunter2@10.0.0.5:554/Streaming/101",
            "rtsp://***@10.0.0.5:554/Streaming/101",
        ),
        ("http://viewer@cam.local/mjpg", "http://***@cam.local/mjpg"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("/data/video/clip.mp4", "/data/video/clip.mp4"),
        ("rtsp://us%40er:p%3Ass@host/x", "rtsp://***@host/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_finds_credentials_anywhere_in_text() -> None:
    text = "failed rtsp://admin:hunter2@10.0.0.5/a then host=db password=s3cret token: abc"
    cleaned = scrub(text)
    assert "hunter2" not in cleaned and "s3cret" not in cleaned and "abc" not in cleaned
    assert "10.0.0.5/a" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "{'sasl_plain_password': 'hunter2hunter2', 'acks': 'all'}",
        "sasl.password=hunter2hunter2 sasl.mechanism=SCRAM-SHA-512",
        'secret_hash="hunter2hunter2"',
        "writer_password: hunter2hunter2",
    ],
)
def test_client_library_options_are_scrubbed(text: str) -> None:
    assert "hunter2" not in scrub(text)


def test_log_records_are_scrubbed_including_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("pantau.test.scrub")
    logger.addFilter(ScrubFilter())
    with caplog.at_level(logging.INFO, logger="pantau.test.scrub"):
        logger.info("opening %s", "rtsp://admin:hunter2@10.0.0.5/stream")
        try:
            raise RuntimeError("cannot open rtsp://admin:hunter2@10.0.0.5/stream")
        except RuntimeError:
            logger.exception("camera failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "hunter2" not in text
    assert "rtsp://***@10.0.0.5/stream" in text
