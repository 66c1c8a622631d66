from __future__ import annotations

import ast
import errno
import hashlib
import logging
import math
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detectors import evidence as evidence_module
from detectors.detections import Detections
from detectors.dumping import PERSON, DumpingRecord, event_id
from detectors.evaluation.synthetic import SceneSpec, SyntheticScene
from detectors.evidence import (
    KINDS,
    ORIGINALS_DIR,
    EvidenceConfig,
    EvidencePack,
    EvidenceRecorder,
    FrameBuffer,
    clip_timing,
    draw_alert,
    redact_bystanders,
)
from pantau.evidence_store import FileStore, file_uri_path, verify
from pantau.messages import EvidenceRef

CAMERA = "tps-gedeg"
# Capture times are epoch seconds, like the frames' ts_capture: 2023-11-14 22:13:20 UTC.
START = 1_700_000_000.0
DAY = "2023-11-14"
FPS = 5.0
OWNER = 1
Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]

# drop_and_leave at 5 fps: the bag lies on the ground from frame 29 (5.8 s) on, the owner
# stands beside it until about 6 s and walks off to the right.
APPEARED_I = 29
BEFORE_I = 14  # before_at = appearance - 3 s
ALERT_I = 179  # appearance + 30 s of dwell
PRE_ROLL_S = 4.0
POST_ROLL_S = 5.0
CLIP_FIRST_I = APPEARED_I - round(PRE_ROLL_S * FPS)  # 9
CLIP_LAST_I = ALERT_I + round(POST_ROLL_S * FPS)  # 204


# --------------------------------------------------------------------------- factories


def t_of(index: int) -> float:
    return START + index / FPS


def scene_of(scenario: str = "drop_and_leave", **spec: Any) -> SyntheticScene:
    return SyntheticScene(SceneSpec(scenario=scenario, start_at=START, fps=FPS, **spec))  # type: ignore[arg-type]


def actor_box(scene: SyntheticScene, index: int, track_id: int) -> Box:
    return next(a.box for a in scene.truth.frames[index].actors if a.track_id == track_id)


def dumping_record(
    scene: SyntheticScene,
    *,
    appeared_i: int = APPEARED_I,
    alert_i: int = ALERT_I,
    owner_i: int | None = APPEARED_I,
    phase: str = "new",
    camera_id: str = CAMERA,
) -> DumpingRecord:
    """The record the dumping logic would emit for the scene's bag, built by hand."""
    box = scene.truth.object_box
    assert box is not None
    appeared = t_of(appeared_i)
    return DumpingRecord(
        event_id=event_id(camera_id, appeared, box),
        phase=phase,  # type: ignore[arg-type]
        version=0,
        state="alerted",
        camera_id=camera_id,
        zone_id=None,
        candidate_id=1,
        at=t_of(alert_i),
        appeared_at=appeared,
        owner_left_at=scene.truth.owner_left_at,
        alerted_at=t_of(alert_i),
        ended_at=None,
        box=box,
        class_id=None,
        class_confidence=0.0,
        owner_track_id=OWNER if owner_i is not None else None,
        owner_class_id=PERSON if owner_i is not None else None,
        owner_box=actor_box(scene, owner_i, OWNER) if owner_i is not None else None,
        owner_seen_at=t_of(owner_i) if owner_i is not None else None,
        confidence=0.5,
        before_at=appeared - 3.0,
    )


def config(root: Path, **overrides: Any) -> EvidenceConfig:
    values: dict[str, Any] = {"pre_roll_s": PRE_ROLL_S, "post_roll_s": POST_ROLL_S, **overrides}
    return EvidenceConfig(root=root, **values)


def run(
    scene: SyntheticScene,
    recorders: list[EvidenceRecorder],
    record: DumpingRecord,
    *,
    until: int | None = None,
    keep: tuple[int, ...] = (),
) -> tuple[list[list[EvidencePack]], dict[int, Image]]:
    """Feed the scene's frames (and the record right after its alert frame) to every
    recorder; (packs per recorder, the raw frames asked for in `keep`)."""
    packs: list[list[EvidencePack]] = [[] for _ in recorders]
    kept: dict[int, Image] = {}
    for frame in scene.frames():
        if until is not None and frame.truth.index > until:
            break
        if frame.truth.index in keep:
            kept[frame.truth.index] = frame.image
        for n, recorder in enumerate(recorders):
            recorder.add_frame(frame.t, frame.image, frame.truth.detections())
            if abs(frame.t - record.at) < 1e-6:
                recorder.on_record(record)
            packs[n] += recorder.ready()
    return packs, kept


