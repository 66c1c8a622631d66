"""A replicated cluster losing a broker while readings, frames, detections and alarms flow.

Three Kafka nodes of the test's own (`scripts/services.sh up kafka` with
PANTAU_KAFKA_BROKERS=3, on their own ports and folders), topics with the replication of a
city deployment (data, state and dead letters 3 copies / 2 in sync, frames 2 / 1). The node
that leads most of the readings' partitions is killed outright (SIGKILL) mid-stream and
brought back later: every reading is stored once, every alarm version people must hear of
is notified exactly once, every frame is detected, and no stage needed a hand.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pantau import kafka
from pantau.codec import decode_as
from pantau.messages import Detections, Frame
from pantau.settings import Settings, load_settings
from pantau.topics import Topics
from tests.integration.conftest import BASE_CONFIG, Pipeline
from tests.integration.test_alerts_pipeline import (
    Recorder,
    alert_env,
    expected_notified,
    recorder,  # noqa: F401 - the fixture, used by name
)
from tests.integration.test_faults import (
    CANAL,
    WATER,
    PrivateKafka,
    Sensor,
    readings_on_topic,
    status_of,
    stored_once,
)

NODES = 3
# Node i listens on PORT + STEP x (i - 1), its controller on that + 1.
STEP = 2

REPLICATION = {
    "PANTAU__KAFKA__REPLICATION__DATA__REPLICAS": "3",
    "PANTAU__KAFKA__REPLICATION__DATA__MIN_INSYNC": "2",
    "PANTAU__KAFKA__REPLICATION__STATE__REPLICAS": "3",
    "PANTAU__KAFKA__REPLICATION__STATE__MIN_INSYNC": "2",
    "PANTAU__KAFKA__REPLICATION__DEAD_LETTERS__REPLICAS": "3",
    "PANTAU__KAFKA__REPLICATION__DEAD_LETTERS__MIN_INSYNC": "2",
    "PANTAU__KAFKA__REPLICATION__FRAMES__REPLICAS": "2",
    "PANTAU__KAFKA__REPLICATION__FRAMES__MIN_INSYNC": "1",
}


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports nobody listens on."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        if first + count >= 65535:
            continue
        taken = False
        for port in range(first, first + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return first
    raise AssertionError(f"no {count} consecutive free ports")


class Cluster(PrivateKafka):
    state: Path

    @property
    def bootstrap(self) -> str:
        return ",".join(f"localhost:{self.port + STEP * i}" for i in range(NODES))

    def pid(self, node: int) -> int:
        name = "kafka.pid" if node == 1 else f"kafka-{node}.pid"
        return int((self.state / "run" / name).read_text().split()[0])


@contextmanager
def private_cluster(services: Settings, tmp_path: Path) -> Iterator[Cluster]:
    state = tmp_path / "cluster-state"
    state.mkdir()
    # The brokers' jars, resolved once from Maven Central by `pantau services up`.
    (state / "cache").symlink_to(services.services.state_dir / "cache")
    port = free_ports(STEP * NODES)
    cluster = Cluster(
        port,
        {
            **os.environ,
            "PANTAU_STATE_DIR": str(state),
            "PANTAU_KAFKA_PORT": str(port),
            "PANTAU_KAFKA_CONTROLLER_PORT": str(port + 1),
            "PANTAU_KAFKA_PORT_STEP": str(STEP),
            "PANTAU_KAFKA_BROKERS": str(NODES),
            "PANTAU_KAFKA_HEAP": "384m",
        },
    )
    cluster.state = state
    cluster.run("up")
    try:
        yield cluster
    finally:
        cluster.run("down")


def leaders(settings: Settings, topic: str) -> Counter[int]:
    """How many of the topic's partitions each node leads."""
    client = kafka.admin(settings.kafka)
    try:
        [described] = client.describe_topics([topic])
    finally:
        client.close()
    return Counter(p["leader_id"] for p in described["partitions"])


