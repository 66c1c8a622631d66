"""Every stage as two members of its consumer group, one of them killed outright (SIGKILL,
supervisor and worker) while data flows: the survivor takes its partitions within the
session timeout, and nothing is lost or repeated. Real Kafka, PostgreSQL, Mosquitto, and the
detector's real YOLO weights."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detectors.evaluation.synthetic import SceneSpec, SyntheticScene, write_scene
from pantau.codec import decode_as
from pantau.messages import Detections, DumpingEvent, Frame
from pantau.settings import Settings
from pantau.topics import Topics
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import (
    Recorder,
    alert_env,
    expected_notified,
    recorder,  # noqa: F401 - the fixture, used by name
)
from tests.integration.test_faults import (
    CANAL,
    WATER,
    Sensor,
    readings_on_topic,
    stored_once,
)

ASSIGNED = re.compile(r"consumer: assigned \d+ partitions: (.*)")


def kill(pipeline: Pipeline, process: subprocess.Popen[bytes]) -> float:
    """SIGKILL a member (its supervisor; the worker dies with it); when it happened."""
    process.kill()
    process.wait(timeout=30)
    # Killed on purpose: not a process that died on its own.
    pipeline.processes = [entry for entry in pipeline.processes if entry[1] is not process]
    return time.monotonic()


def partitions_held(log: str, topic: str) -> set[int]:
    """The partitions of `topic` the member's last assignment gave it."""
    lines = ASSIGNED.findall(log)
    if not lines:
        return set()
    found = re.search(re.escape(topic) + r"\[([0-9, ]*)\]", lines[-1])
    return {int(p) for p in found.group(1).split(",") if p.strip()} if found else set()


def test_sink_and_stream_members_killed_in_turn_lose_and_repeat_nothing(
    isolated_pipeline: Pipeline,
    services: Settings,
    tmp_path: Path,
    recorder: tuple[Recorder, str, int],  # noqa: F811 - the fixture
) -> None:
    pipeline = isolated_pipeline
    rec, base_url, smtp_port = recorder
    pipeline.env.update(alert_env(base_url, smtp_port))
    pipeline.env.update(
        {
            "PANTAU__STREAMS__COOLDOWN_S": "0",
            "PANTAU__STREAMS__CAMERA_OFFLINE_AFTER_S": "600",
            "PANTAU__RUNTIME__RESTART_INITIAL_S": "0.5",
        }
    )
    topics = Topics(pipeline.settings.kafka)
    sinks = [pipeline.start(f"sink-{k}", "sink") for k in "ab"]
    streams = [
        pipeline.start(
            f"streams-{k}",
            "streams",
            env={"PANTAU__STREAMS__DATA_DIR": str(tmp_path / f"streams-{k}")},
        )
        for k in "ab"
    ]
    pipeline.start("notify", "notify")
    ingest = pipeline.start("ingest-sensors", "ingest", "sensors")
    for member in streams:
        pipeline.wait_for(
            "both stream workers",
            lambda member=member: "Worker ready" in pipeline.log_of(member),
            timeout=180,
        )
    pipeline.wait_for(
        "both sinks in the group",
        lambda: all(partitions_held(pipeline.log_of(s), topics.readings) for s in sinks),
        timeout=120,
    )
    pipeline.wait_for("the MQTT subscription", lambda: "subscribed to" in pipeline.log_of(ingest))

    sensor = Sensor(pipeline, pipeline.settings.mqtt.port, "gauge")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    levels = {WATER: [2.0, 3.1, 2.8, 3.2, 2.5], CANAL: [1.5, 2.3, 1.9]}
    sent: dict[str, list[datetime]] = {WATER: [], CANAL: []}
    killed: dict[str, float] = {}

    def lose_members() -> None:
        time.sleep(8)
        killed["sink"] = kill(pipeline, sinks[0])
        time.sleep(12)
        killed["streams"] = kill(pipeline, streams[0])

    losses = threading.Thread(target=lose_members)
    losses.start()
    for i in range(110):
        for sensor_id, pattern in levels.items():
            at = start + timedelta(seconds=5 * i)
            sensor.send(sensor_id, at, i + 1, waterLevel=pattern[i % len(pattern)])
            sent[sensor_id].append(at)
        time.sleep(0.3)
    losses.join()
    sensor.close()

    # The surviving sink took every partition of the readings, within the session timeout.
    every = set(range(pipeline.settings.kafka.partitions.readings))
    pipeline.wait_for(
        "the surviving sink holding every reading partition",
        lambda: partitions_held(pipeline.log_of(sinks[1]), topics.readings) == every,
        timeout=60,
    )
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
    for survivor in (sinks[1], streams[1]):
        assert survivor.poll() is None, pipeline.log_of(survivor)[-3000:]
    pipeline.stop_all()