def read(ref: EvidenceRef) -> bytes:
    return file_uri_path(ref.uri).read_bytes()


def image_of(ref: EvidenceRef) -> Image:
    return np.asarray(cv2.imdecode(np.frombuffer(read(ref), np.uint8), cv2.IMREAD_COLOR))


def by_kind(pack: EvidencePack) -> dict[str, EvidenceRef]:
    return {ref.kind: ref for ref in pack.refs}


def region(image: npt.NDArray[Any], box: Box, shrink: int = 0) -> npt.NDArray[np.float32]:
    x1, y1, x2, y2 = (round(v) for v in box)
    return image[y1 + shrink : y2 - shrink, x1 + shrink : x2 - shrink].astype(np.float32)


def mean_diff(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def sharpness(image: npt.NDArray[Any]) -> float:
    grey = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def frames_of(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames actually decodable, fps in the header, (width, height)) of a video."""
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        size = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        count = 0
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count, fps, size


def no_detections() -> Detections:
    return Detections.from_rows([])


def ebml(data: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of the EBML elements that make up `data` (Matroska / WebM)."""

    def number(pos: int, marker: bool) -> tuple[int, int]:
        length = 9 - data[pos].bit_length()
        assert 1 <= length <= 8, f"no EBML number at byte {pos}"
        value = data[pos] if marker else data[pos] & (0xFF >> length)
        for byte in data[pos + 1 : pos + length]:
            value = value << 8 | byte
        return value, pos + length

    elements, pos = [], 0
    while pos < len(data):
        ident, pos = number(pos, marker=True)
        size, pos = number(pos, marker=False)
        assert pos + size <= len(data), f"element {ident:X} runs past the end of its parent"
        elements.append((ident, data[pos : pos + size]))
        pos += size
    return elements


def child(elements: list[tuple[int, bytes]], ident: int) -> bytes:
    found = [payload for i, payload in elements if i == ident]
    assert len(found) == 1, f"expected one element {ident:X}, got {len(found)}"
    return found[0]


# Matroska / WebM element ids.
EBML_HEADER, DOC_TYPE = 0x1A45DFA3, 0x4282
SEGMENT, INFO, TIMESTAMP_SCALE, DURATION = 0x18538067, 0x1549A966, 0x2AD7B1, 0x4489
TRACKS, TRACK_ENTRY, TRACK_TYPE, CODEC_ID = 0x1654AE6B, 0xAE, 0x83, 0x86
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
CLUSTER, CUES, CUE_POINT = 0x1F43B675, 0x1C53BB6B, 0xBB


# --------------------------------------------------------------------------- one drop, three ways


@dataclass(frozen=True)
class DropRun:
    scene: SyntheticScene
    record: DumpingRecord
    shared: EvidencePack  # default config: bystanders blurred, no originals
    kept: EvidencePack  # keep_originals
    replay: EvidencePack  # default config again, another root
    roots: tuple[Path, Path, Path]
    raw: dict[int, Image]


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> DropRun:
    scene = scene_of()
    record = dumping_record(scene)
    roots = tuple(tmp_path_factory.mktemp(name) for name in ("shared", "kept", "replay"))
    recorders = [
        EvidenceRecorder(CAMERA, config(roots[0])),
        EvidenceRecorder(CAMERA, config(roots[1], keep_originals=True)),
        EvidenceRecorder(CAMERA, config(roots[2])),
    ]
    packs, raw = run(
        scene, recorders, record, until=CLIP_LAST_I + 5, keep=(BEFORE_I, APPEARED_I, ALERT_I)
    )
    assert [len(p) for p in packs] == [1, 1, 1]
    return DropRun(scene, record, packs[0][0], packs[1][0], packs[2][0], roots, raw)  # type: ignore[arg-type]


def test_a_pack_has_the_four_artefacts_in_the_documented_layout(drop: DropRun) -> None:
    assert drop.shared.event_id == drop.record.event_id
    assert [ref.kind for ref in drop.shared.refs] == list(KINDS)
    assert drop.shared.error is None and drop.kept.error is None
    folder = drop.roots[0] / CAMERA / DAY / str(drop.record.event_id)
    for ref in drop.shared.refs:
        assert ref.uri.startswith("file:///")
        path = file_uri_path(ref.uri)
        assert path.is_absolute()
        assert path.parent == folder
        assert path.stat().st_size > 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "alert.jpg",
        "before.jpg",
        "clip.webm",
        "owner.jpg",
    ]


