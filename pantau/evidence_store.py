"""The evidence store: artefacts (stills, clips, photos) written once, referenced by URI and
SHA-256 (claim check). The detector writes evidence packs into it; the console reads them
back (checking the digest on the way out) and adds photos people upload."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import cv2
import numpy as np

from pantau.messages import EvidenceRef

log = logging.getLogger(__name__)


class Store(Protocol):
    """Where artefacts go. An S3-compatible store returns s3:// (or https://) URIs."""

    def put(self, relative_path: str, data: bytes) -> str:
        """Store `data` under `relative_path` (POSIX separators) atomically; its URI."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes stored under a URI this store returned."""
        ...


class FileStore:
    """Artefacts as files under `root`; URIs are absolute file:// URIs."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def put(self, relative_path: str, data: bytes) -> str:
        path = self.path(relative_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory, so the rename is atomic: a reader sees the old file or the whole
        # new one. uuid4 comes from os.urandom, not the clock.
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            # 0o666 less the umask, like any file the process writes.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        _fsync_dir(path.parent)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        return file_uri_path(uri).read_bytes()

    def local_path(self, uri: str) -> Path:
        """The file behind a URI this store returned; refuses one outside the root."""
        path = file_uri_path(uri).resolve()
        root = self.root.resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{uri!r} is outside the evidence store {root}")
        return path

    def path(self, relative_path: str) -> Path:
        """Where `relative_path` lives under the root; refuses absolute paths and '..'."""
        parts = PurePosixPath(relative_path).parts
        if (
            not parts
            or PurePosixPath(relative_path).is_absolute()
            or any(p in ("", ".", "..") or "\\" in p for p in parts)
        ):
            raise ValueError(
                f"evidence store {self.root}: expected a relative path without '..', "
                f"got {relative_path!r}"
            )
        return self.root.joinpath(*parts)


def _fsync_dir(directory: Path) -> None:
    # The rename itself survives a power cut only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_uri_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ValueError(f"expected a file:// URI on this host, got {uri!r}")
    return Path(url2pathname(unquote(parsed.path)))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(ref: EvidenceRef, store: Store | None = None) -> bool:
    """Whether the artefact behind `ref` still has the digest `ref` recorded. Without a
    store, `ref` must be a file:// URI. A missing artefact fails verification."""
    try:
        data = store.get(ref.uri) if store is not None else file_uri_path(ref.uri).read_bytes()
    except FileNotFoundError:
        log.warning("evidence %s (%s) is missing", ref.uri, ref.kind)
        return False
    ok = sha256_hex(data) == ref.sha256
    if not ok:
        log.warning("evidence %s (%s): SHA-256 does not match its reference", ref.uri, ref.kind)
    return ok


PHOTOS_DIR = "photos"
# A phone photo is re-encoded no larger than this on its long side: plenty to see that a spot
# is clean, and small enough for a field connection.
_PHOTO_SIDE = 2048


class BadPhoto(ValueError):
    pass


def store_photo(store: FileStore, alarm_id: object, action_id: object, data: bytes) -> EvidenceRef:
    """A photo people sent with an action (from the console or Telegram), re-encoded as JPEG,
    which drops its metadata (the phone's location included), and stored beside the evidence
    packs; its reference."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadPhoto("the photo is not an image we can read (JPEG, PNG or WebP)")
    height, width = image.shape[:2]
    scale = min(1.0, _PHOTO_SIDE / max(height, width))
    if scale < 1.0:
        image = cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise BadPhoto("the photo could not be encoded")
    jpeg = encoded.tobytes()
    uri = store.put(f"{PHOTOS_DIR}/{alarm_id}/{action_id}.jpg", jpeg)
    return EvidenceRef(kind="photo", uri=uri, sha256=sha256_hex(jpeg))