# --------------------------------------------------------------------------- the detector

FPS = 5
DWELL_S = 10


def _events(pipeline: Pipeline) -> list[DumpingEvent]:
    topic = Topics(pipeline.settings.kafka).dumping_events
    return [decode_as(r.value, DumpingEvent) for r in pipeline.read_topic(topic)]


def test_the_detector_holding_an_open_case_is_killed_and_the_other_member_finishes_it(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    # A bag left at ~6 s, alerted after the dwell; a cleaner takes it away at ~36 s.
    scene = SyntheticScene(SceneSpec("drop_and_clean", seed=7, clean_after_s=30.0, duration_s=80.0))
    video, _ = write_scene(scene, tmp_path / "scene")
    zones: list[dict[str, Any]] = scene.truth.camera_zones(DWELL_S)
    env = {
        "PANTAU__CAMERAS__0__ID": "member-cam",
        "PANTAU__CAMERAS__0__URL": str(video),
        "PANTAU__CAMERAS__0__FPS": str(FPS),
        "PANTAU__CAMERAS__0__ZONES": json.dumps(zones),
        "PANTAU__INGEST__MOTION__ENABLED": "false",
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
    }
    topics = Topics(pipeline.settings.kafka)
    detectors = [pipeline.start(f"detect-{k}", "detect", env=env) for k in "ab"]
    pipeline.wait_for(
        "both detectors in the group",
        lambda: all(partitions_held(pipeline.log_of(d), topics.frames) for d in detectors),
        timeout=180,
    )
    pipeline.start("sink", "sink", env=env)

    # Part one: up to 28 s, past the alert, before the cleaner comes.
    pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", str(28 * FPS),
                 env=env, timeout=300)  # fmt: skip
    [partition] = {r.partition for r in pipeline.read_topic(topics.frames)}
    [owner] = [
        d for d in detectors if partition in partitions_held(pipeline.log_of(d), topics.frames)
    ]
    [other] = [d for d in detectors if d is not owner]
    pipeline.wait_for(
        "the dumping alert",
        lambda: any(e.phase == "new" for e in _events(pipeline)),
        timeout=300,
    )
    (alert,) = [e for e in _events(pipeline) if e.phase == "new"]
    pipeline.wait_for(
        "the camera's saved state, with the clip",
        lambda: (
            any("clip" in {r.kind for r in e.evidence} for e in _events(pipeline))
            and any(r.key == b"member-cam" for r in pipeline.read_topic(topics.detect_state))
        ),
        timeout=120,
    )
    killed_at = kill(pipeline, owner)

    # Part two, from 50 s, after the cleaner has left: the other member takes the partition.
    pipeline.run("ingest", "camera", "--no-realtime", "--start-s", "50", env=env, timeout=300)
    pipeline.wait_for(
        "the other member holding the camera's partition",
        lambda: partition in partitions_held(pipeline.log_of(other), topics.frames),
        timeout=60,
    )
    took_s = time.monotonic() - killed_at
    pipeline.wait_for(
        "the event's end", lambda: any(e.phase == "end" for e in _events(pipeline)), timeout=300
    )
    ends = [e for e in _events(pipeline) if e.phase == "end"]
    assert [(e.event_id, e.state) for e in ends] == [(alert.event_id, "cleaned")]
    assert [e.event_id for e in _events(pipeline) if e.phase == "new"] == [alert.event_id]
    assert {ref.kind for ref in ends[0].evidence} == {"before", "alert", "owner", "clip"}
    assert "resumed its detector state" in pipeline.log_of(other)
    # Every frame of both parts was detected, by one member or the other.
    frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}

    def detected() -> set[Any]:
        return {
            decode_as(r.value, Detections).frame_id for r in pipeline.read_topic(topics.detections)
        }

    pipeline.wait_for("detections of every frame", lambda: frames <= detected(), timeout=240)
    print(f"the other detector took the camera's partition {took_s:.1f} s after the kill")
    pipeline.wait_for(
        "the ended event in PostgreSQL",
        lambda: (
            pipeline.scalar("SELECT state FROM dumping_events WHERE event_id = %s", alert.event_id)
            == "cleaned"
        ),
        timeout=120,
    )