def test_digests_match_the_files_and_verify_catches_a_changed_byte(
    drop: DropRun, tmp_path: Path
) -> None:
    for ref in drop.shared.refs:
        assert hashlib.sha256(read(ref)).hexdigest() == ref.sha256
        assert verify(ref)
    ref = by_kind(drop.shared)["alert"]
    copy = tmp_path / "alert.jpg"
    data = bytearray(read(ref))
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    tampered = EvidenceRef(kind=ref.kind, uri=copy.as_uri(), sha256=ref.sha256)
    assert not verify(tampered)
    copy.unlink()
    assert not verify(tampered)


def test_the_before_still_shows_the_place_without_the_object(drop: DropRun) -> None:
    box = drop.scene.truth.object_box
    assert box is not None
    refs = by_kind(drop.shared)
    before, alert = image_of(refs["before"]), image_of(refs["alert"])
    empty = drop.scene.background
    # The alert still's outline and label sit on the box edge: compare inside it.
    assert mean_diff(region(before, box, 4), region(empty, box, 4)) < 6
    assert mean_diff(region(alert, box, 4), region(before, box, 4)) > 40
    # It is the newest frame at or before before_at: frame 14, not an older one.
    assert mean_diff(before, drop.raw[BEFORE_I]) < 3


def test_the_alert_still_is_the_alert_frame_with_the_object_outlined(drop: DropRun) -> None:
    box = drop.scene.truth.object_box
    assert box is not None
    alert = image_of(by_kind(drop.shared)["alert"])
    raw = drop.raw[ALERT_I]
    assert alert.shape == raw.shape
    x1, y1, x2, y2 = (round(v) for v in box)
    # Red outline (BGR) along the box's bottom edge; the picture elsewhere is the frame.
    edge = alert[y2, x1 + 3 : x2 - 3].astype(np.int32)
    assert (edge[:, 2] > 200).all()
    assert (edge[:, :2] < 80).all()
    assert mean_diff(alert[: y1 - 30], raw[: y1 - 30]) < 3


def test_the_owner_crop_shows_the_owner_padded(drop: DropRun) -> None:
    owner = image_of(by_kind(drop.shared)["owner"])
    x1, y1, x2, y2 = actor_box(drop.scene, APPEARED_I, OWNER)
    w, h = x2 - x1, y2 - y1
    # 20 % on each side, clipped to the frame (the feet are near the bottom edge).
    assert owner.shape[1] == pytest.approx(1.4 * w, abs=2)
    assert owner.shape[0] == pytest.approx(min(1.4 * h, 360 - (y1 - 0.2 * h)), abs=2)
    px1, py1 = math.floor(x1 - 0.2 * w), math.floor(y1 - 0.2 * h)
    raw = drop.raw[APPEARED_I][py1 : py1 + owner.shape[0], px1 : px1 + owner.shape[1]]
    assert mean_diff(owner, raw) < 6
    shifted = drop.raw[APPEARED_I][py1 : py1 + owner.shape[0], px1 + 30 : px1 + 30 + owner.shape[1]]
    assert mean_diff(owner, shifted) > 3 * mean_diff(owner, raw)
    # The owner's shirt (BGR 170, 90, 40) fills a good part of the crop.
    shirt = np.all(np.abs(owner.astype(np.int32) - (170, 90, 40)) < 30, axis=2)
    assert shirt.mean() > 0.1


def test_the_clip_runs_from_pre_roll_before_the_drop_to_post_roll_after_the_alert(
    drop: DropRun,
) -> None:
    count, fps, size = frames_of(file_uri_path(by_kind(drop.shared)["clip"].uri))
    assert count == CLIP_LAST_I - CLIP_FIRST_I + 1 == 196
    assert fps == pytest.approx(FPS)
    assert count / fps == pytest.approx(39.2)
    assert size == (640, 360)


