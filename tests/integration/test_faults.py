"""Faults of the world around the pipeline, with data flowing: the Kafka broker restarts, the
MQTT broker restarts, the detector is killed. Nothing valid is lost, no alarm is notified
twice, and every stage comes back by itself (reconnecting, or restarted by its supervisor).

The brokers restarted here are private ones, started for the test on their own ports and
folders, so that the rest of the suite's broker is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pantau import kafka
from pantau.access import write_broker_files
from pantau.codec import decode_as
from pantau.messages import Detections, Frame, SensorReading
from pantau.settings import Settings, load_settings
from pantau.topics import Topics
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, Pipeline, gateway_login
from tests.integration.test_alerts_pipeline import (
    Recorder,
    alert_env,
    expected_notified,
    recorder,  # noqa: F401 - the fixture, used by name
)

WATER = "wl-brantas-lengkong"
CANAL = "wl-sadar-magersari"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PrivateKafka:
    port: int
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    def run(self, action: str) -> float:
        """`scripts/services.sh ACTION kafka` on this broker; seconds it took."""
        started = time.monotonic()
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "services.sh"), action, "kafka"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"kafka {action}:\n{result.stdout}\n{result.stderr}"
        return time.monotonic() - started


@contextmanager
def private_kafka(services: Settings, tmp_path: Path) -> Iterator[PrivateKafka]:
    state = tmp_path / "kafka-state"
    state.mkdir()
    # The broker's jars, resolved once from Maven Central by `pantau services up`.
    (state / "cache").symlink_to(services.services.state_dir / "cache")
    broker = PrivateKafka(
        free_port(),
        {
            **os.environ,
            "PANTAU_STATE_DIR": str(state),
            "PANTAU_KAFKA_CONTROLLER_PORT": str(free_port()),
            "PANTAU_KAFKA_HEAP": "384m",
        },
    )
    broker.env["PANTAU_KAFKA_PORT"] = str(broker.port)
    broker.run("up")
    try:
        yield broker
    finally:
        broker.run("down")


@dataclass
class PrivateMosquitto:
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        # SIGTERM: mosquitto saves its persistent sessions and queued messages, as a
        # service manager's restart does.
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def private_mosquitto(
    settings: Settings, tmp_path: Path, *, listener: str = ""
) -> Iterator[PrivateMosquitto]:
    """A broker of the test's own, locked like the real one: users and ACL made from the
    `settings`' registry. `listener`: the listener's lines instead of plain loopback MQTT."""
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    write_broker_files(settings, folder, any_prefix=True)
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        (listener.format(port=port) if listener else f"listener {port} 127.0.0.1\n")
        + "allow_anonymous false\n"
        f"password_file {folder}/passwd\n"
        f"acl_file {folder}/acl\n"
        "user root\n"
        "persistence true\n"
        f"persistence_location {folder}/\n"
        "max_queued_messages 100000\n"
    )
    broker = PrivateMosquitto(port, config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Sensor:
    """A field device: QoS 1 readings on its own MQTT connection, which it keeps retrying
    (paho queues QoS 1 messages while the broker is away and sends them on reconnect)."""

    def __init__(self, pipeline: Pipeline, port: int, name: str) -> None:
        self.prefix = pipeline.settings.mqtt.topic_prefix
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{pipeline.tag}-{name}", clean_session=False
        )
        self.client.username_pw_set(*gateway_login(pipeline.settings))
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list[Any] = []

    def send(self, sensor_id: str, at: datetime, seq: int, **values: float) -> None:
        payload = {"sensorId": sensor_id, "dateObserved": at.isoformat(), "seq": seq, **values}
        topic = f"{self.prefix}/{sensor_id}"
        self.infos.append(self.client.publish(topic, json.dumps(payload), qos=1))

    def close(self, timeout: float = 120) -> None:
        # Not wait_for_publish: a message queued while disconnected carries that error code,
        # yet goes out after the reconnect; its acknowledgement (PUBACK) is what counts.
        deadline = time.monotonic() + timeout
        while not all(info.mid in self.acked for info in self.infos):
            assert time.monotonic() < deadline, "the sensor's messages were not acknowledged"
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()


def status_of(status_dir: Path, component: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((status_dir / f"{component}.json").read_text())
    return document


def stored_once(pipeline: Pipeline, sensor_id: str, times: list[datetime]) -> bool:
    rows = pipeline.scalar(
        "SELECT count(*) FROM sensor_readings WHERE sensor_id = %s AND time = ANY(%s)",
        sensor_id,
        times,
    )
    return bool(rows == len(times))


def readings_on_topic(pipeline: Pipeline) -> dict[str, list[SensorReading]]:
    """The readings as the stream processor saw them: in topic order, per sensor."""
    topic = Topics(pipeline.settings.kafka).readings
    by_sensor: dict[str, list[SensorReading]] = {}
    for record in pipeline.read_topic(topic, timeout=30):
        reading = decode_as(record.value, SensorReading)
        by_sensor.setdefault(reading.sensor_id, []).append(reading)
    return by_sensor


# Two gauges' water levels, repeating: crossings open and clear alarms all along.
LEVELS = {WATER: [2.0, 3.1, 2.8, 3.2, 2.5], CANAL: [1.5, 2.3, 1.9]}


def on_private_kafka(
    pipeline: Pipeline,
    receiver: tuple[Recorder, str, int],
    bootstrap: str,
    folder: Path,
    **environ: str,
) -> Settings:
    """Point the pipeline's stages at a broker (or cluster) of the test's own, its alarms at
    the recorder, its supervisors' status at `folder`/health; the settings they now read."""
    _rec, base_url, smtp_port = receiver
    pipeline.env.update(alert_env(base_url, smtp_port))
    pipeline.env.update(
        {
            "PANTAU__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "PANTAU__STREAMS__COOLDOWN_S": "0",
            # The camera's heartbeats stop while a broker is away; its offline alarm would
            # be right, but these tests count the sensors' alarms.
            "PANTAU__STREAMS__CAMERA_OFFLINE_AFTER_S": "600",
            "PANTAU__RUNTIME__STATUS_DIR": str(folder / "health"),
            "PANTAU__RUNTIME__RESTART_INITIAL_S": "0.5",
            "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(folder / "evidence"),
            **environ,
        }
    )
    settings = load_settings(BASE_CONFIG, pipeline.env)
    pipeline.settings = settings
    kafka.wait_until_ready(settings.kafka)
    # The topics as the stages will find them.
    kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
    return settings


