"""Bytes on the wire for every message in `pantau.messages`.

Two layouts, told apart by the first byte:

- plain messages are one compact JSON object (UTF-8), readable with any console consumer;
- messages with a binary field (frames, dead letters) are
  ``b"\\x00PNT"`` · format byte ``1`` · header length (uint32, big-endian) · JSON header ·
  raw bytes. JSON never starts with a NUL byte, so the two cannot be confused, and a JPEG
  travels as itself instead of growing by a third in base64.

Decoding is total: whatever the bytes, the answer is a message or a `DecodeError` with the
reason, never another exception. JSON is read with bounds (nesting depth, integer digits), and
text must be storable: PostgreSQL's `text` and `jsonb` hold no NUL character and no lone
UTF-16 surrogate, so a message carrying one is refused here rather than by the database.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any, TypeVar

from pydantic import ValidationError

from pantau.messages import BY_KIND, Message

MAGIC = b"\x00PNT"
FORMAT = 1
_HEADER = struct.Struct(">4sBI")

M = TypeVar("M", bound=Message)

# Our messages nest at most four levels (an alert's place, an event's evidence list); the
# bound only has to stop hostile input long before the parser's own recursion limit.
MAX_JSON_DEPTH = 32
# How long a reason quotes the exception it came from.
_REASON_CHARS = 500


class DecodeError(ValueError):
    """The bytes are not a valid message; the text says what was expected and what came."""


def load_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON: the value, or DecodeError naming what is wrong with it.

    Bounded: nesting deeper than `max_depth`, integers beyond Python's digit limit, invalid
    UTF-8 and text that PostgreSQL cannot store (NUL, lone surrogates) are refused.
    """
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise DecodeError(f"not JSON: nested deeper than {max_depth} levels") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not JSON: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError) and "digits" in str(exc):
            # Python's own limit on integer text, worded for whoever sent the number.
            limit = sys.get_int_max_str_digits()
            raise DecodeError(f"not JSON: an integer of more than {limit} digits") from exc
        raise DecodeError(f"not JSON: {_clip(str(exc))}") from exc
    problem = _unstorable(value, max_depth)
    if problem is not None:
        raise DecodeError(problem)
    return value


def storable_text(text: str) -> str:
    """`text` with what PostgreSQL cannot store replaced (NUL, lone surrogates): for reasons
    and names that quote hostile input."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode(errors="replace").decode()
    return text


def describe(exc: BaseException) -> str:
    """`ClassName: message`, clipped and storable: the reason a dead letter carries."""
    text = str(exc).strip()
    name = type(exc).__name__
    return storable_text(f"{name}: {_clip(text)}" if text else name)


def _clip(text: str) -> str:
    if len(text) <= _REASON_CHARS:
        return text
    return f"{text[:_REASON_CHARS]}... ({len(text)} characters)"


def _unstorable(value: Any, max_depth: int) -> str | None:
    """Why a parsed JSON value cannot be stored as it is, or None. Iterative, so that the
    check itself has no recursion limit to hit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels"
            for key, item in node.items():
                problem = _text_problem(key)
                if problem is not None:
                    return f"object key {problem}"
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels"
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            problem = _text_problem(node)
            if problem is not None:
                return f"text {problem}"
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (e.g. \\ud800), which is not Unicode text"
    return None


def encode(message: Message) -> bytes:
    blob_field = type(message).BLOB_FIELD
    if blob_field is None:
        return message.model_dump_json().encode()
    header = message.model_dump_json(exclude={blob_field}).encode()
    blob: bytes = getattr(message, blob_field)
    return b"".join((_HEADER.pack(MAGIC, FORMAT, len(header)), header, blob))


def decode(data: bytes) -> Message:
    """Any known message; raises DecodeError with the reason."""
    try:
        fields, blob = _split(data)
        kind = fields.get("kind")
        cls = BY_KIND.get(kind) if isinstance(kind, str) else None
        if cls is None:
            known = ", ".join(sorted(BY_KIND))
            raise DecodeError(
                f"unknown message kind {_clip(repr(kind))} (expected one of: {known})"
            )
        return _build(cls, fields, blob)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot decode: {describe(exc)}") from exc


def decode_as(data: bytes, cls: type[M]) -> M:
    """A message of the given class; any other kind is a DecodeError."""
    try:
        if cls.BLOB_FIELD is None and data[:1] == b"{" and _NUL_ESCAPE not in data:
            # Hot path (the sink decodes every reading): pydantic parses and validates the
            # JSON in one pass, about twice as fast as json.loads and then validation. Its
            # parser refuses lone surrogates and deep nesting by itself; only NUL needs the
            # check above. A failure takes the slow path below, which words the reason.
            try:
                return cls.model_validate_json(data)
            except ValidationError:
                pass
        fields, blob = _split(data)
        kind = fields.get("kind")
        if kind != cls.KIND:
            raise DecodeError(f"expected a {cls.KIND!r} message, got kind {_clip(repr(kind))}")
        return _build(cls, fields, blob)
    except DecodeError:
        raise
    except Exception as exc:
        # Anything else a hostile input provokes (an arithmetic overflow in a validator, say)
        # is still the input's fault: a reason, not a crash.
        raise DecodeError(f"cannot decode {cls.KIND}: {describe(exc)}") from exc


# How JSON writes a NUL character; the only way one gets into a JSON text.
_NUL_ESCAPE = b"\\u0000"


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
    fields = load_json(header)
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
        raise DecodeError(storable_text(f"invalid {cls.KIND}: {_clip(problems)}")) from exc