@pytest.mark.parametrize("copy", ["shared", "original"])
def test_the_clip_is_a_webm_a_browser_plays_and_seeks(drop: DropRun, copy: str) -> None:
    path = file_uri_path(by_kind(drop.kept)["clip"].uri)
    if copy == "original":
        path = path.parent / ORIGINALS_DIR / path.name
    data = path.read_bytes()
    assert data[:4] == bytes.fromhex("1A45DFA3")
    top = ebml(data)
    assert [ident for ident, _ in top] == [EBML_HEADER, SEGMENT]
    assert child(ebml(child(top, EBML_HEADER)), DOC_TYPE) == b"webm"
    segment = ebml(child(top, SEGMENT))

    # One video track, VP8 or VP9: what Chromium's <video> plays in WebM.
    (track,) = [ebml(p) for i, p in ebml(child(segment, TRACKS)) if i == TRACK_ENTRY]
    assert child(track, TRACK_TYPE) == b"\x01"
    assert child(track, CODEC_ID) in (b"V_VP8", b"V_VP9")
    video = ebml(child(track, VIDEO))
    size = tuple(int.from_bytes(child(video, key)) for key in (PIXEL_WIDTH, PIXEL_HEIGHT))
    assert size == (640, 360)

    # Cues index the clusters: what a player seeks by, through Range requests.
    assert any(i == CLUSTER for i, _ in segment)
    cue_points = [p for i, p in ebml(child(segment, CUES)) if i == CUE_POINT]
    assert cue_points

    # The clip lasts as long as its frames at its frame rate: 196 frames at 5 fps.
    count, fps, read_size = frames_of(path)
    assert (count, read_size) == (CLIP_LAST_I - CLIP_FIRST_I + 1, (640, 360))
    info = ebml(child(segment, INFO))
    scale_ns = int.from_bytes(child(info, TIMESTAMP_SCALE))
    (duration,) = struct.unpack(">d", child(info, DURATION))
    assert duration * scale_ns / 1e9 == pytest.approx(count / fps, abs=0.002)
    assert count / fps == pytest.approx(39.2)


def test_the_clip_shows_the_frames_of_its_time_span(drop: DropRun) -> None:
    capture = cv2.VideoCapture(str(file_uri_path(by_kind(drop.shared)["clip"].uri)))
    try:
        first = capture.read()[1]
        capture.set(cv2.CAP_PROP_POS_FRAMES, ALERT_I - CLIP_FIRST_I)
        at_alert = capture.read()[1]
    finally:
        capture.release()
    assert mean_diff(first, drop.scene.render(CLIP_FIRST_I)) < 4
    assert mean_diff(first, drop.scene.render(CLIP_FIRST_I + 3)) > mean_diff(
        first, drop.scene.render(CLIP_FIRST_I)
    )
    assert mean_diff(at_alert, drop.raw[ALERT_I]) < 4


def test_no_originals_unless_configured(drop: DropRun) -> None:
    assert not list(drop.roots[0].rglob("originals"))
    folder = drop.roots[1] / CAMERA / DAY / str(drop.record.event_id) / "originals"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["SHA256SUMS", "alert.jpg", "before.jpg", "clip.webm", "owner.jpg"]
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    # Originals are not shared: the refs name only the blurred artefacts.
    assert all("originals" not in ref.uri for ref in drop.kept.refs)


def test_a_replay_of_the_same_frames_writes_the_same_bytes(drop: DropRun) -> None:
    assert [r.sha256 for r in drop.replay.refs] == [r.sha256 for r in drop.shared.refs]


# --------------------------------------------------------------------------- bystanders


@pytest.fixture(scope="module")
def with_bystander(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticScene, EvidencePack]:
    """drop_and_clean with the cleaner (track 2) walking in while the owner drops the bag:
    at frame 29 both are in view, well apart."""
    scene = scene_of("drop_and_clean", clean_after_s=3.0)
    record = dumping_record(scene, alert_i=APPEARED_I)
    root = tmp_path_factory.mktemp("bystander")
    recorder = EvidenceRecorder(CAMERA, config(root, keep_originals=True, post_roll_s=1.0))
    packs, _ = run(scene, [recorder], record, until=APPEARED_I + 10)
    assert len(packs[0]) == 1
    return scene, packs[0][0]


def test_bystanders_are_pixelated_and_the_owner_is_left_alone(
    with_bystander: tuple[SyntheticScene, EvidencePack],
) -> None:
    scene, pack = with_bystander
    ref = by_kind(pack)["alert"]
    shared = image_of(ref)
    original = np.asarray(
        cv2.imread(str(file_uri_path(ref.uri).parent / "originals" / "alert.jpg"))
    )
    bystander = actor_box(scene, APPEARED_I, 2)
    owner = actor_box(scene, APPEARED_I, OWNER)
    assert mean_diff(region(shared, bystander), region(original, bystander)) > 8
    assert sharpness(region(shared, bystander)) < 0.2 * sharpness(region(original, bystander))
    assert mean_diff(region(shared, owner), region(original, owner)) < 0.5


