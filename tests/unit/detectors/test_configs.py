"""The dumping logic's and the evidence recorder's own configs say what the settings say: the
same defaults, and neither accepts what the other refuses."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import ValidationError

from detectors.dumping import DumpingConfig
from detectors.events import dumping_config, evidence_config
from detectors.evidence import EvidenceConfig
from pantau.settings import DumpingSettings, EvidenceSettings


def test_the_settings_defaults_are_the_configs_defaults() -> None:
    settings = DumpingSettings()
    dumping = dumping_config(settings)
    evidence = evidence_config(settings)
    assert dumping == DumpingConfig()
    assert evidence == EvidenceConfig(root=evidence.root)
    # Every field the settings map is compared above; none is left to a second default.
    assert {f.name for f in fields(EvidenceConfig)} >= {"jpeg_quality", "pre_roll_s"}


@pytest.mark.parametrize("quality", [29, 101])
def test_a_jpeg_quality_out_of_bounds_is_refused_by_both(quality: int) -> None:
    with pytest.raises(ValidationError):
        EvidenceSettings(jpeg_quality=quality)
    with pytest.raises(ValueError, match="jpeg_quality"):
        EvidenceConfig(root=Path("evidence"), jpeg_quality=quality)


@pytest.mark.parametrize("quality", [30, 100])
def test_the_bounds_themselves_are_accepted_by_both(quality: int) -> None:
    assert EvidenceSettings(jpeg_quality=quality).jpeg_quality == quality
    assert EvidenceConfig(root=Path("evidence"), jpeg_quality=quality).jpeg_quality == quality
