from __future__ import annotations

import pytest

from pantau.roles import AlarmScope, User, can_act, can_see, can_see_originals

FIELD = User("budi", "dlh_field", kecamatan=("Prajurit Kulon",))
DUMPING_HERE = AlarmScope("dumping", None, "Prajurit Kulon")
DUMPING_THERE = AlarmScope("dumping", None, "Magersari")
TPS_HERE = AlarmScope("sensor", "waste_container", "prajurit kulon")
WATER_HERE = AlarmScope("sensor", "water_level", "Prajurit Kulon")
CAMERA_HERE = AlarmScope("camera", None, "Prajurit Kulon")
NOWHERE = AlarmScope("dumping", None, None)


@pytest.mark.parametrize(
    ("user", "alarm", "sees", "acts"),
    [
        (User("op", "operator"), DUMPING_THERE, True, True),
        (User("op", "operator"), WATER_HERE, True, True),
        (User("adm", "admin"), WATER_HERE, True, True),
        (User("wall", "viewer"), DUMPING_HERE, True, False),
        (FIELD, DUMPING_HERE, True, True),
        (FIELD, TPS_HERE, True, True),  # kecamatan compared without case
        (FIELD, DUMPING_THERE, False, False),
        (FIELD, WATER_HERE, False, False),  # not DLH field work
        (FIELD, CAMERA_HERE, False, False),  # a camera offline is the operators'
        (FIELD, NOWHERE, False, False),  # a camera in no kecamatan: nobody in the field's
    ],
)
def test_who_sees_and_acts_on_which_alarm(
    user: User, alarm: AlarmScope, sees: bool, acts: bool
) -> None:
    assert (can_see(user, alarm), can_act(user, alarm)) == (sees, acts)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("operator", True), ("admin", True), ("dlh_field", False), ("viewer", False)],
)
def test_only_operators_see_unblurred_originals(role: str, allowed: bool) -> None:
    assert can_see_originals(User("x", role, kecamatan=("A",))) is allowed  # type: ignore[arg-type]
