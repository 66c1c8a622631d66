"""A place rule end to end on the real services: a dumping event from a camera and PM2.5
readings from an air-quality sensor 285 m from it (MQTT) go in; the stream processor joins
them into one suspected-open-burning alarm on the sensor, with the camera's evidence, that
the sink stores and the notifier sends once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer

from pantau.codec import encode
from pantau.ids import stable_id
from pantau.messages import DumpingEvent
from pantau.topics import Topics
from tests.factories import SAMPLES
from tests.integration import test_alerts_pipeline
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import Recorder, alert_env, alerts_of, reading
from tests.integration.test_sensor_pipeline import publish, wait_subscribed

# The fake Telegram API and SMTP server of the alerts pipeline's tests.
recorder = test_alerts_pipeline.recorder

# In configs/pantau.yaml: Pasar Tanjung Anyar's air-quality sensor, 285 m from the demo camera.
SENSOR = "aq-pasar-tanjung"
CAMERA = "demo-table"
RULE = (
    "[{type: open_burning, id: open-burning, sensor_type: air_quality, quantity: pm25, "
    "rise: 35, period_s: 1800, within_m: 500, hotspot_days: 7}]"
)


def test_a_pm_rise_near_a_camera_that_saw_dumping_is_one_joint_alarm_and_one_notification(
    pipeline: Pipeline, recorder: tuple[Recorder, str, int]
) -> None:
    rec, base_url, smtp_port = recorder
    pipeline.env.update(alert_env(base_url, smtp_port))
    pipeline.env["PANTAU__STREAMS__RULES"] = RULE
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    pipeline.start("streams", "streams")
    pipeline.start("notify", "notify")
    pipeline.start("sink", "sink")
    wait_subscribed(pipeline, ingest)

    # The camera saw rubbish dumped an hour ago (as the detector reports it).
    now = datetime.now(UTC).replace(microsecond=0)
    data = SAMPLES["dumping_event"].model_dump()
    data.update(
        id=stable_id("place-rule-event", pipeline.tag),
        event_id=stable_id("place-rule-event-id", pipeline.tag),
        camera_id=CAMERA,
        phase="new",
        state="alerted",
        ts_capture=now - timedelta(hours=1),
        appeared_at=now - timedelta(hours=1, seconds=45),
        alerted_at=now - timedelta(hours=1),
    )
    event = DumpingEvent.model_validate(data)
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.kafka.bootstrap_servers)
    producer.send(
        Topics(pipeline.settings.kafka).dumping_events, key=event.key, value=encode(event)
    )
    producer.flush()
    producer.close()
    pipeline.wait_for("the camera's dumping alarm", lambda: bool(alerts_of(pipeline, "dumping")))

    # PM2.5 at the market: steady, then up 45 µg/m³ within twenty minutes.
    t0 = now - timedelta(minutes=20)
    publish(
        pipeline,
        SENSOR,
        [
            reading(SENSOR, t0 + timedelta(minutes=10 * i), i + 1, pm25=v)
            for i, v in enumerate([30.0, 31.0, 76.0])
        ],
    )
    pipeline.wait_for("the open-burning alarm", lambda: bool(alerts_of(pipeline, "open-burning")))
    [alarm] = alerts_of(pipeline, "open-burning")
    assert (alarm.source_kind, alarm.source_id, alarm.state, alarm.notify) == (
        "sensor", SENSOR, "OPEN", True,
    )  # fmt: skip
    # Both sources' evidence: the sensor's rise, the camera's event and its stills.
    assert (alarm.quantity, alarm.last_value) == ("pm25", 46.0)
    assert alarm.event_id == event.event_id and alarm.evidence == event.evidence
    assert "285 m" in alarm.message

    # Stored with its event, and sent once (the camera's own dumping alarm is another).
    pipeline.wait_for(
        "the joint alarm in the database",
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM alerts WHERE alarm_id = %s AND event_id = %s",
                alarm.alarm_id,
                event.event_id,
            )
            == 1
        ),
    )
    alarm_id = str(alarm.alarm_id)
    pipeline.wait_for(
        "its Telegram message", lambda: rec.telegram_alarm_ids()[alarm_id] >= 1, timeout=60
    )
    [message] = [m for m in rec.telegram if alarm_id in m["text"]]
    assert "Dugaan pembakaran sampah terbuka" in message["text"]
    assert rec.telegram_alarm_ids()[alarm_id] == 1
