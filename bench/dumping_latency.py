"""Frame → dumping event latency through the real pipeline, with the camera at real time.

Synthetic drop-and-leave scenes (`detectors.evaluation.synthetic`, different seeds, drop
places and lighting) are written as video files and each is played as its own live camera by
`pantau ingest camera --realtime` (motion gate on, as configured), with `pantau detect`
(the configured backend) and `pantau sink` consuming, all under a throw-away topic prefix,
consumer groups and a freshly migrated database. The camera zones are the scene's own
(a watch zone with a 30 s dwell, a pole and a bin as fixtures). The scenes start a few seconds
apart, so their alerts do not fall on the same detector batch.

Latency of one event: from the capture of the frame at which the dumping logic raises the
alert — the event's `alerted_at`, which for a camera played in real time is that frame's
capture time on the wall clock (file sources: the detector's dumping clock is the file
position, mapped to wall time through the first frame's capture time) — to the event being
visible

  (a) on `events.dumping.v1`: the time this benchmark's own consumer receives the `new`
      message (`frame_to_event_*`);
  (b) in PostgreSQL: the row's `stored_at` (`frame_to_event_stored_*`; the sink's transaction
      start, a few milliseconds before its commit makes the row visible).

The `new` message carries the evidence stills and goes out at once; the clip follows in a
later step after the post-roll (`dumping.evidence.post_roll_s`, 5 s by default). With a
post-roll of 0 the clip is written before the alert leaves, so the figures are given for the
default configuration and again with `PANTAU__DUMPING__EVIDENCE__POST_ROLL_S=0`
(`frame_to_event_no_postroll_*`). With a handful of scenes the percentiles are of a handful
of samples; the count is printed.

    python bench/dumping_latency.py [--scenes 6] [--stagger-s 5]

Needs the services up; takes about 4 minutes for 6 scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psycopg
from kafka import KafkaConsumer, TopicPartition
from pipeline_runs import PipelineRun, RunFailed, Stage, bench_database, stop_on_sigterm
from tqdm import tqdm

from detectors.evaluation.synthetic import Lighting, SceneSpec, SyntheticScene, write_scene
from pantau import kafka
from pantau.codec import DecodeError, decode_as
from pantau.messages import DumpingEvent, Frame
from pantau.topics import Topics

LIGHTING: tuple[Lighting, ...] = ("steady", "cloud", "dusk")
DROP_X = (0.45, 0.4, 0.5, 0.55)
# After the last scene's camera ends: its alert and post-roll are already in the frames, so
# this only bounds a pipeline that stopped working.
_DRAIN_TIMEOUT_S = 90.0


@dataclass
class Sample:
    camera_id: str
    alerted_at: datetime
    received: float
    """Wall-clock seconds when the `new` message reached this benchmark's consumer."""
    create_time: float
    """The record's CreateTime (the detector's send), seconds."""
    stored_at: datetime | None = None
    frame_capture: datetime | None = None
    """ts_capture of the frame at the alert's frame-clock position, read back from Kafka."""
    frame_gap_ms: float = 0.0


class EventListener(threading.Thread):
    """Receives dumping events as they appear on the topic, noting the time of arrival."""

    def __init__(self, run: PipelineRun) -> None:
        super().__init__(name="dumping-events", daemon=True)
        self._settings = run.settings
        self._topic = Topics(run.settings.kafka).dumping_events
        self._halt = threading.Event()
        self.lock = threading.Lock()
        self.new: dict[str, tuple[DumpingEvent, float, float]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            # The broker answers a fetch as soon as a record is there; this bounds the idle wait.
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=2_000_000,
            **kafka.security_options(self._settings.kafka, "kafka-python"),
        )
        try:
            partitions = consumer.partitions_for_topic(self._topic) or set()
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._halt.is_set():
                for batch in consumer.poll(timeout_ms=200).values():
                    arrived = time.time()
                    for record in batch:
                        event = decode_as(record.value, DumpingEvent)
                        if event.phase != "new":
                            continue
                        with self.lock:
                            self.new.setdefault(
                                str(event.event_id), (event, arrived, record.timestamp / 1000.0)
                            )
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class Scene(NamedTuple):
    camera: str
    video: Path
    duration_s: float
    zones: list[dict[str, Any]]


def write_scenes(folder: Path, count: int) -> list[Scene]:
    """(camera id, video, duration) per scene: seeds, drop places and lighting vary."""
    scenes = []
    for i in tqdm(range(count), desc="rendering scenes", unit="scene"):
        spec = SceneSpec(
            scenario="drop_and_leave",
            seed=i,
            lighting=LIGHTING[i % len(LIGHTING)],
            drop_x=DROP_X[i % len(DROP_X)],
        )
        scene = SyntheticScene(spec)
        video, _ = write_scene(scene, folder, f"scene-{i}")
        zones = scene.truth.camera_zones(dwell_s=30)
        scenes.append(Scene(f"scene-{i}", video, len(scene) / spec.fps, zones))
    return scenes


