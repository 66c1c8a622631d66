"""A camera's detector state, kept so that a restarted or rebalanced detector resumes it.

What the dumping logic knows of a camera lives in memory: the background models, the
objects lying in view and their open cases (with the ids of the events already raised).
Lost, a restarted detector would relearn the scene with the objects in it, and an alerted
event would never end. So each camera's state is written, as a snapshot, to a compacted
Kafka topic keyed by camera (`detect.state.v1`): after every frame batch that moved one of
its events on, and every `detect.state_interval_s` besides, before the batch's offsets are
committed. Whichever detector process gets the camera's frames next (the same after a
restart, another after a rebalance) reads the latest snapshot and goes on from it; an
object taken away meanwhile is seen missing on its first frames and its event ends
`cleaned` (or `expired`, when it has grown too old).

A snapshot is a compressed numpy archive of plain arrays with one JSON document beside
them; nothing in it is ever unpickled, and a damaged or foreign one is ignored (the camera
starts afresh), never a reason to stop.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FORMAT = "pantau-detector-state"
VERSION = 1
_META = "meta.json"


class SnapshotError(ValueError):
    """The bytes are not a snapshot this detector can use; the text says why."""


@dataclass
class Snapshot:
    """One camera's state: a JSON-able document and named arrays."""

    camera_id: str
    t: float
    """Frame time (seconds on the camera's clock) of the last frame the state includes."""
    size: tuple[int, int]
    """(width, height) of the frames it was learnt on."""
    parts: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "camera_id": snapshot.camera_id,
        "t": snapshot.t,
        "size": list(snapshot.size),
        "parts": snapshot.parts,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        allow_pickle=False,
        **{_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)},
        **snapshot.arrays,
    )
    return buffer.getvalue()


def decode_snapshot(data: bytes, *, max_bytes: int) -> Snapshot:
    """The snapshot in `data`; SnapshotError for anything else (never unpickles)."""
    if len(data) > max_bytes:
        raise SnapshotError(f"expected at most {max_bytes} bytes, got {len(data)}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            names = [n for n in archive.files if n != _META]
            # A compressed archive can unpack to far more than it weighs: bound it.
            total = sum(archive.zip.getinfo(f"{n}.npy").file_size for n in archive.files)
            if total > 16 * max_bytes:
                raise SnapshotError(
                    f"expected at most {16 * max_bytes} bytes unpacked, got {total}"
                )
            meta = json.loads(bytes(archive[_META]).decode())
            arrays = {name: np.asarray(archive[name]) for name in names}
    except SnapshotError:
        raise
    except Exception as exc:
        # Whatever the bytes are (an empty record, a bare array, a truncated or foreign
        # archive), they are not a snapshot: the reason goes to the log, nothing stops.
        raise SnapshotError(f"not a readable archive: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"expected a {FORMAT} document")
    if meta.get("version") != VERSION:
        raise SnapshotError(f"expected version {VERSION}, got {meta.get('version')!r}")
    try:
        size = (int(meta["size"][0]), int(meta["size"][1]))
        return Snapshot(
            camera_id=str(meta["camera_id"]),
            t=float(meta["t"]),
            size=size,
            parts=dict(meta["parts"]),
            arrays=arrays,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"its document lacks a field: {exc}") from exc


def split_arrays(
    prefix: str, state: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """A component's state with its top-level arrays moved out under `prefix.name`."""
    plain: dict[str, Any] = {}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{key}"] = value
            plain[key] = {"array": f"{prefix}.{key}"}
        else:
            plain[key] = value
    return plain, arrays


def join_arrays(plain: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
    """The inverse of `split_arrays`."""
    return {
        key: arrays[value["array"]] if isinstance(value, dict) and "array" in value else value
        for key, value in plain.items()
    }
