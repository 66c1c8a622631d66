"""Several sensor ingest processes sharing the readings: one subscription group, one session
each."""

from __future__ import annotations

from ingest.sensors import ingest_client_id, subscription_of
from pantau.settings import MqttSettings

PASSWORD = "s3cret-for-the-ingest-user"


def mqtt(**values: object) -> MqttSettings:
    return MqttSettings.model_validate({"password": PASSWORD, **values})


def test_alone_the_ingest_takes_every_sensor_topic() -> None:
    assert subscription_of(mqtt()) == "pantau/sensors/+"


def test_in_a_group_each_member_subscribes_to_the_shared_topic() -> None:
    settings = mqtt(shared_group="ingest", topic_prefix="mjk/sensors/")
    assert subscription_of(settings) == "$share/ingest/mjk/sensors/+"


def test_each_member_keeps_a_session_of_its_own_and_the_first_keeps_the_old_one() -> None:
    alone = ingest_client_id(mqtt())
    ids = [ingest_client_id(mqtt(shared_group="ingest", member=k)) for k in range(3)]
    assert len(set(ids)) == 3
    # Member 0 goes on with the session a single ingest had: nothing queued there is lost.
    assert ids[0] == alone
    # Stable across restarts.
    assert ids == [ingest_client_id(mqtt(shared_group="ingest", member=k)) for k in range(3)]
    assert all(PASSWORD not in i for i in ids)
