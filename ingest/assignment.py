"""Which cameras a camera ingest process takes, when several share them.

Rendezvous hashing: every (camera, member) pair gets a score from a hash of both, and a
camera goes to the member with the highest score. Every member computes the same answer from
the camera ids and the member count alone, with no coordinator; with N members each takes
about 1/N of the cameras, and going from N to N + 1 members moves only the cameras the new
member now wins (about 1/(N + 1) of them), never one between the members that were there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _score(camera_id: str, member: int) -> int:
    digest = hashlib.blake2b(f"{camera_id}\x00{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(camera_id: str, members: int) -> int:
    """The member (0 .. members - 1) that takes this camera."""
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    return max(range(members), key=lambda m: _score(camera_id, m))


def cameras_of(camera_ids: Iterable[str], member: int, members: int) -> list[str]:
    """The cameras among `camera_ids` that `member` of `members` takes, in the given order."""
    if not 0 <= member < members:
        raise ValueError(f"member must be 0 .. {members - 1}, got {member}")
    return [c for c in camera_ids if owner(c, members) == member]