def test_the_clip_blurs_bystanders_too(
    with_bystander: tuple[SyntheticScene, EvidencePack],
) -> None:
    scene, pack = with_bystander
    path = file_uri_path(by_kind(pack)["clip"].uri)
    shared, original = (
        cv2.VideoCapture(str(path)),
        cv2.VideoCapture(str(path.parent / "originals" / "clip.webm")),
    )
    try:
        # The clip starts at frame 29 - 4 s = frame 9; frame 29 is its 21st.
        for capture in (shared, original):
            capture.set(cv2.CAP_PROP_POS_FRAMES, APPEARED_I - CLIP_FIRST_I)
        a, b = shared.read()[1], original.read()[1]
    finally:
        shared.release()
        original.release()
    bystander = actor_box(scene, APPEARED_I, 2)
    owner = actor_box(scene, APPEARED_I, OWNER)
    assert sharpness(region(a, bystander)) < 0.3 * sharpness(region(b, bystander))
    assert mean_diff(region(a, owner, 8), region(b, owner, 8)) < 2


def detections_of(*rows: tuple[Box, int, int | None]) -> Detections:
    return Detections.from_rows([(box, cls, track, 0.9) for box, cls, track in rows])


@pytest.mark.parametrize(
    ("rows", "owner", "changed", "unchanged"),
    [
        # (box, class, track id) per detection; which boxes change, which stay exact.
        ([((50, 50, 110, 170), PERSON, 1), ((300, 60, 360, 180), PERSON, 2)], 1, [1], [0]),
        ([((50, 50, 110, 170), PERSON, 1), ((300, 60, 360, 180), PERSON, 2)], 2, [0], [1]),
        ([((50, 50, 110, 170), PERSON, 1), ((300, 60, 360, 180), PERSON, 2)], None, [0, 1], []),
        # A car is not a person: never blurred.
        ([((50, 50, 110, 170), 2, 5), ((300, 60, 360, 180), PERSON, 1)], 1, [], [0, 1]),
        # Overlapping the owner: the owner's box stays sharp, the rest of the bystander not.
        ([((50, 50, 110, 170), PERSON, 1), ((90, 40, 160, 180), PERSON, 3)], 1, [], [0]),
    ],
)
def test_redaction_table(
    rows: list[tuple[Box, int, int]], owner: int | None, changed: list[int], unchanged: list[int]
) -> None:
    image = scene_of().render(0)
    rng = np.random.default_rng(0)
    image = np.clip(image + rng.integers(0, 60, image.shape), 0, 255).astype(np.uint8)
    found = detections_of(*rows)
    out = redact_bystanders(image, found, owner)
    assert out is not image
    for i in changed:
        assert mean_diff(region(out, rows[i][0]), region(image, rows[i][0])) > 5
    for i in unchanged:
        assert np.array_equal(region(out, rows[i][0]), region(image, rows[i][0]))
    if rows[-1][2] == 3:
        # The part of the overlapping bystander outside the owner's box is pixelated.
        assert mean_diff(region(out, (112, 40, 160, 180)), region(image, (112, 40, 160, 180))) > 5


def test_redaction_without_people_changes_nothing() -> None:
    image = scene_of().render(0)
    assert np.array_equal(redact_bystanders(image, no_detections(), 1), image)


def test_without_blurring_the_shared_artefacts_are_the_originals(tmp_path: Path) -> None:
    scene = scene_of("drop_and_clean", clean_after_s=3.0)
    record = dumping_record(scene, alert_i=APPEARED_I)
    recorder = EvidenceRecorder(
        CAMERA, config(tmp_path, blur_bystanders=False, keep_originals=True, post_roll_s=0.0)
    )
    packs, raw = run(scene, [recorder], record, until=APPEARED_I, keep=(APPEARED_I,))
    alert = image_of(by_kind(packs[0][0])["alert"])
    bystander = actor_box(scene, APPEARED_I, 2)
    assert sharpness(region(alert, bystander)) > 0.5 * sharpness(region(raw[APPEARED_I], bystander))
    assert not list(tmp_path.rglob("originals"))


# --------------------------------------------------------------------------- pack lifecycle