# --------------------------------------------------------------------------- scaling up

# Camera ids whose frames land four in partitions 0-5 and four in 6-11 of the 12: however
# the group splits them, some cameras move when the second detector joins.
CAMERA_IDS = [f"scale-cam-{n}" for n in (1, 2, 3, 4, 7, 9, 10, 12)]
CAMERAS = len(CAMERA_IDS)
SCALE_FPS = 2


def test_a_second_detector_joining_eight_running_cameras_takes_some_with_their_cases(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    """Eight cameras, each with a bag dropped (alerted) and later cleaned away. A second
    detector joins after the alerts: the cameras whose partitions it takes move to it with
    their open cases, every frame is detected once (never by both), and every case ends
    `cleaned`, once, under the id it was alerted with."""
    pipeline = isolated_pipeline
    cameras = []
    for n, camera_id in enumerate(CAMERA_IDS):
        scene = SyntheticScene(
            SceneSpec("drop_and_clean", seed=20 + n, clean_after_s=30.0, duration_s=80.0)
        )
        video, _ = write_scene(scene, tmp_path / f"scene-{n}")
        cameras.append(
            {
                "id": camera_id,
                "url": str(video),
                "fps": SCALE_FPS,
                "zones": scene.truth.camera_zones(DWELL_S),
            }
        )
    env = {
        "PANTAU__CAMERAS": json.dumps(cameras),
        "PANTAU__INGEST__MOTION__ENABLED": "false",
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
    }
    topics = Topics(pipeline.settings.kafka)
    first = pipeline.start("detect-first", "detect", env=env)
    pipeline.wait_for(
        "the first detector in the group",
        lambda: bool(partitions_held(pipeline.log_of(first), topics.frames)),
        timeout=180,
    )
    # Part one: to 28 s, past every alert, before the cleaners come.
    pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", str(28 * SCALE_FPS),
                 env=env, timeout=300)  # fmt: skip
    pipeline.wait_for(
        "an alert on every camera",
        lambda: len({e.camera_id for e in _events(pipeline) if e.phase == "new"}) == CAMERAS,
        timeout=420,
    )
    alerts = {e.camera_id: e.event_id for e in _events(pipeline) if e.phase == "new"}
    pipeline.wait_for(
        "every camera's saved state",
        lambda: len({r.key for r in pipeline.read_topic(topics.detect_state)}) == CAMERAS,
        timeout=120,
    )

    second = pipeline.start("detect-second", "detect", env=env)
    pipeline.wait_for(
        "the second detector holding partitions",
        lambda: bool(partitions_held(pipeline.log_of(second), topics.frames)),
        timeout=180,
    )
    partition_of = {
        decode_as(r.value, Frame).camera_id: r.partition for r in pipeline.read_topic(topics.frames)
    }
    # Part two, from 50 s, after the cleaners have left.
    pipeline.run("ingest", "camera", "--no-realtime", "--start-s", "50", env=env, timeout=300)
    pipeline.wait_for(
        "an end on every camera",
        lambda: len({e.camera_id for e in _events(pipeline) if e.phase == "end"}) == CAMERAS,
        timeout=420,
    )
    events = _events(pipeline)
    assert sorted((e.camera_id, e.event_id) for e in events if e.phase == "new") == sorted(
        alerts.items()
    )
    ends = sorted((e.camera_id, e.event_id, e.state) for e in events if e.phase == "end")
    assert ends == sorted((camera, event, "cleaned") for camera, event in alerts.items())

    held = partitions_held(pipeline.log_of(second), topics.frames)
    moved = {c for c, p in partition_of.items() if p in held}
    assert moved, f"no camera moved to the second detector ({partition_of}, it holds {held})"
    log = pipeline.log_of(second)
    for camera in moved:
        assert f"camera {camera}: resumed its detector state" in log, camera

    # One detector at a time per camera: every frame detected exactly once.
    frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}

    def detections() -> list[Any]:
        return [
            decode_as(r.value, Detections).frame_id for r in pipeline.read_topic(topics.detections)
        ]

    pipeline.wait_for("detections of every frame", lambda: frames <= set(detections()))
    seen = detections()
    assert len(seen) == len(set(seen)), "a frame was detected twice"
    print(f"{len(moved)} of {CAMERAS} cameras moved to the second detector: {sorted(moved)}")
