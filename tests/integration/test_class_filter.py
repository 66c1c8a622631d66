"""Only the classes a deployment lists come out of the detector, with the real shared YOLO
weights on the Intel table clip (where the network also sees skateboards, a frisbee, a cat and
a dog): through `pantau detect` on the real Kafka into the detections topic, and through the
pipeline `pantau detect-file` builds. A class name the model does not know stops either
command at start-up with a line that names it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from detectors.backends import Backend, load_backend
from detectors.detections import Detections
from detectors.offline import FileRun, as_published, sampled_frames
from pantau import kafka
from pantau.codec import decode_as, encode
from pantau.ids import utcnow
from pantau.messages import Detections as DetectionsMessage
from pantau.messages import Frame
from pantau.settings import CameraSettings, Settings, load_settings
from pantau.topics import Topics
from tests.conftest import REPO, SAMPLE_CLIP
from tests.integration.conftest import BASE_CONFIG, Pipeline, base_environ

CAMERA = "meja-kelas"
# Seconds of the clip where a person sits at the table and the network also finds skateboards
# (the table's edge) at 0.28-0.46.
START_S, END_S = 24.5, 28.5
FPS = 5.0

Image = np.ndarray


def clip_frames() -> list[tuple[float, Image, bytes]]:
    """(seconds into the clip, picture, JPEG) as the camera ingest publishes them."""
    frames = []
    for t, raw in sampled_frames(SAMPLE_CLIP, FPS):
        if t > END_S:
            break
        if t >= START_S:
            image, jpeg = as_published(raw, 640, 85)
            frames.append((t, image, jpeg))
    assert len(frames) >= 15, f"{SAMPLE_CLIP}: only {len(frames)} frames in {START_S}-{END_S} s"
    return frames


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> list[tuple[float, Image, bytes]]:
    return clip_frames()


def settings_with(environ: dict[str, str]) -> Settings:
    return load_settings(BASE_CONFIG, {**base_environ(), **environ})


@pytest.fixture(scope="module")
def backend(shared_data: Path) -> Backend:
    settings = settings_with({})
    assert settings.detector is not None
    return load_backend(settings.detector)


def labels(backend: Backend, found: list[Detections]) -> Counter[str]:
    return Counter(backend.names[int(c)] for d in found for c in d.class_id)


def test_the_network_sees_more_on_this_clip_than_is_listed(
    backend: Backend, frames: list[tuple[float, Image, bytes]]
) -> None:
    """What the other tests here filter out: without this the filter would have nothing to
    drop, and they could not fail."""
    raw = labels(backend, backend.detect([image for _, image, _ in frames]))
    detector = settings_with({}).detector
    assert detector is not None
    listed = set(detector.classes)
    assert raw["person"] >= len(frames) - 2
    assert raw["skateboard"] >= len(frames) // 2
    assert not {"skateboard"} & listed


def test_pantau_detect_stores_only_the_listed_classes(
    pipeline: Pipeline, tmp_path: Path, frames: list[tuple[float, Image, bytes]]
) -> None:
    settings = pipeline.settings
    topics = Topics(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    detect = pipeline.start(
        "detect",
        "detect",
        env={
            "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence"),
        },
    )
    start = utcnow()
    sent = []
    producer = kafka.producer(settings.kafka, "test-camera")
    try:
        for seq, (t, image, jpeg) in enumerate(frames):
            at = start + timedelta(seconds=t - START_S)
            frame = Frame(
                id=uuid.uuid4(), ts_capture=at, seq=seq, camera_id=CAMERA,
                width=int(image.shape[1]), height=int(image.shape[0]), ts_ingest=at, jpeg=jpeg,
            )  # fmt: skip
            sent.append(frame.id)
            producer.send(topics.frames, key=frame.key, value=encode(frame))
        producer.flush()
    finally:
        producer.close()

    def detected() -> list[DetectionsMessage]:
        records = pipeline.read_topic(topics.detections)
        return [decode_as(r.value, DetectionsMessage) for r in records]

    pipeline.wait_for(
        "detections of every frame", lambda: len(detected()) >= len(sent), timeout=240
    )
    messages = detected()
    assert {m.frame_id for m in messages} == set(sent)
    assert settings.detector is not None
    kept = settings.detector.classes
    boxes = [b for m in messages for b in m.boxes]
    assert boxes and {b.label for b in boxes} <= set(kept)
    assert all(b.confidence >= kept[b.label] for b in boxes)
    # The person at the table is still there, tracked, in (nearly) every frame.
    people = [m for m in messages if any(b.label == "person" for b in m.boxes)]
    assert len(people) >= len(messages) - 2
    assert all(b.track_id is not None for m in people for b in m.boxes if b.label == "person")
    assert pipeline.stop(detect) == 0, pipeline.log_of(detect)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"person"}),
        # The list decides: a deployment that wants skateboards gets them (untracked: they
        # are not among detector.tracker.classes).
        (
            {"PANTAU__DETECTOR__CLASSES": "{person: 0.35, skateboard: 0.3}"},
            {"person", "skateboard"},
        ),
    ],
    ids=["shipped-list", "skateboards-listed"],
)
def test_the_file_pipeline_keeps_only_the_listed_classes(
    backend: Backend,
    frames: list[tuple[float, Image, bytes]],
    tmp_path: Path,
    environ: dict[str, str],
    expected: set[str],
) -> None:
    settings = settings_with(
        {**environ, "PANTAU__DUMPING__EVIDENCE__DIR": str(tmp_path / "evidence")}
    )
    assert settings.detector is not None
    camera = CameraSettings.model_validate({"id": CAMERA, "url": str(SAMPLE_CLIP), "fps": FPS})
    run = FileRun(camera, settings=settings, backend=backend, origin=utcnow(), evidence=False)
    found = backend.detect([image for _, image, _ in frames])
    out = [
        run.pipeline.frame(t, image, d, jpeg)[0]
        for (t, image, jpeg), d in zip(frames, found, strict=True)
    ]
    kept = labels(backend, out)
    assert set(kept) == expected
    thresholds = settings.detector.classes
    for tracked in out:
        for c, confidence in zip(tracked.class_id, tracked.confidence, strict=True):
            assert confidence >= np.float32(thresholds[backend.names[int(c)]])


def run_cli(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**base_environ(), **environ},
        cwd=REPO,
    )


UNKNOWN = {"PANTAU__DETECTOR__CLASSES__RUBBISH": "0.3"}
NAMED = "detector.classes: 'rubbish' is not a class of the model (it knows 80: person, bicycle"


def test_a_class_the_model_does_not_know_stops_detect_file_at_start_up(
    tmp_path: Path, shared_data: Path
) -> None:
    camera = tmp_path / "camera.yaml"
    camera.write_text(f"id: {CAMERA}\nfps: {FPS}\n")
    result = run_cli(
        "detect-file", str(SAMPLE_CLIP), "--camera-config", str(camera), environ=UNKNOWN
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert NAMED in result.stderr
    assert "Traceback" not in result.stderr


def test_a_class_the_model_does_not_know_keeps_detect_from_reading_frames(
    pipeline: Pipeline,
) -> None:
    """Under its supervisor the worker stops before its first frame, and the reason the
    supervisor reports (and restarts it for) names the class."""
    detect = pipeline.start("detect", "detect", env=UNKNOWN)
    pipeline.wait_for("the unknown class named", lambda: NAMED in pipeline.log_of(detect))
    log = pipeline.log_of(detect)
    assert "Traceback" not in log
    assert "detector: 0 frames" not in log and "frames (" not in log