def test_the_pack_waits_for_the_post_roll_and_flush_finishes_it_early(tmp_path: Path) -> None:
    scene = scene_of()
    record = dumping_record(scene, alert_i=60)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path / "a"))
    packs, _ = run(scene, [recorder], record, until=60 + 24)
    assert packs == [[]]
    assert recorder.pending == (record.event_id,)
    recorder.add_frame(t_of(85), scene.render(85), no_detections())
    done = recorder.ready()
    assert [p.event_id for p in done] == [record.event_id]
    assert not recorder.pending

    early = EvidenceRecorder(CAMERA, config(tmp_path / "b"))
    packs, _ = run(scene, [early], record, until=62)
    assert packs == [[]]
    flushed = early.flush()
    assert [ref.kind for ref in flushed[0].refs] == list(KINDS)
    count, _, _ = frames_of(file_uri_path(by_kind(flushed[0])["clip"].uri))
    assert count == 62 - CLIP_FIRST_I + 1


def test_only_new_starts_a_pack_and_a_repeated_alert_is_ignored(tmp_path: Path) -> None:
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=0.0))
    for i in range(41):
        recorder.add_frame(t_of(i), scene.render(i), no_detections())
    recorder.on_record(replace(record, phase="update"))
    recorder.on_record(replace(record, phase="end"))
    assert not recorder.pending
    recorder.on_record(record)
    recorder.on_record(record)
    assert len(recorder.ready()) == 1
    recorder.on_record(record)
    assert not recorder.pending
    assert recorder.flush() == []


def test_a_buffer_shorter_than_the_wait_loses_the_before_still_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = scene_of()
    record = dumping_record(scene, alert_i=120)
    recorder = EvidenceRecorder(
        CAMERA, config(tmp_path, buffer_s=10.0, pre_roll_s=4.0, post_roll_s=0.0)
    )
    with caplog.at_level(logging.WARNING, logger="detectors.evidence"):
        packs, _ = run(scene, [recorder], record, until=120)
    kinds = [ref.kind for ref in packs[0][0].refs]
    # The owner stood by the bag 18 s before the alert; the buffer reaches back 10 s.
    assert kinds == ["alert", "clip"]
    assert packs[0][0].error == "before, owner missing: no buffered frame for it"
    assert any(
        CAMERA in r.getMessage() and "before still" in r.getMessage() for r in caplog.records
    )


def test_a_failing_store_is_logged_and_keeps_what_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class NoVideos(FileStore):
        def put(self, relative_path: str, data: bytes) -> str:
            if relative_path.endswith(".webm"):
                raise OSError("disk full")
            return super().put(relative_path, data)

    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=0.0), NoVideos(tmp_path))
    with caplog.at_level(logging.ERROR, logger="detectors.evidence"):
        packs, _ = run(scene, [recorder], record, until=40)
    assert [ref.kind for ref in packs[0][0].refs] == ["before", "alert", "owner"]
    assert packs[0][0].error == "clip missing: OSError: disk full"
    assert any(CAMERA in r.getMessage() and "disk full" in r.getMessage() for r in caplog.records)


def test_without_the_video_encoder_the_clip_is_missing_and_says_which_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence_module, "_CLIP_CODEC", "libvpx-vp99")
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=0.0))
    packs, _ = run(scene, [recorder], record, until=40)
    (pack,) = packs[0]
    assert [ref.kind for ref in pack.refs] == ["before", "alert", "owner"]
    assert pack.error == (
        f"clip missing: OSError: camera {CAMERA}: event {record.event_id}: expected PyAV to "
        "write VP9 in WebM (libvpx-vp99): libvpx-vp99"
    )
    assert not list(tmp_path.rglob("*.webm"))


class FullStore(FileStore):
    """A store whose disk is full for the artefacts `full` picks (all by default)."""

    def __init__(self, root: Path, full: Callable[[str], bool] = lambda _: True) -> None:
        super().__init__(root)
        self.full = full

    def put(self, relative_path: str, data: bytes) -> str:
        if self.full(relative_path):
            path = self.root / relative_path
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return super().put(relative_path, data)


def test_a_full_store_leaves_the_pack_empty_with_the_reason_and_logs_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = scene_of()
    first = dumping_record(scene, alert_i=40)
    second = replace(first, event_id=event_id(CAMERA, t_of(45), first.box), at=t_of(50))
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=0.0), FullStore(tmp_path))
    with caplog.at_level(logging.DEBUG, logger="detectors.evidence"):
        packs: list[EvidencePack] = []
        for frame in scene.frames():
            if frame.truth.index > 50:
                break
            recorder.add_frame(frame.t, frame.image, frame.truth.detections())
            for record in (first, second):
                if abs(frame.t - record.at) < 1e-6:
                    recorder.on_record(record)
                    assert recorder.stills(record.event_id).error is not None
            packs += recorder.ready()
    assert [(p.refs, p.error) for p in packs] == [
        ((), "before, alert, owner, clip missing: OSError: [Errno 28] No space left on device")
    ] * 2
    # The reason, not this machine's folders.
    assert all(str(tmp_path) not in (p.error or "") for p in packs)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert CAMERA in errors[0].getMessage() and "No space left" in errors[0].getMessage()
    assert errors[0].exc_info is None
    assert not list(tmp_path.rglob("*.jpg"))