def cameras_env(scenes: list[Scene]) -> str:
    cameras = [
        {"id": camera, "url": str(video), "fps": 5, "max_width": 640, "zones": zones}
        for camera, video, _, zones in scenes
    ]
    return json.dumps(cameras)


def read_frames(run: PipelineRun) -> list[Frame]:
    """Every frame on the run's frames topic (a few hundred: the gate keeps most out)."""
    topic = Topics(run.settings.kafka).frames
    consumer = KafkaConsumer(
        bootstrap_servers=run.settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2_000_000,
        **kafka.security_options(run.settings.kafka, "kafka-python"),
    )
    frames: list[Frame] = []
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    try:
                        frames.append(decode_as(record.value, Frame))
                    except DecodeError:
                        continue
    finally:
        consumer.close()
    return frames


def alert_frame_capture(frames: list[Frame], sample: Sample) -> tuple[datetime | None, float]:
    """The capture time of the frame the alert was raised on, found by its file position the
    way the detector maps it (first frame's capture time minus its position); and how far, in
    ms of file position, the nearest frame was from the alert's."""
    mine = sorted((f for f in frames if f.camera_id == sample.camera_id), key=lambda f: f.seq)
    if not mine or mine[0].source_pos_ms is None:
        return None, float("inf")
    origin = mine[0].ts_capture.timestamp() - mine[0].source_pos_ms / 1000.0
    t_ms = (sample.alerted_at.timestamp() - origin) * 1000.0
    best = min(mine, key=lambda f: abs((f.source_pos_ms or 0.0) - t_ms))
    gap = abs((best.source_pos_ms or 0.0) - t_ms)
    return (best.ts_capture if gap <= 5.0 else None), gap


def stored_rows(run: PipelineRun) -> dict[tuple[str, datetime], datetime]:
    """stored_at per (event id, appeared_at): a scene replayed in the next configuration has
    the same event id (camera, appearance on the file's clock, box), at another wall time."""
    kwargs: dict[str, Any] = dict(run.settings.postgres.connect_kwargs("owner"))
    with psycopg.connect(**kwargs, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_id::text, appeared_at, stored_at FROM dumping_events"
        ).fetchall()
    return {(event_id, appeared_at): stored_at for event_id, appeared_at, stored_at in rows}


def measure(
    label: str,
    scenes: list[Scene],
    database: str,
    stagger_s: float,
    extra: dict[str, str],
    keep_logs: Path | None = None,
) -> tuple[list[Sample], list[str]]:
    """Play every scene as a live camera through one isolated pipeline; one sample per alert."""
    overrides = {
        "PANTAU__POSTGRES__DBNAME": database,
        "PANTAU__CAMERAS": cameras_env(scenes),
        **extra,
    }
    with PipelineRun(overrides, keep_logs=keep_logs) as run:
        kafka.ensure_topics(run.settings.kafka, Topics(run.settings.kafka).specs())
        listener = EventListener(run)
        listener.start()
        try:
            sink = run.start("sink", "sink")
            detect = run.start("detect", "detect")
            # Frames published while the model loads would queue; start the cameras after.
            run.wait_for_log(detect, "ready in", timeout=180)
            cameras: list[Stage] = []
            expected = {scene.camera for scene in scenes}
            longest = max(scene.duration_s for scene in scenes)
            deadline = time.monotonic() + stagger_s * len(scenes) + longest + _DRAIN_TIMEOUT_S
            next_start = time.monotonic()
            stored: dict[tuple[str, datetime], datetime] = {}
            with tqdm(total=len(scenes), desc=label, unit="event", mininterval=1) as bar:
                while time.monotonic() < deadline:
                    if len(cameras) < len(scenes) and time.monotonic() >= next_start:
                        camera = scenes[len(cameras)].camera
                        cameras.append(
                            run.start(camera, "ingest", "camera", "--camera", camera, "--realtime")
                        )
                        next_start += stagger_s
                    run.check_alive(sink, detect)
                    for stage in cameras:
                        if stage.process.poll() not in (None, 0):
                            raise RunFailed(f"{stage.name} failed:\n{stage.tail()}")
                    if listener.error is not None:
                        raise RunFailed(f"event listener failed: {listener.error!r}")
                    stored = stored_rows(run)
                    with listener.lock:
                        seen = {str(e.camera_id) for e, _, _ in listener.new.values()}
                        done = sum(
                            1
                            for event_id, (event, _, _) in listener.new.items()
                            if (event_id, event.appeared_at) in stored
                        )
                    bar.update(done - bar.n)
                    bar.set_postfix(
                        cameras=len(cameras), on_topic=len(seen), stored=done, refresh=False
                    )
                    if seen >= expected and done >= len(listener.new):
                        break
                    time.sleep(0.5)
        finally:
            listener.stop()
        frames = read_frames(run)

    samples = []
    with listener.lock:
        events = list(listener.new.items())
    for event_id, (event, received, created) in events:
        assert event.alerted_at is not None
        sample = Sample(event.camera_id, event.alerted_at, received, created)
        sample.stored_at = stored.get((event_id, event.appeared_at))
        sample.frame_capture, sample.frame_gap_ms = alert_frame_capture(frames, sample)
        samples.append(sample)
    per_camera: dict[str, int] = {}
    for s in samples:
        per_camera[s.camera_id] = per_camera.get(s.camera_id, 0) + 1
    notes = [f"{label}: {camera} raised no dumping event" for camera in sorted(
        expected - per_camera.keys())]  # fmt: skip
    notes += [f"{label}: {camera} raised {n} events" for camera, n in per_camera.items() if n > 1]
    return samples, notes


