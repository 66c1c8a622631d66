"""Bytes on the wire for every message in `pantau.messages`.

Two layouts, told apart by the first byte:

- plain messages are one compact JSON object (UTF-8), readable with any console consumer;
- messages with a binary field (frames, dead letters) are
  ``b"\\x00PNT"`` · format byte ``1`` · header length (uint32, big-endian) · JSON header ·
  raw bytes. JSON never starts with a NUL byte, so the two cannot be confused, and a JPEG
  travels as itself instead of growing by a third in base64.
"""

from __future__ import annotations

import json
import struct
from typing import Any, TypeVar

from pydantic import ValidationError

from pantau.messages import BY_KIND, Message

MAGIC = b"\x00PNT"
FORMAT = 1
_HEADER = struct.Struct(">4sBI")

M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """The bytes are not a valid message; the text says what was expected and what came."""


def encode(message: Message) -> bytes:
    blob_field = type(message).BLOB_FIELD
    if blob_field is None:
        return message.model_dump_json().encode()
    header = message.model_dump_json(exclude={blob_field}).encode()
    blob: bytes = getattr(message, blob_field)
    return b"".join((_HEADER.pack(MAGIC, FORMAT, len(header)), header, blob))


def decode(data: bytes) -> Message:
    """Any known message; raises DecodeError with the reason."""
    fields, blob = _split(data)
    kind = fields.get("kind")
    cls = BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(BY_KIND))
        raise DecodeError(f"unknown message kind {kind!r} (expected one of: {known})")
    return _build(cls, fields, blob)


def decode_as(data: bytes, cls: type[M]) -> M:
    """A message of the given class; any other kind is a DecodeError."""
    if cls.BLOB_FIELD is None and data[:1] == b"{":
        # Hot path (the sink decodes every reading): pydantic parses and validates the JSON
        # in one pass, about twice as fast as json.loads and then validation. Only a failure
        # takes the slow path below, which words the reason precisely.
        try:
            return cls.model_validate_json(data)
        except ValidationError:
            pass
    fields, blob = _split(data)
    kind = fields.get("kind")
    if kind != cls.KIND:
        raise DecodeError(f"expected a {cls.KIND!r} message, got kind {kind!r}")
    return _build(cls, fields, blob)


def _split(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    if not data:
        raise DecodeError("empty message")
    blob: bytes | None = None
    if data[:1] == b"\x00":
        if len(data) < _HEADER.size:
            raise DecodeError(f"truncated binary message: {len(data)} bytes")
        magic, fmt, length = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"bad magic {magic!r}, expected {MAGIC!r}")
        if fmt != FORMAT:
            raise DecodeError(f"binary layout {fmt} is not supported (expected {FORMAT})")
        end = _HEADER.size + length
        if end > len(data):
            raise DecodeError(
                f"header says {length} bytes but only {len(data) - _HEADER.size} follow"
            )
        header, blob = data[_HEADER.size : end], data[end:]
    else:
        header = data
    try:
        fields = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise DecodeError(f"expected a JSON object, got {type(fields).__name__}")
    return fields, blob


def _build(cls: type[M], fields: dict[str, Any], blob: bytes | None) -> M:
    version = fields.get("schema_version")
    if isinstance(version, int) and version > cls.VERSION:
        raise DecodeError(
            f"{cls.KIND} schema_version {version} is newer than this program knows ({cls.VERSION})"
        )
    if cls.BLOB_FIELD is not None:
        if blob is None:
            raise DecodeError(
                f"{cls.KIND} must use the binary layout (its {cls.BLOB_FIELD} is raw)"
            )
        fields = {**fields, cls.BLOB_FIELD: blob}
    elif blob is not None:
        raise DecodeError(f"{cls.KIND} carries no binary part, but {len(blob)} bytes followed")
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise DecodeError(f"invalid {cls.KIND}: {problems}") from exc