def test_each_artefact_is_tried_on_its_own_and_writing_again_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    store = FullStore(tmp_path, lambda path: path.endswith("alert.jpg"))
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=0.0), store)
    with caplog.at_level(logging.WARNING, logger="detectors.evidence"):
        packs, _ = run(scene, [recorder], record, until=40)
    (pack,) = packs[0]
    assert [ref.kind for ref in pack.refs] == ["before", "owner", "clip"]
    assert pack.error == "alert missing: OSError: [Errno 28] No space left on device"
    assert any("evidence is written again" in r.getMessage() for r in caplog.records)


def test_an_unblurred_original_that_fails_keeps_the_shared_copy(tmp_path: Path) -> None:
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    store = FullStore(tmp_path, lambda path: f"/{ORIGINALS_DIR}/" in path)
    recorder = EvidenceRecorder(
        CAMERA, config(tmp_path, post_roll_s=0.0, keep_originals=True), store
    )
    packs, _ = run(scene, [recorder], record, until=40)
    (pack,) = packs[0]
    assert [ref.kind for ref in pack.refs] == list(KINDS)
    assert pack.error == (
        "original before, original alert, original owner, original clip missing: "
        "OSError: [Errno 28] No space left on device"
    )


def test_a_store_under_a_regular_file_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "evidence").write_text("not a folder")
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path / "evidence" / "store", post_roll_s=0.0))
    packs, _ = run(scene, [recorder], record, until=40)
    assert [(p.refs, p.error) for p in packs[0]] == [
        ((), "before, alert, owner, clip missing: NotADirectoryError: [Errno 20] Not a directory")
    ]


