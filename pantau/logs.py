"""Logging set-up and credential scrubbing.

Camera URLs carry user:password (RTSP) and DSNs may carry passwords; whatever a log record
says passes through `scrub` before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import urlsplit, urlunsplit

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
# `password=...`, `sasl.password: ...`, `'sasl_plain_password': '...'`, `secret_hash=...`
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|pwd|token|secret)\w*['\"]?\s*[=:]\s*['\"]?)"
    r"(?P<value>[^\s&,;'\"]+)",
    re.I,
)

REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with any user:password removed, safe to log or show.

    >>> redact_url("rtsp://admin:hunter2@10.0.0.5:554/stream1")
    'rtsp://***@10.0.0.5:554/stream1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if parts.username is None and parts.password is None:
        return scrub(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))


def scrub(text: str) -> str:
    """Remove URL credentials and `password=...`-style secrets from free text."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", text)


class ScrubFilter(logging.Filter):
    """Rewrites each record's message with credentials removed (also in tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(formatted)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger; only entry points call this."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries are chatty at INFO about every connection and rebalance.
    for noisy in ("kafka", "aiokafka", "ultralytics", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # kafka-python warns whenever its network thread waited for the GIL, which a busy
    # decoding loop makes routine; it says nothing about the data.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
