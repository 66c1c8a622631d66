"""Cameras shared among camera ingest processes: each camera taken by exactly one, an even
share each, and a process added or removed moves only the cameras it takes or gives up."""

from __future__ import annotations

import pytest

from ingest.assignment import cameras_of, owner

CAMERAS = [f"cam-{i:03d}" for i in range(300)]


def shares(members: int) -> dict[int, set[str]]:
    return {m: set(cameras_of(CAMERAS, m, members)) for m in range(members)}


@pytest.mark.parametrize("members", [1, 2, 3, 7])
def test_every_camera_is_taken_by_exactly_one_member(members: int) -> None:
    taken = shares(members)
    assert sorted(c for cams in taken.values() for c in cams) == sorted(CAMERAS)
    # An even share, give or take: no member gets twice its part.
    assert max(len(c) for c in taken.values()) < 2 * len(CAMERAS) / members


@pytest.mark.parametrize("members", [1, 2, 4, 9])
def test_a_new_member_takes_cameras_only_for_itself(members: int) -> None:
    before = {c: owner(c, members) for c in CAMERAS}
    after = {c: owner(c, members + 1) for c in CAMERAS}
    moved = [c for c in CAMERAS if before[c] != after[c]]
    assert all(after[c] == members for c in moved)
    # About 1 / (members + 1) of them: far from reshuffling everything.
    assert 0 < len(moved) < 2 * len(CAMERAS) / (members + 1)


def test_the_assignment_is_the_same_in_every_process_and_keeps_the_given_order() -> None:
    assert cameras_of(CAMERAS, 1, 3) == [c for c in CAMERAS if owner(c, 3) == 1]
    assert cameras_of(list(reversed(CAMERAS)), 1, 3) == list(reversed(cameras_of(CAMERAS, 1, 3)))


@pytest.mark.parametrize(("member", "members"), [(3, 3), (-1, 2), (0, 0)])
def test_a_member_outside_the_set_is_refused(member: int, members: int) -> None:
    with pytest.raises(ValueError, match="member"):
        cameras_of(CAMERAS, member, members)