def test_records_and_frames_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    scene = scene_of()
    recorder = EvidenceRecorder(CAMERA, config(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"camera tps-gedeg: expected dumping records of this camera, got one of 'pasar'",
    ):
        recorder.on_record(dumping_record(scene, camera_id="pasar"))
    recorder.add_frame(t_of(5), scene.render(5), no_detections())
    with pytest.raises(ValueError, match=r"camera tps-gedeg: expected frames in time order"):
        recorder.add_frame(t_of(4), scene.render(4), no_detections())
    with pytest.raises(ValueError, match=r"camera tps-gedeg: expected a BGR uint8 image"):
        recorder.add_frame(t_of(6), np.zeros((360, 640), dtype=np.uint8), no_detections())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pre_roll_s": -1.0}, "pre_roll_s: Input should be greater than or equal to 0"),
        ({"jpeg_quality": 0}, "jpeg_quality: Input should be greater than or equal to 30"),
        ({"buffer_s": 10.0, "pre_roll_s": 20.0}, "buffer_s >= pre_roll_s"),
        ({"max_buffer_frames": 0}, "max_buffer_frames >= 1"),
    ],
)
def test_config_names_what_is_wrong(
    overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        EvidenceConfig(root=tmp_path, **overrides)


# --------------------------------------------------------------------------- buffer


def test_the_buffer_is_bounded_in_time_and_in_frames() -> None:
    scene = scene_of()
    images = [scene.render(i) for i in range(0, 250, 25)]
    by_time = FrameBuffer(CAMERA, max_age_s=10.0, max_frames=1000)
    by_count = FrameBuffer(CAMERA, max_age_s=1000.0, max_frames=20)
    for i in range(300):  # a minute at 5 fps
        for buffer in (by_time, by_count):
            buffer.add(t_of(i), images[i % len(images)], no_detections())
    assert len(by_time) == 51
    assert by_time.newest is not None and by_time.oldest is not None
    assert by_time.newest - by_time.oldest == pytest.approx(10.0)
    assert len(by_count) == 20
    assert by_count.oldest == t_of(280)


def test_the_buffer_keeps_frames_as_jpeg_of_about_26_kb() -> None:
    scene = scene_of()
    buffer = FrameBuffer(CAMERA, max_age_s=120.0, max_frames=600)
    for i in range(0, 250, 5):
        buffer.add(t_of(i), scene.render(i), no_detections())
    per_frame = buffer.nbytes / len(buffer)
    # 640x360 BGR is 691 200 bytes raw; the comment on max_buffer_frames says 14-26 kB.
    assert 10_000 < per_frame < 35_000
    assert per_frame < 640 * 360 * 3 / 20


def test_a_frame_that_arrived_as_jpeg_is_kept_as_it_came() -> None:
    scene = scene_of()
    image = scene.render(0)
    ok, sent = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    buffer = FrameBuffer(CAMERA, max_age_s=120.0, max_frames=600)
    kept = buffer.add(t_of(0), image, no_detections(), sent.tobytes())
    assert kept.jpeg == sent.tobytes()
    assert (kept.width, kept.height) == (image.shape[1], image.shape[0])


# --------------------------------------------------------------------------- clip timing


@pytest.mark.parametrize(
    ("times", "fps", "picks"),
    [
        ([0.0, 0.2, 0.4, 0.6], 5.0, [0, 1, 2, 3]),
        # A motion-gated gap of a second holds the last picture; the clip keeps real time.
        ([0.0, 0.2, 1.2, 1.4], 5.0, [0, 1, 1, 1, 1, 1, 2, 3]),
        # Jitter around 5 fps (median gap 0.19 s) still gives each frame one slot.
        ([0.0, 0.19, 0.41, 0.6, 0.79], 1 / 0.19, [0, 1, 2, 3, 4]),
        ([0.0, 0.1, 0.2], 10.0, [0, 1, 2]),
        ([3.0], 5.0, [0]),
        ([], 5.0, []),
    ],
)
def test_clip_timing_table(times: list[float], fps: float, picks: list[int]) -> None:
    got_fps, got_picks = clip_timing([START + t for t in times])
    assert got_fps == pytest.approx(fps, abs=1e-3)
    assert got_picks == picks


# --------------------------------------------------------------------------- store, drawing


def test_the_file_store_writes_atomically_inside_its_root(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    uri = store.put("cam/2023-11-14/e/x.bin", b"abc")
    assert file_uri_path(uri) == tmp_path / "cam" / "2023-11-14" / "e" / "x.bin"
    assert store.get(uri) == b"abc"
    store.put("cam/2023-11-14/e/x.bin", b"abcd")
    assert store.get(uri) == b"abcd"
    assert [p.name for p in (tmp_path / "cam" / "2023-11-14" / "e").iterdir()] == ["x.bin"]
    for bad in ("../x", "/etc/x", "a/../../x", ""):
        with pytest.raises(ValueError, match="expected a relative path"):
            store.put(bad, b"")


def test_verify_through_a_store_and_refuses_foreign_uris_without_one(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = b"evidence"
    ref = EvidenceRef(
        kind="alert", uri=store.put("a.jpg", data), sha256=hashlib.sha256(data).hexdigest()
    )
    assert verify(ref, store)
    with pytest.raises(ValueError, match="expected a file:// URI"):
        verify(EvidenceRef(kind="alert", uri="s3://bucket/a.jpg", sha256=ref.sha256))


def test_draw_alert_outlines_and_labels_a_copy() -> None:
    image = np.full((360, 640, 3), 128, dtype=np.uint8)
    out = draw_alert(image, (100.0, 150.0, 200.0, 250.0), "dumping 0.90")
    assert (image == 128).all()
    assert tuple(out[250, 150]) == (0, 0, 255)
    assert (out[150 - 20 : 150, 100:150] != 128).any()  # the label above the box
    assert (out[200, 150] == 128).all()
    # A box at the top edge keeps its label inside the picture.
    top = draw_alert(image, (10.0, 0.0, 90.0, 40.0), "dumping")
    assert (top[2:15, 12:60] != 128).any()


# --------------------------------------------------------------------------- no clock


def test_nothing_reads_the_wall_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = ast.parse(Path(evidence_module.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "time" not in imported
    assert not attributes & {"now", "utcnow", "today", "monotonic", "perf_counter"}

    callers: list[str] = []

    def spy(real: Callable[[], Any]) -> Callable[[], Any]:
        def clock() -> Any:
            callers.append(sys._getframe(1).f_globals.get("__name__", "?"))
            return real()

        return clock

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, spy(getattr(time, name)))
    scene = scene_of()
    record = dumping_record(scene, alert_i=40)
    recorder = EvidenceRecorder(CAMERA, config(tmp_path, post_roll_s=1.0))
    packs, _ = run(scene, [recorder], record, until=45)
    assert len(packs[0]) == 1
    assert "detectors.evidence" not in callers
