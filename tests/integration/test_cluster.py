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
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pantau import kafka
from pantau.settings import Settings
from pantau.topics import Topics
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import (
    Recorder,
    recorder,  # noqa: F401 - the fixture, used by name
)
from tests.integration.test_faults import (
    PrivateKafka,
    assert_all_running,
    assert_every_frame_detected,
    assert_stored_and_notified_once,
    on_private_kafka,
    readings_during,
    start_every_stage,
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
    rec = recorder[0]
    with private_cluster(services, tmp_path) as cluster:
        # The topics with the replication of a city: what the stages create and check.
        settings = on_private_kafka(pipeline, recorder, cluster.bootstrap, tmp_path, **REPLICATION)
        topics = Topics(settings.kafka)
        assert kafka.topic_differences(settings.kafka, topics.specs()) == []
        processes, camera = start_every_stage(pipeline)
        killed: list[int] = []

        def lose_a_broker() -> None:
            time.sleep(12)
            node, _ = leaders(settings, topics.readings).most_common(1)[0]
            os.kill(cluster.pid(node), signal.SIGKILL)
            killed.append(node)
            time.sleep(15)
            cluster.run("up")

        sent = readings_during(pipeline, lose_a_broker)
        assert killed, "no broker was killed"

        assert_stored_and_notified_once(pipeline, rec, sent)
        assert camera.wait(timeout=120) == 0, pipeline.log_of(camera)
        assert_every_frame_detected(pipeline)
        pipeline.wait_for(
            "the killed broker back in sync",
            lambda: fully_replicated(settings, topics.readings),
            timeout=120,
        )
        restarts = assert_all_running(pipeline, processes, tmp_path / "health")
        print(f"killed node {killed[0]}; restarts {restarts}")
        pipeline.stop_all()
