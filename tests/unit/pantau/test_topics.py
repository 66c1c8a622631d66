from __future__ import annotations

import pytest

from pantau.settings import KafkaSettings
from pantau.topics import Topics, dead_letter_name, is_dead_letter_topic


@pytest.mark.parametrize(
    ("topic", "dlq"),
    [
        ("sensors.readings.v1", "sensors.readings.dlq.v1"),
        ("site2.cctv.frames.v1", "site2.cctv.frames.dlq.v1"),
        ("detections.v2", "detections.dlq.v2"),
        ("oddname", "oddname.dlq"),
    ],
)
def test_dead_letter_names(topic: str, dlq: str) -> None:
    assert dead_letter_name(topic) == dlq
    assert is_dead_letter_topic(dlq)
    assert not is_dead_letter_topic(topic)


def test_every_topic_is_versioned_prefixed_and_has_a_dead_letter_twin() -> None:
    topics = Topics(KafkaSettings.model_validate({"topic_prefix": "mjk."}))
    names = {spec.name: spec for spec in topics.specs()}
    for data in topics.data_topics():
        assert data.startswith("mjk.") and data.endswith(".v1")
        assert dead_letter_name(data) in names
    assert names["mjk.cctv.frames.v1"].partitions == 12
    assert names["mjk.sensors.readings.dlq.v1"].partitions == 1
    # Frames are perishable: they must not pile up for a week.
    assert int(names["mjk.cctv.frames.v1"].config["retention.ms"]) <= 24 * 3_600_000