def start_every_stage(
    pipeline: Pipeline,
) -> tuple[dict[str, subprocess.Popen[bytes]], subprocess.Popen[bytes]]:
    """The sink, stream processor, notifier, detector and MQTT ingest, ready; then a camera
    playing for 45 s. The long-running stages, and the camera."""
    processes = {
        "sink": pipeline.start("sink", "sink"),
        "streams": pipeline.start("streams", "streams"),
        "notify": pipeline.start("notify", "notify"),
        "detect": pipeline.start("detect", "detect"),
        "ingest-sensors": pipeline.start("ingest-sensors", "ingest", "sensors"),
    }
    pipeline.wait_for(
        "the stream worker",
        lambda: "Worker ready" in pipeline.log_of(processes["streams"]),
        timeout=180,
    )
    pipeline.wait_for(
        "the MQTT subscription",
        lambda: "subscribed to" in pipeline.log_of(processes["ingest-sensors"]),
    )
    camera = pipeline.start(
        "ingest-camera", "ingest", "camera", "--camera", "demo-table", "--duration", "45"
    )
    return processes, camera


def assert_all_running(
    pipeline: Pipeline, processes: dict[str, subprocess.Popen[bytes]], status_dir: Path
) -> dict[str, int]:
    """Every stage still up with every worker running; the restarts their supervisors made."""
    for name, process in processes.items():
        assert process.poll() is None, f"{name} ended:\n{pipeline.log_of(process)[-3000:]}"
        states = [w["state"] for w in status_of(status_dir, name)["workers"]]
        assert states == ["running"] * len(states), (name, states)
    return {
        name: sum(w["restarts"] for w in status_of(status_dir, name)["workers"])
        for name in processes
    }


