from __future__ import annotations

import pytest
from pydantic import ValidationError

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


CLUSTER = {
    "replication": {
        "frames": {"replicas": 2, "min_insync": 1},
        "data": {"replicas": 3, "min_insync": 2},
        "state": {"replicas": 3, "min_insync": 2},
        "dead_letters": {"replicas": 3, "min_insync": 2},
    }
}


def test_each_class_of_topic_gets_its_own_copies_and_in_sync_minimum() -> None:
    topics = Topics(KafkaSettings.model_validate(CLUSTER))
    specs = {spec.name: spec for spec in topics.specs()}
    copies = {
        name: (spec.replicas, spec.config["min.insync.replicas"]) for name, spec in specs.items()
    }
    assert copies[topics.frames] == (2, "1")
    for data in (topics.readings, topics.dumping_events, topics.alerts, topics.alarm_actions):
        assert copies[data] == (3, "2")
    assert copies[topics.detect_state] == (3, "2")
    assert copies[topics.dead_letters(topics.readings)] == (3, "2")


def test_one_broker_by_default_keeps_one_copy_of_everything() -> None:
    specs = Topics(KafkaSettings()).specs()
    assert {(s.replicas, s.config["min.insync.replicas"]) for s in specs} == {(1, "1")}


def test_an_in_sync_minimum_above_the_copies_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"min_insync \(3\) cannot exceed replicas \(2\)"):
        KafkaSettings.model_validate({"replication": {"data": {"replicas": 2, "min_insync": 3}}})


def test_the_single_replication_factor_of_older_settings_says_what_replaced_it() -> None:
    with pytest.raises(ValidationError, match=r"replaced by kafka\.replication"):
        KafkaSettings.model_validate({"replication_factor": 3})
