"""Every stage as two members of its consumer group, one of them killed outright (SIGKILL,
supervisor and worker) while data flows: the survivor takes its partitions within the
session timeout, and nothing is lost or repeated. Real Kafka, PostgreSQL, Mosquitto, and the
detector's real YOLO weights."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from pantau.codec import decode_as
from pantau.messages import Detections, Frame
from pantau.settings import Settings
from pantau.topics import Topics
from tests.integration.conftest import Pipeline
from tests.integration.test_alerts_pipeline import (
    Recorder,
    alert_env,
    recorder,  # noqa: F401 - the fixture, used by name
)
from tests.integration.test_detector_resume import (
    alerted_part_one,
    detector_env,
    drop_and_clean,
    dumping_events,
)
from tests.integration.test_faults import (
    assert_every_frame_detected,
    assert_stored_and_notified_once,
    readings_during,
)

ASSIGNED = re.compile(r"consumer: assigned \d+ partitions: (.*)")


def kill(pipeline: Pipeline, process: subprocess.Popen[bytes]) -> float:
    """SIGKILL a member (its supervisor; the worker dies with it); when it happened."""
    process.kill()
    process.wait(timeout=30)
    # Killed on purpose: not a process that died on its own.
    pipeline.processes = [entry for entry in pipeline.processes if entry[1] is not process]
    return time.monotonic()


def detected_frames(pipeline: Pipeline) -> list[Any]:
    """The frame id of every detections message so far (a frame detected twice, twice)."""
    topic = Topics(pipeline.settings.kafka).detections
    return [decode_as(r.value, Detections).frame_id for r in pipeline.read_topic(topic)]


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

    def lose_members() -> None:
        time.sleep(8)
        kill(pipeline, sinks[0])
        time.sleep(12)
        kill(pipeline, streams[0])

    sent = readings_during(pipeline, lose_members, 110)

    # The surviving sink took every partition of the readings, within the session timeout.
    every = set(range(pipeline.settings.kafka.partitions.readings))
    pipeline.wait_for(
        "the surviving sink holding every reading partition",
        lambda: partitions_held(pipeline.log_of(sinks[1]), topics.readings) == every,
        timeout=60,
    )
    assert_stored_and_notified_once(pipeline, rec, sent)
    for survivor in (sinks[1], streams[1]):
        assert survivor.poll() is None, pipeline.log_of(survivor)[-3000:]
    pipeline.stop_all()


# --------------------------------------------------------------------------- the detector


def test_the_detector_holding_an_open_case_is_killed_and_the_other_member_finishes_it(
    isolated_pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline = isolated_pipeline
    camera, _ = drop_and_clean(tmp_path / "scene", "member-cam", seed=7)
    env = detector_env([camera], tmp_path)
    topics = Topics(pipeline.settings.kafka)
    detectors = [pipeline.start(f"detect-{k}", "detect", env=env) for k in "ab"]
    pipeline.wait_for(
        "both detectors in the group",
        lambda: all(partitions_held(pipeline.log_of(d), topics.frames) for d in detectors),
        timeout=180,
    )
    pipeline.start("sink", "sink", env=env)

    alert = alerted_part_one(pipeline, env, "member-cam")
    [partition] = {r.partition for r in pipeline.read_topic(topics.frames)}
    [owner] = [
        d for d in detectors if partition in partitions_held(pipeline.log_of(d), topics.frames)
    ]
    [other] = [d for d in detectors if d is not owner]
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
        "the event's end",
        lambda: any(e.phase == "end" for e in dumping_events(pipeline)),
        timeout=300,
    )
    ends = [e for e in dumping_events(pipeline) if e.phase == "end"]
    assert [(e.event_id, e.state) for e in ends] == [(alert.event_id, "cleaned")]
    assert [e.event_id for e in dumping_events(pipeline) if e.phase == "new"] == [alert.event_id]
    assert {ref.kind for ref in ends[0].evidence} == {"before", "alert", "owner", "clip"}
    assert "resumed its detector state" in pipeline.log_of(other)
    # Every frame of both parts was detected, by one member or the other.
    assert_every_frame_detected(pipeline)
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
    cameras = [
        drop_and_clean(tmp_path / f"scene-{n}", camera_id, seed=20 + n, fps=SCALE_FPS)[0]
        for n, camera_id in enumerate(CAMERA_IDS)
    ]
    env = detector_env(cameras, tmp_path)
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
        lambda: len({e.camera_id for e in dumping_events(pipeline) if e.phase == "new"}) == CAMERAS,
        timeout=420,
    )
    alerts = {e.camera_id: e.event_id for e in dumping_events(pipeline) if e.phase == "new"}
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
        lambda: len({e.camera_id for e in dumping_events(pipeline) if e.phase == "end"}) == CAMERAS,
        timeout=420,
    )
    events = dumping_events(pipeline)
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

    pipeline.wait_for("detections of every frame", lambda: frames <= set(detected_frames(pipeline)))
    seen = detected_frames(pipeline)
    assert len(seen) == len(set(seen)), "a frame was detected twice"
    print(f"{len(moved)} of {CAMERAS} cameras moved to the second detector: {sorted(moved)}")


def test_detect_with_two_workers_shares_the_cameras_and_detects_each_frame_once(
    isolated_pipeline: Pipeline, tmp_path: Path, shared_data: Path
) -> None:
    """`pantau detect --workers 2`: one supervisor, two detector processes in the group,
    each holding part of the frames' partitions; every frame is detected exactly once."""
    pipeline = isolated_pipeline
    clip = shared_data / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
    cameras = [{"id": camera_id, "url": str(clip), "fps": 5} for camera_id in CAMERA_IDS]
    env = {**detector_env(cameras, tmp_path), "PANTAU__RUNTIME__STATUS_DIR": str(tmp_path)}
    topics = Topics(pipeline.settings.kafka)
    detect = pipeline.start("detect", "detect", "--workers", "2", env=env)

    def held() -> list[set[int]]:
        return [
            {int(p) for p in found.group(1).split(",") if p.strip()}
            for line in ASSIGNED.findall(pipeline.log_of(detect))
            if (found := re.search(re.escape(topics.frames) + r"\[([0-9, ]*)\]", line))
        ]

    def two_members_share_the_partitions() -> bool:
        last = held()[-2:]
        return len(last) == 2 and all(last) and not (last[0] & last[1])

    pipeline.wait_for("two workers, each with partitions", two_members_share_the_partitions,
                      timeout=240)  # fmt: skip
    status = json.loads((tmp_path / "detect.json").read_text())
    assert len(status["workers"]) == 2
    pipeline.run("ingest", "camera", "--no-realtime", "--max-frames", "10", env=env, timeout=300)
    frames = {decode_as(r.value, Frame).id for r in pipeline.read_topic(topics.frames)}
    assert len(frames) == 10 * CAMERAS

    pipeline.wait_for("detections of every frame", lambda: frames <= set(detected_frames(pipeline)))
    seen = detected_frames(pipeline)
    assert len(seen) == len(set(seen)), "a frame was detected twice"