def send_levels(sensor: Sensor, rounds: int, pause_s: float = 0.3) -> dict[str, list[datetime]]:
    """`rounds` readings of each gauge, 5 s apart in their time, an hour ago; their times."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sent: dict[str, list[datetime]] = {sensor_id: [] for sensor_id in LEVELS}
    for i in range(rounds):
        for sensor_id, pattern in LEVELS.items():
            at = start + timedelta(seconds=5 * i)
            sensor.send(sensor_id, at, i + 1, waterLevel=pattern[i % len(pattern)])
            sent[sensor_id].append(at)
        time.sleep(pause_s)
    return sent


def readings_during(
    pipeline: Pipeline, fault: Callable[[], None], rounds: int = 120
) -> dict[str, list[datetime]]:
    """The gauges' readings sent over MQTT (QoS 1, each acknowledged in the end) while
    `fault` runs beside them in a thread; their times."""
    sensor = Sensor(pipeline, pipeline.settings.mqtt.port, "gauge")
    beside = threading.Thread(target=fault)
    beside.start()
    sent = send_levels(sensor, rounds)
    beside.join()
    sensor.close()
    return sent


def assert_stored_and_notified_once(
    pipeline: Pipeline, rec: Recorder, sent: dict[str, list[datetime]]
) -> None:
    """Every reading sent is stored once, and people heard of exactly the alarm versions the
    engine makes of the readings on the topic: none missing, none twice."""
    for sensor_id, times in sent.items():
        pipeline.wait_for(
            f"every reading of {sensor_id} stored once",
            lambda sensor_id=sensor_id, times=times: stored_once(pipeline, sensor_id, times),
            timeout=240,
        )
    expected = expected_notified(pipeline, readings_on_topic(pipeline))
    assert sum(expected.values()) >= 20
    pipeline.wait_for(
        "every notification", lambda: sum(rec.telegram_alarm_ids().values()) >= sum(
            expected.values()), timeout=240)  # fmt: skip
    time.sleep(5)  # a repeat would arrive now
    assert rec.telegram_alarm_ids() == expected


def assert_every_frame_detected(pipeline: Pipeline, min_frames: int = 50) -> None:
    topics = Topics(pipeline.settings.kafka)
    frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}
    assert len(frames) > min_frames, "too few frames reached Kafka to say anything"

    def detected() -> set[Any]:
        return {
            decode_as(r.value, Detections).frame_id for r in pipeline.read_topic(topics.detections)
        }

    pipeline.wait_for("detections of every frame", lambda: frames <= detected(), timeout=240)


def test_kafka_broker_restart_while_readings_frames_and_alerts_flow(
    isolated_pipeline: Pipeline,
    services: Settings,
    tmp_path: Path,
    recorder: tuple[Recorder, str, int],  # noqa: F811 - the fixture
) -> None:
    pipeline = isolated_pipeline
    rec = recorder[0]
    with private_kafka(services, tmp_path) as broker:
        on_private_kafka(pipeline, recorder, broker.bootstrap, tmp_path)
        processes, camera = start_every_stage(pipeline)
        restarted: list[float] = []

        def restart_broker() -> None:
            time.sleep(12)
            restarted.append(broker.run("down"))
            restarted.append(broker.run("up"))

        sent = readings_during(pipeline, restart_broker)
        assert restarted, "the broker was not restarted"

        assert_stored_and_notified_once(pipeline, rec, sent)
        assert camera.wait(timeout=120) == 0, pipeline.log_of(camera)
        assert_every_frame_detected(pipeline)
        restarts = assert_all_running(pipeline, processes, tmp_path / "health")
        down_s, up_s = restarted
        print(f"broker restart: down {down_s:.1f} s, up {up_s:.1f} s; restarts {restarts}")
        pipeline.stop_all()


def test_mqtt_broker_restart_loses_no_qos1_reading(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    status_dir = tmp_path / "health"
    with private_mosquitto(pipeline.settings, tmp_path) as broker:
        pipeline.env.update(
            {
                "PANTAU__MQTT__PORT": str(broker.port),
                "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
            }
        )
        ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
        pipeline.start("sink", "sink")
        pipeline.wait_for(
            "the MQTT subscription", lambda: "subscribed to" in pipeline.log_of(ingest)
        )
        sensor = Sensor(pipeline, broker.port, "gauge")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        times = [start + timedelta(seconds=i) for i in range(90)]
        for i, at in enumerate(times[:30]):
            sensor.send(WATER, at, i + 1, waterLevel=1.0)
        time.sleep(1)
        broker.stop()
        # Sent while the broker is away: the sensor queues them (QoS 1).
        for i, at in enumerate(times[30:60], start=30):
            sensor.send(WATER, at, i + 1, waterLevel=1.1)
        time.sleep(2)
        broker.start()
        for i, at in enumerate(times[60:], start=60):
            sensor.send(WATER, at, i + 1, waterLevel=1.2)
        sensor.close()
        pipeline.wait_for(
            "all 90 readings stored once", lambda: stored_once(pipeline, WATER, times), timeout=120
        )
        assert ingest.poll() is None, pipeline.log_of(ingest)
        # The ingest reconnected by itself: its worker was never restarted.
        (worker,) = status_of(status_dir, "ingest-sensors")["workers"]
        assert worker["restarts"] == 0, worker
        assert "MQTT connection lost" in pipeline.log_of(ingest)
        assert pipeline.stop(ingest) == 0


def test_detector_killed_with_frames_flowing_is_restarted_and_misses_no_frame(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    status_dir = tmp_path / "health"
    pipeline.env.update(
        {
            "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
            "PANTAU__RUNTIME__RESTART_INITIAL_S": "0.5",
            "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
        }
    )
    topics = Topics(pipeline.settings.kafka)
    kafka.ensure_topics(pipeline.settings.kafka, topics.specs())
    detect = pipeline.start("detect", "detect")
    camera = pipeline.start(
        "ingest-camera", "ingest", "camera", "--camera", "demo-table", "--duration", "30"
    )

    def detections() -> list[Detections]:
        return [decode_as(r.value, Detections) for r in pipeline.read_topic(topics.detections)]

    pipeline.wait_for("the first detections", lambda: len(detections()) >= 20, timeout=120)
    worker_pid = status_of(status_dir, "detect")["workers"][0]["pid"]
    os.kill(worker_pid, signal.SIGKILL)
    pipeline.wait_for(
        "the detector restarted by its supervisor",
        lambda: (
            status_of(status_dir, "detect")["workers"][0]["state"] == "running"
            and status_of(status_dir, "detect")["workers"][0]["restarts"] == 1
        ),
        timeout=120,
    )
    assert camera.wait(timeout=120) == 0, pipeline.log_of(camera)
    frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}

    def missing() -> set[Any]:
        return frames - {d.frame_id for d in detections()}

    pipeline.wait_for("detections of every frame", lambda: not missing(), timeout=180)
    (worker,) = status_of(status_dir, "detect")["workers"]
    assert worker["reason"] == "killed by SIGKILL"
    counts = Counter(d.frame_id for d in detections())
    # At least once: frames of the batch in hand when killed are detected again (the sink
    # keeps one copy); never more than twice.
    assert max(counts.values()) <= 2
    assert detect.poll() is None
    assert pipeline.stop(detect) == 0