def percentiles(values: list[float]) -> tuple[float, float, float]:
    array = np.asarray(values, dtype=np.float64)
    p50, p95 = np.percentile(array, [50, 95])
    return float(p50), float(p95), float(array.max())


def report(name: str, samples: list[Sample]) -> None:
    topic = [s.received - s.alerted_at.timestamp() for s in samples]
    created = [s.create_time - s.alerted_at.timestamp() for s in samples]
    stored = [
        (s.stored_at - s.alerted_at).total_seconds() for s in samples if s.stored_at is not None
    ]
    p50, p95, top = percentiles(topic)
    print(f"figure: {name}_p50_s = {p50:.3f} s")
    print(f"figure: {name}_p95_s = {p95:.3f} s")
    print(f"figure: {name}_max_s = {top:.3f} s")
    print(f"figure: {name}_samples = {len(topic)} events")
    if stored:
        p50, p95, top = percentiles(stored)
        print(f"figure: {name}_stored_p50_s = {p50:.3f} s")
        print(f"figure: {name}_stored_p95_s = {p95:.3f} s")
        print(f"figure: {name}_stored_max_s = {top:.3f} s")
        print(f"figure: {name}_stored_samples = {len(stored)} events")
    for s in sorted(samples, key=lambda s: s.camera_id):
        stored_s = (
            "not stored"
            if s.stored_at is None
            else (f"stored +{(s.stored_at - s.alerted_at).total_seconds():.3f} s")
        )
        frame = (
            "alerted_at minus the alert frame's ts_capture "
            f"{(s.alerted_at - s.frame_capture).total_seconds() * 1000:+.0f} ms"
            if s.frame_capture is not None
            else f"no frame at the alert's position (nearest {s.frame_gap_ms:.0f} ms away)"
        )
        print(
            f"{name}: {s.camera_id} alert at {s.alerted_at:%H:%M:%S.%f}: on the topic "
            f"+{s.received - s.alerted_at.timestamp():.3f} s, {stored_s}; {frame}"
        )
    c50, c95, _ = percentiles(created)
    print(
        f"{name}: {len(topic)} samples, so p95 is close to the largest one; "
        f"the detector sent them at p50 {c50:.3f} s / p95 {c95:.3f} s after the alert frame "
        "(record CreateTime)"
    )
    drift = [
        abs((s.alerted_at - s.frame_capture).total_seconds())
        for s in samples
        if s.frame_capture is not None
    ]
    if drift:
        print(
            f"{name}: alerted_at vs the alert frame's own ts_capture: max "
            f"{max(drift) * 1000:.0f} ms apart over {len(drift)} events"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6, help="scenes per configuration")
    parser.add_argument("--stagger-s", type=float, default=5.0, help="between camera starts")
    parser.add_argument("--keep-logs", type=Path, help="copy every stage's log into this folder")
    args = parser.parse_args()
    stop_on_sigterm()

    configurations = [
        ("frame_to_event", "default post-roll", {}),
        ("frame_to_event_no_postroll", "post-roll 0", {"PANTAU__DUMPING__EVIDENCE__POST_ROLL_S": "0"}),
    ]  # fmt: skip
    load = os.getloadavg()
    started = time.monotonic()
    results: list[tuple[str, list[Sample]]] = []
    with tempfile.TemporaryDirectory(prefix="dumping-latency-") as folder:
        scenes = write_scenes(Path(folder), args.scenes)
        with bench_database() as database:
            for name, label, extra in configurations:
                samples, notes = measure(
                    label, scenes, database, args.stagger_s, extra, args.keep_logs
                )
                for note in notes:
                    print(note)
                if not samples:
                    raise SystemExit(f"{label}: no dumping event arrived; nothing to measure")
                results.append((name, samples))
    for name, samples in results:
        report(name, samples)
    print(
        f"{args.scenes} scenes per configuration, cameras started {args.stagger_s:.0f} s apart; "
        f"load average before {load[0]:.1f}, run took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
