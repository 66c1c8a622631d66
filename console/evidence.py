"""Evidence over HTTP: an artefact is served only from the evidence store, only while its
bytes still have the SHA-256 its reference recorded; photos people upload with an action
are checked, stripped of their metadata and stored beside the evidence packs."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from pantau.evidence_store import FileStore, store_photo
from pantau.messages import EvidenceRef

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
}
ORIGINALS_DIR = "originals"


class EvidenceUnavailable(Exception):
    """The artefact cannot be served; `status` says how to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Artefact:
    path: Path
    media_type: str
    sha256: str


class EvidenceFiles:
    def __init__(self, root: Path) -> None:
        self.store = FileStore(root)
        # Digests already checked, by (path, size, modification time): a video player asks
        # for many ranges of one clip; it is hashed once, and again only if the file changes.
        self._verified: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def artefact(self, ref: EvidenceRef, *, original: bool = False) -> Artefact:
        try:
            path = self.store.local_path(ref.uri)
        except ValueError as exc:
            log.warning("evidence %s (%s): %s", ref.kind, ref.sha256[:12], exc)
            raise EvidenceUnavailable(404, "not in the evidence store") from exc
        expected = ref.sha256
        if original:
            path, expected = self._original(path)
        if not path.is_file():
            raise EvidenceUnavailable(404, "the file is missing from the evidence store")
        actual = self._digest(path)
        if actual != expected:
            log.warning(
                "evidence %s: SHA-256 %s does not match its reference %s; not served",
                path.name,
                actual[:12],
                expected[:12],
            )
            raise EvidenceUnavailable(409, "the file no longer matches its SHA-256")
        media_type = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return Artefact(path, media_type, actual)

    def _original(self, shared: Path) -> tuple[Path, str]:
        """The unblurred original beside a shared artefact, and its digest from the pack's
        checksum list (the only record of it)."""
        folder = shared.parent / ORIGINALS_DIR
        sums = folder / "SHA256SUMS"
        if not sums.is_file():
            raise EvidenceUnavailable(404, "no unblurred original was kept")
        for line in sums.read_text(errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            if name.strip() == shared.name:
                return folder / shared.name, digest.strip()
        raise EvidenceUnavailable(404, "no unblurred original was kept")

    def _digest(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            return known
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = digest
        return digest

    def store_photo(self, alarm_id: UUID, action_id: UUID, data: bytes) -> EvidenceRef:
        return store_photo(self.store, alarm_id, action_id, data)


def refs(value: Any) -> list[EvidenceRef]:
    """Evidence references as stored (jsonb: a list of {kind, uri, sha256})."""
    if not value:
        return []
    items = value if isinstance(value, list) else [value]
    return [EvidenceRef.model_validate(item) for item in items]