def fully_replicated(settings: Settings, topic: str) -> bool:
    client = kafka.admin(settings.kafka)
    try:
        [described] = client.describe_topics([topic])
    finally:
        client.close()
    return all(len(p["isr_nodes"]) == NODES for p in described["partitions"])


def test_a_broker_killed_mid_stream_loses_and_repeats_nothing(
    isolated_pipeline: Pipeline,
    services: Settings,
    tmp_path: Path,
    recorder: tuple[Recorder, str, int],  # noqa: F811 - the fixture
) -> None:
    pipeline = isolated_pipeline
    rec, base_url, smtp_port = recorder
    status_dir = tmp_path / "health"
    with private_cluster(services, tmp_path) as cluster:
        pipeline.env.update(alert_env(base_url, smtp_port))
        pipeline.env.update(
            {
                **REPLICATION,
                "PANTAU__KAFKA__BOOTSTRAP_SERVERS": cluster.bootstrap,
                "PANTAU__STREAMS__COOLDOWN_S": "0",
                "PANTAU__STREAMS__CAMERA_OFFLINE_AFTER_S": "600",
                "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
                "PANTAU__RUNTIME__RESTART_INITIAL_S": "0.5",
                "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
                "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
            }
        )
        settings = pipeline.settings.model_copy(
            update={"kafka": pipeline.settings.kafka.model_copy(
                update={"bootstrap_servers": cluster.bootstrap})}
        )  # fmt: skip
        pipeline.settings = settings
        kafka.wait_until_ready(settings.kafka)
        # The topics as the stages will find them: with the replication of the settings.
        replicated = load_settings(BASE_CONFIG, pipeline.env).kafka
        topics = Topics(replicated)
        kafka.ensure_topics(replicated, topics.specs())
        assert kafka.topic_differences(replicated, topics.specs()) == []
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

        sensor = Sensor(pipeline, pipeline.settings.mqtt.port, "gauge")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        levels = {WATER: [2.0, 3.1, 2.8, 3.2, 2.5], CANAL: [1.5, 2.3, 1.9]}
        sent: dict[str, list[datetime]] = {WATER: [], CANAL: []}
        killed: list[int] = []

        def lose_a_broker() -> None:
            time.sleep(12)
            node, _ = leaders(settings, topics.readings).most_common(1)[0]
            os.kill(cluster.pid(node), signal.SIGKILL)
            killed.append(node)
            time.sleep(15)
            cluster.run("up")

        outage = threading.Thread(target=lose_a_broker)
        outage.start()
        for i in range(120):
            for sensor_id, pattern in levels.items():
                at = start + timedelta(seconds=5 * i)
                sensor.send(sensor_id, at, i + 1, waterLevel=pattern[i % len(pattern)])
                sent[sensor_id].append(at)
            time.sleep(0.3)
        outage.join()
        sensor.close()
        assert killed, "no broker was killed"

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

        assert camera.wait(timeout=120) == 0, pipeline.log_of(camera)
        frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}
        assert len(frames) > 50, "too few frames reached Kafka to say anything"

        def detected() -> set[Any]:
            return {
                decode_as(r.value, Detections).frame_id
                for r in pipeline.read_topic(topics.detections)
            }

        pipeline.wait_for("detections of every frame", lambda: frames <= detected(), timeout=240)
        pipeline.wait_for(
            "the killed broker back in sync",
            lambda: fully_replicated(settings, topics.readings),
            timeout=120,
        )
        for name, process in processes.items():
            assert process.poll() is None, f"{name} ended:\n{pipeline.log_of(process)[-3000:]}"
            states = [w["state"] for w in status_of(status_dir, name)["workers"]]
            assert states == ["running"] * len(states), (name, states)
        restarts = {
            name: sum(w["restarts"] for w in status_of(status_dir, name)["workers"])
            for name in processes
        }
        print(f"killed node {killed[0]}; restarts {restarts}")
        pipeline.stop_all()
