"""The dumping logic's and the evidence recorder's own configs say what the settings say: every
field they share with the settings has the settings' default, and a value the settings refuse
is refused by the config too, with the field named."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from detectors.dumping import DumpingConfig
from detectors.events import dumping_config, evidence_config
from detectors.evidence import EvidenceConfig
from pantau.settings import DumpingSettings, EvidenceSettings, Section

PAIRS: list[tuple[type[Any], type[Section]]] = [
    (DumpingConfig, DumpingSettings),
    (EvidenceConfig, EvidenceSettings),
]


def shared(config: type[Any], settings: type[Section]) -> list[str]:
    return [f.name for f in fields(config) if f.name in settings.model_fields]


@pytest.mark.parametrize(("config", "settings"), PAIRS)
def test_every_shared_field_has_the_settings_default(
    config: type[Any], settings: type[Section]
) -> None:
    names = shared(config, settings)
    assert len(names) >= 4
    defaults = {f.name: f.default for f in fields(config) if f.name in names}
    assert MISSING not in defaults.values()
    assert defaults == {name: settings.model_fields[name].default for name in names}


def test_the_configs_made_from_default_settings_are_the_default_configs() -> None:
    settings = DumpingSettings()
    assert dumping_config(settings) == DumpingConfig()
    evidence = evidence_config(settings)
    assert evidence == EvidenceConfig(root=evidence.root)


# One value out of the settings' bounds per shared field that has bounds.
REFUSED: list[tuple[type[Any], type[Section], str, Any]] = [
    (EvidenceConfig, EvidenceSettings, "jpeg_quality", 29),
    (EvidenceConfig, EvidenceSettings, "jpeg_quality", 101),
    (EvidenceConfig, EvidenceSettings, "pre_roll_s", -1.0),
    (EvidenceConfig, EvidenceSettings, "post_roll_s", -0.5),
    (EvidenceConfig, EvidenceSettings, "buffer_s", 0.0),
    (DumpingConfig, DumpingSettings, "attend_ratio", 0.0),
    (DumpingConfig, DumpingSettings, "max_age_s", -5.0),
    (DumpingConfig, DumpingSettings, "trash_bag_class", -1),
]


def _make(config: type[Any], **values: Any) -> Any:
    if config is EvidenceConfig:
        values.setdefault("pre_roll_s", 0.0)
        return EvidenceConfig(root=Path("evidence"), **values)
    return config(**values)


@pytest.mark.parametrize(("config", "settings", "name", "value"), REFUSED)
def test_a_value_the_settings_refuse_the_config_refuses(
    config: type[Any], settings: type[Section], name: str, value: Any
) -> None:
    with pytest.raises(ValidationError):
        settings.model_validate({name: value})
    with pytest.raises(ValueError, match=name):
        _make(config, **{name: value})


@pytest.mark.parametrize("quality", [30, 100])
def test_the_bounds_themselves_are_accepted_by_both(quality: int) -> None:
    assert EvidenceSettings(jpeg_quality=quality).jpeg_quality == quality
    assert EvidenceConfig(root=Path("evidence"), jpeg_quality=quality).jpeg_quality == quality
